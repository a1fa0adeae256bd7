"""The simulator's engine: the controller's decision path against a trace, in virtual time.

Event-driven: the clock jumps from one event to the next (trace ticks,
cold-start completions, interruption notices); at each event time the engine
applies what happened, builds a :class:`~policies.model.ServiceObservation`,
calls the same :func:`policies.reconcile.plan` the live controller calls, and
carries the plan out through :func:`skyctl.lifecycle.transition`. Nothing here
decides: no second implementation of any policy.

The provider model (also in ``docs/simulator.md``):

- a zone available in the trace accepts spot launches up to its capacity cap
  (count traces: the count is the most spot instances that can run there at
  once; other traces: unlimited); a spot launch into an unavailable or full
  zone fails at once with a capacity error (the plan is then re-run at the
  same instant, up to ``max_rounds`` times);
- when a zone turns unavailable, every spot replica there is preempted at the
  start of that tick; when its cap falls below the spot replicas running
  there, the newest ones beyond the cap are (both optionally announced
  ``notice_seconds`` before);
- on-demand is always obtainable, at the zone's on-demand price;
- a launch becomes READY after the cold start (spot and on-demand separately),
  a fixed figure or a distribution sampled per launch with ``seed``; by
  default the spec's ``initial_delay_seconds``, at most ``DEFAULT_COLD_START``
  (the spec says its replicas are ready within that delay);
- the plan runs at every event and also when a STARTING replica's initial
  delay runs out and when held-back launches may go (``Plan.launch_after``),
  as the live controller's ticks would: failures, backoff and a FAILED
  service (``policies.failures``) play out as they would live.
- a replica costs its location's price (spot: the price of the current tick)
  from launch to termination, cold start included.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, replace
from typing import Any

from policies.model import (
    LocationEvent,
    LocationEventKind,
    LocationState,
    Plan,
    ReplicaView,
    ServiceObservation,
)
from policies.reconcile import plan as decide
from policies.registry import policy_for
from skyctl.errors import ConfigError
from skyctl.lifecycle import EndReason, ReplicaStatus, transition
from skyctl.sim.coldstart import ColdStart, as_cold_start
from skyctl.sim.report import Recorder, SimResult
from skyctl.sim_limits import DEFAULT_COLD_START, MAX_REPLICAS
from skyctl.spec import ServiceSpec
from skyctl.traces import Trace
from skyctl.types import Location, Offering

S = ReplicaStatus

_TICK, _NOTICE, _READY, _WAKE = 0, 1, 2, 3  # event kinds; at equal times ticks go first


@dataclass(frozen=True)
class SimConfig:
    replicas: int | None = None  # N; None: the spec's min_replicas
    policy: str | None = None  # overrides the spec's spot policy
    # seconds or a distribution; None: from the spec (spec_cold_start)
    spot_cold_start: float | str | ColdStart | None = None
    ondemand_cold_start: float | str | ColdStart | None = None
    start_tick: int = 0
    ticks: int | None = None  # None: to the end of the trace
    notice_seconds: float = 0.0  # interruption notice before a trace preemption
    max_rounds: int = 3  # plans at one instant after failed launches
    cloud: str | None = None  # the cloud part of locations; None: from the trace name
    timeline: bool = False  # record the series --plot draws
    seed: int = 0  # for cold-start distributions


class _Replica:
    __slots__ = (
        "created_at",
        "interruption_at",
        "ready_at",
        "rid",
        "spot",
        "status",
        "status_since",
        "zone",
    )

    def __init__(self, rid: int, zone: int, spot: bool, now: float) -> None:
        self.rid = rid
        self.zone = zone
        self.spot = spot
        self.status = S.PENDING
        self.created_at = now
        self.status_since = now
        self.ready_at: float | None = None
        self.interruption_at: float | None = None

    def move(self, new: ReplicaStatus, now: float, reason: EndReason | None = None) -> None:
        self.status = transition(self.status, new, reason)
        self.status_since = now


def trace_cloud(trace: Trace) -> str:
    head = trace.name.split("-", 1)[0].lower()
    return head if head in ("aws", "gcp", "azure") else "trace"


def spec_cold_start(spec: ServiceSpec) -> float:
    """The default cold start for ``spec``: its initial delay, at most DEFAULT_COLD_START."""
    return min(DEFAULT_COLD_START, spec.service.readiness_probe.initial_delay_seconds)


def cold_start_warning(spec: ServiceSpec, cold: float | str | ColdStart) -> str:
    """A one-line warning when the modelled cold start outlasts the spec's initial delay."""
    delay = spec.service.readiness_probe.initial_delay_seconds
    model = as_cold_start(cold)
    if model.mean <= delay:
        return ""
    return (
        f"the cold start modelled ({model}, mean {model.mean:g}s) is longer than the spec's "
        f"initial_delay_seconds ({delay:g}s): replicas are killed FAILED_INITIAL_DELAY "
        "before they are ready, as they would be live"
    )


