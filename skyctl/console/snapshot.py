"""What the console shows, as plain data: built from the controller once a second.

One :func:`build` call reads the controller's view of every service (the same
``describe`` that ``serve status -o json`` prints), its events, the replicas'
billed spans (cost over time) and the router's per-replica statistics, and
shapes them for the templates: rows, timeline bars, chart series. Request
rates come from the difference of the router's request counters between two
snapshots of the same viewer (:class:`Rates`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from skyctl.lifecycle import ReplicaStatus
from skyctl.store import ReplicaRecord

if TYPE_CHECKING:
    from skyctl.controller.controller import Controller

TIMELINE_SECONDS = 3600.0  # the timeline shows the last hour at most
COST_POINTS = 60
EVENTS_SHOWN = 40


@dataclass
class Rates:
    """A viewer's previous request counters, to turn them into requests per second."""

    last: dict[tuple[str, int], tuple[float, float]] = field(default_factory=dict)

    def rate(self, service: str, replica: int, requests: float, now: float) -> float:
        key = (service, replica)
        prev = self.last.get(key)
        self.last[key] = (now, requests)
        if prev is None or now <= prev[0]:
            return 0.0
        return max(0.0, (requests - prev[1]) / (now - prev[0]))


def build(controller: Controller, rates: Rates) -> dict[str, Any]:
    now = controller.clock.now()
    services = [_service(controller, svc, rates, now) for svc in controller.status()]
    return {"at": now, "services": services}


def _service(
    controller: Controller, svc: dict[str, Any], rates: Rates, now: float
) -> dict[str, Any]:
    name = svc["name"]
    rows = controller.store.list_replicas(name, include_terminated=True)
    live = [r for r in rows if r.is_live]
    where = Counter((str(r.location), "spot" if r.spot else "on-demand") for r in live)
    replicas = []
    for r in svc["replicas"]:
        stats = r.get("router") or {}
        replicas.append(
            {
                **r,
                "kind": "spot" if r["spot"] else "on-demand",
                "rps": rates.rate(name, r["id"], float(stats.get("requests", 0.0)), now),
                "p50_ms": stats.get("latency_p50_ms"),
                "p99_ms": stats.get("latency_p99_ms"),
                "errors": int(stats.get("errors", 0)),
                "requests": int(stats.get("requests", 0)),
            }
        )
    return {
        **svc,
        "policy": svc.get("plan", {}).get("policy", "-"),
        "by_location": [
            {"location": loc, "kind": kind, "replicas": n}
            for (loc, kind), n in sorted(where.items())
        ],
        "rows": replicas,
        "events": list(reversed(controller.events(name, EVENTS_SHOWN))),
        "timeline": timeline(rows, now),
        "cost_series": cost_series(controller, name, svc["created_at"], now),
    }


def timeline(rows: list[ReplicaRecord], now: float) -> dict[str, Any]:
    """Bars per replica over the last hour: starting, serving, ended; notice and end marks."""
    t0 = max(min((r.created_at for r in rows), default=now), now - TIMELINE_SECONDS)
    span = max(now - t0, 1.0)

    def x(t: float) -> float:
        return round(1000.0 * (min(max(t, t0), now) - t0) / span, 1)

    bars = []
    for r in rows:
        end = r.terminated_at if r.terminated_at is not None else now
        if end < t0:
            continue
        kind = "spot" if r.spot else "ondemand"
        segs = []
        up_at = r.ready_at if r.ready_at is not None else end
        segs.append({"x": x(r.created_at), "w": x(up_at) - x(r.created_at), "cls": "starting"})
        if r.ready_at is not None:
            segs.append({"x": x(r.ready_at), "w": x(end) - x(r.ready_at), "cls": f"up-{kind}"})
        marks = []
        if r.interruption_at is not None:
            marks.append({"x": x(r.interruption_at), "cls": "notice", "title": "notice"})
        if r.status is ReplicaStatus.TERMINATED and r.end_reason is not None:
            marks.append(
                {"x": x(end), "cls": f"end-{r.end_reason.value}", "title": r.end_reason.value}
            )
        bars.append(
            {
                "id": r.replica_id,
                "label": f"#{r.replica_id} {r.zone} {'spot' if r.spot else 'od'}",
                "status": r.status.value,
                "segments": segs,
                "marks": marks,
            }
        )
    return {"t0": t0, "t1": now, "bars": bars, "height": 16 * max(1, len(bars)) + 4}


def cost_series(controller: Controller, name: str, since: float, now: float) -> list[list[float]]:
    """[times, accrued USD, on-demand equivalent USD] from the service's start to now."""
    step = max(now - since, 1.0) / (COST_POINTS - 1)
    times = [since + i * step for i in range(COST_POINTS)]
    totals = controller.store.cost_series(name, times, since=since)
    return [
        [round(t, 3) for t in times],
        [round(cost, 6) for cost, _ in totals],
        [round(od, 6) for _, od in totals],
    ]
