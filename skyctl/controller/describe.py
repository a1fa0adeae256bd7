"""One replica as `serve status -o json` and the console show it (the row of
:meth:`skyctl.controller.controller.Controller.describe`)."""

from __future__ import annotations

from typing import Any

from skyctl.store import ReplicaRecord
from skyctl.store.costs import CostTotals


def replica_row(
    r: ReplicaRecord, acc: CostTotals, now: float, router_stats: dict[str, Any]
) -> dict[str, Any]:
    """``acc``: the replica's accrued cost; ``router_stats``: the router's figures for it."""
    return {
        "id": r.replica_id,
        "version": r.version,
        "status": r.status.value,
        "reason": r.end_reason.value if r.end_reason else None,
        "location": str(r.location),
        "cloud": r.location.cloud,
        "region": r.location.region,
        "zone": r.location.zone,
        "spot": r.spot,
        "price_per_hour": r.price,
        "ondemand_price_per_hour": r.ondemand_price,
        "billed_seconds": round(acc.replica_seconds, 3),
        "accrued_cost": round(acc.cost, 6),
        "endpoint": r.endpoint,
        "launched_at": r.created_at,
        "instance_type": r.instance_type,
        "uptime_seconds": (now - r.ready_at) if r.ready_at and r.is_live else None,
        "interruption_at": r.interruption_at,
        "probe_failures": r.probe_failures,
        "exit_code": r.exit_code,
        "failure": r.failure,
        "log_tail": r.log_tail.splitlines() if r.log_tail else [],
        "router": router_stats,
    }
