-- A state database written by skyctl ddde3c7 (schema version 5), captured with
-- sqlite3 state.db .dump: service web READY on the local provider, replica 1 TERMINATED
-- (its process killed: FAILED), replicas 2 and 3 READY, their events (and, from schema 4,
-- their cost facts). tests/test_upgrade_schemas.py migrates it to the latest schema.
PRAGMA foreign_keys=OFF;
BEGIN TRANSACTION;
CREATE TABLE schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version VALUES(5);
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
INSERT INTO services VALUES('web','READY',1,'127.0.0.1',35333,4,1796675747.8633244037,1796675749.0782539844);
CREATE TABLE service_versions (
        service TEXT NOT NULL REFERENCES services (name) ON DELETE CASCADE,
        version INTEGER NOT NULL,
        yaml_text TEXT NOT NULL,
        created_at REAL NOT NULL, source TEXT, secrets_ciphertext TEXT,
        PRIMARY KEY (service, version)
    );
INSERT INTO service_versions VALUES('web',1,replace('name: web\nresources:\n  cloud: local\nservice:\n  readiness_probe:\n    path: /\n    initial_delay_seconds: 20\n    timeout_seconds: 2\n    period_seconds: 1\n  replicas: 2\nrun: exec python3 -m http.server "$PORT" --bind 127.0.0.1\n','\n',char(10)),1796675747.8633244037,'/tmp/upg-spec-ddde3c7.yaml',NULL);
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
        launch_attempts INTEGER NOT NULL, billed_from REAL, ondemand_price REAL, exit_code INTEGER, failure TEXT, log_tail TEXT,
        PRIMARY KEY (service, replica_id),
        FOREIGN KEY (service, version)
            REFERENCES service_versions (service, version) ON DELETE CASCADE
    );
INSERT INTO replicas VALUES('web',1,1,'TERMINATED','FAILED','local','us-east','us-east-a',0,1.0,'local','web-r1-ef8eac295f','http://127.0.0.1:45983','e58dcf49b70f54a6f88feb5fb3fc2326',1796675747.9208722114,1796675750.8746666908,1796675750.8746666908,1796675749.0634248256,1796675750.8746666908,0,NULL,1,1796675748.0147230625,1.0,-9,'run failed with exit code -9; log /tmp/upg-home-ddde3c7-killall/local/logs/web/replica-1.log',replace('Serving HTTP on 127.0.0.1 port 45983 (http://127.0.0.1:45983/) ...\n127.0.0.1 - - [07/Dec/2026 20:35:49] "GET / HTTP/1.1" 200 -\n127.0.0.1 - - [07/Dec/2026 20:35:50] "GET / HTTP/1.1" 200 -','\n',char(10)));
INSERT INTO replicas VALUES('web',2,1,'READY',NULL,'local','us-east','us-east-a',0,1.0,'local','web-r2-1e14fd5a80','http://127.0.0.1:33461','66bf79d2a92f028039750e769f6d7747',1796675747.9208722114,1796675749.0634248256,1796675749.0634248256,1796675749.0634248256,NULL,0,NULL,1,1796675748.0276923179,1.0,NULL,NULL,NULL);
INSERT INTO replicas VALUES('web',3,1,'READY',NULL,'local','us-east','us-east-a',0,1.0,'local','web-r3-cfa71266a5','http://127.0.0.1:36339','a38c913967b6e52b497d23fafd2761bf',1796675750.8455810547,1796675751.9011044502,1796675751.9011044502,1796675751.9011044502,NULL,0,NULL,1,1796675750.8840084075,1.0,NULL,NULL,NULL);
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
INSERT INTO policy_state VALUES('web','{"autoscale": {"down_since": null, "target": 2, "up_since": null, "version": 1}, "capacity": {}, "failures": {"launches_per_minute": {"29944595": 3}, "versions": {"1": {"ever_ready": true, "hold_until": 0.0, "last": "replica 1: run failed with exit code -9 (log /tmp/upg-home-ddde3c7-killall/local/logs/web/replica-1.log)", "last_ready_at": 1796675751.9011045, "streak": 0}}}, "ondemand_only": {}}');
CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        service TEXT NOT NULL REFERENCES services (name) ON DELETE CASCADE,
        replica_id INTEGER,
        at REAL NOT NULL,
        kind TEXT NOT NULL,
        message TEXT NOT NULL
    );
INSERT INTO events VALUES(1,'web',NULL,1796675747.8814432621,'created','version 1, policy ondemand_only');
INSERT INTO events VALUES(2,'web',1,1796675747.9208722114,'launch','on-demand in local/us-east/us-east-a at $1.00/h ondemand_only: on-demand replica');
INSERT INTO events VALUES(3,'web',2,1796675747.9208722114,'launch','on-demand in local/us-east/us-east-a at $1.00/h ondemand_only: on-demand replica');
INSERT INTO events VALUES(4,'web',1,1796675749.0634248256,'ready','ready at http://127.0.0.1:45983');
INSERT INTO events VALUES(5,'web',2,1796675749.0634248256,'ready','ready at http://127.0.0.1:33461');
INSERT INTO events VALUES(6,'web',1,1796675750.8414022922,'failed','process exited with code -9');
INSERT INTO events VALUES(7,'web',3,1796675750.8455810547,'launch','on-demand in local/us-east/us-east-a at $1.00/h ondemand_only: on-demand replica');
INSERT INTO events VALUES(8,'web',3,1796675751.9011044502,'ready','ready at http://127.0.0.1:36339');
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
