"""Prometheus metrics of one router, on its own registry (never the global one).

By Prometheus conventions, so that figures sum across router workers and
routers (``sum by (...)`` in a query): counters (``_total``) and histograms,
no precomputed rate and no quantile-labelled gauge (a quantile cannot be
summed; compute it from the histogram with ``histogram_quantile``, a rate with
``rate()``). Gauges only for states: requests in flight, ready replicas.

- ``skyctl_router_request_duration_seconds`` and
  ``skyctl_router_time_to_first_byte_seconds``: histograms as the client sees
  them (from the request's head in to the response's end, or to its head
  going out), labelled by service, replica (``none``: answered by the router
  itself, e.g. 503 or 504) and status class (``2xx`` ... ``5xx``);
- per replica: ``skyctl_router_replica_{requests,wins,cancelled,errors}_total``,
  ``skyctl_router_replica_in_flight``;
- per router: ``skyctl_router_{requests,hedges,unauthorized,
  upstream_connections,ejections}_total``, ``skyctl_router_ready_replicas``.

A collector reads the router's counters at scrape time, so the request path
pays only for the histogram counts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from skyctl.router.stats import BUCKETS, Histogram

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_COUNTERS = (
    ("requests", "Attempts sent to the replica (fan-out copies and retries included)"),
    ("wins", "Responses of the replica that were sent to the client"),
    ("cancelled", "Attempts cancelled because another replica answered first"),
    ("errors", "Connection errors, timeouts and 5xx responses of the replica"),
)
_ROUTER_COUNTERS = (
    ("requests", "Client requests received"),
    ("hedges", "Hedged copies sent"),
    ("unauthorized", "Requests refused for a missing or invalid API key (service.auth)"),
    (
        "upstream_connections",
        "Connections opened to replicas (kept alive and reused; a fan-out loser "
        "cancelled in flight costs one)",
    ),
    ("ejections", "Replicas taken out of routing by passive health (outlier ejection)"),
)
_HISTOGRAMS = {
    "request_duration": "Seconds from a request's head to its response's end, as the client sees",
    "time_to_first_byte": "Seconds from a request's head to its response's head going out",
}
_LE = [repr(b) for b in BUCKETS] + ["+Inf"]


class RouterCollector(Collector):
    """Exports per-replica and per-router figures from callables read at scrape time."""

    def __init__(
        self,
        service: str,
        replica_stats: Callable[[], Mapping[int, Mapping[str, float]]],
        router_stats: Callable[[], Mapping[str, float]],
        histograms: Mapping[str, Histogram] | None = None,
    ) -> None:
        self._service = service
        self._replica_stats = replica_stats
        self._router_stats = router_stats
        self._histograms = dict(histograms or {})

    def collect(self) -> Iterator[Metric]:
        service = self._service
        for name, histogram in self._histograms.items():
            histo = HistogramMetricFamily(
                f"skyctl_router_{name}_seconds",
                _HISTOGRAMS.get(name, name),
                labels=["service", "replica", "status_class"],
            )
            for (replica, status_class), counts in sorted(histogram.series.items()):
                cumulative, buckets = 0.0, []
                for le, count in zip(_LE, counts[:-1], strict=True):
                    cumulative += count
                    buckets.append((le, cumulative))
                labels = [service, str(replica) if replica >= 0 else "none", f"{status_class}xx"]
                histo.add_metric(labels, buckets, counts[-1])
            yield histo
        stats = self._replica_stats()
        labels = ["service", "replica"]
        for key, doc in _COUNTERS:
            family = CounterMetricFamily(f"skyctl_router_replica_{key}", doc, labels=labels)
            for replica_id, values in sorted(stats.items()):
                family.add_metric([service, str(replica_id)], values[key])
            yield family
        in_flight = GaugeMetricFamily(
            "skyctl_router_replica_in_flight", "Requests in flight to the replica", labels=labels
        )
        for replica_id, values in sorted(stats.items()):
            in_flight.add_metric([service, str(replica_id)], values["in_flight"])
        yield in_flight
        router = self._router_stats()
        for key, doc in _ROUTER_COUNTERS:
            counter = CounterMetricFamily(f"skyctl_router_{key}", doc, labels=["service"])
            counter.add_metric([service], router.get(key, 0.0))
            yield counter
        ready = GaugeMetricFamily(
            "skyctl_router_ready_replicas",
            "Replicas the router can send requests to",
            labels=["service"],
        )
        ready.add_metric([service], router["ready_replicas"])
        yield ready


def make_registry(collector: RouterCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
