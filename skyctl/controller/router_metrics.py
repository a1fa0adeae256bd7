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

A process that stops reporting (it died, a worker restarted under another
pid) leaves the in-flight gauge after ``REPORT_MAX_AGE`` (30 s), but its last
counters and histograms stay in the sums, for the replicas some process still
reports, so a restarted router does not make them go back; a process that
reports again replaces them with its own report. A restart of the controller
starts from what the running routers report (their counts since they started):
a decrease there is a counter reset, as for any restarted process. An
endpoint's own ``/metrics`` is summed over its workers by the workers
(:mod:`skyctl.router.worker_metrics`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from skyctl.controller.routing_feed import REPORT_MAX_AGE
from skyctl.metric_samples import (
    Family,
    keep_replicas,
    merge,
    replicas_of,
    to_metrics,
    unpack,
)

if TYPE_CHECKING:
    from skyctl.controller.routing_feed import RoutingFeed

log = logging.getLogger(__name__)


def _histograms(families: Any) -> list[Family]:
    """The histogram families of a report (:func:`~skyctl.metric_samples.pack`ed; none
    when it has none)."""
    if not families:
        return []
    return [f for f in unpack(families) if f.get("type") == "histogram"]


_COUNTERS = (
    ("requests", "Requests sent to a replica, summed over every router process."),
    ("errors", "Failed attempts on a replica, summed over every router process."),
)


def _families(name: str, report: dict[str, Any]) -> tuple[list[Family], list[Family]]:
    """One process's report on one service: (its counters and histograms, its gauges)."""
    counters: list[Family] = []
    stats = report.get("replica_stats") or {}
    for key, doc in _COUNTERS:
        samples = [
            [f"skyctl_router_replica_{key}_total", {"service": name, "replica": str(rid)},
             float(s.get(key, 0.0))]
            for rid, s in stats.items()
        ]  # fmt: skip
        counters.append(
            {"name": f"skyctl_router_replica_{key}", "type": "counter", "help": doc,
             "samples": samples}
        )  # fmt: skip
    try:  # a malformed one is left out, never the whole scrape
        counters += merge([_histograms(report.get("histograms"))])
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        log.warning("router report of %s: histograms left out: %r", name, e)
    in_flight = [
        ["skyctl_router_replica_in_flight", {"service": name, "replica": str(rid)},
         float(s.get("in_flight", 0.0))]
        for rid, s in stats.items()
    ]  # fmt: skip
    gauge = {
        "name": "skyctl_router_replica_in_flight",
        "type": "gauge",
        "help": "Requests in flight to a replica over every router process.",
        "samples": in_flight,
    }
    return counters, [gauge]


class ReportedTraffic(Collector):
    """The routers' reports summed (see the module docstring). A process that went
    quiet keeps its last counts here (``_quiet``) for the replicas still reported,
    so its successor does not make the sums go back."""

    def __init__(self, feed: Callable[[], RoutingFeed | None]) -> None:
        self._feed = feed
        self._quiet: dict[tuple[str, str], list[Family]] = {}  # (router, service) -> counts

    def collect(self) -> Iterator[Metric]:
        feed = self._feed()
        if feed is None:  # routers embedded: their own /metrics has it all
            return
        now = feed.clock.now()
        live = sum(now - at <= REPORT_MAX_AGE for at in feed.reported_at.values())
        parts: list[list[Family]] = []
        gauges: list[list[Family]] = []
        known: dict[str, set[str]] = {}  # service -> the replicas reported now
        for router, by_service in feed.reports.items():
            for name, (at, report) in by_service.items():
                counters, gauge = _families(name, report)
                if now - at > REPORT_MAX_AGE:  # gone quiet: its last counts stay
                    self._quiet[(router, name)] = counters
                    continue
                self._quiet.pop((router, name), None)  # back: its report has them all
                parts.append(counters)
                gauges.append(gauge)
                known.setdefault(name, set()).update(replicas_of(counters))
        for (_, name), counters in list(self._quiet.items()):
            if name in known:  # a service still reported: only its replicas' series
                parts.append(keep_replicas(counters, known[name]))
            else:
                parts.append(counters)
        self._prune(known, set(feed.reports))
        yield from to_metrics(merge(parts))
        yield from to_metrics(merge(gauges))
        processes = GaugeMetricFamily(
            "skyctl_router_processes", "Router processes that reported in the last 30 s."
        )
        processes.add_metric([], float(live))
        yield processes

    def _prune(self, known: dict[str, set[str]], routers: set[str]) -> None:
        """Bounded: quiet counts of replicas gone from every report are dropped, and
        those of a service no process reports once the feed forgot their process."""
        for key, counters in list(self._quiet.items()):
            if key[1] not in known and key[0] not in routers:
                del self._quiet[key]
            elif key[1] in known:
                kept = keep_replicas(counters, known[key[1]])
                if any(f["samples"] for f in kept):
                    self._quiet[key] = kept
                else:
                    del self._quiet[key]
