"""The replica life cycle (skyctl.lifecycle), as a specification.

The allowed moves are written out here independently of the module, so a change
to ``TRANSITIONS`` must be made in both places on purpose.
"""

from __future__ import annotations

import enum
import itertools

import pytest

from skyctl.errors import InvalidTransition
from skyctl.lifecycle import (
    ENDING,
    LIVE,
    ROUTABLE,
    TRANSITIONS,
    UP,
    EndReason,
    ReplicaStatus,
    can_transition,
    transition,
)

S = ReplicaStatus

ALLOWED: frozenset[tuple[ReplicaStatus, ReplicaStatus]] = frozenset(
    {
        (S.PENDING, S.PROVISIONING),
        (S.PENDING, S.SHUTTING_DOWN),
        (S.PENDING, S.TERMINATED),
        (S.PROVISIONING, S.STARTING),
        (S.PROVISIONING, S.SHUTTING_DOWN),
        (S.PROVISIONING, S.TERMINATED),
        (S.STARTING, S.READY),
        (S.STARTING, S.SHUTTING_DOWN),
        (S.STARTING, S.TERMINATED),
        (S.READY, S.NOT_READY),
        (S.READY, S.SHUTTING_DOWN),
        (S.READY, S.TERMINATED),
        (S.NOT_READY, S.READY),
        (S.NOT_READY, S.SHUTTING_DOWN),
        (S.NOT_READY, S.TERMINATED),
        (S.SHUTTING_DOWN, S.TERMINATED),
    }
)

ALL_PAIRS = list(itertools.product(ReplicaStatus, ReplicaStatus))


def _id(pair: tuple[ReplicaStatus, ReplicaStatus]) -> str:
    return f"{pair[0]}->{pair[1]}"


def test_the_table_is_exactly_the_documented_moves() -> None:
    table = {(old, new) for old, targets in TRANSITIONS.items() for new in targets}
    assert table == ALLOWED
    assert set(TRANSITIONS) == set(ReplicaStatus)


@pytest.mark.parametrize("pair", ALL_PAIRS, ids=[_id(p) for p in ALL_PAIRS])
def test_a_move_is_allowed_iff_it_is_in_the_table(
    pair: tuple[ReplicaStatus, ReplicaStatus],
) -> None:
    old, new = pair
    reason = EndReason.USER if new in ENDING else None
    assert can_transition(old, new) is (pair in ALLOWED)
    if pair in ALLOWED:
        assert transition(old, new, reason) is new
    else:
        with pytest.raises(InvalidTransition, match=f"from {old} to {new}"):
            transition(old, new, reason)


ENDING_FROM_LIVE = [
    (old, new) for (old, new) in sorted(ALLOWED) if new in ENDING and old is not S.SHUTTING_DOWN
]


@pytest.mark.parametrize("pair", ENDING_FROM_LIVE, ids=[_id(p) for p in ENDING_FROM_LIVE])
def test_ending_a_live_replica_needs_a_reason(pair: tuple[ReplicaStatus, ReplicaStatus]) -> None:
    old, new = pair
    with pytest.raises(InvalidTransition, match="needs an end reason"):
        transition(old, new)


@pytest.mark.parametrize("reason", list(EndReason))
@pytest.mark.parametrize("pair", ENDING_FROM_LIVE, ids=[_id(p) for p in ENDING_FROM_LIVE])
def test_every_end_reason_can_end_a_live_replica(
    pair: tuple[ReplicaStatus, ReplicaStatus], reason: EndReason
) -> None:
    old, new = pair
    assert transition(old, new, reason) is new


def test_finishing_a_shutdown_keeps_the_reason_it_already_has() -> None:
    assert transition(S.SHUTTING_DOWN, S.TERMINATED) is S.TERMINATED


@pytest.mark.parametrize("new", list(ReplicaStatus))
@pytest.mark.parametrize("reason", [None, EndReason.USER])
def test_terminated_is_terminal(new: ReplicaStatus, reason: EndReason | None) -> None:
    assert TRANSITIONS[S.TERMINATED] == frozenset()
    with pytest.raises(InvalidTransition):
        transition(S.TERMINATED, new, reason)


def test_staying_in_the_same_status_is_not_a_move() -> None:
    for status in ReplicaStatus:
        assert not can_transition(status, status)


def test_terminated_is_reachable_from_every_status_and_every_status_from_pending() -> None:
    reachable = {S.PENDING}
    frontier = [S.PENDING]
    while frontier:
        for nxt in TRANSITIONS[frontier.pop()]:
            if nxt not in reachable:
                reachable.add(nxt)
                frontier.append(nxt)
    assert reachable == set(ReplicaStatus)
    for status in LIVE:
        assert S.TERMINATED in TRANSITIONS[status]


@pytest.mark.parametrize(
    ("group", "members"),
    [
        (LIVE, set(ReplicaStatus) - {S.TERMINATED}),
        (UP, {S.PENDING, S.PROVISIONING, S.STARTING, S.READY, S.NOT_READY}),
        (ROUTABLE, {S.READY}),
        (ENDING, {S.SHUTTING_DOWN, S.TERMINATED}),
    ],
    ids=["LIVE", "UP", "ROUTABLE", "ENDING"],
)
def test_status_groups(group: frozenset[ReplicaStatus], members: set[ReplicaStatus]) -> None:
    assert set(group) == members


@pytest.mark.parametrize("enum_cls", [ReplicaStatus, EndReason])
def test_statuses_and_reasons_print_and_store_as_their_names(enum_cls: type[enum.Enum]) -> None:
    for member in enum_cls:
        assert str(member) == member.value == member.name
        assert enum_cls(member.value) is member
