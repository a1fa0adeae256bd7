"""Soak: a service updated and churned for a long time keeps a bounded history.

Stored versions: the current one, those a replica row still has, and the
``KEEP_VERSIONS`` latest (each `serve update` added one for good before). The
controller's caches of parsed specs: the current and live versions only. Ended
replica rows: an hour (``KEEP_TERMINATED_SECONDS``). All on a fake clock."""

from __future__ import annotations

from skyctl.controller.retention import (
    KEEP_TERMINATED_SECONDS,
    KEEP_VERSIONS,
    PURGE_EVERY_SECONDS,
)
from skyctl.lifecycle import ReplicaStatus
from tests.test_controller import FIXED, Harness


def spec(generation: int, *, relaunch: bool) -> str:
    text = FIXED.format(name="web", replicas=2)
    if relaunch:  # a changed run command replaces the replicas (a rolling update)
        return text.replace("run: serve", f"run: serve --generation {generation}")
    # a changed readiness probe only: the replicas move to the new version in place
    return text.replace("failure_threshold: 2", f"failure_threshold: {2 + generation}")


async def test_many_updates_keep_a_bounded_number_of_versions_and_cached_specs(
    h: Harness,
) -> None:
    await h.controller.create_service(FIXED.format(name="web", replicas=2), None)
    await h.until(lambda: h.ready("web") == 2)
    updates = KEEP_VERSIONS + 5
    for g in range(1, updates + 1):
        updated = await h.controller.update_service("web", spec(g, relaunch=g % 5 == 0), None)
        version = updated["version"]
        await h.until(
            lambda v=version: (
                len(rs := h.replicas("web")) == 2
                and all(r.version == v and r.status is ReplicaStatus.READY for r in rs)
            )
        )
    await h.clock.advance(KEEP_TERMINATED_SECONDS)
    svc = h.store.get_service("web")
    assert svc is not None and svc.current_version == updates + 1
    await h.until(
        lambda: len(h.store.list_versions("web")) <= KEEP_VERSIONS,
        seconds=2 * PURGE_EVERY_SECONDS,
    )
    kept = [v.version for v in h.store.list_versions("web")]
    assert kept == list(range(updates + 2 - KEEP_VERSIONS, updates + 2))
    rt = h.controller.runtimes["web"]
    assert set(rt.specs) <= {svc.current_version} and set(rt.versions) <= {svc.current_version}
    # the ended replicas of the rolling updates are gone from the rows too (an hour on)
    assert {r.status for r in h.store.list_replicas("web", include_terminated=True)} == {
        ReplicaStatus.READY
    }
    assert await h.get("web") == 200


async def test_a_version_a_replica_row_still_has_is_kept_however_old(h: Harness) -> None:
    await h.controller.create_service(FIXED.format(name="web", replicas=1), None)
    await h.until(lambda: h.ready("web") == 1)
    first = h.replicas("web")[0]
    h.store.purge_versions("web", below=2)  # version 1 has a replica: stays
    for g in range(1, KEEP_VERSIONS + 3):
        h.store.add_version("web", spec(g, relaunch=True), now=h.clock.now())
    assert h.store.purge_versions("web", below=KEEP_VERSIONS) == KEEP_VERSIONS - 2
    assert [v.version for v in h.store.list_versions("web")][:2] == [1, KEEP_VERSIONS]
    assert h.store.get_replica("web", first.replica_id) is not None
    assert h.store.purge_versions("web", below=KEEP_VERSIONS) == 0  # nothing more: no write
