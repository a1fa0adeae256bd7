"""The Kubernetes provider honours the API server's ``Retry-After`` on 429 and 503
(priority and fairness, an apiserver shedding load), capped so a confused server
cannot park a call for long; through the official client against the fake API
server over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from providers.kubernetes import KubernetesProvider
from providers.kubernetes_api import RETRY_AFTER_CAP
from skyctl.clock import FakeClock
from skyctl.types import InstanceState, Location, Offering
from tests.fakes.k8s_harness import (
    advance_until,
    make_request,
    make_spec,
    start_clusters,
    wait_for,
    with_clock,
    write_kubeconfig,
)
from tests.fakes.k8s_server import FakeKubernetes

A = Location("kubernetes", "ctx-a")


class RecordingClock(FakeClock):
    def __init__(self) -> None:
        super().__init__()
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await super().sleep(seconds)


@pytest.fixture
def clock() -> RecordingClock:
    return RecordingClock()


@pytest.fixture
async def clusters(clock: RecordingClock) -> AsyncIterator[dict[str, FakeKubernetes]]:
    fakes = await start_clusters(clock)
    yield fakes
    for fake in fakes.values():
        await fake.stop()


@pytest.fixture
async def provider(
    tmp_path: Path, clusters: dict[str, FakeKubernetes], clock: RecordingClock
) -> AsyncIterator[KubernetesProvider]:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", clusters)
    p = KubernetesProvider(
        {
            "kubeconfig": str(kubeconfig),
            "contexts": ["ctx-a"],
            "capacity_preset": "karpenter",
            "endpoint_mode": "pod_ip",
        },
        clock=clock,
    )
    yield p
    await p.close()


@pytest.mark.parametrize("code", [429, 503])
async def test_a_retry_after_longer_than_the_backoff_is_waited_before_retrying(
    provider: KubernetesProvider,
    clusters: dict[str, FakeKubernetes],
    clock: RecordingClock,
    code: int,
) -> None:
    clusters["ctx-a"].fail_next(code, 1, method="POST", retry_after="7")
    inst = await with_clock(
        clock, provider.launch(make_request(make_spec(), Offering(A, True, 0.35)))
    )
    assert inst.state is InstanceState.RUNNING
    assert 7.0 in clock.sleeps  # the backoff alone waits under a second


async def test_a_huge_retry_after_is_capped(
    provider: KubernetesProvider, clusters: dict[str, FakeKubernetes], clock: RecordingClock
) -> None:
    clusters["ctx-a"].fail_next(429, 1, method="POST", retry_after="3600")
    inst = await with_clock(
        clock, provider.launch(make_request(make_spec(), Offering(A, True, 0.35)))
    )
    assert inst.state is InstanceState.RUNNING
    assert RETRY_AFTER_CAP in clock.sleeps and max(clock.sleeps) == RETRY_AFTER_CAP


@pytest.mark.parametrize("header", ["soon", "Wed, 21 Oct 2015 07:28:00 GMT", "-5", "nan"])
async def test_a_retry_after_that_is_not_a_number_of_seconds_falls_back_to_the_backoff(
    provider: KubernetesProvider,
    clusters: dict[str, FakeKubernetes],
    clock: RecordingClock,
    header: str,
) -> None:
    clusters["ctx-a"].fail_next(429, 2, method="POST", retry_after=header)
    inst = await with_clock(
        clock, provider.launch(make_request(make_spec(), Offering(A, True, 0.35)))
    )
    assert inst.state is InstanceState.RUNNING
    assert clock.sleeps and max(clock.sleeps) < RETRY_AFTER_CAP


async def test_the_pod_watch_waits_the_retry_after_before_watching_again(
    provider: KubernetesProvider, clusters: dict[str, FakeKubernetes], clock: RecordingClock
) -> None:
    clusters["ctx-a"].fail_next(429, 1, method="GET", retry_after="25", watch=True)
    await provider.list_instances("svc")  # starts the pod watch, which is refused once
    await wait_for(lambda: 25.0 in clock.sleeps, "the watch to wait the Retry-After")
    await advance_until(clock, lambda: clusters["ctx-a"].watch_count > 0, "the watch again")
