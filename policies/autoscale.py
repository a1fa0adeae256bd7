"""Request-rate autoscaling: how many replicas the service wants now.

SkyServe's ``RequestRateAutoscaler`` (and its instance-aware variant), with its
hysteresis expressed in time instead of decision counts: a new desired count
replaces the current target only after it has stayed above it for
``upscale_delay_seconds`` (or below it for ``downscale_delay_seconds``). The
timestamps live in the plan's ``policy_state`` under ``"autoscale"``.

- ``replicas: N`` or ``min == max``: the target is N, whatever the traffic.
- ``target_qps_per_replica: x``: desired = ceil(qps / x), clipped to
  [min_replicas, max_replicas].
- ``target_qps_per_replica: {GPU: x, ...}`` (instance-aware): the live
  replicas' capacities are summed (each by its accelerator; unknown types count
  at the smallest value). Above that capacity it adds ceil(excess / largest
  value) replicas; below it, it keeps the fewest ready replicas (largest
  first) whose capacities exceed the rate.
- A target of 0 (scale to zero) jumps straight to the desired count; a new
  service version re-evaluates at once (as SkyServe's ``update_version``).

Over-provisioning (``num_overprovision``) is added on top by the caller.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from policies.model import ReplicaView, ServiceObservation
from skyctl.lifecycle import ReplicaStatus
from skyctl.spec import ReplicaPolicy
from skyctl.types import Location, Offering

STATE_KEY = "autoscale"

_CAPACITY_STATUSES = frozenset(
    {ReplicaStatus.READY, ReplicaStatus.STARTING, ReplicaStatus.PROVISIONING}
)


@dataclass(frozen=True)
class AutoscaleDecision:
    target: int  # the autoscaler's target after hysteresis (no over-provisioning)
    desired: int  # what the current request rate asks for right now
    state: dict[str, Any]  # goes back into policy_state["autoscale"]
    note: str = ""


def replica_bounds(rp: ReplicaPolicy) -> tuple[int, int]:
    """``(min_replicas, max_replicas)`` with max defaulting to min."""
    high = rp.max_replicas if rp.max_replicas is not None else rp.min_replicas
    return rp.min_replicas, max(rp.min_replicas, high)


def overprovision(rp: ReplicaPolicy) -> int:
    return max(0, rp.num_overprovision or 0)


def _clip(n: int, rp: ReplicaPolicy) -> int:
    low, high = replica_bounds(rp)
    return max(low, min(high, n))


def _gpu_name(accelerators: str) -> str:
    return accelerators.split(":", 1)[0] if accelerators else "unknown"


def _qps_for(gpu: str, table: Mapping[str, float]) -> float:
    if gpu in table:
        return float(table[gpu])
    for key, value in table.items():
        if key.split(":", 1)[0] == gpu:
            return float(value)
    return float(min(table.values()))


def _accelerators_of(
    replica: ReplicaView, by_place: Mapping[tuple[Location, bool], Offering]
) -> str:
    offering = by_place.get((replica.location, replica.spot))
    return offering.accelerators if offering is not None else ""


def _instance_aware_desired(
    qps: float,
    table: Mapping[str, float],
    replicas: Sequence[ReplicaView],
    offerings: Sequence[Offering],
    rp: ReplicaPolicy,
) -> int:
    by_place = {(o.location, o.spot): o for o in offerings}
    live = [r for r in replicas if r.status in _CAPACITY_STATUSES]
    total = sum(_qps_for(_gpu_name(_accelerators_of(r, by_place)), table) for r in live)
    if total <= 0:
        return _clip(rp.min_replicas, rp)
    if qps >= total:
        return _clip(len(live) + math.ceil((qps - total) / max(table.values())), rp)
    ready = sorted(
        (
            _qps_for(_gpu_name(_accelerators_of(r, by_place)), table)
            for r in live
            if r.status is ReplicaStatus.READY
        ),
        reverse=True,
    ) or [float(max(table.values()))]
    count, acc = 0, 0.0
    for capacity in ready:
        count += 1
        acc += capacity
        if acc > qps:
            break
    return _clip(count, rp)


def desired_replicas(obs: ServiceObservation) -> int:
    """The replica count the current request rate asks for (before hysteresis)."""
    rp = obs.spec.service.replica_policy
    target_qps = rp.target_qps_per_replica
    if rp.fixed or target_qps is None:
        return _clip(rp.min_replicas, rp)
    if isinstance(target_qps, dict):
        return _instance_aware_desired(obs.qps, target_qps, obs.replicas, obs.offerings, rp)
    return _clip(math.ceil(max(0.0, obs.qps) / float(target_qps)), rp)


def autoscale(
    obs: ServiceObservation, now: float, state: Mapping[str, Any] | None
) -> AutoscaleDecision:
    """The autoscaler target for ``obs`` at ``now``, with SkyServe's hysteresis."""
    rp = obs.spec.service.replica_policy
    desired = desired_replicas(obs)
    prev = dict(state or {})
    if prev.get("version") != obs.version or "target" not in prev:
        # first plan of a service or of a new version: take the desired count now
        fresh = {"target": desired, "version": obs.version, "up_since": None, "down_since": None}
        return AutoscaleDecision(desired, desired, fresh)
    current = _clip(int(prev["target"]), rp)
    up_since: float | None = prev.get("up_since")
    down_since: float | None = prev.get("down_since")
    note = ""
    if current == 0 or desired == current:
        current, up_since, down_since = desired, None, None
    elif desired > current:
        down_since = None
        up_since = now if up_since is None else up_since
        if now - up_since >= rp.upscale_delay_seconds:
            note = f"autoscaler: {current} -> {desired} replicas (qps {obs.qps:.2f})"
            current, up_since = desired, None
    else:
        up_since = None
        down_since = now if down_since is None else down_since
        if now - down_since >= rp.downscale_delay_seconds:
            note = f"autoscaler: {current} -> {desired} replicas (qps {obs.qps:.2f})"
            current, down_since = desired, None
    new_state = {
        "target": current,
        "version": obs.version,
        "up_since": up_since,
        "down_since": down_since,
    }
    return AutoscaleDecision(current, desired, new_state, note)
