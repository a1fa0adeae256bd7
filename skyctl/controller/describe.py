"""A service and its replicas as `serve status -o json` and the console show them
(:meth:`skyctl.controller.controller.Controller.describe`).

The router's figures per replica come from the router object of the service's
runtime: the in-process router's memory, or what the router process last
reported (:class:`skyctl.controller.routing_feed.RemoteRouter`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from policies import failures
from skyctl.controller.routing_feed import RemoteRouter
from skyctl.lifecycle import ReplicaStatus
from skyctl.store import ReplicaRecord, ServiceRecord, costs
from skyctl.store.costs import CostTotals

if TYPE_CHECKING:
    from skyctl.controller.controller import Controller


def describe_service(c: Controller, svc: ServiceRecord) -> dict[str, Any]:
    name = svc.name
    rt = c.runtimes.get(name)
    now = c.clock.now()
    stats = rt.router.replica_stats() if rt is not None else {}
    # this service's own: not an earlier one's of the same name (kept in the ledger)
    cost = c.store.cost_total(name, now, since=svc.created_at).as_dict()
    spans = c.store.billed_spans(name, purged=False)
    billed = {s.replica_id: costs.accrued(s, now) for s in spans}
    replicas: list[dict[str, Any]] = []
    for r in c.store.list_replicas(name, include_terminated=True):
        acc = billed.get(r.replica_id, costs.CostTotals())
        replicas.append(replica_row(r, acc, now, stats.get(r.replica_id, {})))
    live = [x for x in replicas if x["status"] != ReplicaStatus.TERMINATED.value]
    routed = {b.replica_id for b in rt.backends} if rt is not None else set()
    host = "127.0.0.1" if svc.router_host in ("0.0.0.0", "") else svc.router_host
    scheme = rt.router.scheme if rt is not None else "http"  # https with service.tls
    state = c.store.policy_state(name).get(failures.STATE_KEY)
    failure = failures.failure(state, svc.current_version)
    unopened = c.unopened.get(name, "")
    listening = not unopened  # a router in this process opens before it is stored
    if rt is not None and isinstance(rt.router, RemoteRouter):
        listening = rt.router.is_open()  # as its router process last reported
        if not rt.last_error:
            unopened = rt.router.open_error()  # the router process could not open it
    return {
        "name": name,
        "status": svc.status.value,
        "version": svc.current_version,
        # how the current version replaces older ones; the versions the router serves now
        "update_mode": c.store.get_version(name, svc.current_version).update_mode,
        "serving_versions": sorted({x["version"] for x in live if x["id"] in routed}),
        "endpoint": f"{scheme}://{host}:{svc.router_port}" if svc.router_port else None,
        "ready_replicas": sum(1 for x in live if x["status"] == "READY"),
        "cost_per_hour": round(sum(float(x["price_per_hour"]) for x in live), 4),
        # USD since the service started, purged replicas included (skyctl.store.costs)
        "accrued_cost": cost["accrued_cost"],
        "ondemand_cost": cost["ondemand_cost"],
        "savings": cost["savings"],
        "savings_pct": cost["savings_pct"],
        "replica_seconds": cost["replica_seconds"],
        "plan": dict(rt.plan_summary) if rt else {},
        # non-empty: the current version was given up (service FAILED), in one line
        "failure": failure,
        "last_error": (rt.last_error if rt and rt.last_error else unopened) or failure,
        # non-empty: the endpoint could not be opened (a TLS file missing, its port taken)
        "endpoint_error": unopened,
        # the endpoint accepts connections (its router reported it listening)
        "endpoint_open": bool(svc.router_port) and listening,
        "replicas": replicas,
        "created_at": svc.created_at,
        # the controller's time for the figures above: ages shown against it stay
        # right after a step of the wall clock (its clock ignores steps)
        "as_of": now,
    }


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
