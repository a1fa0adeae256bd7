"""Where and when the local provider has spot capacity, for one service.

A :class:`Replay` turns a service's ``local:`` options into zones with prices
and an availability model, computed from the time it is given (never reads a
clock):

- trace replay, time-compressed: at time ``now`` the trace tick is
  ``trace_start + floor((now - t0) / trace_tick_seconds)``, wrapping around at
  the trace's end (``t0`` is when the service's replay started);
- without a trace, every zone is always available and spot replicas are
  preempted at random (``preemption_rate_per_hour`` each, exponential
  inter-arrival times from ``random.Random(seed)``);
- with neither, spot capacity never goes away.

Zones come from ``LocalOptions.zones``, else from the trace's zones, else
:data:`DEFAULT_ZONES`. Explicit zones take their availability from the trace
zone of the same name when there is one (always available otherwise).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from providers.feasibility import Machine, fits_machine
from skyctl.spec import LocalOptions, LocalZone, ResourceCandidate, ServiceSpec
from skyctl.traces import DEFAULT_SPOT_DISCOUNT, Trace, load_trace
from skyctl.types import Location

CLOUD = "local"

DEFAULT_ZONES: tuple[LocalZone, ...] = (
    LocalZone("us-east", "us-east-a", spot_price=0.30, ondemand_price=1.00),
    LocalZone("us-east", "us-east-b", spot_price=0.35, ondemand_price=1.00),
    LocalZone("us-west", "us-west-a", spot_price=0.28, ondemand_price=1.10),
)

_EPS = 1e-9  # absorbs float error when a sleep wakes exactly on a tick boundary


@dataclass(frozen=True)
class ZoneModel:
    location: Location
    trace_index: int | None  # the zone's index in the (selected) trace; None: always available
    spot_price: float  # used when the trace has no price for this zone
    ondemand_price: float


class Replay:
    """The capacity model of one service (see the module docstring)."""

    def __init__(
        self, options: LocalOptions, *, t0: float, base_dir: str | None, seed_key: str = ""
    ) -> None:
        self.options = options
        self.t0 = t0
        self.trace: Trace | None = None
        if options.trace:
            self.trace = load_trace(
                options.trace, base_dir=base_dir, ondemand_price=options.ondemand_price
            ).select(options.trace_zones)
        self.zones = self._zones()
        self._by_location = {z.location: z for z in self.zones}
        self._rng = random.Random(f"{options.seed}:{seed_key}")

    def _zones(self) -> tuple[ZoneModel, ...]:
        opts, trace = self.options, self.trace
        if opts.zones or trace is None:
            names = trace.zone_names() if trace is not None else ()
            return tuple(
                ZoneModel(
                    Location(CLOUD, z.region, z.zone),
                    names.index(z.zone) if z.zone in names else None,
                    z.spot_price,
                    opts.ondemand_price if opts.ondemand_price is not None else z.ondemand_price,
                )
                for z in (opts.zones or DEFAULT_ZONES)
            )
        out = []
        for i, z in enumerate(trace.zones):
            od = opts.ondemand_price
            if od is None:
                od = trace.zone_ondemand_price(i)
            if not od:  # the trace does not say: assume the usual spot discount
                prices = z.spot_price if isinstance(z.spot_price, tuple) else (z.spot_price or 0.0,)
                od = max(prices) / DEFAULT_SPOT_DISCOUNT
            out.append(ZoneModel(Location(CLOUD, z.region, z.zone), i, trace.spot_price(i, 0), od))
        return tuple(out)

    # ------------------------------------------------------------ queries

    def zone(self, location: Location) -> ZoneModel | None:
        return self._by_location.get(location)

    @property
    def random_preemptions(self) -> bool:
        return self.trace is None and self.options.preemption_rate_per_hour > 0

    def _replay_tick(self, now: float) -> int:
        """Ticks since ``t0`` (unwrapped)."""
        return max(0, math.floor((now - self.t0) / self.options.trace_tick_seconds + _EPS))

    def trace_tick(self, now: float) -> int | None:
        if self.trace is None:
            return None
        return (self.options.trace_start + self._replay_tick(now)) % self.trace.ticks

    def available(self, zone: ZoneModel, now: float) -> bool:
        tick = self.trace_tick(now)
        if tick is None or zone.trace_index is None or self.trace is None:
            return True
        return self.trace.is_available(zone.trace_index, tick)

    def spot_price(self, zone: ZoneModel, now: float) -> float:
        tick = self.trace_tick(now)
        if self.trace is None or zone.trace_index is None or tick is None:
            return zone.spot_price
        return self.trace.spot_price(zone.trace_index, tick)

    def next_unavailable_at(self, zone: ZoneModel, now: float) -> float | None:
        """``now`` if the zone is unavailable now, else when it next turns
        unavailable; None if it never does."""
        trace = self.trace
        if trace is None or zone.trace_index is None:
            return None
        column = trace.zones[zone.trace_index].available
        r = self._replay_tick(now)
        first = self.options.trace_start + r
        for k in range(trace.ticks):
            if not column[(first + k) % trace.ticks]:
                return now if k == 0 else self.t0 + (r + k) * self.options.trace_tick_seconds
        return None

    def draw_preemption_at(self, now: float) -> float | None:
        """Random mode: when a spot replica started at ``now`` gets its notice."""
        if not self.random_preemptions:
            return None
        return now + self._rng.expovariate(self.options.preemption_rate_per_hour / 3600.0)


def matching_candidate(
    spec: ServiceSpec, location: Location, machine: Machine | None = None
) -> ResourceCandidate | None:
    """The spec's first resource candidate a replica in ``location`` (on ``machine``) can use."""
    for cand in spec.resources.candidates:
        if machine is not None and not fits_machine(cand, machine):
            continue  # needs more CPUs, memory or accelerators than this machine has
        if cand.cloud not in (None, CLOUD, "*"):
            continue
        if cand.region not in (None, "*", location.region):
            continue
        if cand.zone not in (None, "*", location.zone):
            continue
        return cand
    return None
