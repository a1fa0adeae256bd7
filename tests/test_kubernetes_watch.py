"""The Kubernetes pod tracker: what a fresh list means for pods it already knows."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

from providers.kubernetes_build import instance_id
from providers.kubernetes_config import KubeConfig
from providers.kubernetes_watch import PodTracker
from skyctl.clock import FakeClock
from skyctl.types import InstanceEvent, InstanceEventKind
from tests.helpers.waiting import eventually


def pod(name: str, replica: int) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "default",
            "labels": {"skyctl-service": "svc", "skyctl-replica": str(replica)},
        },
        "spec": {"nodeName": "node-1"},
        "status": {"phase": "Running"},
    }


class SlowList:
    """A pod list that answers when told, with what the cluster held when it was asked."""

    def __init__(self) -> None:
        self.asked = asyncio.Event()
        self.answer: asyncio.Future[list[dict[str, Any]]] = (
            asyncio.get_running_loop().create_future()
        )

    async def __call__(self, ctx: str) -> tuple[list[dict[str, Any]], str]:
        self.asked.set()
        return await self.answer, "7"


class QuietWatch:
    """A watch that reports nothing until the tracker closes."""

    async def watch_pods(self, *args: Any) -> str | None:
        await asyncio.Event().wait()
        return None


async def never(*args: Any) -> Any:
    raise AssertionError("not called")


def offline_tracker(
    events: list[InstanceEvent], *, namespace: Any = never, list_pods: Any = never
) -> PodTracker:
    """A tracker whose watch reports nothing (tests feed it ``on_event`` by hand); it
    never deletes, and lists or names namespaces only with what it is given."""
    return PodTracker(
        cast(KubeConfig, SimpleNamespace(unschedulable_timeout=600.0, capacity_cooldown=300.0)),
        clock=FakeClock(),
        api=cast(Any, QuietWatch()),
        namespace=namespace,
        list_pods=list_pods,
        delete=never,
        emit=events.append,
    )


async def test_a_pod_launched_while_the_list_was_on_its_way_is_not_reported_gone() -> None:
    events: list[InstanceEvent] = []
    listing = SlowList()

    async def namespace(ctx: str) -> str:
        return "default"

    tracker = offline_tracker(events, namespace=namespace, list_pods=listing)
    try:
        tracker.launched("ctx", instance_id("ctx", "default", "svc-1"), pod("svc-1", 1))
        tracker.ensure_watch("ctx")
        await asyncio.wait_for(listing.asked.wait(), 5)
        # created while the list was on its way: the list's snapshot predates it
        tracker.launched("ctx", instance_id("ctx", "default", "svc-2"), pod("svc-2", 2))
        listing.answer.set_result([])  # svc-1 was removed by the cluster meanwhile
        await eventually(lambda: events, "the removed pod reported")
        await asyncio.sleep(0.05)  # and nothing more: the pod launched meanwhile stays
        assert [(e.kind, e.replica_id) for e in events] == [(InstanceEventKind.PREEMPTED, 1)]
    finally:
        await tracker.close()


def test_news_of_a_pod_we_deleted_after_it_went_is_stale_not_a_preemption() -> None:
    """A re-list racing the watch can report our deletion twice, or show the pod
    once more: neither may turn into a preemption or bring the pod back."""
    events: list[InstanceEvent] = []
    tracker = offline_tracker(events)
    iid = instance_id("ctx", "default", "svc-1")
    tracker.launched("ctx", iid, pod("svc-1", 1))
    tracker.deleting(iid)
    tracker.on_event("ctx", "DELETED", pod("svc-1", 1))  # the one we expected
    tracker.on_event("ctx", "DELETED", pod("svc-1", 1))  # the same news again
    tracker.on_event("ctx", "MODIFIED", pod("svc-1", 1))  # a stale list's copy
    assert events == [] and tracker.gone("svc", set()) == []
    # launched again under the same name (same token): news of it counts again
    tracker.launched("ctx", iid, pod("svc-1", 1))
    tracker.on_event("ctx", "DELETED", pod("svc-1", 1))
    assert [(e.kind, e.replica_id) for e in events] == [(InstanceEventKind.PREEMPTED, 1)]


def test_news_of_our_deletion_arriving_after_a_repeated_delete_is_stale() -> None:
    """terminate twice: the second delete finds nothing (the pod went) before the watch
    reported the first; the watch's late news must not bring it back as a preemption."""
    events: list[InstanceEvent] = []
    tracker = offline_tracker(events)
    iid = instance_id("ctx", "default", "svc-1")
    tracker.launched("ctx", iid, pod("svc-1", 1))
    tracker.deleting(iid)  # the first terminate
    tracker.forget(iid)  # the second: not found
    going = pod("svc-1", 1)
    going["metadata"]["deletionTimestamp"] = "2026-11-21T00:00:00Z"
    tracker.on_event("ctx", "MODIFIED", going)  # the watch, late: terminating
    tracker.on_event("ctx", "DELETED", going)  # and gone
    assert events == []
    assert tracker.gone("svc", set()) == []
    assert "svc-1" not in tracker._pods.get("ctx", {})
