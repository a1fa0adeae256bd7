-- A state database written by skyctl 484b2b2 (schema version 7), captured with
-- sqlite3 state.db .dump: service web READY on the local provider, replica 1 TERMINATED
-- (its process killed: FAILED), replicas 2 and 3 READY, their events (and, from schema 4,
-- their cost facts). tests/test_upgrade_schemas.py migrates it to the latest schema.
PRAGMA foreign_keys=OFF;
BEGIN TRANSACTION;
CREATE TABLE schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version VALUES(7);
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
INSERT INTO services VALUES('web','READY',1,'127.0.0.1',37095,4,1796676654.2460680007,1796676655.2765874862);
CREATE TABLE service_versions (
        service TEXT NOT NULL REFERENCES services (name) ON DELETE CASCADE,
        version INTEGER NOT NULL,
        yaml_text TEXT NOT NULL,
        created_at REAL NOT NULL, source TEXT, secrets_ciphertext TEXT, update_mode TEXT NOT NULL DEFAULT 'rolling',
        PRIMARY KEY (service, version)
    );
INSERT INTO service_versions VALUES('web',1,replace('name: web\nresources:\n  cloud: local\nservice:\n  readiness_probe:\n    path: /\n    initial_delay_seconds: 20\n    timeout_seconds: 2\n    period_seconds: 1\n  replicas: 2\nrun: exec python3 -m http.server "$PORT" --bind 127.0.0.1\n','\n',char(10)),1796676654.2460680007,'/tmp/upg-spec-484b2b2.yaml',NULL,'rolling');
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
INSERT INTO replicas VALUES('web',1,1,'TERMINATED','FAILED','local','us-east','us-east-a',0,1.0,'local','web-r1-d78ad61060','http://127.0.0.1:52633','dde7cebdf9e189f843e22302247376e8',1796676654.4222772121,1796676658.0933480262,1796676658.0933480262,1796676655.2509350776,1796676658.0933480262,0,NULL,1,1796676654.6468000411,1.0,-9,'run killed by signal 9 (SIGKILL); log /tmp/upg-home-484b2b2-killall/local/logs/web/replica-1.log',replace('Serving HTTP on 127.0.0.1 port 52633 (http://127.0.0.1:52633/) ...\n127.0.0.1 - - [07/Dec/2026 20:50:55] "GET / HTTP/1.1" 200 -\n127.0.0.1 - - [07/Dec/2026 20:50:56] "GET / HTTP/1.1" 200 -','\n',char(10)));
INSERT INTO replicas VALUES('web',2,1,'READY',NULL,'local','us-east','us-east-a',0,1.0,'local','web-r2-d1ad3a3237','http://127.0.0.1:56743','be1efd4cb39b41079387da5231476d93',1796676654.4222772121,1796676655.6377913951,1796676655.6377913951,1796676655.6377913951,NULL,0,NULL,1,1796676654.6149060726,1.0,NULL,NULL,NULL);
INSERT INTO replicas VALUES('web',3,1,'READY',NULL,'local','us-east','us-east-a',0,1.0,'local','web-r3-374fe33ec5','http://127.0.0.1:33561','aaf325009aaca7d3747e7153dc0fd63f',1796676656.4795908927,1796676657.0379006862,1796676657.0379006862,1796676657.0379006862,NULL,0,NULL,1,1796676656.521305561,1.0,NULL,NULL,NULL);
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
INSERT INTO policy_state VALUES('web','{"autoscale": {"down_since": null, "target": 2, "up_since": null, "version": 1}, "capacity": {}, "capacity_search": {}, "failures": {"launches_per_minute": {"29944610": 3}, "versions": {"1": {"ever_ready": true, "hold_until": 1796676656.4689686, "last": "replica 1: run killed by signal 9 (SIGKILL) (log /tmp/upg-home-484b2b2-killall/local/logs/web/replica-1.log)", "last_ready_at": 1796676657.0379007, "streak": 1}}}, "ondemand_only": {}}');
CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        service TEXT NOT NULL REFERENCES services (name) ON DELETE CASCADE,
        replica_id INTEGER,
        at REAL NOT NULL,
        kind TEXT NOT NULL,
        message TEXT NOT NULL
    );
INSERT INTO events VALUES(1,'web',NULL,1796676654.3006405829,'created','version 1, policy ondemand_only');
INSERT INTO events VALUES(2,'web',1,1796676654.4222772121,'launch','on-demand in local/us-east/us-east-a at $1.00/h ondemand_only: on-demand replica');
INSERT INTO events VALUES(3,'web',2,1796676654.4222772121,'launch','on-demand in local/us-east/us-east-a at $1.00/h ondemand_only: on-demand replica');
INSERT INTO events VALUES(4,'web',1,1796676655.2509350776,'ready','ready at http://127.0.0.1:52633');
INSERT INTO events VALUES(5,'web',2,1796676655.6377913951,'ready','ready at http://127.0.0.1:56743');
INSERT INTO events VALUES(6,'web',1,1796676656.4689686298,'failed','process exited with code -9');
INSERT INTO events VALUES(7,'web',3,1796676656.4795908927,'launch','on-demand in local/us-east/us-east-a at $1.00/h ondemand_only: on-demand replica');
INSERT INTO events VALUES(8,'web',3,1796676657.0379006862,'ready','ready at http://127.0.0.1:33561');
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
CREATE TABLE replica_ledger_days (
                service TEXT NOT NULL,
                service_since REAL NOT NULL,
                cloud TEXT NOT NULL,
                region TEXT NOT NULL,
                zone TEXT NOT NULL,
                spot BOOLEAN NOT NULL,
                instance_type TEXT NOT NULL,
                end_reason TEXT NOT NULL,
                day REAL NOT NULL,
                replicas INTEGER NOT NULL,
                billed INTEGER NOT NULL,
                began INTEGER NOT NULL,
                active INTEGER NOT NULL,
                replica_seconds REAL NOT NULL,
                cost REAL NOT NULL,
                ondemand_cost REAL NOT NULL,
                first_at REAL,
                last_at REAL,
                launches INTEGER NOT NULL,
                notices INTEGER NOT NULL,
                PRIMARY KEY (service, service_since, cloud, region, zone, spot, instance_type,
                    end_reason, day)
            );
CREATE TABLE ledger_folds (folded INTEGER NOT NULL);
INSERT INTO ledger_folds VALUES(0);
DELETE FROM sqlite_sequence;
INSERT INTO sqlite_sequence VALUES('events',8);
CREATE INDEX replicas_service_status ON replicas (service, status);
CREATE INDEX events_service_id ON events (service, id);
CREATE INDEX replica_ledger_ended ON replica_ledger (service, terminated_at);
CREATE INDEX replica_ledger_terminated ON replica_ledger (terminated_at);
COMMIT;
