"""Builders for the policy tests: specs, offerings, replicas and observations.

No tests here; the ``test_policies_*`` modules import these helpers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from policies.model import LocationEvent, LocationState, ReplicaView, ServiceObservation
from skyctl.lifecycle import ReplicaStatus
from skyctl.spec import ReadinessProbe, ReplicaPolicy, Resources, ServiceSection, ServiceSpec
from skyctl.types import Location, Offering

OD_PRICE = 3.0


def make_spec(
    *,
    replicas: int = 1,
    max_replicas: int | None = None,
    target_qps: float | dict[str, float] | None = None,
    use_spot: bool = True,
    overprovision: int | None = None,
    base: int = 0,
    dynamic: bool = False,
    placer: str | None = None,
    policy: str | None = None,
    up: float = 300.0,
    down: float = 1200.0,
    initial_delay: float = 1200.0,
    threshold: int = 3,
    ordered: bool = False,
) -> ServiceSpec:
    rp = ReplicaPolicy(
        min_replicas=replicas,
        max_replicas=max_replicas,
        target_qps_per_replica=target_qps,
        upscale_delay_seconds=up,
        downscale_delay_seconds=down,
        num_overprovision=overprovision,
        base_ondemand_fallback_replicas=base,
        dynamic_ondemand_fallback=dynamic,
        spot_placer=placer,
        spot_policy=policy,
    )
    probe = ReadinessProbe(initial_delay_seconds=initial_delay, failure_threshold=threshold)
    return ServiceSpec(
        name="svc",
        resources=Resources(use_spot=use_spot, ordered=ordered),
        service=ServiceSection(readiness_probe=probe, replica_policy=rp),
    )


def loc(zone: str, cloud: str = "aws") -> Location:
    """``us-east-1a`` -> aws/us-east-1/us-east-1a (the region is the zone minus its letter)."""
    return Location(cloud, zone[:-1], zone)


def offerings(
    spot: Mapping[str, float], od: float | Mapping[str, float] = OD_PRICE
) -> tuple[Offering, ...]:
    out = [Offering(loc(z), True, p, "p3.2xlarge", "V100:1") for z, p in spot.items()]
    zones = list(spot) or ["us-east-1a"]
    if isinstance(od, Mapping):
        out += [Offering(loc(z), False, p, "p3.2xlarge", "V100:1") for z, p in od.items()]
    else:
        out += [Offering(loc(z), False, od, "p3.2xlarge", "V100:1") for z in zones]
    return tuple(out)


def replica(
    rid: int,
    zone: str = "us-east-1a",
    *,
    spot: bool = True,
    status: ReplicaStatus = ReplicaStatus.READY,
    version: int = 1,
    created_at: float = 0.0,
    probe_failures: int = 0,
    interruption_at: float | None = None,
    price: float = 1.0,
) -> ReplicaView:
    return ReplicaView(
        replica_id=rid,
        version=version,
        status=status,
        location=loc(zone),
        spot=spot,
        price=price,
        created_at=created_at,
        status_since=created_at,
        ready_at=created_at if status is ReplicaStatus.READY else None,
        probe_failures=probe_failures,
        interruption_at=interruption_at,
    )


def observe(
    spec: ServiceSpec,
    replicas: Iterable[ReplicaView] = (),
    offers: tuple[Offering, ...] | None = None,
    *,
    states: Mapping[Location, LocationState] | None = None,
    events: Iterable[LocationEvent] = (),
    qps: float = 0.0,
    policy_state: Mapping[str, Any] | None = None,
    version: int = 1,
    shutting_down: bool = False,
) -> ServiceObservation:
    return ServiceObservation(
        service="svc",
        version=version,
        spec=spec,
        replicas=tuple(replicas),
        offerings=offers if offers is not None else offerings({"us-east-1a": 1.0}),
        location_states=dict(states or {}),
        events=tuple(events),
        qps=qps,
        policy_state=dict(policy_state or {}),
        shutting_down=shutting_down,
    )


def zones_of(plan_launches: Iterable[Any], spot: bool = True) -> list[str]:
    return [la.offering.location.zone for la in plan_launches if la.offering.spot is spot]
