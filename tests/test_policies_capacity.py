"""Per-location backoff for spot capacity refusals (policies.capacity), in plan().

A location that refused spot capacity is not offered to any placement policy
for 30 s, then 60 s, 120 s ... up to an hour; the first launch after a hold is
the probe; for an ask the target does not need, a refusal holds a location at
least as long as it has been out so far (since its first refusal in a row, up
to 8 h); a granted launch there clears it; a preemption holds nothing. A plan
probes one refusing location at a time, and when spot is refused wherever it
is tried, the whole search backs off the same way. The state round-trips
through JSON each tick, as the controller persists it.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field, replace

import pytest

from policies import capacity, registry
from policies.model import Launch, LocationEvent, LocationEventKind, LocationState, ReplicaView
from policies.reconcile import plan
from skyctl.lifecycle import ReplicaStatus
from skyctl.types import Location, Offering
from tests.test_policies_support import loc, make_spec, observe, offerings, replica

CAP = LocationEventKind.CAPACITY_ERROR
OK = LocationEventKind.LAUNCHED
LOST = LocationEventKind.PREEMPTED
A, B, C = loc("us-east-1a"), loc("us-east-1c"), loc("us-east-1d")
PRICES = {"us-east-1a": 1.0, "us-east-1c": 1.1, "us-east-1d": 1.2}


@pytest.mark.parametrize(
    ("refusals", "seconds"),
    [(0, 0.0), (1, 30.0), (2, 60.0), (3, 120.0), (7, 1920.0), (8, 3600.0), (30, 3600.0)],
)
def test_hold_doubles_from_30s_to_a_one_hour_cap(refusals: int, seconds: float) -> None:
    assert capacity.hold(refusals) == seconds


def ev(kind: LocationEventKind, at: float, where: Location = A, spot: bool = True) -> LocationEvent:
    return LocationEvent(kind, where, at, spot)


@pytest.mark.parametrize(
    ("events", "now", "held"),
    [
        ([], 0.0, set()),
        ([ev(CAP, 0.0)], 29.0, {A}),
        ([ev(CAP, 0.0)], 30.0, set()),  # the hold ended: the next launch there is the probe
        ([ev(CAP, 0.0), ev(CAP, 30.0)], 89.0, {A}),  # refused again: 60 s
        ([ev(CAP, 0.0), ev(CAP, 30.0), ev(CAP, 90.0)], 209.0, {A}),  # then 120 s
        ([ev(CAP, 0.0), ev(CAP, 30.0), ev(OK, 40.0)], 41.0, set()),  # granted: clean again
        ([ev(CAP, 0.0), ev(CAP, 1.0, B)], 10.0, {A, B}),  # per location
        ([ev(CAP, 0.0, spot=False)], 10.0, set()),  # on-demand is never held
        ([ev(LOST, 0.0)], 1.0, set()),  # a preemption is not a refusal
        ([ev(LOST, 0.0), ev(CAP, 0.0)], 29.0, {A}),  # the refusal after it: the first
        ([ev(LOST, 0.0), ev(CAP, 0.0)], 30.0, set()),
        ([ev(LocationEventKind.NOTICE, 0.0)], 10.0, set()),
        # zones out for days: asked once an hour, not every 30 minutes
        ([ev(CAP, 0.0)] * 8, 3599.0, {A}),
        ([ev(CAP, 0.0)] * 8, 3600.0, set()),
    ],
)
def test_holds(events: list[LocationEvent], now: float, held: set[Location]) -> None:
    state: dict[str, object] = {}
    for e in events:  # one plan per event, the state through JSON between them
        state = json.loads(json.dumps(capacity.record(state, [e])[0]))
    assert capacity.held(state, now) == held


def test_a_granted_launch_after_refusals_starts_the_backoff_over() -> None:
    state, _ = capacity.record({}, [ev(CAP, 0.0), ev(CAP, 30.0), ev(OK, 100.0), ev(CAP, 200.0)])
    assert state[str(A)] == {"refusals": 1, "until": 230.0, "covered_until": 230.0, "since": 200.0}


def test_plan_offers_a_held_location_to_no_policy_and_says_why() -> None:
    spec = make_spec(replicas=1, policy="cheapest_spot")
    obs = observe(spec, [], offerings(PRICES), events=[ev(CAP, 0.0)])
    p = plan(obs, 0.0)
    assert [la.offering.location for la in p.launches] == [B]  # A is the cheapest, but held
    assert any("not tried for 30s" in n for n in p.notes)
    assert p.launch_after is None  # B covers the target: nothing waits for A
    held = {"refusals": 1, "until": 30.0, "covered_until": 30.0, "since": 0.0}
    assert p.policy_state[capacity.STATE_KEY] == {str(A): held}


@pytest.mark.parametrize(
    ("refusals", "needed", "covered"),
    [
        (0, 0.0, 0.0),
        (1, 30.0, 30.0),  # the same doubling: a zone out for an hour is asked again as soon
        (2, 60.0, 60.0),
        (7, 1920.0, 1920.0),
        (8, 3600.0, 3840.0),  # past the hour, only for an ask the target does not need
        (9, 3600.0, 7680.0),
        (10, 3600.0, 15360.0),
        (11, 3600.0, 28800.0),  # eight hours at most
        (40, 3600.0, 28800.0),
    ],
)
def test_an_ask_the_target_does_not_need_waits_longer_after_each_refusal(
    refusals: int, needed: float, covered: float
) -> None:
    assert (capacity.hold(refusals), capacity.covered_hold(refusals)) == (needed, covered)
    state: dict[str, object] = {}
    for _ in range(refusals):  # refused at 0 s, plan after plan, through JSON
        state = json.loads(json.dumps(capacity.record(state, [ev(CAP, 0.0)])[0]))
    for covering, end in ((False, needed), (True, covered)):
        if end:
            assert capacity.held(state, end - 1.0, covering) == {A}
        assert capacity.held(state, end, covering) == set()


@pytest.mark.parametrize(
    ("events", "needed", "covered"),
    [
        # refused once, then not asked for 5 h (the service had its replicas): refused
        # again, the zone has been out 5 h: an ask the target does not need waits as
        # long (not the 60 s of a second refusal in a row); a needed one keeps 60 s
        ([ev(CAP, 0.0), ev(CAP, 18000.0)], 60.0, 18000.0),
        ([ev(CAP, 0.0), ev(CAP, 7200.0), ev(CAP, 9000.0)], 120.0, 9000.0),
        ([ev(CAP, 0.0), ev(CAP, 50000.0)], 60.0, 28800.0),  # the 8 h cap still
        # the doubling, when longer, still decides (asked as each hold ends)
        ([ev(CAP, 0.0), ev(CAP, 30.0), ev(CAP, 90.0)], 120.0, 120.0),
        # granted since: the clock starts again at the next refusal
        ([ev(CAP, 0.0), ev(OK, 3000.0), ev(CAP, 6600.0)], 30.0, 30.0),
        # a preemption starts no clock (docs/simulator-notes.md: measured, not kept)
        ([ev(LOST, 0.0), ev(CAP, 7200.0)], 30.0, 30.0),
    ],
)
def test_a_covered_ask_waits_at_least_as_long_as_the_location_has_been_out(
    events: list[LocationEvent], needed: float, covered: float
) -> None:
    state: dict[str, object] = {}
    for e in events:  # one plan per event, the state through JSON between them
        state = json.loads(json.dumps(capacity.record(state, [e])[0]))
    last = events[-1].at
    for covering, wait in ((False, needed), (True, covered)):
        assert capacity.held(state, last + wait - 1.0, covering) == {A}
        assert capacity.held(state, last + wait, covering) == set()


def test_a_state_written_before_outage_clocks_starts_the_clock_at_its_next_refusal() -> None:
    state = {str(A): {"refusals": 2, "until": 90.0, "covered_until": 90.0}}  # no "since"
    state = capacity.record(state, [ev(CAP, 5000.0)])[0]
    for covering in (False, True):  # the third in a row: 120 s, the clock starts now
        assert capacity.held(state, 5000.0 + 119.0, covering) == {A}
        assert capacity.held(state, 5000.0 + 120.0, covering) == set()


@pytest.mark.parametrize(
    ("events", "needed"),
    [
        ([ev(CAP, 0.0), ev(CAP, 1000.0)], 1000.0),  # out 1,000 s so far: held as long
        ([ev(CAP, 0.0), ev(CAP, 18000.0)], 3600.0),  # a needed ask's cap: the hour
        ([ev(CAP, 0.0), ev(CAP, 30.0)], 60.0),  # the doubling, when longer
    ],
)
def test_with_an_ondemand_fallback_a_needed_ask_waits_out_the_outage_too(
    events: list[LocationEvent], needed: float
) -> None:
    state: dict[str, object] = {}
    for e in events:
        state = json.loads(json.dumps(capacity.record(state, [e], fallback=True)[0]))
    last = events[-1].at
    assert capacity.held(state, last + needed - 1.0) == {A}
    assert capacity.held(state, last + needed) == set()


@pytest.mark.parametrize(("dynamic", "until"), [(True, 4000.0 + 3600.0), (False, 4000.0 + 60.0)])
def test_plan_holds_a_needed_ask_for_the_outage_only_where_ondemand_covers_the_wait(
    dynamic: bool, until: float
) -> None:
    # A refused at 0 s and again at 4,000 s: out 4,000 s so far. With the spec's on-demand
    # fallback covering the wait, even a needed ask waits the hour; without it (plain
    # cheapest_spot) waiting would leave the service short: the 60 s of a second refusal.
    spec = make_spec(replicas=1, policy="cheapest_spot", dynamic=dynamic)
    first = capacity.record({}, [ev(CAP, 0.0)])[0]
    obs = observe(
        spec,
        [],
        offerings(PRICES),
        events=[ev(CAP, 4000.0)],
        policy_state={capacity.STATE_KEY: first},
    )
    p = plan(obs, 4000.0)
    assert p.policy_state[capacity.STATE_KEY][str(A)]["until"] == until


def test_a_state_written_before_covered_holds_holds_as_it_said() -> None:
    state = {str(A): {"refusals": 9, "until": 3600.0}}  # persisted by an older controller
    assert capacity.held(state, 3599.0, True) == {A}
    assert capacity.held(state, 3600.0, True) == capacity.held(state, 3600.0) == set()


def _refused_nine_times() -> dict[str, object]:
    cstate: dict[str, object] = {}
    for _ in range(9):
        cstate = capacity.record(cstate, [ev(CAP, 0.0)])[0]
    return {capacity.STATE_KEY: cstate}


@pytest.mark.parametrize("covered", [False, True])
def test_plan_gives_a_needed_ask_the_short_hold_and_a_covered_one_the_long(
    covered: bool,
) -> None:
    # A, the cheapest zone, refused 9 times in a row (at 0 s, for the test): held an hour
    # for a replica the target needs, 7,680 s while on-demand already covers the target
    # (the spot ask would only replace the fallback). At 4,000 s the needed ask probes A;
    # the covered one goes to B, and with only A offered it waits and wakes when A's long
    # hold ends.
    spec = make_spec(replicas=1, placer="dynamic_fallback", dynamic=True)  # SpotHedge
    have = [replica(9, spot=False, status=ReplicaStatus.READY)] if covered else []
    state = _refused_nine_times()
    p = plan(observe(spec, have, offerings(PRICES), policy_state=state), 4000.0)
    assert [la.offering.location for la in p.launches if la.offering.spot] == (
        [B] if covered else [A]
    )
    only_a = offerings({"us-east-1a": 1.0})
    p = plan(observe(spec, have, only_a, policy_state=state), 4000.0)
    spot = [la for la in p.launches if la.offering.spot]
    assert (len(spot), p.launch_after) == ((0, 7680.0) if covered else (1, None))


def test_the_spare_alone_missing_is_a_covered_ask() -> None:
    # 1 replica READY on spot for a target of 1, num_overprovision 1: the spare's ask is a
    # hedge, not a need, and does not probe A (refused 9x) before the long hold ends
    spec = make_spec(replicas=1, overprovision=1, policy="cheapest_spot")
    have = [replica(9, "us-east-1c")]
    only_a = offerings({"us-east-1a": 1.0})
    obs = observe(spec, have, only_a, policy_state=_refused_nine_times())
    assert not plan(obs, 4000.0).launches
    assert [la.offering.location for la in plan(obs, 7680.0).launches] == [A]


def test_when_every_spot_location_is_held_the_plan_wakes_for_the_first_probe() -> None:
    spec = make_spec(replicas=1, policy="cheapest_spot")
    obs = observe(spec, [], offerings(PRICES), events=[ev(CAP, 0.0, z) for z in (A, B, C)])
    p = plan(obs, 0.0)
    assert not [la for la in p.launches if la.offering.spot]
    assert p.launch_after == 30.0


def search(events: list[list[LocationEvent]]) -> dict[str, float]:
    state: dict[str, float] = {}
    for batch in events:  # one plan's launch outcomes per batch, through JSON
        state = json.loads(json.dumps(capacity.record_search(state, batch)[0]))
    return state


@pytest.mark.parametrize(
    ("refusals", "seconds"),
    [(0, 0.0), (1, 0.0), (2, 15.0), (3, 30.0), (9, 1920.0), (10, 3600.0), (40, 3600.0)],
)
def test_the_search_hold_starts_at_the_second_refusal_in_a_row(
    refusals: int, seconds: float
) -> None:
    assert capacity.search_hold(refusals) == seconds


@pytest.mark.parametrize(
    ("batches", "refusals", "until"),
    [
        ([[ev(CAP, 0.0)]], 1, 0.0),  # one refusal: the next plan tries elsewhere at once
        ([[ev(CAP, 0.0)], [ev(CAP, 1.0, B)]], 2, 16.0),  # twice in a row: 15 s for all
        ([[ev(CAP, 0.0)], [ev(CAP, 1.0, B)], [ev(CAP, 16.0, C)]], 3, 46.0),  # then 30 s
        ([[ev(CAP, 0.0, A), ev(CAP, 0.0, B), ev(CAP, 0.0, C)]], 1, 0.0),  # one plan: one step
        ([[ev(CAP, 0.0)], [ev(CAP, 1.0, B), ev(OK, 1.0, C)]], 0, 0.0),  # granted anywhere: over
        ([[ev(CAP, 0.0)], [ev(CAP, 1.0, B, spot=False)]], 1, 0.0),  # on-demand does not count
        ([[ev(CAP, 0.0)], [ev(LOST, 1.0)]], 1, 0.0),  # a loss is no refused plan
    ],
)
def test_the_search_as_a_whole_backs_off_when_spot_is_refused_wherever_tried(
    batches: list[list[LocationEvent]], refusals: int, until: float
) -> None:
    state = search(batches)
    assert (state.get("refusals", 0), state.get("until", 0.0)) == (refusals, until)
    assert capacity.searching(state, until)
    if until:
        assert not capacity.searching(state, until - 0.5)


def launch(where: Location, spot: bool = True) -> Launch:
    return Launch(Offering(where, spot, 1.0), 1)


@pytest.mark.parametrize(
    ("launches", "refused", "streak", "kept"),
    [
        ([A, B, C], [], 0, [A, B, C]),  # nothing refused: all go
        ([A, A, B, C], [A], 0, [A, B, C]),  # one launch into the refusing zone: the probe
        ([A, B, C], [A, B], 0, [A, C]),  # one probe a plan, not one into each refusing zone
        ([A, B, C], [], 1, [A, B, C]),  # one refusal in a row: elsewhere at once
        ([A, B, C], [], 2, [A]),  # backing off: one spot launch at a time
    ],
)
def test_a_plan_probes_one_refusing_location_at_a_time(
    launches: list[Location], refused: list[Location], streak: int, kept: list[Location]
) -> None:
    state = {str(w): {"refusals": 1, "until": 0.0} for w in refused}
    od = launch(A, spot=False)
    out = capacity.one_probe_each(
        [*map(launch, launches), od], state, {"refusals": streak, "until": 0.0}
    )
    assert [la.offering.location for la in out if la.offering.spot] == kept
    assert od in out  # on-demand launches are never cut


def test_after_two_refusals_in_a_row_no_spot_anywhere_until_the_search_hold_ends() -> None:
    spec = make_spec(replicas=1, placer="dynamic_fallback", dynamic=True)  # SpotHedge
    p1 = plan(observe(spec, [], offerings(PRICES), events=[ev(CAP, 0.0, A)]), 0.0)
    spot = [la.offering.location for la in p1.launches if la.offering.spot]
    assert spot == [B] and len(p1.launches) == 2  # elsewhere at once, on-demand cover
    cover = [replica(9, spot=False, status=ReplicaStatus.STARTING)]
    obs = observe(
        spec,
        cover,
        offerings(PRICES),
        events=[ev(CAP, 0.0, B)],
        states=p1.location_states,
        policy_state=p1.policy_state,
    )
    p2 = plan(obs, 0.0)
    assert p2.launches == () and p2.launch_after == 15.0  # C is free, but the search waits
    assert any("no spot launch for 15s" in n for n in p2.notes)
    later = replace(
        obs, events=(), policy_state=p2.policy_state, location_states=p2.location_states
    )
    assert plan(later, 14.0).launches == ()
    # shorter than A's and B's own holds (30 s): the location not tried yet goes first
    assert [la.offering.location for la in plan(later, 15.0).launches] == [C]


@pytest.mark.parametrize("dynamic", [False, True])
def test_the_search_waits_only_where_on_demand_covers_the_target(dynamic: bool) -> None:
    # cheapest_spot launches no on-demand: waiting would leave the service short, so
    # it asks as the location holds allow (C, not refused yet); so does a spec
    # without dynamic_ondemand_fallback
    spec = make_spec(replicas=1, policy="cheapest_spot", dynamic=dynamic)
    state = {
        capacity.STATE_KEY: {str(w): {"refusals": 1, "until": 30.0} for w in (A, B)},
        capacity.SEARCH_KEY: {"refusals": 2, "until": 15.0},
    }
    p = plan(observe(spec, [], offerings(PRICES), policy_state=state), 1.0)
    assert [la.offering.location for la in p.launches] == [C]


def test_the_default_policy_waits_as_spothedge_with_dynamic_fallback_does() -> None:
    # skyhedge_online's on-demand fallback is always on (placement.covers_shortfalls), so
    # a plain spot spec (no dynamic_ondemand_fallback) gets the same search hold as
    # SpotHedge's spec with the flag: no spot while the hold lasts, on-demand covers
    assert registry.policy_for(make_spec(replicas=1)) == "skyhedge_online"
    state = {
        capacity.STATE_KEY: {str(w): {"refusals": 1, "until": 30.0} for w in (A, B)},
        capacity.SEARCH_KEY: {"refusals": 2, "until": 15.0},
    }
    peer = make_spec(replicas=1, placer="dynamic_fallback", dynamic=True)
    cover = [replica(9, spot=False, status=ReplicaStatus.STARTING)]
    for spec in (make_spec(replicas=1), peer):
        obs = observe(spec, cover, offerings(PRICES), policy_state=state)
        p = plan(obs, 1.0)
        assert not any(la.offering.spot for la in p.launches), p.launches
        assert p.launch_after == 15.0
        assert [la.offering.location for la in plan(obs, 15.0).launches] == [C]


@dataclass
class Cloud:
    """Spot capacity as scripted: zones that refuse until ``opens`` (seconds)."""

    spec_policy: str
    refusing: dict[Location, float]  # zone -> when it starts granting
    now: float = 0.0
    next_id: int = 1
    replicas: dict[int, ReplicaView] = field(default_factory=dict)
    events: list[LocationEvent] = field(default_factory=list)
    states: dict[Location, LocationState] = field(default_factory=dict)
    state_json: str = "{}"
    refused: Counter[Location] = field(default_factory=Counter)
    granted: Counter[Location] = field(default_factory=Counter)

    def run(self, seconds: float, tick: float = 5.0) -> None:
        spec = make_spec(replicas=2, policy=self.spec_policy, dynamic=True)
        end = self.now + seconds
        while self.now < end:
            obs = observe(
                spec,
                self.replicas.values(),
                offerings(PRICES),
                states=self.states,
                events=self.events,
                policy_state=json.loads(self.state_json),
            )
            self.events = []
            p = plan(obs, self.now)
            self.state_json = json.dumps(dict(p.policy_state))
            self.states = dict(p.location_states)
            for t in p.terminations:
                self.replicas.pop(t.replica_id, None)
            for la in p.launches:
                where = la.offering.location
                if la.offering.spot and self.now < self.refusing.get(where, 0.0):
                    self.refused[where] += 1
                    self.events.append(ev(CAP, self.now, where))
                    continue
                if la.offering.spot:
                    self.granted[where] += 1
                    self.events.append(ev(OK, self.now, where))
                rid, self.next_id = self.next_id, self.next_id + 1
                self.replicas[rid] = ReplicaView(
                    rid, la.version, ReplicaStatus.READY, where, la.offering.spot,
                    la.offering.price, self.now, self.now, ready_at=self.now,
                )  # fmt: skip
            self.now += tick


SPOT_POLICIES = [n for n in registry.names() if n != "ondemand_only"]


@pytest.mark.parametrize("policy", SPOT_POLICIES)
def test_no_policy_asks_a_full_cloud_more_than_the_backoff_allows(policy: str) -> None:
    hour = 3600.0
    cloud = Cloud(policy, {A: hour, B: hour, C: hour})  # no spot anywhere for an hour
    cloud.run(hour)
    # probes at 0, 30, 90, 210, 450, 930, 1890 s (+ a tick of lag each): 7 a location at most
    # and, where on-demand covers the target, one probe at a time once the search as a
    # whole backs off (0, 0, 15, 45, 105, 225, 465, 945, 1905 s): about 10 in all
    for where in (A, B, C):
        assert cloud.refused[where] <= 7, (where, cloud.refused)
    if any(not r.spot for r in cloud.replicas.values()):
        assert 3 <= cloud.refused.total() <= 12, cloud.refused
    assert cloud.granted.total() == 0
    cloud.run(1900.0)  # capacity is back: the next probes (holds of 1,920 s) get it
    assert cloud.granted.total() >= 1
    state = json.loads(cloud.state_json)[capacity.STATE_KEY]
    assert all(str(where) not in state for where in cloud.granted)  # granted: clean again


@pytest.mark.parametrize("policy", SPOT_POLICIES)
def test_a_zone_without_capacity_is_probed_not_hammered_while_others_serve(policy: str) -> None:
    cloud = Cloud(policy, {A: 10 * 3600.0})  # the cheapest zone is out for ten hours
    cloud.run(2 * 3600.0)
    assert cloud.refused[A] <= 10  # before: every plan that wanted a replica there asked
    assert sum(1 for r in cloud.replicas.values() if r.spot) == 2
