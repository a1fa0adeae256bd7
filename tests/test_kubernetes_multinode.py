"""Multi-node replicas on Kubernetes (``num_nodes: N``), through the official client over
HTTP against the fake API server.

One replica is N pods in one context, labelled with the replica, their rank and
the head pod's name; once every pod has an IP the provider writes the node list
(head first) into each pod's annotation, which the pod reads through a downward
API volume before it runs; the controller sees one instance (the head's id and
endpoint); the loss of any pod is the replica's (pushed once, under the head's
id); terminating the replica deletes every pod; a pod refused at creation fails
the launch and leaves no pod; a fresh provider groups the same pods again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from providers.base import LaunchRequest
from providers.kubernetes import KubernetesProvider
from providers.kubernetes_build import split_instance_id
from skyctl.clock import FakeClock
from skyctl.errors import ConfigError, QuotaError
from skyctl.types import InstanceEvent, InstanceEventKind, InstanceState, Location, Offering
from tests.fakes.k8s_harness import make_request, make_spec, wait_for
from tests.fakes.k8s_server import FakeKubernetes
from tests.helpers.waiting import step_until
from tests.test_kubernetes_provider import _config, clock, clusters, events, kubeconfig

__all__ = ["clock", "clusters", "events", "kubeconfig"]

A = Location("kubernetes", "ctx-a")
IPS = "skyctl.dev/node-ips"


@pytest.fixture
async def provider(kubeconfig: Path, clock: FakeClock) -> AsyncIterator[KubernetesProvider]:
    p = KubernetesProvider(_config(kubeconfig), clock=clock)
    yield p
    await p.close()


def multi(n: int, replica: int = 1, **spec_kw: Any) -> LaunchRequest:
    spec_kw.setdefault("setup", "echo setup")
    spec = dataclasses.replace(make_spec(**spec_kw), num_nodes=n)
    return make_request(spec, Offering(A, True, 0.35), replica)


def pods(fake: FakeKubernetes, service: str = "svc") -> list[dict[str, Any]]:
    """The service's pods, by rank."""
    found = fake.pods(selector=f"skyctl-service={service}")
    return sorted(found, key=lambda p: int(p["metadata"]["labels"].get("skyctl-node-rank", "0")))


