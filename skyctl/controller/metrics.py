"""The controller's Prometheus metrics, served at ``/metrics`` by the API.

Two kinds, following Prometheus conventions (base units, ``_total`` counters,
histograms rather than precomputed quantiles):

- Facts the store holds, computed at scrape time so they survive restarts:
  replicas by service, status and kind (gauge); launch attempts, launch
  failures by reason, preemptions and interruption notices by location
  (counters, read from the replicas and the ledger that keeps purged ones, so
  they never go down); accrued cost in USD (counter); open circuit breakers.
- Measurements of this process: tick duration, event-loop lag and readiness
  probe latency (histograms, from when the controller started).

Durations are measured with ``time.perf_counter``: they are the process's own
elapsed time, not time of day, so they are not read from the injected clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from skyctl.controller.router_metrics import ReportedTraffic
from skyctl.lifecycle import ReplicaStatus

if TYPE_CHECKING:
    from skyctl.controller.controller import Controller

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LAG_INTERVAL = 0.5  # seconds between event-loop lag samples
_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _StoreFacts(Collector):
    def __init__(self, controller: Controller) -> None:
        self.controller = controller

    def collect(self) -> Iterator[Metric]:
        c = self.controller
        store = c.store
        replicas = GaugeMetricFamily(
            "skyctl_replicas",
            "Replicas per service, life-cycle status and kind (spot or on-demand).",
            labels=["service", "status", "kind"],
        )
        for svc in store.list_services():
            count = Counter(
                (r.status.value, "spot" if r.spot else "on-demand")
                for r in store.list_replicas(svc.name)
            )
            for status in ReplicaStatus:
                if status is ReplicaStatus.TERMINATED:
                    continue
                for kind in ("spot", "on-demand"):
                    replicas.add_metric([svc.name, status.value, kind], count[(status.value, kind)])
        yield replicas

        launches = CounterMetricFamily(
            "skyctl_launches",
            "Launch calls made to providers (retries with the same token included).",
            labels=["service", "location", "kind"],
        )
        failures = CounterMetricFamily(
            "skyctl_launch_failures",
            "Replicas that ended failed, by reason (FAILED_PROVISION: the launch failed).",
            labels=["service", "location", "reason"],
        )
        preemptions = CounterMetricFamily(
            "skyctl_preemptions",
            "Spot replicas the cloud took away.",
            labels=["service", "location"],
        )
        notices = CounterMetricFamily(
            "skyctl_interruption_notices",
            "Replicas that received an interruption notice.",
            labels=["service", "location"],
        )
        cost = CounterMetricFamily(
            "skyctl_accrued_cost_usd",
            "Cost accrued by replicas' instances since they launched, in USD.",
            labels=["service", "location", "kind"],
        )
        n_pre: Counter[tuple[str, str]] = Counter()
        n_notice: Counter[tuple[str, str]] = Counter()
        for (service, loc, kind), f in sorted(store.cost_facts(c.clock.now()).items()):
            launches.add_metric([service, loc, kind], f.launches)
            for reason, n in sorted(f.failures.items()):
                failures.add_metric([service, loc, reason], n)
            n_pre[(service, loc)] += f.preemptions
            n_notice[(service, loc)] += f.notices
            cost.add_metric([service, loc, kind], f.cost)
        for labels, n in sorted(n_pre.items()):
            if n:
                preemptions.add_metric(list(labels), n)
        for labels, n in sorted(n_notice.items()):
            if n:
                notices.add_metric(list(labels), n)
        yield from (launches, failures, preemptions, notices, cost)

        breakers = GaugeMetricFamily(
            "skyctl_breaker_open",
            "1 while a location's circuit breaker is open (its API kept failing).",
            labels=["location"],
        )
        b = c.reconciler.launcher.breakers
        for location in b.open_locations():
            breakers.add_metric([str(location)], 1.0)
        yield breakers


class ControllerMetrics:
    """The controller's registry: store facts plus this process's histograms."""

    def __init__(self, controller: Controller) -> None:
        self.controller = controller
        self._probed: set[str] = set()  # services with probe series
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_StoreFacts(controller))
        # the router processes' reports, summed (none with the routers embedded)
        self.registry.register(ReportedTraffic(lambda: controller.routing_feed))
        self.tick_seconds = Histogram(
            "skyctl_controller_tick_seconds",
            "Time one tick took to reconcile every service.",
            buckets=_FAST,
            registry=self.registry,
        )
        self.loop_lag_seconds = Histogram(
            "skyctl_controller_event_loop_lag_seconds",
            f"How late the event loop woke a task sleeping {LAG_INTERVAL} s.",
            buckets=_FAST,
            registry=self.registry,
        )
        self.probe_seconds = Histogram(
            "skyctl_probe_duration_seconds",
            "Readiness probe round-trip time.",
            labelnames=["service", "result"],
            buckets=_FAST,
            registry=self.registry,
        )

    def render(self) -> bytes:
        self._forget_removed()
        return generate_latest(self.registry)

    def _forget_removed(self) -> None:
        """Bounded: the probe series of services no longer stored are dropped (they
        stayed until a restart, two label sets for every service ever created)."""
        stored = {svc.name for svc in self.controller.store.list_services()}
        for service in self._probed - stored:
            for result in ("ok", "fail"):
                with contextlib.suppress(KeyError):
                    self.probe_seconds.remove(service, result)
        self._probed &= stored

    def probe_observer(self, service: str) -> Callable[[float, bool], None]:
        """What a service's prober calls after each probe (seconds, passed)."""
        self._probed.add(service)

        def observe(seconds: float, ok: bool) -> None:
            self.probe_seconds.labels(service, "ok" if ok else "fail").observe(seconds)

        return observe

    async def watch_loop_lag(self, interval: float = LAG_INTERVAL) -> None:
        """Sample the event loop's lag until cancelled (runs with the API)."""
        while True:
            start = time.perf_counter()
            await asyncio.sleep(interval)
            self.loop_lag_seconds.observe(max(0.0, time.perf_counter() - start - interval))
