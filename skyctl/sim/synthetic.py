"""Seeded synthetic spot traces: families of failure patterns the real traces lack.

:func:`synthetic_trace` builds a :class:`~skyctl.traces.Trace` from a family
name and a seed (the same pair always gives the same trace). Zones sit in
``regions`` regions of ``zones_per_region`` zones; spot prices are a per-zone
constant between 25% and 45% of the on-demand price unless the family says
otherwise. Availability is an alternating renewal process per zone (up and
down spells with exponential lengths, in ticks):

- ``independent``: zones fail on their own (up ~ 12 h, down ~ 1 h);
- ``regional``: whole regions go out together (up ~ 24 h, down ~ 2 h), on
  top of rarer zone failures (up ~ 48 h, down ~ 30 min);
- ``long``: rare, long outages (up ~ 24 h, down ~ 8 h);
- ``short``: frequent, short ones (up ~ 2 h, down ~ 10 min);
- ``spikes``: rare outages (up ~ 24 h, down ~ 30 min) and price spikes: the
  spot price jumps to 1.5 to 4 times its level (up to above on-demand) for
  1 to 3 hours, about once a day per zone;
- ``caps``: count-style capacity: every zone has a cap on concurrent spot
  instances that moves by a random walk between 0 and 8 every ~2 h.
"""

from __future__ import annotations

import random

from skyctl.errors import ConfigError
from skyctl.traces import Trace, ZoneTrace

__all__ = ["FAMILIES", "synthetic_trace"]

FAMILIES = ("independent", "regional", "long", "short", "spikes", "caps")
_REGIONS = ("syn-east-1", "syn-west-2", "syn-north-3", "syn-south-4")


def _spells(rng: random.Random, ticks: int, up_h: float, down_h: float, gap: float) -> list[bool]:
    """An up/down renewal process, starting up, with exponential spell lengths."""
    out: list[bool] = []
    up = True
    per_h = 3600.0 / gap
    while len(out) < ticks:
        mean = (up_h if up else down_h) * per_h
        length = max(1, round(rng.expovariate(1.0 / mean)))
        out += [up] * length
        up = not up
    return out[:ticks]


def synthetic_trace(
    family: str,
    seed: int,
    *,
    ticks: int = 2016,
    gap_seconds: float = 300.0,
    regions: int = 3,
    zones_per_region: int = 3,
    ondemand_price: float = 3.0,
) -> Trace:
    """One trace of ``family`` (see the module docstring) drawn with ``seed``."""
    if family not in FAMILIES:
        raise ConfigError(f"synthetic family {family!r}: allowed: {', '.join(FAMILIES)}")
    if not 1 <= regions <= len(_REGIONS) or zones_per_region < 1 or ticks < 1:
        raise ConfigError(f"synthetic trace: 1..{len(_REGIONS)} regions, >= 1 zone and tick")
    rng = random.Random(f"{family}:{seed}")
    g = gap_seconds
    zones: list[ZoneTrace] = []
    for r in range(regions):
        region = _REGIONS[r]
        region_up = _spells(rng, ticks, 24.0, 2.0, g) if family == "regional" else [True] * ticks
        for zi in range(zones_per_region):
            zone = f"{region}{'abcdefgh'[zi % 8]}"
            level = ondemand_price * rng.uniform(0.25, 0.45)
            price: tuple[float, ...] | float = level
            cap: tuple[int, ...] | None = None
            if family == "independent":
                up = _spells(rng, ticks, 12.0, 1.0, g)
            elif family == "regional":
                own = _spells(rng, ticks, 48.0, 0.5, g)
                up = [a and b for a, b in zip(own, region_up, strict=True)]
            elif family == "long":
                up = _spells(rng, ticks, 24.0, 8.0, g)
            elif family == "short":
                up = _spells(rng, ticks, 2.0, 1.0 / 6.0, g)
            elif family == "spikes":
                up = _spells(rng, ticks, 24.0, 0.5, g)
                calm = _spells(rng, ticks, 24.0, 2.0, g)
                factor = [1.0] * ticks
                i = 0
                while i < ticks:
                    if not calm[i]:
                        f = rng.uniform(1.5, 4.0)
                        j = i
                        while j < ticks and not calm[j]:
                            factor[j] = f
                            j += 1
                        i = j
                    else:
                        i += 1
                price = tuple(level * f for f in factor)
            else:  # caps
                values: list[int] = []
                c = rng.randint(2, 8)
                step_every = max(1, round(2 * 3600.0 / g))
                for t in range(ticks):
                    if t and t % step_every == 0:
                        c = min(8, max(0, c + rng.choice((-3, -2, -1, 1, 2, 3))))
                    values.append(c)
                cap = tuple(values)
                up = [v > 0 for v in values]
            zones.append(ZoneTrace(zone, region, tuple(up), price, ondemand_price, cap))
    return Trace(f"syn-{family}-{seed}", 0.0, g, tuple(zones), ondemand_price)