def run_command(pod: dict[str, Any], ips_dir: Path) -> subprocess.CompletedProcess[str]:
    """The pod's command as the container runs it, with its downward volume at ``ips_dir``
    and ``setup``/``run`` replaced by a print of the node variables."""
    container = pod["spec"]["containers"][0]
    script = container["command"][2].replace("/etc/skyctl", str(ips_dir))
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    show = 'printf "%s|%s|%s" "$SKYPILOT_NODE_RANK" "$SKYPILOT_NUM_NODES" "$SKYPILOT_NODE_IPS"'
    return subprocess.run(
        ["bash", "-c", script, "skyctl", "true", show],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


async def test_n_nodes_are_n_pods_labelled_with_rank_that_read_the_node_list(
    provider: KubernetesProvider, clusters: dict[str, FakeKubernetes], tmp_path: Path
) -> None:
    req = multi(3)
    inst = await provider.launch(req)
    found = pods(clusters["ctx-a"])
    assert len(found) == 3
    head = found[0]["metadata"]["name"]
    assert split_instance_id(inst.instance_id)[2] == head  # the replica is its head
    assert inst.endpoint == f"http://{found[0]['status']['podIP']}:8080"
    ips = " ".join(p["status"]["podIP"] for p in found)
    for rank, pod in enumerate(found):
        meta = pod["metadata"]
        assert meta["name"] == (head if rank == 0 else f"{head}-n{rank}")
        labels = meta["labels"]
        assert (labels["skyctl-replica"], labels["skyctl-nodes"]) == ("1", "3")
        assert (labels["skyctl-node-rank"], labels["skyctl-head"]) == (str(rank), head)
        assert meta["annotations"][IPS] == ips  # the head's address first
        volume = pod["spec"]["volumes"][0]["downwardAPI"]["items"][0]
        assert volume["fieldRef"]["fieldPath"] == f"metadata.annotations['{IPS}']"
        ips_dir = tmp_path / str(rank)
        ips_dir.mkdir()
        (ips_dir / volume["path"]).write_text(ips)  # what kubelet writes
        done = await asyncio.to_thread(run_command, pod, ips_dir)
        assert done.stdout == f"{rank}|3|" + ips.replace(" ", "\n"), done.stderr
    (listed,) = await provider.list_instances("svc")  # one replica, not three
    assert listed.instance_id == inst.instance_id and listed.state is InstanceState.RUNNING

    again = await provider.launch(req)  # a retried launch: the same replica
    assert again.instance_id == inst.instance_id and len(pods(clusters["ctx-a"])) == 3


async def test_pods_wait_for_ips_then_get_the_node_list_and_run(
    kubeconfig: Path, clock: FakeClock, clusters: dict[str, FakeKubernetes], tmp_path: Path
) -> None:
    fake = clusters["ctx-a"]
    fake.auto_run = False  # pods stay Pending without an IP until told
    p = KubernetesProvider(_config(kubeconfig), clock=clock)
    try:
        inst = await p.launch(multi(2))
        assert inst.state is InstanceState.PENDING
        assert all(IPS not in (x["metadata"].get("annotations") or {}) for x in pods(fake))
        head, worker = pods(fake)
        fake.run(head["metadata"]["namespace"], head["metadata"]["name"])
        (listed,) = await p.list_instances("svc")
        assert listed.state is InstanceState.PENDING  # the worker has no IP yet
        fake.run(worker["metadata"]["namespace"], worker["metadata"]["name"])
        (listed,) = await p.list_instances("svc")  # this listing writes the node list
        assert listed.state is InstanceState.RUNNING and listed.endpoint
        ips = " ".join(x["status"]["podIP"] for x in pods(fake))
        assert [x["metadata"]["annotations"][IPS] for x in pods(fake)] == [ips, ips]
        # a rank-1 pod started before the list: it waits for the file, then runs
        ips_dir = tmp_path / "w"
        ips_dir.mkdir()
        proc = asyncio.ensure_future(asyncio.to_thread(run_command, pods(fake)[1], ips_dir))
        await asyncio.sleep(0.3)
        assert not proc.done()
        (ips_dir / "node-ips").write_text(ips)
        done = await proc
        assert done.stdout.endswith(f"1|2|{ips.replace(' ', chr(10))}"), done.stderr
        assert "waiting for this replica's node list" in done.stdout
    finally:
        await p.close()


async def test_a_node_list_the_role_forbids_writing_keeps_the_replica_pending_saying_why(
    provider: KubernetesProvider, clusters: dict[str, FakeKubernetes]
) -> None:
    clusters["ctx-a"].forbid("patch", "pods")  # a Role from before multi-node replicas
    inst = await provider.launch(multi(2))
    assert inst.state is InstanceState.PENDING
    (listed,) = await provider.list_instances("svc")  # the listing itself still works
    assert listed.state is InstanceState.PENDING and listed.endpoint is None
    assert "cannot write the replica's node list" in listed.detail
    assert "permission denied (403)" in listed.detail


async def test_offerings_price_a_replica_as_its_n_pods(provider: KubernetesProvider) -> None:
    one = await provider.offerings(make_spec())
    four = await provider.offerings(dataclasses.replace(make_spec(), num_nodes=4))
    assert one and [o.price for o in four] == pytest.approx([4 * o.price for o in one])


@pytest.mark.parametrize("how", ["evict", "delete"])
async def test_a_worker_taken_by_the_cluster_preempts_the_replica_once_and_terminate_ends_all(
    provider: KubernetesProvider,
    clusters: dict[str, FakeKubernetes],
    events: list[InstanceEvent],
    how: str,
) -> None:
    fake = clusters["ctx-a"]
    inst = await provider.launch(multi(3))
    await wait_for(lambda: fake.watch_count > 0, "the provider's watch")
    worker = pods(fake)[2]["metadata"]
    if how == "evict":
        fake.evict(worker["namespace"], worker["name"])
    else:
        fake.delete("pods", worker["name"], worker["namespace"])
    await wait_for(lambda: bool(events), "the preemption event")
    assert [(e.kind, e.instance_id) for e in events] == [
        (InstanceEventKind.PREEMPTED, inst.instance_id)
    ]
    (listed,) = await provider.list_instances("svc")
    assert listed.instance_id == inst.instance_id
    assert listed.state is InstanceState.PREEMPTED and "node 2 of 3" in listed.detail
    await provider.terminate(inst.instance_id)
    assert pods(fake) == []  # nothing leaked
    assert await provider.list_instances("svc") == []
    assert len(events) == 1  # our own deletions are no preemption


async def test_a_worker_that_exits_fails_the_replica(
    provider: KubernetesProvider, clusters: dict[str, FakeKubernetes]
) -> None:
    fake = clusters["ctx-a"]
    inst = await provider.launch(multi(2))
    worker = pods(fake)[1]["metadata"]
    fake.exit(worker["namespace"], worker["name"], 3)
    (listed,) = await provider.list_instances("svc")
    assert listed.instance_id == inst.instance_id
    assert listed.state is InstanceState.FAILED and "node 1 of 2 ended" in listed.detail


async def test_a_pod_refused_at_creation_fails_the_launch_and_leaves_no_pod(
    provider: KubernetesProvider, clusters: dict[str, FakeKubernetes]
) -> None:
    from tests.fakes.k8s_objects import ApiError

    fake = clusters["ctx-a"]
    create = fake.create

    def refuse_node_2(plural: str, body: Any, namespace: str = "") -> dict[str, Any]:
        if body["metadata"]["name"].endswith("-n2"):
            raise ApiError(403, 'pods "x" is forbidden: exceeded quota: q, requested: pods=1')
        return create(plural, body, namespace)

    fake.create = refuse_node_2  # type: ignore[method-assign]
    with pytest.raises(QuotaError):
        await provider.launch(multi(3))
    assert pods(fake) == []
    assert await provider.list_instances("svc") == []


async def test_a_restarted_controller_groups_the_pods_and_ends_the_replica(
    kubeconfig: Path, clock: FakeClock, clusters: dict[str, FakeKubernetes]
) -> None:
    first = KubernetesProvider(_config(kubeconfig), clock=clock)
    inst = await first.launch(multi(2))
    await first.close()
    fresh = KubernetesProvider(_config(kubeconfig), clock=clock)  # no memory of the launch
    try:
        (listed,) = await fresh.list_instances("svc")
        assert listed.instance_id == inst.instance_id and listed.state is InstanceState.RUNNING
        assert listed.endpoint == inst.endpoint and listed.replica_id == 1
        await fresh.terminate(inst.instance_id)
        assert pods(clusters["ctx-a"]) == []
    finally:
        await fresh.close()


async def test_a_multi_node_replica_needs_run(provider: KubernetesProvider) -> None:
    with pytest.raises(ConfigError, match="run: a multi-node kubernetes replica needs"):
        await provider.launch(multi(2, run=None, setup=None))


async def test_only_the_head_gets_a_service_and_it_goes_with_the_replica(
    kubeconfig: Path, clock: FakeClock, clusters: dict[str, FakeKubernetes]
) -> None:
    p = KubernetesProvider(_config(kubeconfig, endpoint_mode="service"), clock=clock)
    try:
        inst = await p.launch(multi(2))
        fake = clusters["ctx-a"]
        names = [s["metadata"]["name"] for s in fake.services(selector="skyctl-service=svc")]
        assert names == [split_instance_id(inst.instance_id)[2]]
        await p.terminate(inst.instance_id)
        assert pods(fake) == [] and fake.services(selector="skyctl-service=svc") == []
    finally:
        await p.close()


# ------------------------------------------------- the controller, in process

CONTROLLER_SPEC = """\
name: web
num_nodes: 2
resources:
  use_spot: false
  infra: k8s/ctx-a
service:
  ports: {port}
  readiness_probe: {{path: /, initial_delay_seconds: 60, period_seconds: 1}}
  replicas: 1
run: serve
"""


async def test_a_controller_serves_from_the_head_and_replaces_a_replica_whose_worker_is_lost(
    tmp_path: Path, clock: FakeClock
) -> None:
    import socket

    import aiohttp

    from providers.registry import ProviderSet
    from skyctl.controller import Controller
    from skyctl.lifecycle import ReplicaStatus as S
    from skyctl.store import Store
    from tests.fakes.k8s_harness import start_clusters, write_kubeconfig

    fakes = await start_clusters(clock)
    fake = fakes["ctx-a"]
    fake.serve_pods = True  # pods answer HTTP (their name) on their loopback pod IPs
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    provider = KubernetesProvider(_config(write_kubeconfig(tmp_path / "kc", fakes)), clock=clock)
    store = Store(tmp_path / "state.db")
    providers = ProviderSet(config={}, clock=clock, local_state=tmp_path / "local")
    providers.add(provider)
    controller = Controller(store, providers, clock, tick_seconds=1.0, gc_clouds=("kubernetes",))
    await controller.start()
    task = asyncio.create_task(controller.run())

    def ready() -> list[Any]:
        return [r for r in store.list_replicas("web") if r.is_live and r.status is S.READY]

    async def until(cond: Any, seconds: float = 300) -> None:
        await step_until(clock, cond, seconds)

    async def get() -> str:
        svc = store.get_service("web")
        assert svc is not None and svc.router_port
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{svc.router_port}/") as r,
        ):
            assert r.status == 200
            return await r.text()

    try:
        await controller.create_service(CONTROLLER_SPEC.format(port=port), None)
        await until(lambda: len(ready()) == 1)
        (first,) = ready()
        head, worker = pods(fake, "web")
        assert split_instance_id(first.instance_id or "")[2] == head["metadata"]["name"]
        assert head["metadata"]["name"] in await get()  # the router reaches the head only

        fake.evict(worker["metadata"]["namespace"], worker["metadata"]["name"])
        await until(lambda: bool(ready()) and ready()[0].replica_id != first.replica_id)
        assert len(pods(fake, "web")) == 2  # the new replica's two pods; the old head went too
        assert head["metadata"]["name"] not in {p["metadata"]["name"] for p in pods(fake, "web")}
        assert (await get()).startswith(split_instance_id(ready()[0].instance_id or "")[2])

        await controller.delete_service("web")
        await until(lambda: not fake.pods(selector="skyctl-service"))
    finally:
        controller.request_stop()
        await task
        await controller.stop(0)
        await providers.close()
        store.close()
        for f in fakes.values():
            await f.stop()
