"""Drain on scale-down (issue 14): a replica the autoscaler or a smaller ``replicas``
removes keeps serving its in-flight streams up to ``drain_timeout_seconds``.

The rolling and blue-green updates are specified in tests/test_router_drain.py;
this is the third path the issue names: a ``service:``-only change that lowers
the replica count (kept replicas, one leaves), on the controller's fake clock.
"""

from __future__ import annotations

import asyncio

from skyctl.lifecycle import ReplicaStatus
from tests.test_controller import FIXED, Harness
from tests.test_router_drain import stream


async def test_streams_on_a_replica_scaled_away_complete_before_it_goes(h: Harness) -> None:
    spec = FIXED.format(name="web", replicas=2)
    await h.controller.create_service(spec, None)
    await h.until(lambda: h.ready("web") == 2)
    router = h.controller.runtimes["web"].router
    readers = [asyncio.create_task(stream(h, 90)) for _ in range(2)]
    # least_load puts one stream on each replica: whichever leaves has one in flight
    await h.until(
        lambda: sorted(s["in_flight"] for s in router.replica_stats().values()) == [1, 1],
        seconds=5,
    )
    await h.controller.update_service("web", spec.replace("replicas: 2", "replicas: 1"), None)
    await h.until(lambda: all(r.done() for r in readers), seconds=900)
    for reader in readers:
        got, end = reader.result()
        assert end == "complete" and got == [str(i) for i in range(90)]
    await h.until(lambda: len(h.replicas("web")) == 1, seconds=60)
    assert [r.status for r in h.replicas("web")] == [ReplicaStatus.READY]
