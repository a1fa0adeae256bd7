"""Prometheus metrics of one router, on its own registry (never the global one).

A collector reads the router's counters at scrape time, so the request path
pays nothing for metrics. Served at ``/-/skyctl/metrics`` (a path of our own so
a replica's ``/metrics``, as vLLM serves, stays reachable through the router).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_COUNTERS = (
    ("requests", "Attempts sent to the replica (fan-out copies and retries included)"),
    ("wins", "Responses of the replica that were sent to the client"),
    ("cancelled", "Attempts cancelled because another replica answered first"),
    ("errors", "Connection errors, timeouts and 5xx responses of the replica"),
)


class RouterCollector(Collector):
    """Exports per-replica and per-router figures from callables read at scrape time."""

    def __init__(
        self,
        service: str,
        replica_stats: Callable[[], Mapping[int, Mapping[str, float]]],
        router_stats: Callable[[], Mapping[str, float]],
    ) -> None:
        self._service = service
        self._replica_stats = replica_stats
        self._router_stats = router_stats

    def collect(self) -> Iterator[Metric]:
        stats = self._replica_stats()
        labels = ["service", "replica"]
        for key, doc in _COUNTERS:
            family = CounterMetricFamily(f"skyctl_router_replica_{key}", doc, labels=labels)
            for replica_id, values in sorted(stats.items()):
                family.add_metric([self._service, str(replica_id)], values[key])
            yield family
        in_flight = GaugeMetricFamily(
            "skyctl_router_replica_in_flight", "Requests in flight to the replica", labels=labels
        )
        latency = GaugeMetricFamily(
            "skyctl_router_replica_latency_seconds",
            "Recent time to response headers (quantile over the last 1024 responses)",
            labels=[*labels, "quantile"],
        )
        for replica_id, values in sorted(stats.items()):
            rid = str(replica_id)
            in_flight.add_metric([self._service, rid], values["in_flight"])
            latency.add_metric([self._service, rid, "0.5"], values["latency_p50_ms"] / 1000.0)
            latency.add_metric([self._service, rid, "0.99"], values["latency_p99_ms"] / 1000.0)
        yield in_flight
        yield latency
        router = self._router_stats()
        requests = CounterMetricFamily(
            "skyctl_router_requests", "Client requests received", labels=["service"]
        )
        requests.add_metric([self._service], router["requests"])
        yield requests
        hedges = CounterMetricFamily(
            "skyctl_router_hedges", "Hedged copies sent", labels=["service"]
        )
        hedges.add_metric([self._service], router["hedges"])
        yield hedges
        unauthorized = CounterMetricFamily(
            "skyctl_router_unauthorized",
            "Requests refused for a missing or invalid API key (service.auth)",
            labels=["service"],
        )
        unauthorized.add_metric([self._service], router.get("unauthorized", 0.0))
        yield unauthorized
        connections = CounterMetricFamily(
            "skyctl_router_upstream_connections",
            "Connections opened to replicas (kept alive and reused; a fan-out loser "
            "cancelled in flight costs one)",
            labels=["service"],
        )
        connections.add_metric([self._service], router.get("upstream_connections", 0.0))
        yield connections
        for key, doc in (
            ("request_rate", "Client requests per second over the last 60 seconds"),
            ("ready_replicas", "Replicas the router can send requests to"),
        ):
            gauge = GaugeMetricFamily(f"skyctl_router_{key}", doc, labels=["service"])
            gauge.add_metric([self._service], router[key])
            yield gauge


def make_registry(collector: RouterCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
