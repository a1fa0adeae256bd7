"""The Kubernetes provider through the official client, over HTTP, against two fake
API servers (tests/fakes/k8s_server.py) as two kubeconfig contexts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from providers.kubernetes import KubernetesProvider
from providers.kubernetes_build import split_instance_id
from skyctl.clock import FakeClock
from skyctl.errors import CapacityError, ConfigError, QuotaError, TransientError
from skyctl.types import InstanceEvent, InstanceEventKind, InstanceState, Location, Offering
from tests.fakes.k8s_harness import (
    advance_until,
    make_request,
    make_spec,
    namespace_of,
    start_clusters,
    wait_for,
    with_clock,
    write_kubeconfig,
)
from tests.fakes.k8s_server import FakeKubernetes

ROOT = Path(__file__).resolve().parent.parent
A, B = Location("kubernetes", "ctx-a"), Location("kubernetes", "ctx-b")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def clusters(clock: FakeClock) -> AsyncIterator[dict[str, FakeKubernetes]]:
    fakes = await start_clusters(clock)
    yield fakes
    for fake in fakes.values():
        await fake.stop()


@pytest.fixture
def kubeconfig(tmp_path: Path, clusters: dict[str, FakeKubernetes]) -> Path:
    return write_kubeconfig(tmp_path / "kubeconfig", clusters)


def _config(kubeconfig: Path, **extra: Any) -> dict[str, Any]:
    return {
        "kubeconfig": str(kubeconfig),
        "contexts": ["ctx-a", "ctx-b"],
        "capacity_preset": "karpenter",
        "endpoint_mode": "pod_ip",
        "unschedulable_timeout_seconds": 60,
        **extra,
    }


@pytest.fixture
async def provider(kubeconfig: Path, clock: FakeClock) -> AsyncIterator[KubernetesProvider]:
    p = KubernetesProvider(_config(kubeconfig), clock=clock)
    yield p
    await p.close()


@pytest.fixture
def events(provider: KubernetesProvider) -> list[InstanceEvent]:
    got: list[InstanceEvent] = []
    provider.set_event_sink(got.append)
    return got


def _offer(loc: Location, spot: bool = True, price: float | None = None) -> Offering:
    return Offering(loc, spot, price if price is not None else (0.35 if spot else 1.0))


def _pod(fake: FakeKubernetes, iid: str) -> dict[str, Any]:
    _, ns, name = split_instance_id(iid)
    return fake.get("pods", name, ns)


# ------------------------------------------------------------------ offerings


async def test_offerings_are_spot_and_ondemand_per_context_at_configured_prices(
    kubeconfig: Path, clock: FakeClock
) -> None:
    cfg = _config(kubeconfig, contexts=["ctx-a", {"name": "ctx-b", "spot_price": 0.2}])
    p = KubernetesProvider(cfg, clock=clock)
    offers = await p.offerings(make_spec())
    assert {(o.location, o.spot, o.price) for o in offers} == {
        (A, True, 0.35),
        (A, False, 1.0),
        (B, True, 0.2),
        (B, False, 1.0),
    }
    assert offers[0].location == B and offers[0].spot  # cheapest first
    gpu = await p.offerings(make_spec(accelerators={"L4": 2}, region="ctx-a"))
    assert {(o.location, o.spot, o.price, o.accelerators) for o in gpu} == {
        (A, True, 0.7, "L4:2"),
        (A, False, 2.0, "L4:2"),
    }
    await p.close()


@pytest.mark.parametrize(
    ("extra", "spec_kwargs", "expected"),
    [
        ({}, {"spot": False}, {(A, False), (B, False)}),
        ({"capacity_preset": "none"}, {}, {(A, False), (B, False)}),
        ({}, {"region": "ctx-b"}, {(B, True), (B, False)}),
        ({}, {"region": "no-such-context"}, set()),
        ({}, {"cloud": "aws"}, set()),
    ],
    ids=["ondemand-spec", "preset-none", "one-context", "unknown-context", "other-cloud"],
)
async def test_offerings_follow_the_spec_and_the_preset(
    kubeconfig: Path,
    clock: FakeClock,
    extra: dict[str, Any],
    spec_kwargs: dict[str, Any],
    expected: set[tuple[Location, bool]],
) -> None:
    p = KubernetesProvider(_config(kubeconfig, **extra), clock=clock)
    offers = await p.offerings(make_spec(**spec_kwargs))
    assert {(o.location, o.spot) for o in offers} == expected
    await p.close()


# --------------------------------------------------------------------- launch


async def test_spot_launch_creates_a_labelled_pod_on_a_spot_node(
    provider: KubernetesProvider, clusters: dict[str, FakeKubernetes]
) -> None:
    spec = make_spec(
        setup="pip install x; echo '$HOME'",
        run="serve --port $PORT",
        cpus="2+",
        memory="8",
        accelerators={"L4": 1},
        image_id="docker:me/img:1",
    )
    clusters["ctx-a"].add_node(
        "gpu-spot",
        {"karpenter.sh/capacity-type": "spot", "karpenter.k8s.aws/instance-gpu-name": "l4"},
        gpus=1,
    )
    req = make_request(
        spec,
        Offering(A, True, 0.35, "", "L4:1"),
        7,
        port=9000,
        envs={"MODEL": "m; rm -rf /", "HF_TOKEN": "s3cret"},
    )
    inst = await provider.launch(req)
    assert (inst.location, inst.spot, inst.replica_id, inst.service) == (A, True, 7, "svc")
    pod = _pod(clusters["ctx-a"], inst.instance_id)
    assert pod["metadata"]["namespace"] == "skyctl"  # the kubeconfig context's namespace
    assert pod["metadata"]["labels"]["skyctl-service"] == "svc"
    assert pod["metadata"]["labels"]["skyctl-replica"] == "7"
    assert pod["metadata"]["labels"]["skyctl-version"] == "1"
    assert pod["spec"]["nodeName"] == "gpu-spot"
    assert pod["spec"]["nodeSelector"] == {
        "karpenter.sh/capacity-type": "spot",
        "karpenter.k8s.aws/instance-gpu-name": "l4",
    }
    container = pod["spec"]["containers"][0]
    assert container["image"] == "me/img:1"
    assert container["command"][-2:] == ["pip install x; echo '$HOME'", "serve --port $PORT"]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    skypilot = {k: env.pop(k) for k in list(env) if k.startswith("SKYPILOT_")}
    assert env == {
        "PORT": "9000",
        "SKYCTL_SERVICE": "svc",
        "SKYCTL_REPLICA_ID": "7",
        "SKYCTL_VERSION": "1",
        "MODEL": "m; rm -rf /",
        "HF_TOKEN": "s3cret",
        "PYTHONUNBUFFERED": "1",
    }
    assert skypilot["SKYPILOT_NUM_GPUS_PER_NODE"] == "1"  # from the offering, L4:1
    assert skypilot["SKYPILOT_NODE_RANK"] == "0" and skypilot["SKYPILOT_NUM_NODES"] == "1"
    assert skypilot["SKYPILOT_SERVE_REPLICA_ID"] == "7"
    assert skypilot["SKYPILOT_SERVICE_NAME"] == "svc"
    assert skypilot["SKYPILOT_NODE_IPS"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert skypilot["SKYPILOT_SETUP_NODE_IPS"] == skypilot["SKYPILOT_NODE_IPS"]
    assert not any("rm -rf" in part for part in container["command"])
    assert container["resources"] == {
        "requests": {"cpu": "2", "memory": "8Gi", "nvidia.com/gpu": "1"},
        "limits": {"nvidia.com/gpu": "1"},
    }
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert inst.state is InstanceState.RUNNING and inst.endpoint == (
        f"http://{pod['status']['podIP']}:9000"
    )


async def test_launch_with_the_same_token_yields_one_pod(
    provider: KubernetesProvider, clusters: dict[str, FakeKubernetes]
) -> None:
    spec = make_spec()
    first = await provider.launch(make_request(spec, _offer(B), 1, "tok"))
    again = await provider.launch(make_request(spec, _offer(B), 1, "tok"))
    assert first.instance_id == again.instance_id
    assert len(clusters["ctx-b"].pods(selector="skyctl-service=svc")) == 1


@pytest.mark.parametrize(
    ("preset", "spot_labels", "taints", "ondemand_labels"),
    [
        (
            "karpenter",
            {"karpenter.sh/capacity-type": "spot"},
            [],
            {"karpenter.sh/capacity-type": "on-demand"},
        ),
        (
            "gke",
            {"cloud.google.com/gke-spot": "true"},
            [{"key": "cloud.google.com/gke-spot", "value": "true", "effect": "NoSchedule"}],
            {},
        ),
        (
            "aks",
            {"kubernetes.azure.com/scalesetpriority": "spot"},
            [
                {
                    "key": "kubernetes.azure.com/scalesetpriority",
                    "value": "spot",
                    "effect": "NoSchedule",
                }
            ],
            {},
        ),
    ],
)
async def test_presets_put_spot_pods_on_spot_nodes_and_ondemand_pods_elsewhere(
    tmp_path: Path,
    clock: FakeClock,
    preset: str,
    spot_labels: dict[str, str],
    taints: list[dict[str, str]],
    ondemand_labels: dict[str, str],
) -> None:
    fake = FakeKubernetes(token="t", now=clock.now)
    await fake.start()
    try:
        fake.add_node("spot", spot_labels, taints=taints)
        fake.add_node("ondemand", ondemand_labels)
        kc = FakeKubernetes.write_kubeconfig(tmp_path / "kc", [fake.kubeconfig_entry("c")], "c")
        p = KubernetesProvider(
            {"kubeconfig": str(kc), "capacity_preset": preset, "endpoint_mode": "pod_ip"},
            clock=clock,
        )
        loc = Location("kubernetes", "c")
        spot = await p.launch(make_request(make_spec(), _offer(loc, True), 1))
        ondemand = await p.launch(make_request(make_spec(), _offer(loc, False), 2))
        assert _pod(fake, spot.instance_id)["spec"]["nodeName"] == "spot"
        assert _pod(fake, ondemand.instance_id)["spec"]["nodeName"] == "ondemand"
        await p.close()
    finally:
        await fake.stop()


@pytest.mark.parametrize(
    ("spec_kwargs", "envs", "message"),
    [
        ({"image_id": "ami-123"}, {}, "docker:IMAGE"),
        ({"run": None, "setup": "pip install x"}, {}, "needs `run`"),
        ({}, {"PORT": "1"}, "envs.PORT: reserved"),
        ({}, {"BAD-NAME": "1"}, "envs.BAD-NAME"),
    ],
)
async def test_unlaunchable_specs_are_one_line_config_errors(
    provider: KubernetesProvider, spec_kwargs: dict[str, Any], envs: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        await provider.launch(make_request(make_spec(**spec_kwargs), _offer(A), envs=envs))


async def test_without_run_the_image_command_is_kept(
    provider: KubernetesProvider, clusters: dict[str, FakeKubernetes]
) -> None:
    inst = await provider.launch(make_request(make_spec(run=None), _offer(A)))
    assert "command" not in _pod(clusters["ctx-a"], inst.instance_id)["spec"]["containers"][0]


# -------------------------------------------------------- list and terminate


async def test_list_instances_finds_pods_by_label_after_a_restart(
    provider: KubernetesProvider, kubeconfig: Path, clock: FakeClock
) -> None:
    spec, other = make_spec(), make_spec("other")
    a = await provider.launch(make_request(spec, _offer(A), 1))
    b = await provider.launch(make_request(spec, _offer(B, False), 2))
    await provider.launch(make_request(other, _offer(A), 1))
    fresh = KubernetesProvider(_config(kubeconfig), clock=clock)  # no memory of the launches
    listed = {i.instance_id: i for i in await fresh.list_instances("svc")}
    assert set(listed) == {a.instance_id, b.instance_id}
    assert listed[b.instance_id].spot is False and listed[b.instance_id].location == B
    assert all(i.state is InstanceState.RUNNING and i.endpoint for i in listed.values())
    assert await fresh.list_services() == ["other", "svc"]
    await fresh.close()


async def test_terminate_deletes_the_pod_and_not_found_counts_as_done(
    provider: KubernetesProvider, clusters: dict[str, FakeKubernetes], events: list[InstanceEvent]
) -> None:
    inst = await provider.launch(make_request(make_spec(), _offer(A)))
    await provider.terminate(inst.instance_id)
    assert clusters["ctx-a"].pods(selector="skyctl-service") == []
    await provider.terminate(inst.instance_id)  # already gone: no error
    await provider.terminate("ctx-a/skyctl/never-existed")
    assert await provider.list_instances("svc") == []
    assert events == []  # our own deletion is no preemption


# ----------------------------------------------------------------- preemption


@pytest.mark.parametrize("how", ["evict", "remove_node", "delete"])
async def test_a_pod_taken_by_the_cluster_is_pushed_once_and_listed_preempted(
    provider: KubernetesProvider,
    clusters: dict[str, FakeKubernetes],
    events: list[InstanceEvent],
    how: str,
) -> None:
    fake = clusters["ctx-a"]
    inst = await provider.launch(make_request(make_spec(), _offer(A), 3))
    await wait_for(lambda: fake.watch_count > 0, "the provider's watch")
    _, ns, name = split_instance_id(inst.instance_id)
    if how == "evict":
        fake.evict(ns, name)
    elif how == "remove_node":
        fake.remove_node(_pod(fake, inst.instance_id)["spec"]["nodeName"])
    else:
        fake.delete("pods", name, ns)
    await wait_for(lambda: bool(events), "the preemption event")
    await wait_for(lambda: fake.watch_count > 0, "the watch to keep going")
    assert [(e.kind, e.replica_id, e.location) for e in events] == [
        (InstanceEventKind.PREEMPTED, 3, A)
    ]
    listed = await provider.list_instances("svc")
    assert [(i.instance_id, i.state) for i in listed] == [
        (inst.instance_id, InstanceState.PREEMPTED)
    ]
    await provider.terminate(inst.instance_id)  # the controller's cleanup forgets it
    assert await provider.list_instances("svc") == []


async def test_a_container_that_exits_is_failed_and_pushed_as_exited(
    provider: KubernetesProvider, clusters: dict[str, FakeKubernetes], events: list[InstanceEvent]
) -> None:
    inst = await provider.launch(make_request(make_spec(), _offer(B)))
    await wait_for(lambda: clusters["ctx-b"].watch_count > 0, "the provider's watch")
    clusters["ctx-b"].exit(namespace_of("ctx-b"), split_instance_id(inst.instance_id)[2], 3)
    await wait_for(lambda: bool(events), "the exit event")
    assert events[0].kind is InstanceEventKind.EXITED
    [listed] = await provider.list_instances("svc")
    assert listed.state is InstanceState.FAILED and "exited with code 3" in listed.detail


async def test_a_deletion_missed_while_the_watch_was_down_is_found_on_the_relist(
    provider: KubernetesProvider, clusters: dict[str, FakeKubernetes], events: list[InstanceEvent]
) -> None:
    fake = clusters["ctx-a"]
    inst = await provider.launch(make_request(make_spec(), _offer(A)))
    await wait_for(lambda: fake.watch_count > 0, "the provider's watch")
    _, ns, name = split_instance_id(inst.instance_id)
    fake.compact()  # the provider's resourceVersion is now too old: 410 Gone
    fake.end_watches()
    fake.delete("pods", name, ns)
    await wait_for(lambda: bool(events), "the preemption found by listing again")
    assert events[0].kind is InstanceEventKind.PREEMPTED
    await wait_for(lambda: fake.watch_count > 0, "the watch to resume")


async def test_unschedulable_spot_pods_become_preempted_and_the_pool_a_capacity_error(
    provider: KubernetesProvider,
    clusters: dict[str, FakeKubernetes],
    events: list[InstanceEvent],
    clock: FakeClock,
) -> None:
    fake = clusters["ctx-a"]
    fake.remove_node("ctx-a-spot-1")
    start = clock.now()
    inst = await provider.launch(make_request(make_spec(), _offer(A), 1))
    assert inst.state is InstanceState.PENDING
    [pending] = await provider.list_instances("svc")
    assert pending.state is InstanceState.PENDING and "0/1 nodes are available" in pending.detail
    await advance_until(clock, lambda: bool(events), "the unschedulable pod to be given up")
    assert clock.now() - start >= 60  # not before the configured wait
    assert events[0].kind is InstanceEventKind.PREEMPTED and "unschedulable" in events[0].detail
    assert fake.pods(selector="skyctl-service") == []
    [gone] = await provider.list_instances("svc")
    assert gone.state is InstanceState.PREEMPTED
    with pytest.raises(CapacityError) as err:
        await provider.launch(make_request(make_spec(), _offer(A), 2))
    assert err.value.location == "kubernetes/ctx-a"
    ondemand = await provider.launch(make_request(make_spec(), _offer(A, False), 3))
    assert ondemand.state is InstanceState.RUNNING  # the on-demand pool is still fine


# --------------------------------------------------------------------- errors


async def test_throttling_is_retried_with_backoff_on_the_clock(
    provider: KubernetesProvider, clusters: dict[str, FakeKubernetes], clock: FakeClock
) -> None:
    clusters["ctx-a"].fail_next(429, 2, method="POST")
    inst = await with_clock(clock, provider.launch(make_request(make_spec(), _offer(A))))
    assert inst.state is InstanceState.RUNNING


async def test_persistent_5xx_ends_in_a_transient_error(
    provider: KubernetesProvider, clusters: dict[str, FakeKubernetes], clock: FakeClock
) -> None:
    clusters["ctx-b"].fail_next(503, 10, method="GET")
    with pytest.raises(TransientError, match="kubernetes/ctx-b"):
        await with_clock(clock, provider.list_instances("svc"))


@pytest.mark.parametrize(
    ("setup", "error", "message"),
    [
        (lambda f: f.forbid("create", "pods"), ConfigError, "permission denied"),
        (lambda f: setattr(f, "token", "rotated"), ConfigError, "permission denied \\(401\\)"),
        (lambda f: f.delete("namespaces", "skyctl"), ConfigError, "namespace 'skyctl' not found"),
    ],
    ids=["rbac-403", "bad-token-401", "no-namespace"],
)
async def test_access_problems_are_config_errors(
    provider: KubernetesProvider,
    clusters: dict[str, FakeKubernetes],
    setup: Any,
    error: type[Exception],
    message: str,
) -> None:
    setup(clusters["ctx-a"])
    with pytest.raises(error, match=message):
        await provider.launch(make_request(make_spec(), _offer(A)))


async def test_an_exceeded_resource_quota_is_a_quota_error(
    provider: KubernetesProvider, clusters: dict[str, FakeKubernetes]
) -> None:
    from tests.fakes.k8s_objects import ApiError

    def over_quota(*_: Any, **__: Any) -> dict[str, Any]:
        raise ApiError(403, 'pods "x" is forbidden: exceeded quota: q, requested: pods=1')

    clusters["ctx-a"].create = over_quota  # type: ignore[method-assign]
    with pytest.raises(QuotaError) as err:
        await provider.launch(make_request(make_spec(), _offer(A)))
    assert err.value.location == "kubernetes/ctx-a"


# --------------------------------------------------------------- service mode


@pytest.mark.parametrize("service_type", ["LoadBalancer", "NodePort", "ClusterIP"])
async def test_service_mode_exposes_each_replica_through_an_owned_service(
    kubeconfig: Path, clock: FakeClock, clusters: dict[str, FakeKubernetes], service_type: str
) -> None:
    cfg = _config(kubeconfig, endpoint_mode="service", service_type=service_type)
    p = KubernetesProvider(cfg, clock=clock)
    inst = await p.launch(make_request(make_spec(), _offer(B), port=8000))
    [svc] = clusters["ctx-b"].services(selector="skyctl-service=svc")
    assert svc["spec"]["type"] == service_type
    assert svc["spec"]["selector"] == {"skyctl-pod": split_instance_id(inst.instance_id)[2]}
    assert svc["metadata"]["ownerReferences"][0]["kind"] == "Pod"
    if service_type == "LoadBalancer":
        host, port = svc["status"]["loadBalancer"]["ingress"][0]["ip"], 8000
    elif service_type == "NodePort":
        node = clusters["ctx-b"].get(
            "nodes", _pod(clusters["ctx-b"], inst.instance_id)["spec"]["nodeName"]
        )
        host, port = node["status"]["addresses"][0]["address"], svc["spec"]["ports"][0]["nodePort"]
    else:
        host, port = svc["spec"]["clusterIP"], 8000
    [listed] = await p.list_instances("svc")
    assert listed.endpoint == f"http://{host}:{port}"
    await p.terminate(inst.instance_id)
    assert clusters["ctx-b"].services(selector="skyctl-service") == []
    await p.close()
