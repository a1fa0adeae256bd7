"""providers.nodes: how a replica's nodes fold into the one instance the controller sees,
and how a launch of N nodes is all or none (pure; the clouds' own tests run it over HTTP)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from providers.nodes import Node, fold, group, launch_all
from skyctl.errors import CapacityError
from skyctl.types import Instance, InstanceState, Location

S = InstanceState


def node(rank: int, state: InstanceState = S.RUNNING, **kw: object) -> Instance:
    return Instance(
        instance_id=f"h-n{rank}" if rank else "h",
        service="svc",
        replica_id=1,
        version=1,
        location=Location("gcp", "r", "z"),
        spot=True,
        state=state,
        endpoint=f"http://10.0.0.{rank}:8080",
        price=3.0,
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("states", "complete", "want", "detail"),
    [
        ((S.RUNNING, S.RUNNING, S.RUNNING), True, S.RUNNING, ""),
        ((S.RUNNING, S.PENDING, S.RUNNING), True, S.PENDING, ""),
        ((S.RUNNING, S.PREEMPTED, S.FAILED), True, S.PREEMPTED, "node 1 of 3 preempted"),
        ((S.RUNNING, S.RUNNING, S.FAILED), True, S.FAILED, "node 2 of 3 ended"),
        ((S.RUNNING, S.TERMINATED, S.RUNNING), True, S.FAILED, "node 1 of 3 ended"),
        ((S.TERMINATED, S.TERMINATED, S.TERMINATED), True, S.TERMINATED, ""),
        ((S.RUNNING, S.RUNNING, None), True, S.FAILED, "node 2 of 3 is gone"),
        ((S.RUNNING, S.RUNNING, None), False, S.PENDING, ""),  # still being launched
        ((None, S.RUNNING, S.RUNNING), True, S.FAILED, "node 0 of 3 is gone"),
    ],
)
def test_a_replica_is_as_well_as_its_worst_node(
    states: tuple[InstanceState | None, ...], complete: bool, want: InstanceState, detail: str
) -> None:
    ranks = {k: node(k, s) for k, s in enumerate(states) if s is not None}
    got = fold("h", 3, ranks, complete=complete)
    assert got is not None and got.instance_id == "h" and got.state is want
    assert detail in got.detail
    assert (got.endpoint is not None) == (want is S.RUNNING)
    assert got.price == 3.0  # the replica's price, as every node carries it


def test_a_notice_on_any_node_is_the_replicas_and_no_node_left_is_no_replica() -> None:
    ranks = {0: node(0), 1: node(1, interruption_at=50.0), 2: node(2, interruption_at=40.0)}
    got = fold("h", 3, ranks)
    assert got is not None and got.state is S.RUNNING and got.interruption_at == 40.0
    assert fold("h", 3, {}) is None


def test_a_node_whose_launch_failed_makes_the_replica_a_failed_launch_not_a_preemption() -> None:
    cut = node(1, S.FAILED, launch_failed=True, detail="launch cut short")
    got = fold("h", 2, {0: node(0, launch_failed=True), 1: cut})
    assert got is not None and got.state is S.FAILED and got.launch_failed
    got = fold("h", 2, {0: node(0, S.FAILED, launch_failed=True), 1: node(1, S.PREEMPTED)})
    assert got is not None and got.state is S.PREEMPTED and not got.launch_failed


def test_group_folds_nodes_by_head_and_passes_one_node_replicas() -> None:
    single = replace(node(0), instance_id="solo", replica_id=2)
    listed = [(Node("h", 1, 2), node(1)), (None, single), (Node("h", 0, 2), node(0))]
    assert sorted((i.instance_id, i.state) for i in group(listed)) == [
        ("h", S.RUNNING),
        ("solo", S.RUNNING),
    ]
    (pending,) = group([(Node("h", 0, 2), node(0))], launching={"h"})
    assert pending.state is S.PENDING


async def test_launch_all_rolls_back_once_every_node_has_answered_and_raises_the_refusal() -> None:
    made: list[int] = []
    rolled: list[list[int]] = []

    async def launch(rank: int) -> int:
        if rank == 1:
            raise CapacityError("zone out", location="gcp/r/z")
        made.append(rank)
        return rank

    async def rollback() -> None:
        rolled.append(sorted(made))

    with pytest.raises(CapacityError, match="zone out"):
        await launch_all(3, launch, rollback)
    assert rolled == [[0, 2]]  # after the others' launches ended, not during them
    assert await launch_all(2, lambda k: _ok(k), rollback) == [0, 1]


async def _ok(rank: int) -> int:
    return rank
