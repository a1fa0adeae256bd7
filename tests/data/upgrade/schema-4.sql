-- A state database written by skyctl 729f218 (schema version 4), captured with
-- sqlite3 state.db .dump: service web READY on the local provider, replica 1 TERMINATED
-- (its process killed: FAILED), replicas 2 and 3 READY, their events (and, from schema 4,
-- their cost facts). tests/test_upgrade_schemas.py migrates it to the latest schema.
PRAGMA foreign_keys=OFF;
BEGIN TRANSACTION;
CREATE TABLE schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version VALUES(4);
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
INSERT INTO services VALUES('web','READY',1,'127.0.0.1',42339,4,1796675708.9067199229,1796675710.2613120078);
CREATE TABLE service_versions (
        service TEXT NOT NULL REFERENCES services (name) ON DELETE CASCADE,
        version INTEGER NOT NULL,
        yaml_text TEXT NOT NULL,
        created_at REAL NOT NULL, source TEXT, secrets_ciphertext TEXT,
        PRIMARY KEY (service, version)
    );
INSERT INTO service_versions VALUES('web',1,replace('name: web\nresources:\n  cloud: local\nservice:\n  readiness_probe:\n    path: /\n    initial_delay_seconds: 20\n    timeout_seconds: 2\n    period_seconds: 1\n  replicas: 2\nrun: exec python3 -m http.server "$PORT" --bind 127.0.0.1\n','\n',char(10)),1796675708.9067199229,'/tmp/upg-spec-729f218.yaml',NULL);
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
        launch_attempts INTEGER NOT NULL, billed_from REAL, ondemand_price REAL,
        PRIMARY KEY (service, replica_id),
        FOREIGN KEY (service, version)
            REFERENCES service_versions (service, version) ON DELETE CASCADE
    );
INSERT INTO replicas VALUES('web',1,1,'TERMINATED','FAILED','local','us-east','us-east-a',0,1.0,'local','web-r1-bb8f224b58','http://127.0.0.1:56833','950c8c689d29d7c97e1d62c542d1b79e',1796675708.9934401511,1796675711.2723009586,1796675711.2723009586,1796675710.27496171,1796675711.2723009586,0,NULL,1,1796675709.1643056868,1.0);
INSERT INTO replicas VALUES('web',2,1,'READY',NULL,'local','us-east','us-east-a',0,1.0,'local','web-r2-f1703518ff','http://127.0.0.1:51071','e5785061bf23e76cb8b855c48b2ffad3',1796675708.9934401511,1796675710.2337398529,1796675710.2337398529,1796675710.2337398529,NULL,0,NULL,1,1796675709.1773049831,1.0);
INSERT INTO replicas VALUES('web',3,1,'READY',NULL,'local','us-east','us-east-a',0,1.0,'local','web-r3-5a22730642','http://127.0.0.1:45803','5249d7cf5e2c0f0e5298b7db6a95a64c',1796675711.2874743938,1796675712.4972968101,1796675712.4972968101,1796675712.4972968101,NULL,0,NULL,1,1796675711.350827694,1.0);
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
INSERT INTO policy_state VALUES('web','{"autoscale": {"down_since": null, "target": 2, "up_since": null, "version": 1}, "failures": {"launches_per_minute": {"29944595": 3}, "versions": {"1": {"ever_ready": true, "hold_until": 0.0, "last_ready_at": 1796675712.4972968, "streak": 0}}}, "ondemand_only": {}}');
CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        service TEXT NOT NULL REFERENCES services (name) ON DELETE CASCADE,
        replica_id INTEGER,
        at REAL NOT NULL,
        kind TEXT NOT NULL,
        message TEXT NOT NULL
    );
INSERT INTO events VALUES(1,'web',NULL,1796675708.9315884113,'created','version 1, policy ondemand_only');
INSERT INTO events VALUES(2,'web',1,1796675708.9934401511,'launch','on-demand in local/us-east/us-east-a at $1.00/h ondemand_only: on-demand replica');
INSERT INTO events VALUES(3,'web',2,1796675708.9934401511,'launch','on-demand in local/us-east/us-east-a at $1.00/h ondemand_only: on-demand replica');
INSERT INTO events VALUES(4,'web',2,1796675710.2337398529,'ready','ready at http://127.0.0.1:51071');
INSERT INTO events VALUES(5,'web',1,1796675710.27496171,'ready','ready at http://127.0.0.1:56833');
INSERT INTO events VALUES(6,'web',1,1796675711.2645654679,'failed','process exited with code -9');
INSERT INTO events VALUES(7,'web',3,1796675711.2874743938,'launch','on-demand in local/us-east/us-east-a at $1.00/h ondemand_only: on-demand replica');
INSERT INTO events VALUES(8,'web',3,1796675712.4972968101,'ready','ready at http://127.0.0.1:45803');
CREATE TABLE replica_ledger (
                service TEXT NOT NULL,
                replica_id INTEGER NOT NULL,
                cloud TEXT NOT NULL,
                region TEXT NOT NULL,
                zone TEXT NOT NULL,
                spot BOOLEAN NOT NULL,
                instance_type TEXT NOT NULL,
                price REAL NOT NULL,
                ondemand_price REAL,
                end_reason TEXT,
                created_at REAL NOT NULL,
                billed_from REAL,
                terminated_at REAL NOT NULL,
                had_notice BOOLEAN NOT NULL,
                launch_attempts INTEGER NOT NULL,
                PRIMARY KEY (service, replica_id, created_at)
            );
DELETE FROM sqlite_sequence;
INSERT INTO sqlite_sequence VALUES('events',8);
CREATE INDEX replicas_service_status ON replicas (service, status);
CREATE INDEX events_service_id ON events (service, id);
CREATE INDEX replica_ledger_ended ON replica_ledger (service, terminated_at);
COMMIT;
