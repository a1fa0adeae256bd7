"""Test helpers around :mod:`tests.fakes.k8s_server`: clusters with spot and
on-demand nodes, a kubeconfig naming them as contexts, specs and launch requests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from providers.base import LaunchRequest
from skyctl.clock import FakeClock
from skyctl.spec import ResourceCandidate, Resources, ServiceSpec
from skyctl.types import Offering
from tests.fakes.k8s_server import FakeKubernetes

T = TypeVar("T")

KARPENTER_SPOT = {"karpenter.sh/capacity-type": "spot"}
KARPENTER_ONDEMAND = {"karpenter.sh/capacity-type": "on-demand"}
#: context -> the namespace its kubeconfig entry names (None: "default")
CONTEXT_NAMESPACES: dict[str, str | None] = {"ctx-a": "skyctl", "ctx-b": None}


async def start_clusters(
    clock: FakeClock, contexts: Mapping[str, str | None] = CONTEXT_NAMESPACES
) -> dict[str, FakeKubernetes]:
    """One started fake cluster per context, each with one spot and one on-demand node."""
    out: dict[str, FakeKubernetes] = {}
    for i, (ctx, ns) in enumerate(contexts.items(), start=1):
        fake = FakeKubernetes(
            name=ctx,
            token=f"token-{ctx}",
            namespaces=("default", *([ns] if ns else [])),
            now=clock.now,
            ip_block=i,
        )
        await fake.start()
        fake.add_node(f"{ctx}-spot-1", KARPENTER_SPOT)
        fake.add_node(f"{ctx}-od-1", KARPENTER_ONDEMAND)
        out[ctx] = fake
    return out


def write_kubeconfig(
    path: Path,
    clusters: Mapping[str, FakeKubernetes],
    namespaces: Mapping[str, str | None] = CONTEXT_NAMESPACES,
) -> Path:
    entries = [fake.kubeconfig_entry(ctx, namespaces.get(ctx)) for ctx, fake in clusters.items()]
    return FakeKubernetes.write_kubeconfig(path, entries, next(iter(clusters)))


def namespace_of(ctx: str) -> str:
    return CONTEXT_NAMESPACES.get(ctx) or "default"


def make_spec(
    name: str = "svc",
    *,
    spot: bool = True,
    candidates: tuple[ResourceCandidate, ...] = (),
    setup: str | None = None,
    run: str | None = "python -m http.server $PORT",
    **cand: Any,
) -> ServiceSpec:
    if not candidates:
        cand.setdefault("cloud", "kubernetes")
        candidates = (ResourceCandidate(use_spot=spot, **cand),)
    return ServiceSpec(
        name=name,
        resources=Resources(candidates=candidates, use_spot=spot),
        setup=setup,
        run=run,
    )


def make_request(
    spec: ServiceSpec,
    offering: Offering,
    replica_id: int = 1,
    token: str | None = None,
    *,
    port: int = 8080,
    envs: Mapping[str, str] | None = None,
) -> LaunchRequest:
    return LaunchRequest(
        service=spec.name or "svc",
        replica_id=replica_id,
        version=1,
        offering=offering,
        client_token=token or f"token-{replica_id}",
        spec=spec,
        port=port,
        envs=dict(envs or {}),
    )


async def wait_for(cond: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll ``cond`` (real time, only as a cap against hanging; never a speed assertion)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def advance_until(
    clock: FakeClock, cond: Callable[[], bool], what: str, step: float = 5.0, timeout: float = 10.0
) -> None:
    """Move the fake clock in steps until ``cond`` holds (real time only caps a hang)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await clock.advance(step)
        await asyncio.sleep(0.01)


async def with_clock(clock: FakeClock, work: Awaitable[T], step: float = 1.0) -> T:
    """Run ``work`` while moving the fake clock, so its backoff sleeps end."""
    task = asyncio.ensure_future(work)
    while not task.done():
        await clock.advance(step)
        await asyncio.sleep(0.005)
    return task.result()
