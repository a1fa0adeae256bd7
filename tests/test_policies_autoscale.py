"""The request-rate autoscaler: desired counts and SkyServe's hysteresis delays."""

from __future__ import annotations

import pytest

from policies.autoscale import autoscale, desired_replicas
from policies.reconcile import plan
from skyctl.lifecycle import ReplicaStatus
from tests.test_policies_support import make_spec, observe, offerings, replica

# (case, spec kwargs, qps, desired)
DESIRED = [
    ("fixed replicas ignore traffic", dict(replicas=3), 100.0, 3),
    ("ceil(qps / target)", dict(replicas=1, max_replicas=10, target_qps=2.0), 7.0, 4),
    ("clipped to max", dict(replicas=1, max_replicas=3, target_qps=1.0), 50.0, 3),
    ("clipped to min", dict(replicas=2, max_replicas=5, target_qps=1.0), 0.0, 2),
    ("scale to zero", dict(replicas=0, max_replicas=5, target_qps=1.0), 0.0, 0),
]


@pytest.mark.parametrize("kw,qps,want", [c[1:] for c in DESIRED], ids=[c[0] for c in DESIRED])
def test_desired_replicas(kw, qps, want) -> None:  # type: ignore[no-untyped-def]
    assert desired_replicas(observe(make_spec(use_spot=False, **kw), qps=qps)) == want


# Instance-aware: V100 replicas count 2 qps each, unknown types the smallest value.
QPS_MAP = {"V100": 2.0, "A100": 5.0}


@pytest.mark.parametrize(
    "qps,ready,want",
    [
        (9.0, 2, 2 + 1),  # capacity 4: excess 5 at the largest value 5 -> one more
        (16.0, 2, 2 + 3),  # excess 12 / 5 -> 3 more
        (3.0, 2, 2),  # 2 + 2 > 3 needs both
        (1.0, 2, 1),  # one V100 (2) > 1
    ],
)
def test_instance_aware_desired(qps: float, ready: int, want: int) -> None:
    spec = make_spec(replicas=1, max_replicas=10, target_qps=QPS_MAP, use_spot=False)
    reps = [replica(i + 1, spot=False) for i in range(ready)]
    assert desired_replicas(observe(spec, reps, offerings({}), qps=qps)) == want


def test_instance_aware_without_replicas_uses_min() -> None:
    spec = make_spec(replicas=2, max_replicas=10, target_qps=QPS_MAP, use_spot=False)
    assert desired_replicas(observe(spec, [], qps=50.0)) == 2


def _run(spec, timeline):
    """Feed (time, qps) pairs through autoscale, return the targets."""
    state = None
    out = []
    for now, qps in timeline:
        d = autoscale(observe(spec, qps=qps), now, state)
        state = d.state
        out.append(d.target)
    return out


def test_upscale_waits_for_the_upscale_delay() -> None:
    spec = make_spec(replicas=1, max_replicas=5, target_qps=1.0, up=300, down=1200)
    got = _run(spec, [(0, 0.0), (20, 3.0), (200, 3.0), (319, 3.0), (320, 3.0)])
    assert got == [1, 1, 1, 1, 3]


def test_a_dip_restarts_the_upscale_delay() -> None:
    spec = make_spec(replicas=1, max_replicas=5, target_qps=1.0, up=300, down=1200)
    got = _run(spec, [(0, 0.0), (20, 3.0), (200, 0.5), (220, 3.0), (500, 3.0), (520, 3.0)])
    assert got == [1, 1, 1, 1, 1, 3]


def test_downscale_waits_for_the_downscale_delay() -> None:
    spec = make_spec(replicas=1, max_replicas=5, target_qps=1.0, up=0, down=1200)
    got = _run(spec, [(0, 4.0), (20, 1.0), (1000, 1.0), (1220, 1.0)])
    assert got == [4, 4, 4, 1]


def test_zero_target_scales_up_at_once() -> None:
    spec = make_spec(replicas=0, max_replicas=5, target_qps=1.0, up=300)
    assert _run(spec, [(0, 0.0), (20, 2.0)]) == [0, 2]


def test_new_version_takes_the_desired_count_at_once() -> None:
    spec = make_spec(replicas=1, max_replicas=5, target_qps=1.0, up=300)
    first = autoscale(observe(spec, qps=0.0), 0.0, None)
    d = autoscale(observe(spec, qps=3.0, version=2), 20.0, first.state)
    assert d.target == 3


def test_plan_keeps_autoscaler_state_between_calls() -> None:
    spec = make_spec(replicas=1, max_replicas=5, target_qps=1.0, up=60, use_spot=False)
    reps = [replica(1, spot=False, status=ReplicaStatus.READY)]
    p1 = plan(observe(spec, reps, qps=0.0), now=0.0)
    p2 = plan(observe(spec, reps, qps=2.5, policy_state=p1.policy_state), now=10.0)
    p3 = plan(observe(spec, reps, qps=2.5, policy_state=p2.policy_state), now=70.0)
    assert (p1.target, p2.target, p3.target) == (1, 1, 3)
    assert len(p3.launches) == 2
