"""The router processes' traffic on the controller's ``/metrics``, summed across them.

Each router process (one per ``router.workers`` worker, or per router pod)
reports its counters to the controller (:mod:`skyctl.controller.routing_feed`);
an endpoint's own ``/metrics`` is the one process a scrape happened to reach,
so the totals over every process are here, by Prometheus conventions:

- ``skyctl_router_replica_requests_total{service,replica}`` and
  ``skyctl_router_replica_errors_total{service,replica}``: counters, the sum of
  the processes' counts (a process that restarts starts again from 0, as any
  counter reset);
- ``skyctl_router_replica_in_flight{service,replica}``: requests in flight now;
- ``skyctl_router_request_duration_seconds`` and
  ``skyctl_router_time_to_first_byte_seconds{service,replica,status_class}``:
  the histograms of every process, summed bucket by bucket
  (:func:`skyctl.metric_samples.merge`);
- ``skyctl_router_processes``: router processes that reported recently.

A process that stops reporting is left out after ``REPORT_MAX_AGE`` (30 s):
the sums then go down by its share, which Prometheus's ``rate()`` reads as a
counter reset. An endpoint's own ``/metrics`` keeps a dead worker's counts
(:mod:`skyctl.router.worker_metrics`); the controller's sums are for the
autoscaler's and an operator's overview across routers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from skyctl.controller.routing_feed import REPORT_MAX_AGE
from skyctl.metric_samples import Family, merge, to_metrics, unpack

if TYPE_CHECKING:
    from skyctl.controller.routing_feed import RoutingFeed

log = logging.getLogger(__name__)


def _histograms(families: Any) -> list[Family]:
    """The histogram families of a report (:func:`~skyctl.metric_samples.pack`ed; none
    when it has none)."""
    if not families:
        return []
    return [f for f in unpack(families) if f.get("type") == "histogram"]


class ReportedTraffic(Collector):
    def __init__(self, feed: Callable[[], RoutingFeed | None]) -> None:
        self._feed = feed

    def collect(self) -> Iterator[Metric]:
        feed = self._feed()
        if feed is None:  # routers embedded: their own /metrics has it all
            return
        requests = CounterMetricFamily(
            "skyctl_router_replica_requests",
            "Requests sent to a replica, summed over every router process.",
            labels=["service", "replica"],
        )
        errors = CounterMetricFamily(
            "skyctl_router_replica_errors",
            "Failed attempts on a replica, summed over every router process.",
            labels=["service", "replica"],
        )
        in_flight = GaugeMetricFamily(
            "skyctl_router_replica_in_flight",
            "Requests in flight to a replica over every router process.",
            labels=["service", "replica"],
        )
        now = feed.clock.now()
        live = sum(now - at <= REPORT_MAX_AGE for at in feed.reported_at.values())
        sums: dict[tuple[str, str], dict[str, float]] = {}
        histograms: list[list[Family]] = []
        for by_service in feed.reports.values():
            fresh = {n: r for n, (at, r) in by_service.items() if now - at <= REPORT_MAX_AGE}
            for name, report in fresh.items():
                try:  # a malformed one is left out, never the whole scrape
                    histograms.append(merge([_histograms(report.get("histograms"))]))
                except (TypeError, ValueError, KeyError, AttributeError) as e:
                    log.warning("router report of %s: histograms left out: %r", name, e)
                for rid, stats in (report.get("replica_stats") or {}).items():
                    into = sums.setdefault((name, str(rid)), {})
                    for key in ("requests", "errors", "in_flight"):
                        into[key] = into.get(key, 0.0) + float(stats.get(key, 0.0))
        for labels, stats in sorted(sums.items()):
            requests.add_metric(list(labels), stats["requests"])
            errors.add_metric(list(labels), stats["errors"])
            in_flight.add_metric(list(labels), stats["in_flight"])
        processes = GaugeMetricFamily(
            "skyctl_router_processes", "Router processes that reported in the last 30 s."
        )
        processes.add_metric([], float(live))
        yield from (requests, errors, in_flight, processes)
        yield from to_metrics(merge(histograms))