def effective_spec(spec: ServiceSpec, config: SimConfig) -> ServiceSpec:
    """The spec with the simulator's overrides: fixed N replicas, the policy."""
    rp = spec.service.replica_policy
    if config.replicas is not None:
        rp = replace(
            rp, min_replicas=config.replicas, max_replicas=None, target_qps_per_replica=None
        )
    if config.policy is not None:
        rp = replace(rp, spot_policy=config.policy)
    return replace(spec, service=replace(spec.service, replica_policy=rp))


class Simulation:
    """One policy over one trace window. ``run()`` returns the figures."""

    def __init__(self, spec: ServiceSpec, trace: Trace, config: SimConfig) -> None:
        ticks = config.ticks if config.ticks is not None else trace.ticks - config.start_tick
        try:
            self.trace = trace.window(config.start_tick, ticks)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        self.config = config
        self.spec = effective_spec(spec, config)
        self.n = self.spec.service.replica_policy.min_replicas
        if self.n < 1:  # "at least 0 ready" would read 100% available at $0
            raise ConfigError(
                "replicas 0: the spec's min_replicas is 0, and a replay has no traffic to "
                f"scale up on; set --replicas N (1 to {MAX_REPLICAS:,}) to replay N replicas"
            )
        if self.n > MAX_REPLICAS:
            raise ConfigError(
                f"replicas {self.n:,}: the simulator replays at most {MAX_REPLICAS:,} "
                "(set --replicas, or min_replicas in the spec)"
            )
        cloud = config.cloud or trace_cloud(trace)
        tr = self.trace
        self.locations = [Location(cloud, z.region, z.zone) for z in tr.zones]
        self.avail = tr.availability_matrix()
        self.caps = tr.capacity_matrix()
        default = spec_cold_start(self.spec)
        spot, od = config.spot_cold_start, config.ondemand_cold_start
        self.spot_cold = as_cold_start(default if spot is None else spot)
        self.od_cold = as_cold_start(default if od is None else od)
        self.initial_delay = self.spec.service.readiness_probe.initial_delay_seconds
        self.wakes: set[float] = set()  # times a plan is already due (_WAKE events)
        self.failure = ""  # the first time plan gave the service up: why
        self.rng = random.Random(config.seed)
        self.prices = tr.spot_price_matrix()
        self.od_prices = [tr.zone_ondemand_price(i) for i in range(len(tr.zones))]
        self.zone_of = {loc: i for i, loc in enumerate(self.locations)}
        self.replicas: dict[int, _Replica] = {}
        self.next_id = 1
        self.events: list[LocationEvent] = []
        self.location_states: dict[Location, LocationState] = {}
        self.policy_state: dict[str, Any] = {}
        self.tick = 0
        self.heap: list[tuple[float, int, int, int]] = []
        self.rec = Recorder(self.n, timeline=config.timeline)
        self._offers_tick = -1
        self._offers: tuple[Offering, ...] = ()
        self.last_plan = Plan()

    # -- the provider model ---------------------------------------------------------
    def offerings(self) -> tuple[Offering, ...]:
        if self._offers_tick != self.tick:
            t = self.tick
            spot = [Offering(loc, True, self.prices[i][t]) for i, loc in enumerate(self.locations)]
            od = [Offering(loc, False, self.od_prices[i]) for i, loc in enumerate(self.locations)]
            self._offers = tuple(spot + od)
            self._offers_tick = t
        return self._offers

    def price_of(self, r: _Replica) -> float:
        return self.prices[r.zone][self.tick] if r.spot else self.od_prices[r.zone]

    def _end(self, r: _Replica, now: float, reason: EndReason) -> None:
        r.move(S.TERMINATED, now, reason)
        del self.replicas[r.rid]

    def _doomed(self, tick: int) -> list[_Replica]:
        """Spot replicas the trace takes at ``tick``: all of an unavailable zone's,
        and beyond a zone's capacity cap the newest ones."""
        out: list[_Replica] = []
        by_zone: dict[int, list[_Replica]] = {}
        for r in self.replicas.values():
            if r.spot:
                by_zone.setdefault(r.zone, []).append(r)
        for zone, rs in by_zone.items():
            cap = self.caps[zone]
            keep = len(rs) if self.avail[zone][tick] else 0
            if cap is not None:
                keep = min(keep, cap[tick])
            if keep < len(rs):
                rs.sort(key=lambda r: (r.created_at, r.rid))
                out += rs[keep:]
        return out

    def _preempt_zones(self, now: float) -> None:
        for r in self._doomed(self.tick):
            self._end(r, now, EndReason.PREEMPTED)
            self.rec.preemptions += 1
            self.events.append(
                LocationEvent(LocationEventKind.PREEMPTED, self.locations[r.zone], now)
            )

    def _notice(self, tick: int, now: float) -> None:
        kill_at = self.trace.start + tick * self.trace.gap_seconds
        for r in self._doomed(tick):
            if r.interruption_at is None:
                r.interruption_at = kill_at
                self.events.append(
                    LocationEvent(LocationEventKind.NOTICE, self.locations[r.zone], now)
                )

    def _full(self, zone: int) -> bool:
        """The zone refuses spot now: unavailable, or at its capacity cap."""
        if not self.avail[zone][self.tick]:
            return True
        cap = self.caps[zone]
        if cap is None:
            return False
        live = sum(1 for r in self.replicas.values() if r.spot and r.zone == zone)
        return live >= cap[self.tick]

    def _launch(self, offering: Offering, now: float) -> bool:
        zone = self.zone_of[offering.location]
        r = _Replica(self.next_id, zone, offering.spot, now)
        self.next_id += 1
        self.rec.launches += 1
        r.move(S.PROVISIONING, now)
        if offering.spot and self._full(zone):
            r.move(S.TERMINATED, now, EndReason.FAILED_PROVISION)
            self.rec.failed_launches += 1
            self.events.append(
                LocationEvent(LocationEventKind.CAPACITY_ERROR, offering.location, now)
            )
            return False
        r.move(S.STARTING, now)
        self.replicas[r.rid] = r
        if offering.spot:
            self.events.append(LocationEvent(LocationEventKind.LAUNCHED, offering.location, now))
        cold = (self.spot_cold if offering.spot else self.od_cold).sample(self.rng)
        heapq.heappush(self.heap, (now + cold, _READY, r.rid, 0))
        if cold > self.initial_delay:  # the plan must look when its delay runs out
            self._wake(now + self.initial_delay + 1e-3)
        return True

    def _wake(self, at: float) -> None:
        if at not in self.wakes:
            self.wakes.add(at)
            heapq.heappush(self.heap, (at, _WAKE, 0, 0))

    # -- the decision path --------------------------------------------------------
    def observe(self) -> ServiceObservation:
        views = tuple(
            ReplicaView(
                replica_id=r.rid,
                version=1,
                status=r.status,
                location=self.locations[r.zone],
                spot=r.spot,
                price=self.price_of(r),
                created_at=r.created_at,
                status_since=r.status_since,
                ready_at=r.ready_at,
                interruption_at=r.interruption_at,
            )
            for r in self.replicas.values()
        )
        obs = ServiceObservation(
            service=self.spec.name or "sim",
            version=1,
            spec=self.spec,
            replicas=views,
            offerings=self.offerings(),
            location_states=self.location_states,
            events=tuple(self.events),
            policy_state=self.policy_state,
        )
        self.events = []
        return obs

    def step(self, now: float) -> None:
        for _ in range(max(1, self.config.max_rounds)):
            p = decide(self.observe(), now)
            self.rec.plans += 1
            self.last_plan = p
            if p.failure and not self.failure:
                self.failure = f"at {now - self.trace.start:.0f}s: {p.failure}"
            if p.launch_after is not None and p.launch_after > now:
                self._wake(p.launch_after)
            self.location_states = dict(p.location_states)
            self.policy_state = dict(p.policy_state)
            for t in p.terminations:
                r = self.replicas.get(t.replica_id)
                if r is not None:
                    r.move(S.SHUTTING_DOWN, now, t.reason)
                    self._end(r, now, t.reason)
            failed = False
            for la in p.launches:
                failed |= not self._launch(la.offering, now)
            if not failed:
                return

    # -- the loop -----------------------------------------------------------------
    def _account(self, now: float) -> None:
        ready_spot = ready_od = 0
        rate = 0.0
        spot_live = 0
        for r in self.replicas.values():
            rate += self.price_of(r)
            if r.spot:
                spot_live += 1
            if r.status is S.READY:
                if r.spot:
                    ready_spot += 1
                else:
                    ready_od += 1
        self.rec.advance(now, ready_spot, ready_od, rate, spot_live, len(self.replicas))

    def run(self) -> SimResult:
        tr = self.trace
        start, gap = tr.start, tr.gap_seconds
        end = start + tr.ticks * gap
        warmup = max(self.spot_cold.mean, self.od_cold.mean)
        self.rec.begin(start, measure_from=start + warmup)
        heapq.heappush(self.heap, (start, _TICK, 0, 0))
        notice = self.config.notice_seconds
        while self.heap:
            now = self.heap[0][0]
            if now >= end:
                break
            self._account(now)
            while self.heap and self.heap[0][0] == now:
                _, kind, a, _b = heapq.heappop(self.heap)
                if kind == _TICK:
                    self.tick = a
                    self._preempt_zones(now)
                    if a + 1 < tr.ticks:
                        nxt = start + (a + 1) * gap
                        heapq.heappush(self.heap, (nxt, _TICK, a + 1, 0))
                        if notice > 0 and self._drops(a):
                            heapq.heappush(self.heap, (max(now, nxt - notice), _NOTICE, a + 1, 0))
                elif kind == _NOTICE:
                    self._notice(a, now)
                elif kind == _WAKE:
                    self.wakes.discard(now)
                else:
                    r = self.replicas.get(a)
                    if r is not None and r.status is S.STARTING:
                        r.move(S.READY, now)
                        r.ready_at = now
            self.step(now)
            self.rec.target = self.last_plan.target
        self._account(end)
        result = self.rec.result(
            policy=self._policy_name(),
            trace=tr,
            od_price=min(self.od_prices),
        )
        return replace(result, failure=self.failure)

    def _drops(self, tick: int) -> bool:
        """Some zone loses availability or capacity from ``tick`` to the next."""
        for col, cap in zip(self.avail, self.caps, strict=True):
            if col[tick] and not col[tick + 1]:
                return True
            if cap is not None and cap[tick + 1] < cap[tick]:
                return True
        return False

    def _policy_name(self) -> str:
        return policy_for(self.spec)


def simulate(spec: ServiceSpec, trace: Trace, config: SimConfig | None = None) -> SimResult:
    """Replay ``trace`` through the policy ``spec`` selects (or ``config.policy``)."""
    return Simulation(spec, trace, config or SimConfig()).run()
