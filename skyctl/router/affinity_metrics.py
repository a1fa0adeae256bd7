"""Prometheus counters of ``load_balancing_policy: cache_aware``, on the router's registry.

Read at scrape time from the router's current :class:`~skyctl.router.affinity.Affinity`
(none while the service uses another policy: nothing is exported then):

- ``skyctl_router_cache_aware_requests_total{outcome}``: requests by what the
  ranking did (:func:`policies.cache_aware.outcome`): ``hit`` (sent to a replica
  holding its prefix), ``miss`` (no replica held it), ``overflow`` (its holders
  were over the load bound: the least loaded took it and became its home),
  ``unkeyed`` (no prefix to read: by load alone);
- ``skyctl_router_cache_aware_evictions_total``: (block, replica) pairs the
  prefix index dropped for its size or age bound;
- ``skyctl_router_cache_aware_index_entries``: (block, replica) pairs it holds.

The hit ratio is ``rate(..._requests_total{outcome="hit"}[5m])`` over the sum.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from skyctl.router.affinity import Affinity


class AffinityCollector(Collector):
    """Exports the counters of ``current()``, the router's Affinity or None."""

    def __init__(self, service: str, current: Callable[[], Affinity | None]) -> None:
        self._service = service
        self._current = current

    def collect(self) -> Iterator[Metric]:
        affinity = self._current()
        if affinity is None:
            return
        service = self._service
        requests = CounterMetricFamily(
            "skyctl_router_cache_aware_requests",
            "Requests by what cache_aware did: hit, miss, overflow (to the least loaded), unkeyed",
            labels=["service", "outcome"],
        )
        for outcome, count in affinity.outcomes.items():
            requests.add_metric([service, outcome], float(count))
        yield requests
        evictions = CounterMetricFamily(
            "skyctl_router_cache_aware_evictions",
            "(block, replica) pairs the prefix index dropped for its size or age bound",
            labels=["service"],
        )
        evictions.add_metric([service], float(affinity.index.evicted))
        yield evictions
        entries = GaugeMetricFamily(
            "skyctl_router_cache_aware_index_entries",
            "(block, replica) pairs the prefix index holds",
            labels=["service"],
        )
        entries.add_metric([service], float(len(affinity.index)))
        yield entries
