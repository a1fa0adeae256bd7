"""Placement policies by name, and which one a spec gets.

``policy_for(spec)``: an explicit ``replica_policy.spot_policy`` wins; a spec
without ``use_spot`` gets ``ondemand_only``; SkyServe's ``spot_placer:
dynamic_fallback`` selects ``spothedge`` (so SkyServe specs with
``dynamic_ondemand_fallback: true`` behave exactly as SkyServe's SpotHedge);
any other spot spec gets :data:`DEFAULT_SPOT_POLICY`, our own ``skyhedge_online``
(held-out results: ``benchmarks/policy_suite.py``, ``docs/policies.md``).
"""

from __future__ import annotations

from policies.baselines import cheapest_spot, ondemand_only, round_robin_spot
from policies.placement import PlacementPolicy
from policies.skyhedge import skyhedge
from policies.skyhedge_online import skyhedge_online
from policies.spothedge import spothedge
from skyctl.errors import ConfigError
from skyctl.spec import ServiceSpec

POLICIES: dict[str, PlacementPolicy] = {
    "spothedge": spothedge,
    "ondemand_only": ondemand_only,
    "cheapest_spot": cheapest_spot,
    "round_robin_spot": round_robin_spot,
    "skyhedge": skyhedge,
    "skyhedge_online": skyhedge_online,
}

DEFAULT_SPOT_POLICY = "skyhedge_online"
SKYSERVE_PLACER = "dynamic_fallback"


def names() -> tuple[str, ...]:
    return tuple(POLICIES)


def policy_for(spec: ServiceSpec) -> str:
    """The placement policy name for ``spec`` (see the module docstring)."""
    rp = spec.service.replica_policy
    if rp.spot_policy:
        return rp.spot_policy
    if not spec.use_spot:
        return "ondemand_only"
    if rp.spot_placer == SKYSERVE_PLACER:
        return "spothedge"
    return DEFAULT_SPOT_POLICY


def get(name: str) -> PlacementPolicy:
    """The policy called ``name``; ConfigError naming the allowed ones otherwise."""
    try:
        return POLICIES[name]
    except KeyError:
        allowed = ", ".join(POLICIES)
        raise ConfigError(f"unknown spot policy {name!r} (allowed: {allowed})") from None
