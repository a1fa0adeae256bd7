"""A replica whose instance the provider reports as a failed launch (``launch_failed``:
provisioning failed, or a launch cut short that the next controller adopted) ends
FAILED_PROVISION: not PREEMPTED (no preemption told to placement), and not
counted against its version."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from policies.model import LocationEventKind
from skyctl.lifecycle import EndReason, ReplicaStatus
from skyctl.types import InstanceState
from tests.test_controller import SPOT, Harness


class _Recording(list[Any]):
    """rt.events / rt.ended that remember every append past the plan's clear()."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Any] = []

    def append(self, item: Any) -> None:
        self.seen.append(item)
        super().append(item)


async def test_a_failed_launch_reported_by_the_provider_ends_failed_provision_not_preempted(
    h: Harness,
) -> None:
    await h.controller.create_service(SPOT.format(name="spot", replicas=1), None)
    await h.until(lambda: h.ready("spot") == 1)
    (victim,) = h.replicas("spot")
    rt = h.controller.runtimes["spot"]
    events, ended_list = _Recording(), _Recording()
    rt.events, rt.ended = events, ended_list
    running = h.provider.find("spot", victim.replica_id)
    running.instance = replace(
        running.instance,
        state=InstanceState.FAILED,
        launch_failed=True,
        detail="provisioning failed: ZonalAllocationFailed",
    )
    await h.until(
        lambda: (
            (r := h.store.get_replica("spot", victim.replica_id)) is not None
            and r.status is ReplicaStatus.TERMINATED
        )
    )
    ended = h.store.get_replica("spot", victim.replica_id)
    assert ended is not None and ended.end_reason is EndReason.FAILED_PROVISION
    assert "ZonalAllocationFailed" in (ended.failure or "")
    kinds = [e.kind for e in h.store.events("spot") if e.replica_id == victim.replica_id]
    assert "failed_provision" in kinds and "preempted" not in kinds
    assert LocationEventKind.PREEMPTED not in [e.kind for e in events.seen]
    (gone,) = [e for e in ended_list.seen if e.replica_id == victim.replica_id]
    assert gone.reason is EndReason.FAILED_PROVISION and gone.capacity  # not the version's fault
