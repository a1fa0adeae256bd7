"""Baseline placement policies: where each puts replicas, and what it never does."""

from __future__ import annotations

import pytest

from policies.reconcile import plan
from skyctl.lifecycle import EndReason
from tests.test_policies_support import make_spec, observe, offerings, replica, zones_of

PRICES = {"us-east-1a": 1.0, "us-east-1c": 1.2, "us-west-2a": 0.9}


# (case, policy, existing replicas, policy state, spot zones launched, on-demand launches)
PLACEMENTS = [
    ("cheapest_spot: all in the cheapest zone", "cheapest_spot", [], {}, ["us-west-2a"] * 3, 0),
    (
        "round_robin_spot: one per zone in turn",
        "round_robin_spot",
        [],
        {},
        ["us-east-1a", "us-east-1c", "us-west-2a"],
        0,
    ),
    (
        "round_robin_spot: continues from its cursor",
        "round_robin_spot",
        [replica(1), replica(2)],
        {"round_robin_spot": {"next": 2}},
        ["us-west-2a"],
        0,
    ),
    ("ondemand_only: no spot at all", "ondemand_only", [], {}, [], 3),
]


@pytest.mark.parametrize(
    "policy,existing,state,spot_zones,od",
    [c[1:] for c in PLACEMENTS],
    ids=[c[0] for c in PLACEMENTS],
)
def test_baseline_placement(policy, existing, state, spot_zones, od) -> None:  # type: ignore[no-untyped-def]
    spec = make_spec(replicas=3, policy=policy, dynamic=True)
    p = plan(observe(spec, existing, offerings(PRICES), policy_state=state), now=0.0)
    assert zones_of(p.launches, spot=True) == spot_zones
    assert len(zones_of(p.launches, spot=False)) == od


@pytest.mark.parametrize("policy", ["cheapest_spot", "round_robin_spot"])
def test_spot_baselines_never_fall_back_to_ondemand(policy: str) -> None:
    spec = make_spec(replicas=2, policy=policy, dynamic=True, base=1)
    p = plan(observe(spec, [], offerings(PRICES)), now=0.0)
    assert zones_of(p.launches, spot=False) == []
    assert p.ondemand_target == 0


def test_ondemand_only_drains_spot_replicas_left_from_another_policy() -> None:
    spec = make_spec(replicas=1, policy="ondemand_only")
    p = plan(observe(spec, [replica(1), replica(2, spot=False)], offerings(PRICES)), now=0.0)
    assert [(t.replica_id, t.reason) for t in p.terminations] == [(1, EndReason.SCALED_DOWN)]
    assert p.launches == ()
