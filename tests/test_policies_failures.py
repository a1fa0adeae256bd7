"""Failure discipline in plan(): kinds, backoff, hourly cap, service FAILED, routable set.

The scenarios drive the real plan() in virtual time (a fake clock: a float
advanced one controller tick at a time) against a fake provider whose replicas
behave as scripted, the policy state round-tripping through JSON each tick as
the controller persists it.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from policies import failures
from policies.model import (
    Launch,
    LocationEvent,
    LocationEventKind,
    Plan,
    ReplicaEnded,
    ReplicaView,
    ServiceObservation,
)
from policies.reconcile import plan
from policies.routable import routable
from skyctl.lifecycle import EndReason, ReplicaStatus
from skyctl.spec import ServiceSpec
from tests.test_policies_support import loc, make_spec, observe, offerings, replica

R = ReplicaStatus
PRICES = {"us-east-1a": 1.0, "us-east-1c": 1.2}


@dataclass
class Scripted:
    """A fake provider: what every launched replica does, in seconds after its start."""

    exit_after: float | None = None  # the run command exits (code ``exit_code``)
    exit_code: int = 3
    ready_after: float | None = None  # first good probe
    break_after: float | None = None  # probes fail from then on (after ready)


@dataclass
class World:
    spec: ServiceSpec
    script: Scripted
    version: int = 1
    now: float = 0.0
    next_id: int = 1
    replicas: dict[int, ReplicaView] = field(default_factory=dict)
    started: dict[int, float] = field(default_factory=dict)
    ended: list[ReplicaEnded] = field(default_factory=list)
    state_json: str = "{}"
    launches: list[tuple[float, int]] = field(default_factory=list)  # (time, version)
    ends: list[tuple[float, EndReason]] = field(default_factory=list)
    plans: list[Plan] = field(default_factory=list)
    failed_at: float | None = None

    def _provider_facts(self) -> None:
        s, now = self.script, self.now
        for rid, r in list(self.replicas.items()):
            age = now - self.started[rid]
            if s.exit_after is not None and age >= s.exit_after:
                del self.replicas[rid]
                self.ended.append(
                    ReplicaEnded(rid, r.version, EndReason.FAILED, now, exit_code=s.exit_code)
                )
                self.ends.append((now, EndReason.FAILED))
            elif r.status is R.STARTING and s.ready_after is not None and age >= s.ready_after:
                self.replicas[rid] = replace(r, status=R.READY, status_since=now, ready_at=now)
            elif r.status is R.READY and s.break_after is not None and age >= s.break_after:
                self.replicas[rid] = replace(r, probe_failures=r.probe_failures + 1)

    def tick(self) -> Plan:
        self._provider_facts()
        obs = replace(
            observe(
                self.spec,
                self.replicas.values(),
                offerings(PRICES),
                version=self.version,
                policy_state=json.loads(self.state_json),
            ),
            ended=tuple(self.ended),
        )
        self.ended = []
        p = plan(obs, self.now)
        self.plans.append(p)
        self.state_json = json.dumps(dict(p.policy_state))  # persisted, as the controller does
        for t in p.terminations:
            self.replicas.pop(t.replica_id, None)
            self.ends.append((self.now, t.reason))
        for la in p.launches:
            self._launch(la)
        if p.failure and self.failed_at is None:
            self.failed_at = self.now
        return p

    def _launch(self, la: Launch) -> None:
        rid, self.next_id = self.next_id, self.next_id + 1
        self.launches.append((self.now, la.version))
        self.started[rid] = self.now
        self.replicas[rid] = ReplicaView(
            replica_id=rid,
            version=la.version,
            status=R.STARTING,
            location=la.offering.location,
            spot=la.offering.spot,
            price=la.offering.price,
            created_at=self.now,
            status_since=self.now,
        )

    def run(self, seconds: float, tick: float = 1.0) -> None:
        end = self.now + seconds
        while self.now < end:
            self.tick()
            self.now += tick

    def launched(self, until: float) -> int:
        return sum(1 for at, _ in self.launches if at < until)


def world(script: Scripted, *, replicas: int = 2, initial_delay: float = 20.0) -> World:
    return World(make_spec(replicas=replicas, use_spot=False, initial_delay=initial_delay), script)


def test_a_run_that_exits_at_once_fails_the_service_with_its_exit_code() -> None:
    w = world(Scripted(exit_after=0.5, exit_code=3))
    w.run(300.0)
    assert w.launched(until=300.0) <= 10
    assert w.failed_at is not None and w.failed_at <= 60.0
    reason = w.plans[-1].failure
    assert "exit code 3" in reason and "none ever READY" in reason
    assert "2 replicas failed" in reason  # both replicas of the batch are counted
    # as SkyServe: a run that exits before any replica was READY is not relaunched
    assert len(w.launches) == 2 and w.failed_at == 1.0
    assert "\n" not in reason
    assert w.plans[-1].launches == () and not w.replicas  # nothing keeps launching
    assert {why for _, why in w.ends} == {EndReason.FAILED}


def test_a_server_that_never_gets_ready_fails_initial_delay_backs_off_then_fails() -> None:
    w = world(Scripted(), initial_delay=20.0)
    w.run(600.0)
    assert w.ends and {why for _, why in w.ends} == {EndReason.FAILED_INITIAL_DELAY}
    assert w.failed_at is not None
    assert "FAILED_INITIAL_DELAY" in w.plans[-1].failure
    starts = sorted({at for at, _ in w.launches})
    # every later round of launches waits longer after its failures than the one before
    waits = [b - a for a, b in itertools.pairwise(starts)]
    assert waits == sorted(waits) and waits[-1] > waits[0]
    assert any(p.launch_after is not None for p in w.plans)  # the backoff is visible
    assert len(w.launches) <= 6


def test_a_version_that_was_ready_once_keeps_relaunching_with_backoff_never_failed() -> None:
    # v1 serves, then each replica breaks after 60 s: a flapping version, not a dead one
    w = world(Scripted(ready_after=5.0, break_after=60.0), replicas=1)
    w.run(3600.0)
    assert all(not p.failure for p in w.plans)
    assert EndReason.FAILED_PROBING in {why for _, why in w.ends}
    assert len(w.launches) <= failures.hourly_cap(1)
    assert len(w.launches) < 3600 / 60  # fewer than one relaunch per crash cycle


def test_failed_state_survives_a_restart_and_an_update_resumes() -> None:
    w = world(Scripted(exit_after=0.5))
    w.run(120.0)
    assert w.failed_at is not None
    # a restarted controller reads the same policy state: still FAILED, no launches
    again = World(w.spec, w.script, now=w.now, state_json=w.state_json, next_id=w.next_id)
    p = again.tick()
    assert p.failure and p.launches == ()
    # serve update: version 2 starts clean
    again.version = 2
    again.now += 1.0
    p = again.tick()
    assert not p.failure and len(p.launches) == 2 and {la.version for la in p.launches} == {2}


def test_retry_clears_the_failure_of_the_current_version() -> None:
    w = world(Scripted(exit_after=0.5))
    w.run(120.0)
    state = json.loads(w.state_json)
    state[failures.STATE_KEY] = failures.retry(state[failures.STATE_KEY], version=1)
    w.state_json = json.dumps(state)
    p = w.tick()
    assert not p.failure and len(p.launches) == 2


def test_preemptions_and_capacity_errors_do_not_count_against_the_version() -> None:
    spec = make_spec(replicas=1)
    state: dict[str, Any] = {}
    for i in range(20):
        ended = (
            ReplicaEnded(2 * i, 1, EndReason.PREEMPTED, float(i)),
            ReplicaEnded(2 * i + 1, 1, EndReason.FAILED_PROVISION, float(i), capacity=True),
        )
        obs = replace(observe(spec, [], offerings(PRICES), policy_state=state), ended=ended)
        p = plan(obs, float(i))
        state = dict(p.policy_state)
        assert not p.failure and p.launches and p.launch_after is None


# (case, replica's own start, now, terminated FAILED_INITIAL_DELAY?)
AGES = [
    ("provisioned slowly, started 10 s ago", 100.0, 110.0, False),
    ("started 21 s ago", 100.0, 121.0, True),
]


@pytest.mark.parametrize("started,now,killed", [a[1:] for a in AGES], ids=[a[0] for a in AGES])
def test_initial_delay_counts_from_the_replicas_own_start(
    started: float, now: float, killed: bool
) -> None:
    rep = replace(replica(1, spot=False, status=R.STARTING, created_at=0.0), status_since=started)
    p = plan(observe(make_spec(use_spot=False, initial_delay=20.0), [rep]), now)
    assert [t.reason for t in p.terminations] == (
        [EndReason.FAILED_INITIAL_DELAY] if killed else []
    )


# (case, ended, one-line description)
DESCRIBE = [
    (
        "run exit",
        ReplicaEnded(4, 1, EndReason.FAILED, 0.0, exit_code=3),
        "replica 4: run failed with exit code 3",
    ),
    (
        "run exits 0: the service's failure line says what the replica's says",
        ReplicaEnded(4, 1, EndReason.FAILED, 0.0, exit_code=0),
        "replica 4: run exited with code 0 (it must keep the server in the foreground)",
    ),
    (
        "run killed by a signal (a negative code), not an exit code",
        ReplicaEnded(4, 1, EndReason.FAILED, 0.0, exit_code=-9),
        "replica 4: run killed by signal 9 (SIGKILL)",
    ),
    (
        "setup exit",
        ReplicaEnded(5, 1, EndReason.FAILED_SETUP, 0.0, exit_code=1),
        "replica 5: setup failed with exit code 1",
    ),
    (
        "probing",
        ReplicaEnded(6, 1, EndReason.FAILED_PROBING, 0.0, detail="3 consecutive failed probes"),
        "replica 6: FAILED_PROBING (3 consecutive failed probes)",
    ),
]


@pytest.mark.parametrize("end,want", [d[1:] for d in DESCRIBE], ids=[d[0] for d in DESCRIBE])
def test_describe(end: ReplicaEnded, want: str) -> None:
    assert failures.describe(end) == want


# (case, streak rounds, seconds before the next launch)
BACKOFF = [("first round", 1, 0.0), ("second", 2, 10.0), ("third", 3, 20.0), ("capped", 20, 600.0)]


@pytest.mark.parametrize("rounds,wait", [b[1:] for b in BACKOFF], ids=[b[0] for b in BACKOFF])
def test_backoff(rounds: int, wait: float) -> None:
    assert failures.backoff(rounds) == wait


def _launch(n: int) -> list[Launch]:
    return [Launch(offerings(PRICES)[0], 1)] * n


def test_hourly_cap_holds_back_launches_until_the_oldest_minute_leaves_the_hour() -> None:
    obs = observe(make_spec())
    state: dict[str, Any] = {}
    allowed, state, notes, after = failures.gate(state, _launch(50), obs, 0.0, cap=60)
    assert len(allowed) == 50 and after is None
    allowed, state, notes, after = failures.gate(state, _launch(20), obs, 600.0, cap=60)
    assert len(allowed) == 10 and after == 3660.0 and "launch cap reached" in notes[0]
    allowed, state, notes, after = failures.gate(state, _launch(5), obs, 1200.0, cap=60)
    assert allowed == [] and notes == []  # said once
    allowed, state, notes, after = failures.gate(state, _launch(5), obs, 3660.0, cap=60)
    assert len(allowed) == 5  # the first minute's 50 are more than an hour old


def test_every_update_in_the_hour_allows_a_whole_fleet_more() -> None:
    # rolling updates the user asked for (4 to 6 launches each) are not a cost leak: a
    # crash-recovery campaign of frequent updates was held back, the update unfinished
    v1 = observe(make_spec())
    state: dict[str, Any] = {}
    allowed, state, _, _ = failures.gate(state, _launch(60), v1, 0.0, cap=60, update_credit=6)
    assert len(allowed) == 60
    allowed, state, notes, _ = failures.gate(state, _launch(6), v1, 60.0, 60, 6)
    assert allowed == [] and "launch cap reached" in notes[0]
    v2 = replace(v1, version=2)
    state = json.loads(json.dumps(state))  # persisted as the controller does
    allowed, state, _, _ = failures.gate(state, _launch(8), v2, 120.0, 60, 6)
    assert len(allowed) == 6  # one update: one fleet
    allowed, state, _, _ = failures.gate(state, _launch(8), v2, 180.0, 60, 6)
    assert allowed == []  # counted once, not at every plan of the new version
    allowed, state, _, _ = failures.gate(state, _launch(8), v1, 240.0, 60, 6)
    assert len(allowed) == 6  # a rollback is an update too


def test_every_spot_loss_in_the_hour_allows_two_more_launches() -> None:
    # a whole fleet preempted: its replacements and on-demand cover are not a cost leak,
    # and must not be held back for the rest of the hour (a failure loop makes no preemptions)
    lost = [
        LocationEvent(kind, loc("us-east-1a"), 600.0, True)
        for kind in (LocationEventKind.NOTICE, LocationEventKind.PREEMPTED)
        for _ in range(8)
    ]
    quiet = observe(make_spec())
    state: dict[str, Any] = {}
    allowed, state, _, _ = failures.gate(state, _launch(60), quiet, 0.0, cap=60)
    assert len(allowed) == 60
    allowed, state, notes, _ = failures.gate(state, _launch(40), quiet, 300.0, cap=60)
    assert allowed == [] and "launch cap reached" in notes[0]
    noticed = replace(quiet, events=tuple(lost))
    allowed, state, _, _ = failures.gate(state, _launch(40), noticed, 600.0, cap=60)
    assert len(allowed) == 2 * len(lost)  # 16 losses: 32 launches
    state = json.loads(json.dumps(state))  # persisted as the controller does
    allowed, state, _, _ = failures.gate(state, _launch(5), quiet, 1200.0, cap=60)
    assert allowed == []  # the credit is spent, and counted once
    allowed, state, _, _ = failures.gate(state, _launch(5), quiet, 3660.0 + 600.0, cap=60)
    assert len(allowed) == 5 and state["losses_per_minute"] == {}  # an hour on: all gone


# (case, replicas, excluded, routable)
ROUTABLE = [
    ("ready ones", [replica(1), replica(2, status=R.STARTING)], (), (1,)),
    ("calm preferred", [replica(1, interruption_at=50.0), replica(2)], (), (2,)),
    ("noticed ones when none is calm", [replica(1, interruption_at=50.0)], (), (1,)),
    ("unreachable left out", [replace(replica(1), unreachable=True), replica(2)], (), (2,)),
    ("terminated by the plan left out", [replica(1), replica(2)], (1,), (2,)),
]


@pytest.mark.parametrize(
    "reps,excluded,want", [r[1:] for r in ROUTABLE], ids=[r[0] for r in ROUTABLE]
)
def test_routable(
    reps: list[ReplicaView], excluded: tuple[int, ...], want: tuple[int, ...]
) -> None:
    assert routable(reps, excluded) == want


def test_plan_routes_ready_replicas_it_keeps_and_not_the_ones_it_terminates() -> None:
    spec = make_spec(replicas=1, use_spot=False, threshold=3)
    reps = [replica(1, spot=False), replica(2, spot=False, probe_failures=3)]
    p = plan(observe(spec, reps, offerings(PRICES)), 10.0)
    assert p.routable == (1,)


def test_closed_locations_get_no_launches() -> None:
    obs: ServiceObservation = observe(make_spec(replicas=2), [], offerings(PRICES))
    p = plan(replace(obs, closed_locations=frozenset({loc("us-east-1a")})), 0.0)
    assert p.launches and all(la.offering.location != loc("us-east-1a") for la in p.launches)
