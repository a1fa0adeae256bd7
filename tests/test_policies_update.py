"""Updates: which spec changes keep the replicas (in place), and how plan() replaces an
old version by ``serve update --mode rolling`` or ``--mode blue_green``, with the
router's version gate (policies.routable) during a blue-green update."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from policies.model import Cutover, Plan, ReplicaEnded, ServiceObservation
from policies.reconcile import plan
from policies.routable import routable
from policies.update import UpdateMode, in_place
from skyctl.clock import FakeClock
from skyctl.lifecycle import EndReason, ReplicaStatus
from skyctl.spec_yaml import parse_spec as load_spec
from tests.test_policies_support import make_spec, observe, offerings, replica

R = ReplicaStatus
NOW = FakeClock(start=10.0).now()  # the replicas below started at 0: within their initial delay
PRICES = {"us-east-1a": 1.0, "us-west-2a": 0.9}

BASE = """\
service:
  readiness_probe:
    path: /health
    initial_delay_seconds: 20
  replicas: 2
resources:
  cpus: 1+
envs:
  GREETING: hi
setup: echo setup
run: exec python3 server.py --port $PORT
"""


def changed(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new)


# (case, new spec text, replicas kept in place)
IN_PLACE = [
    ("replica count", changed("replicas: 2", "replicas: 3"), True),
    ("readiness probe path", changed("path: /health", "path: /ready"), True),
    ("initial delay", changed("initial_delay_seconds: 20", "initial_delay_seconds: 60"), True),
    (
        "autoscaling",
        changed(
            "  replicas: 2\n",
            "  replica_policy: {min_replicas: 1, max_replicas: 3, target_qps_per_replica: 2}\n",
        ),
        True,
    ),
    (
        "load balancer",
        changed(
            "  replicas: 2\n",
            "  replicas: 2\n  load_balancing_policy: round_robin\n"
            "  load_balancer: {drain_timeout_seconds: 5}\n",
        ),
        True,
    ),
    ("the name", "name: other\n" + BASE, True),
    ("service.ports", changed("  replicas: 2\n", "  replicas: 2\n  ports: 8081\n"), False),
    ("resources", changed("cpus: 1+", "cpus: 2+"), False),
    ("spot", changed("cpus: 1+", "cpus: 1+\n  use_spot: true"), False),
    ("envs", changed("GREETING: hi", "GREETING: hello"), False),
    ("setup", changed("echo setup", "echo other"), False),
    ("run", changed("server.py", "other.py"), False),
    ("num_nodes", BASE + "num_nodes: 2\n", False),
]


@pytest.mark.parametrize("new,kept", [c[1:] for c in IN_PLACE], ids=[c[0] for c in IN_PLACE])
def test_which_changes_keep_the_replicas(new: str, kept: bool) -> None:
    assert in_place(load_spec(BASE), load_spec(new)) is kept


def test_a_workdir_or_file_mounts_always_relaunches_as_skyserve_does() -> None:
    """Their content is read at launch and may have changed since: not comparable by text."""
    for extra in ("workdir: .\n", "file_mounts:\n  /data: ./data\n"):
        with_files = load_spec(extra + BASE)
        assert not in_place(with_files, load_spec(extra + changed("replicas: 2", "replicas: 3")))
    assert in_place(load_spec(BASE), load_spec(BASE))


def reasons(p: Plan) -> dict[int, EndReason]:
    return {t.replica_id: t.reason for t in p.terminations}


def update_obs(mode: str, reps: list[Any], target: int = 2) -> ServiceObservation:
    spec = make_spec(replicas=target, use_spot=False)
    return replace(observe(spec, reps, offerings(PRICES), version=2), update_mode=mode)


OLD = [replica(1, spot=False, version=1), replica(2, spot=False, version=1)]


def new(rid: int, status: ReplicaStatus = R.READY) -> Any:
    return replica(rid, spot=False, version=2, status=status)


# (case, replicas, terminated when rolling, when blue-green, routed when blue-green)
STEPS = [
    ("update starts", OLD, set(), set(), (1, 2)),
    ("first new READY", [*OLD, new(3), new(4, R.STARTING)], {2}, set(), (1, 2)),
    ("all new READY", [*OLD, new(3), new(4)], {1, 2}, {1, 2}, (3, 4)),
    (
        "an old replica not READY",
        [OLD[0], replica(2, spot=False, version=1, status=R.NOT_READY), new(3, R.STARTING)],
        {2},
        {2},
        (1,),
    ),
]


@pytest.mark.parametrize(
    "reps,rolling,blue_green,routed", [s[1:] for s in STEPS], ids=[s[0] for s in STEPS]
)
def test_rolling_and_blue_green_retire_old_replicas_at_their_pace(
    reps: list[Any], rolling: set[int], blue_green: set[int], routed: tuple[int, ...]
) -> None:
    now = NOW
    by_rolling = plan(update_obs("rolling", reps), now)
    by_blue_green = plan(update_obs("blue_green", reps), now)
    assert set(reasons(by_rolling)) == rolling
    assert set(reasons(by_blue_green)) == blue_green
    assert set(reasons(by_blue_green).values()) <= {EndReason.UPDATED}
    assert by_blue_green.routable == routed  # never both versions at once
    assert by_rolling.cutover is None


def test_rolling_routes_both_versions_while_they_are_ready() -> None:
    p = plan(update_obs("rolling", [*OLD, new(3), new(4, R.STARTING)]), NOW)
    assert p.routable == (1, 3)  # 2 was retired for 3


def test_blue_green_launches_the_whole_new_version_beside_the_old_one() -> None:
    p = plan(update_obs("blue_green", OLD), NOW)
    assert len(p.launches) == 2 and {la.version for la in p.launches} == {2}
    assert p.cutover == Cutover(version=2, target=2)


def test_blue_green_waits_for_the_target_including_overprovisioning() -> None:
    spec = make_spec(replicas=2, use_spot=False, overprovision=1)
    reps = [*OLD, new(3), new(4), new(5, R.STARTING)]
    obs = replace(observe(spec, reps, offerings(PRICES), version=2), update_mode="blue_green")
    p = plan(obs, NOW)
    assert reasons(p) == {} and p.routable == (1, 2) and p.cutover == Cutover(2, 3)


def test_blue_green_ends_with_no_gate_once_the_old_version_is_gone() -> None:
    p = plan(update_obs("blue_green", [new(3), new(4)]), NOW)
    assert p.cutover is None and p.routable == (3, 4) and p.terminations == ()


# (case, replicas, gate, routed)
GATES = [
    ("no gate: every ready replica", [*OLD, new(3)], None, (1, 2, 3)),
    ("new below target: old only", [*OLD, new(3)], Cutover(2, 2), (1, 2)),
    ("new at target: new only", [*OLD, new(3), new(4)], Cutover(2, 2), (3, 4)),
    ("no old ready left: the new ones serve", [new(3)], Cutover(2, 2), (3,)),
    (
        "old not ready does not count",
        [replace(OLD[0], status=R.NOT_READY), new(3)],
        Cutover(2, 2),
        (3,),
    ),
    ("newer versions count as new", [*OLD, new(3), replica(4, version=3)], Cutover(2, 2), (3, 4)),
]


@pytest.mark.parametrize("reps,gate,routed", [g[1:] for g in GATES], ids=[g[0] for g in GATES])
def test_the_blue_green_gate_routes_one_version(
    reps: list[Any], gate: Cutover | None, routed: tuple[int, ...]
) -> None:
    assert routable(reps, cutover=gate) == routed


def test_update_modes_are_skyserves() -> None:
    assert [m.value for m in UpdateMode] == ["rolling", "blue_green"]


def test_a_blue_green_update_whose_new_version_keeps_failing_leaves_the_old_one_serving() -> None:
    """The new version's run exits at once, every time: plan() gives the version up
    (the service FAILED, no more launches) and never retires or unroutes the old
    version's READY replicas, which keep serving alone."""
    spec = make_spec(replicas=2, use_spot=False)
    reps: dict[int, Any] = {r.replica_id: r for r in OLD}
    state: dict[str, Any] = {}
    launched, failure, next_id, ended = 0, "", 10, []
    for second in range(600):
        now = float(second)
        obs = replace(
            observe(spec, reps.values(), offerings(PRICES), version=2, policy_state=state),
            update_mode="blue_green",
            ended=tuple(ended),
        )
        p = plan(obs, now)
        state, ended = dict(p.policy_state), []
        assert not set(reasons(p)) & {1, 2}  # the old version stays
        assert p.routable == (1, 2)  # and alone serves
        for la in p.launches:  # each new replica's run exits within the second
            ended.append(ReplicaEnded(next_id, la.version, EndReason.FAILED, now, exit_code=3))
            next_id, launched = next_id + 1, launched + 1
        failure = failure or p.failure
    assert "exit code 3" in failure
    assert 0 < launched <= 10  # given up, not relaunched forever
