"""The controller's ``/metrics`` sums the router processes' reports: counters and
histograms over every process, and a process that went quiet (a router restarted
under another pid) keeps its last counts, so the sums never go back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from skyctl.clock import FakeClock
from skyctl.controller.router_metrics import ReportedTraffic
from skyctl.metric_samples import pack, snapshot


@dataclass
class Feed:
    """What ReportedTraffic reads of the routing feed."""

    clock: FakeClock = field(default_factory=lambda: FakeClock(1000.0))
    reports: dict[str, dict[str, tuple[float, dict[str, Any]]]] = field(default_factory=dict)
    reported_at: dict[str, float] = field(default_factory=dict)

    def report(self, router: str, requests: dict[int, int], in_flight: int = 0) -> None:
        """``router`` reports ``requests[replica]`` requests so far, each 2xx in 20 ms."""
        registry = CollectorRegistry()
        h = Histogram(
            "skyctl_router_request_duration_seconds",
            "d",
            ["service", "replica", "status_class"],
            registry=registry,
        )
        for rid, n in requests.items():
            for _ in range(n):
                h.labels("svc", str(rid), "2xx").observe(0.02)
        stats = {
            str(rid): {"requests": float(n), "errors": 0.0, "in_flight": float(in_flight)}
            for rid, n in requests.items()
        }
        report = {"replica_stats": stats, "histograms": pack(snapshot(registry, ("histogram",)))}
        now = self.clock.now()
        self.reports[router] = {"svc": (now, report)}
        self.reported_at[router] = now


def scrape(collector: ReportedTraffic) -> dict[str, float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    out = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            if s.name.endswith("_created"):
                continue
            replica = s.labels.get("replica")
            out[f"{s.name}:{replica}" if replica else s.name] = s.value
    return out


async def test_reports_sum_and_a_quiet_routers_counts_stay_until_its_replica_is_gone() -> None:
    feed = Feed()
    traffic = ReportedTraffic(lambda: feed)  # type: ignore[arg-type,return-value]
    feed.report("host:1", {1: 10}, in_flight=2)
    feed.report("host:2", {1: 5}, in_flight=1)
    m = scrape(traffic)
    assert m["skyctl_router_replica_requests_total:1"] == 15
    assert m["skyctl_router_request_duration_seconds_count:1"] == 15
    assert m["skyctl_router_replica_in_flight:1"] == 3
    assert m["skyctl_router_processes"] == 2

    # host:1 dies; its successor (another pid) starts from 0; host:2 goes on
    await feed.clock.advance(31)
    feed.report("host:3", {1: 2})
    feed.report("host:2", {1: 6})
    m = scrape(traffic)
    assert m["skyctl_router_replica_requests_total:1"] == 10 + 6 + 2  # not 8: no going back
    assert m["skyctl_router_request_duration_seconds_count:1"] == 18
    assert m["skyctl_router_replica_in_flight:1"] == 0  # a dead process has nothing in flight
    assert m["skyctl_router_processes"] == 2

    # a process that reports again replaces its kept counts with its report
    feed.report("host:1", {1: 11})
    assert scrape(traffic)["skyctl_router_replica_requests_total:1"] == 11 + 6 + 2

    # replica 1 replaced by replica 2 everywhere: the quiet counts of replica 1 go (bounded)
    await feed.clock.advance(31)
    for router in ("host:2", "host:3"):
        feed.report(router, {2: 1})
    m = scrape(traffic)
    assert "skyctl_router_replica_requests_total:1" not in m
    assert m["skyctl_router_replica_requests_total:2"] == 2
    assert traffic._quiet == {}
