"""Ordered schema migrations, run when a store is opened.

:data:`MIGRATIONS` lists every schema change since the first release; version
1 is the initial schema. Each migration's SQL is frozen once released (never
edit an old one: add the next). :func:`upgrade` runs the pending ones and bumps
``schema_version`` in one transaction, so a database is always at exactly one
version. A database written by a newer skyctl is refused with
:class:`~skyctl.errors.SchemaVersionError` and left untouched.

A migration is released with a database of the schema before it, captured from
a real home (``tests/data/upgrade/schema-N.sql``, docs/reliability.md#upgrading-skyctl):
tests/test_upgrade_schemas.py migrates each of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection

from skyctl.errors import SchemaVersionError, StoreError


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]

    def apply(self, conn: Connection) -> None:
        for statement in self.statements:
            conn.exec_driver_sql(statement)


_INITIAL = (
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    """CREATE TABLE services (
        name TEXT NOT NULL PRIMARY KEY,
        status TEXT NOT NULL,
        current_version INTEGER NOT NULL,
        router_host TEXT NOT NULL,
        router_port INTEGER,
        next_replica_id INTEGER NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    )""",
    """CREATE TABLE service_versions (
        service TEXT NOT NULL REFERENCES services (name) ON DELETE CASCADE,
        version INTEGER NOT NULL,
        yaml_text TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (service, version)
    )""",
    """CREATE TABLE replicas (
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
    )""",
    "CREATE INDEX replicas_service_status ON replicas (service, status)",
    """CREATE TABLE location_states (
        service TEXT NOT NULL REFERENCES services (name) ON DELETE CASCADE,
        location TEXT NOT NULL,
        state TEXT NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (service, location)
    )""",
    """CREATE TABLE policy_state (
        service TEXT NOT NULL PRIMARY KEY REFERENCES services (name) ON DELETE CASCADE,
        json TEXT NOT NULL
    )""",
    """CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        service TEXT NOT NULL REFERENCES services (name) ON DELETE CASCADE,
        replica_id INTEGER,
        at REAL NOT NULL,
        kind TEXT NOT NULL,
        message TEXT NOT NULL
    )""",
    "CREATE INDEX events_service_id ON events (service, id)",
    "INSERT INTO schema_version (version) VALUES (0)",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema", _INITIAL),
    Migration(
        2,
        "remember the file each spec version came from (for error messages)",
        ("ALTER TABLE service_versions ADD COLUMN source TEXT",),
    ),
    Migration(
        3,
        "keep a spec's secrets encrypted beside its redacted YAML (skyctl.secrets)",
        ("ALTER TABLE service_versions ADD COLUMN secrets_ciphertext TEXT",),
    ),
    Migration(
        4,
        "cost accounting: when a replica's instance started billing, the on-demand price of "
        "its place, and a ledger that keeps ended replicas after they are purged",
        (
            "ALTER TABLE replicas ADD COLUMN billed_from REAL",
            "ALTER TABLE replicas ADD COLUMN ondemand_price REAL",
            """CREATE TABLE replica_ledger (
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
            )""",
            "CREATE INDEX replica_ledger_ended ON replica_ledger (service, terminated_at)",
        ),
    ),
    Migration(
        5,
        "how a replica failed: its exit code, a one-line failure and the last lines of its log",
        (
            "ALTER TABLE replicas ADD COLUMN exit_code INTEGER",
            "ALTER TABLE replicas ADD COLUMN failure TEXT",
            "ALTER TABLE replicas ADD COLUMN log_tail TEXT",
        ),
    ),
    Migration(
        6,
        "how each version replaces the older ones: serve update --mode (rolling, blue_green)",
        ("ALTER TABLE service_versions ADD COLUMN update_mode TEXT NOT NULL DEFAULT 'rolling'",),
    ),
    Migration(
        7,
        "a bounded cost ledger: ended replicas' rows older than a retention window are folded "
        "into totals per service, place, kind, instance type, end reason and UTC day",
        (
            """CREATE TABLE replica_ledger_days (
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
            )""",
            "CREATE TABLE ledger_folds (folded INTEGER NOT NULL)",
            "INSERT INTO ledger_folds (folded) VALUES (0)",
            "CREATE INDEX replica_ledger_terminated ON replica_ledger (terminated_at)",
        ),
    ),
    Migration(
        8,
        "replicas recorded before cost accounting (schema 2 and 3) bill from their creation: "
        "migration 4 left their billed_from empty, so after an upgrade they cost nothing, "
        "running or ended (the store sets it with the instance id since; a row with an "
        "instance and no billed_from exists only from before)",
        (
            "UPDATE replicas SET billed_from = created_at "
            "WHERE billed_from IS NULL AND instance_id IS NOT NULL",
        ),
    ),
)

LATEST: int = MIGRATIONS[-1].version


def check_ordered(migrations: Sequence[Migration]) -> None:
    """Raise ValueError unless versions run 1, 2, 3, ... without gaps."""
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migrations must be numbered 1..n in order, got {versions}")


check_ordered(MIGRATIONS)


def current_version(conn: Connection, path: str) -> int:
    """The database's schema version; 0 for an empty database.

    Raises :class:`StoreError` for a SQLite database that is not ours (tables
    but no ``schema_version``).
    """
    names = {
        row[0]
        for row in conn.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    }
    if not names:
        return 0
    if "schema_version" not in names:
        raise StoreError(f"{path} is a SQLite database but not a skyctl state database")
    version = conn.exec_driver_sql("SELECT max(version) FROM schema_version").scalar()
    return int(version or 0)


def check_not_newer(version: int, path: str, latest: int) -> None:
    if version > latest:
        raise SchemaVersionError(
            f"{path} has schema version {version} but this skyctl knows up to {latest}: "
            "upgrade skyctl (the database was left unchanged)"
        )


def upgrade(conn: Connection, path: str, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Run pending migrations inside the caller's (write) transaction.

    Returns the version reached. The caller commits; on any error it rolls
    back, so a database is never left between two versions.
    """
    check_ordered(migrations)
    latest = migrations[-1].version if migrations else 0
    version = current_version(conn, path)
    check_not_newer(version, path, latest)
    for migration in migrations[version:]:
        migration.apply(conn)
        conn.exec_driver_sql("UPDATE schema_version SET version = ?", (migration.version,))
    return max(version, latest)
