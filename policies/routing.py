"""Routing policy: which replica (or which k replicas) serves a request.

Pure functions over plain numbers and :class:`~skyctl.types.Location` values;
the router (``skyctl.router``) owns every counter and does all I/O, then asks
these functions to rank. Nothing here reads a clock or keeps state between
calls: a cursor for rotation or a token count for the hedging budget comes in
as an argument and goes out in the result.

Policies (``service.load_balancing_policy``):

- ``round_robin``: replicas in turn.
- ``least_load`` (default): fewest in-flight requests; ties rotate.
- ``instance_aware_least_load``: in-flight divided by the replica's target QPS
  for its accelerator (SkyServe's per-accelerator ``target_qps_per_replica``).
- ``fan_out``: each request goes to ``k`` replicas in different failure domains.
- ``hedge``: one replica first, a second copy after a delay, within a budget.
- ``cache_aware``: the replica holding the request's prompt prefix, within a
  load bound (ranked by :mod:`policies.cache_aware`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from skyctl.types import Location

ROUND_ROBIN: Final = "round_robin"
LEAST_LOAD: Final = "least_load"
INSTANCE_AWARE_LEAST_LOAD: Final = "instance_aware_least_load"
FAN_OUT: Final = "fan_out"
HEDGE: Final = "hedge"
CACHE_AWARE: Final = "cache_aware"  # prefix affinity with bounded load: policies/cache_aware.py
POLICIES: Final = (ROUND_ROBIN, LEAST_LOAD, INSTANCE_AWARE_LEAST_LOAD, FAN_OUT, HEDGE, CACHE_AWARE)

DEFAULT_TARGET_QPS: Final = 1.0  # SkyServe's fallback for an accelerator missing from the map
HEDGE_MIN_SAMPLES: Final = 20  # latencies needed before a P95 hedge delay is trusted
HEDGE_TOKEN_CAP: Final = 10.0  # most hedges that can be saved up for a burst


def check_policy(name: str) -> str:
    """Return ``name`` if it is a known policy, else raise a one-line ValueError."""
    if name not in POLICIES:
        raise ValueError(
            f"service.load_balancing_policy: unknown policy {name!r}; "
            f"allowed: {', '.join(POLICIES)}"
        )
    return name


def accelerator_name(accelerators: str) -> str:
    """``"A100:8"`` -> ``"A100"``; ``""`` stays ``""``."""
    return accelerators.split(":", 1)[0].strip()


def target_qps(accelerators: str, qps: float | Mapping[str, float] | None) -> float:
    """Target QPS of one replica given its accelerators and the spec's setting.

    A map is matched exactly first (``"A100:8"``), then by accelerator name
    (``"A100"`` matches keys ``"A100"`` and ``"A100:1"``); no match, a missing
    or non-positive setting gives :data:`DEFAULT_TARGET_QPS`.
    """
    if qps is None:
        return DEFAULT_TARGET_QPS
    if not isinstance(qps, Mapping):
        return float(qps) if qps > 0 else DEFAULT_TARGET_QPS
    if accelerators in qps:
        value = qps[accelerators]
    else:
        name = accelerator_name(accelerators)
        matches = [v for k, v in qps.items() if accelerator_name(k) == name]
        value = matches[0] if matches else DEFAULT_TARGET_QPS
    return float(value) if value > 0 else DEFAULT_TARGET_QPS


def pick_round_robin(count: int, cursor: int, excluded: frozenset[int] = frozenset()) -> int:
    """Index of the next replica at or after ``cursor`` (mod ``count``) not excluded; -1 if none."""
    for step in range(count):
        index = (cursor + step) % count
        if index not in excluded:
            return index
    return -1


def pick_least_load(
    loads: Sequence[float], cursor: int, excluded: frozenset[int] = frozenset()
) -> int:
    """Index of the least loaded replica not excluded; -1 if none.

    Ties go to the first tied index at or after ``cursor`` (mod ``len(loads)``),
    so equal replicas take turns instead of the first one taking everything.
    """
    count = len(loads)
    best = -1
    best_load = 0.0
    for step in range(count):
        index = (cursor + step) % count
        if index in excluded:
            continue
        load = loads[index]
        if best < 0 or load < best_load:
            best, best_load = index, load
    return best


def domain_distance(a: Location, b: Location) -> int:
    """Distance of two failure domains: 3 other cloud, 2 other region, 1 other zone, 0 same."""
    if a.cloud != b.cloud:
        return 3
    if a.region != b.region:
        return 2
    if a.zone != b.zone:
        return 1
    return 0


def pick_diverse(
    locations: Sequence[Location],
    loads: Sequence[float],
    k: int,
    cursor: int = 0,
    excluded: frozenset[int] = frozenset(),
) -> list[int]:
    """Up to ``k`` replica indices, spread over failure domains, least loaded first.

    The first pick is the least loaded replica. Each further pick maximises
    its distance to the closest replica already picked (another location
    first, then another region, then another cloud where possible), and among
    equally distant ones takes the least loaded, ties rotating from ``cursor``.
    """
    count = len(locations)
    chosen: list[int] = []
    taken = set(excluded)
    while len(chosen) < k:
        best = -1
        best_key: tuple[int, float] = (0, 0.0)
        for step in range(count):
            index = (cursor + step) % count
            if index in taken:
                continue
            spread = min(
                (domain_distance(locations[index], locations[c]) for c in chosen), default=0
            )
            key = (-spread, loads[index])
            if best < 0 or key < best_key:
                best, best_key = index, key
        if best < 0:
            break
        chosen.append(best)
        taken.add(best)
    return chosen


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), -(-len(ordered) * q // 100)))
    return ordered[int(rank) - 1]


def hedge_delay(
    fixed: float | None, recent: Sequence[float], min_samples: int = HEDGE_MIN_SAMPLES
) -> float | None:
    """Seconds to wait before sending a hedge; None: do not hedge yet.

    A fixed delay wins; otherwise the P95 of ``recent`` latencies (seconds),
    once there are at least ``min_samples`` of them.
    """
    if fixed is not None:
        return max(0.0, fixed)
    if len(recent) < min_samples:
        return None
    return percentile(recent, 95.0)


def earn_hedge_tokens(tokens: float, budget: float, cap: float = HEDGE_TOKEN_CAP) -> float:
    """Tokens after one primary request: each earns ``budget`` of a hedge, up to ``cap``.

    A hedge costs one whole token, so from an empty bucket hedges never exceed
    ``budget`` times the primary requests.
    """
    return min(cap, tokens + max(0.0, budget))


def spend_hedge_token(tokens: float) -> tuple[bool, float]:
    """``(allowed, tokens_after)``: a hedge is allowed when a whole token is saved up."""
    if tokens >= 1.0 - 1e-9:  # tolerate float drift from adding e.g. 0.1 ten times
        return True, max(0.0, tokens - 1.0)
    return False, tokens
