"""The tables as the store's queries see them (the latest schema).

The database itself is built by :mod:`skyctl.store.migrations`, whose DDL is
frozen per version; these :class:`~sqlalchemy.Table` objects describe the
result of running every migration, and a test checks that both agree. Change
the schema by adding a migration *and* updating these tables.

Times are ``REAL`` epoch seconds; enums are stored as their ``TEXT`` value;
policy state is JSON text. Nothing is pickled.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
)

metadata = MetaData()

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, nullable=False),
)

services = Table(
    "services",
    metadata,
    Column("name", Text, primary_key=True),
    Column("status", Text, nullable=False),
    Column("current_version", Integer, nullable=False),
    Column("router_host", Text, nullable=False),
    Column("router_port", Integer),
    # The next replica id to hand out: ids are never reused, even after purges.
    Column("next_replica_id", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

service_versions = Table(
    "service_versions",
    metadata,
    Column("service", Text, ForeignKey("services.name", ondelete="CASCADE"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("yaml_text", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("source", Text),  # the spec's file name, for error messages (v2)
    Column("secrets_ciphertext", Text),  # the spec's secrets, encrypted (v3; skyctl.secrets)
    # how this version replaces older ones: rolling or blue_green (v6; policies.update)
    Column("update_mode", Text, nullable=False, server_default="rolling"),
    PrimaryKeyConstraint("service", "version"),
)

replicas = Table(
    "replicas",
    metadata,
    Column("service", Text, ForeignKey("services.name", ondelete="CASCADE"), nullable=False),
    Column("replica_id", Integer, nullable=False),
    Column("version", Integer, nullable=False),
    Column("status", Text, nullable=False),
    Column("end_reason", Text),
    Column("cloud", Text, nullable=False),
    Column("region", Text, nullable=False),
    Column("zone", Text, nullable=False),
    Column("spot", Boolean, nullable=False),
    Column("price", Float, nullable=False),
    Column("instance_type", Text, nullable=False),
    Column("instance_id", Text),
    Column("endpoint", Text),
    Column("client_token", Text, nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("status_since", Float, nullable=False),
    Column("ready_at", Float),
    Column("terminated_at", Float),
    Column("probe_failures", Integer, nullable=False),
    Column("interruption_at", Float),
    Column("launch_attempts", Integer, nullable=False),
    # v4, cost accounting: when its instance was first known (billing starts), and
    # the on-demand price of the same place and type (for savings); see store.costs
    Column("billed_from", Float),
    Column("ondemand_price", Float),
    Column("exit_code", Integer),  # the setup/run command's exit status, when it exited (v5)
    Column("failure", Text),  # one line: how it failed (v5)
    Column("log_tail", Text),  # the last lines of its log when it failed (v5)
    PrimaryKeyConstraint("service", "replica_id"),
    ForeignKeyConstraint(
        ["service", "version"],
        ["service_versions.service", "service_versions.version"],
        ondelete="CASCADE",
    ),
)

# v4: an ended replica's cost facts, kept when its row is purged and when its
# service is deleted (money spent stays spent), so cost totals and counters never shrink
replica_ledger = Table(
    "replica_ledger",
    metadata,
    Column("service", Text, nullable=False),
    Column("replica_id", Integer, nullable=False),
    Column("cloud", Text, nullable=False),
    Column("region", Text, nullable=False),
    Column("zone", Text, nullable=False),
    Column("spot", Boolean, nullable=False),
    Column("instance_type", Text, nullable=False),
    Column("price", Float, nullable=False),
    Column("ondemand_price", Float),
    Column("end_reason", Text),
    Column("created_at", Float, nullable=False),
    Column("billed_from", Float),
    Column("terminated_at", Float, nullable=False),
    Column("had_notice", Boolean, nullable=False),
    Column("launch_attempts", Integer, nullable=False),
    PrimaryKeyConstraint("service", "replica_id", "created_at"),
)

# v7: the ledger's rows older than a retention window, folded into one row per
# service, place, kind, instance type, end reason and UTC day (skyctl.store.ledger)
replica_ledger_days = Table(
    "replica_ledger_days",
    metadata,
    Column("service", Text, nullable=False),
    # the creation time of the service the replicas belonged to (its current one when
    # folded); -inf: an earlier service of the same name, or replicas never billed
    Column("service_since", Float, nullable=False),
    Column("cloud", Text, nullable=False),
    Column("region", Text, nullable=False),
    Column("zone", Text, nullable=False),
    Column("spot", Boolean, nullable=False),
    Column("instance_type", Text, nullable=False),
    Column("end_reason", Text, nullable=False),  # '' for none
    Column("day", Float, nullable=False),  # its UTC midnight, epoch seconds
    # replicas counted here: their billing began this day (or, never billed, they ended)
    Column("replicas", Integer, nullable=False),
    Column("billed", Integer, nullable=False),  # of those, the ones that had an instance
    Column("began", Integer, nullable=False),  # of those, billed for some time
    Column("active", Integer, nullable=False),  # replicas billed for some time this day
    Column("replica_seconds", Float, nullable=False),  # billed this day
    Column("cost", Float, nullable=False),  # USD billed this day
    Column("ondemand_cost", Float, nullable=False),  # the same seconds on demand
    Column("first_at", Float),  # the first and last billed moments this day
    Column("last_at", Float),
    Column("launches", Integer, nullable=False),
    Column("notices", Integer, nullable=False),
    PrimaryKeyConstraint(
        "service",
        "service_since",
        "cloud",
        "region",
        "zone",
        "spot",
        "instance_type",
        "end_reason",
        "day",
    ),
)

# v7: how many ledger rows were ever folded (with the ledger's highest rowid, a
# stamp: the controller's cached sums are valid while it is unchanged)
ledger_folds = Table("ledger_folds", metadata, Column("folded", Integer, nullable=False))

location_states = Table(
    "location_states",
    metadata,
    Column("service", Text, ForeignKey("services.name", ondelete="CASCADE"), nullable=False),
    Column("location", Text, nullable=False),  # "cloud/region/zone"
    Column("state", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
    PrimaryKeyConstraint("service", "location"),
)

policy_state = Table(
    "policy_state",
    metadata,
    Column("service", Text, ForeignKey("services.name", ondelete="CASCADE"), primary_key=True),
    Column("json", Text, nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("service", Text, ForeignKey("services.name", ondelete="CASCADE"), nullable=False),
    Column("replica_id", Integer),
    Column("at", Float, nullable=False),
    Column("kind", Text, nullable=False),
    Column("message", Text, nullable=False),
)
