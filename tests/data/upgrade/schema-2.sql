-- A state database written by skyctl 5375387 (schema version 2), captured with
-- sqlite3 state.db .dump: service web READY on the local provider, replica 1 TERMINATED
-- (its process killed: FAILED), replicas 2 and 3 READY, their events (and, from schema 4,
-- their cost facts). tests/test_upgrade_schemas.py migrates it to the latest schema.
PRAGMA foreign_keys=OFF;
BEGIN TRANSACTION;
CREATE TABLE schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version VALUES(2);
CREATE TABLE services (
        name TEXT NOT NULL PRIMARY KEY,
        status TEXT NOT NULL,
        current_version INTEGER NOT NULL,
        router_host TEXT NOT NULL,
        router_port INTEGER,
        next_replica_id INTEGER NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
INSERT INTO services VALUES('web','READY',1,'127.0.0.1',35477,4,1796675547.6345648765,1796675549.0087366103);
CREATE TABLE service_versions (
        service TEXT NOT NULL REFERENCES services (name) ON DELETE CASCADE,
        version INTEGER NOT NULL,
        yaml_text TEXT NOT NULL,
        created_at REAL NOT NULL, source TEXT,
        PRIMARY KEY (service, version)
    );
INSERT INTO service_versions VALUES('web',1,replace('name: web\nresources:\n  cloud: local\nservice:\n  readiness_probe:\n    path: /\n    initial_delay_seconds: 20\n    timeout_seconds: 2\n    period_seconds: 1\n  replicas: 2\nrun: exec python3 -m http.server "$PORT" --bind 127.0.0.1\n','\n',char(10)),1796675547.6345648765,'/tmp/upg-spec-5375387.yaml');
CREATE TABLE replicas (
        service TEXT NOT NULL REFERENCES services (name) ON DELETE CASCADE,
        replica_id INTEGER NOT NULL,
        version INTEGER NOT NULL,
        status TEXT NOT NULL,
        end_reason TEXT,
        cloud TEXT NOT NULL,
        region TEXT NOT NULL,
        zone TEXT NOT NULL,
        spot BOOLEAN NOT NULL,
        price REAL NOT NULL,
        instance_type TEXT NOT NULL,
        instance_id TEXT,
        endpoint TEXT,
        client_token TEXT NOT NULL UNIQUE,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        status_since REAL NOT NULL,
        ready_at REAL,
        terminated_at REAL,
        probe_failures INTEGER NOT NULL,
        interruption_at REAL,
        launch_attempts INTEGER NOT NULL,
        PRIMARY KEY (service, replica_id),
        FOREIGN KEY (service, version)
            REFERENCES service_versions (service, version) ON DELETE CASCADE
    );
INSERT INTO replicas VALUES('web',1,1,'TERMINATED','FAILED','local','us-east','us-east-a',0,1.0,'local','web-r1-5692074eb9','http://127.0.0.1:55907','040c2fb6c4689b74cf7d877601daca06',1796675547.7145395278,1796675629.0791239738,1796675629.0791239738,1796675548.9638111591,1796675629.0791239738,0,NULL,1);
INSERT INTO replicas VALUES('web',2,1,'READY',NULL,'local','us-east','us-east-a',0,1.0,'local','web-r2-376d356fa0','http://127.0.0.1:48861','1e44debc0225ec0644dc169579e5a612',1796675547.7145395278,1796675548.9638111591,1796675548.9638111591,1796675548.9638111591,NULL,0,NULL,1);
INSERT INTO replicas VALUES('web',3,1,'READY',NULL,'local','us-east','us-east-a',0,1.0,'local','web-r3-4a222ec90b','http://127.0.0.1:55179','ddb43acf6ba42ce2a1f47063cd95591e',1796675629.0841133594,1796675630.2760503292,1796675630.2760503292,1796675630.2760503292,NULL,0,NULL,1);
CREATE TABLE location_states (
        service TEXT NOT NULL REFERENCES services (name) ON DELETE CASCADE,
        location TEXT NOT NULL,
        state TEXT NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (service, location)
    );
CREATE TABLE policy_state (
        service TEXT NOT NULL PRIMARY KEY REFERENCES services (name) ON DELETE CASCADE,
        json TEXT NOT NULL
    );
INSERT INTO policy_state VALUES('web','{"autoscale": {"down_since": null, "target": 2, "up_since": null, "version": 1}, "ondemand_only": {}}');
CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        service TEXT NOT NULL REFERENCES services (name) ON DELETE CASCADE,
        replica_id INTEGER,
        at REAL NOT NULL,
        kind TEXT NOT NULL,
        message TEXT NOT NULL
    );
INSERT INTO events VALUES(1,'web',NULL,1796675547.6592342853,'created','version 1, policy ondemand_only');
INSERT INTO events VALUES(2,'web',1,1796675547.7145395278,'launch','on-demand in local/us-east/us-east-a at $1.00/h ondemand_only: on-demand replica');
INSERT INTO events VALUES(3,'web',2,1796675547.7145395278,'launch','on-demand in local/us-east/us-east-a at $1.00/h ondemand_only: on-demand replica');
INSERT INTO events VALUES(4,'web',1,1796675548.9638111591,'ready','ready at http://127.0.0.1:55907');
INSERT INTO events VALUES(5,'web',2,1796675548.9638111591,'ready','ready at http://127.0.0.1:48861');
INSERT INTO events VALUES(6,'web',1,1796675629.068381071,'failed','process exited with code -9');
INSERT INTO events VALUES(7,'web',3,1796675629.0841133594,'launch','on-demand in local/us-east/us-east-a at $1.00/h ondemand_only: on-demand replica');
INSERT INTO events VALUES(8,'web',3,1796675630.2760503292,'ready','ready at http://127.0.0.1:55179');
DELETE FROM sqlite_sequence;
INSERT INTO sqlite_sequence VALUES('events',8);
CREATE INDEX replicas_service_status ON replicas (service, status);
CREATE INDEX events_service_id ON events (service, id);
COMMIT;
