"""plan(): shutdown, health terminations, rolling updates, caps, policy selection."""

from __future__ import annotations

import json

import pytest

from policies import registry
from policies.model import Plan
from policies.reconcile import plan
from skyctl.errors import ConfigError
from skyctl.lifecycle import EndReason, ReplicaStatus
from tests.test_policies_support import make_spec, observe, offerings, replica, zones_of

R = ReplicaStatus
PRICES = {"us-east-1a": 1.0, "us-east-1c": 1.2, "us-west-2a": 0.9}


def reasons(p: Plan) -> dict[int, EndReason]:
    return {t.replica_id: t.reason for t in p.terminations}


def test_shutting_down_terminates_every_live_replica_and_launches_nothing() -> None:
    reps = [replica(1), replica(2, status=R.STARTING), replica(3, status=R.SHUTTING_DOWN)]
    p = plan(observe(make_spec(replicas=3), reps, shutting_down=True), now=0.0)
    assert p.launches == ()
    assert reasons(p) == {1: EndReason.USER, 2: EndReason.USER}


# (case, replica, now, expected reason or None)
HEALTH = [
    (
        "starting past the initial delay",
        replica(1, spot=False, status=R.STARTING, created_at=0.0),
        1201.0,
        EndReason.FAILED_INITIAL_DELAY,
    ),
    (
        "starting within the initial delay",
        replica(1, spot=False, status=R.STARTING, created_at=0.0),
        1199.0,
        None,
    ),
    (
        "ready with failures at the threshold",
        replica(1, spot=False, probe_failures=3),
        10.0,
        EndReason.FAILED_PROBING,
    ),
    (
        "not ready with failures at the threshold",
        replica(1, spot=False, status=R.NOT_READY, probe_failures=3),
        10.0,
        EndReason.FAILED_PROBING,
    ),
    (
        "ready with failures below the threshold",
        replica(1, spot=False, probe_failures=2),
        10.0,
        None,
    ),
]


@pytest.mark.parametrize("rep,now,want", [c[1:] for c in HEALTH], ids=[c[0] for c in HEALTH])
def test_health_terminations(rep, now, want) -> None:  # type: ignore[no-untyped-def]
    spec = make_spec(replicas=1, use_spot=False, initial_delay=1200, threshold=3)
    p = plan(observe(spec, [rep], offerings(PRICES)), now=now)
    assert reasons(p) == ({} if want is None else {1: want})
    # a failed replica is replaced in the same plan
    assert len(p.launches) == (0 if want is None else 1)


def test_rolling_update_keeps_old_ready_replicas_until_new_ones_are_ready() -> None:
    spec = make_spec(replicas=2, use_spot=False)
    old = [replica(1, spot=False, version=1), replica(2, spot=False, version=1)]
    p = plan(observe(spec, old, offerings(PRICES), version=2), now=0.0)
    assert len(p.launches) == 2 and all(la.version == 2 for la in p.launches)
    assert p.terminations == ()


def test_rolling_update_retires_one_old_replica_per_new_ready_one() -> None:
    spec = make_spec(replicas=2, use_spot=False)
    reps = [
        replica(1, spot=False, version=1),
        replica(2, spot=False, version=1),
        replica(3, spot=False, version=2),
        replica(4, spot=False, version=2, status=R.STARTING),
    ]
    p = plan(observe(spec, reps, offerings(PRICES), version=2), now=0.0)
    assert reasons(p) == {2: EndReason.UPDATED}  # newest old id goes first
    assert p.launches == ()


def test_rolling_update_drops_old_unready_replicas_at_once() -> None:
    spec = make_spec(replicas=2, use_spot=False)
    reps = [
        replica(1, spot=False, version=1),
        replica(2, spot=False, version=1, status=R.STARTING),
        replica(3, spot=False, version=2, status=R.STARTING),
        replica(4, spot=False, version=2, status=R.STARTING),
    ]
    p = plan(observe(spec, reps, offerings(PRICES), version=2), now=0.0)
    assert reasons(p) == {2: EndReason.UPDATED}


def test_rolling_update_finishes_when_new_replicas_reach_target() -> None:
    spec = make_spec(replicas=2, use_spot=False)
    reps = [replica(1, spot=False, version=1)] + [replica(i, spot=False, version=2) for i in (2, 3)]
    assert reasons(plan(observe(spec, reps, offerings(PRICES), version=2), now=0.0)) == {
        1: EndReason.UPDATED
    }


def test_a_replica_is_never_terminated_twice() -> None:
    spec = make_spec(replicas=1, use_spot=False)
    # old version AND failing probes: one termination only
    reps = [replica(1, spot=False, version=1, probe_failures=5), replica(2, spot=False, version=2)]
    p = plan(observe(spec, reps, offerings(PRICES), version=2), now=0.0)
    assert [t.replica_id for t in p.terminations] == [1]


def test_launches_of_one_kind_are_capped_at_max_plus_overprovision() -> None:
    spec = make_spec(replicas=3, overprovision=1, dynamic=True, placer="dynamic_fallback")
    p = plan(observe(spec, [], offerings(PRICES)), now=0.0)
    assert len(zones_of(p.launches, spot=True)) == 4
    assert len(zones_of(p.launches, spot=False)) == 3


def test_ondemand_uses_the_cheapest_ondemand_offering() -> None:
    offers = offerings({"us-east-1a": 1.0}, od={"us-east-1a": 3.0, "us-west-2a": 2.5})
    p = plan(observe(make_spec(replicas=1, use_spot=False), [], offers), now=0.0)
    assert [la.offering.location.zone for la in p.launches] == ["us-west-2a"]


def test_policy_state_is_json_serialisable() -> None:
    spec = make_spec(replicas=2, dynamic=True)
    p = plan(observe(spec, [replica(1)], offerings(PRICES)), now=0.0)
    json.dumps(p.policy_state)


# (case, spec kwargs, policy name)
SELECTION = [
    ("not spot: on-demand only", dict(use_spot=False), "ondemand_only"),
    ("spot: our default", dict(), registry.DEFAULT_SPOT_POLICY),
    ("SkyServe's SpotHedge keys", dict(placer="dynamic_fallback", dynamic=True), "spothedge"),
    (
        "explicit spot_policy wins",
        dict(placer="dynamic_fallback", policy="round_robin_spot"),
        "round_robin_spot",
    ),
]


@pytest.mark.parametrize("kw,name", [c[1:] for c in SELECTION], ids=[c[0] for c in SELECTION])
def test_policy_for(kw, name) -> None:  # type: ignore[no-untyped-def]
    assert registry.policy_for(make_spec(**kw)) == name


def test_unknown_policy_is_a_one_line_error_naming_the_allowed_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown spot policy 'nope' .*spothedge"):
        registry.get("nope")


def test_plan_is_deterministic() -> None:
    spec = make_spec(replicas=3, dynamic=True)
    obs = observe(spec, [replica(1)], offerings(PRICES))
    assert plan(obs, now=7.0) == plan(obs, now=7.0)
