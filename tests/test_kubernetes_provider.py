"""The Kubernetes provider through the official client, over HTTP, against two fake
API servers (tests/fakes/k8s_server.py) as two kubeconfig contexts."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from providers.kubernetes import KubernetesProvider, check
from providers.kubernetes_build import pod_name, split_instance_id, view_pod
from skyctl.clock import FakeClock
from skyctl.errors import CapacityError, ConfigError, QuotaError, TransientError
from skyctl.spec import ResourceCandidate
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
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {
        "PORT": "9000",
        "SKYCTL_SERVICE": "svc",
        "SKYCTL_REPLICA_ID": "7",
        "SKYCTL_VERSION": "1",
        "MODEL": "m; rm -rf /",
        "HF_TOKEN": "s3cret",
    }
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


# ------------------------------------------------------ config, check, import


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"bogus": 1}, "kubernetes.bogus: unknown key"),
        ({"capacity_preset": "ec2"}, "kubernetes.capacity_preset: expected one of"),
        ({"endpoint_mode": "ingress"}, "kubernetes.endpoint_mode"),
        ({"service_type": "nodeport"}, "kubernetes.service_type"),
        ({"unschedulable_timeout_seconds": -1}, "unschedulable_timeout_seconds: must be >= 0"),
        ({"contexts": "ctx-a"}, "kubernetes.contexts: expected a non-empty list"),
        ({"contexts": [{"name": "a", "zone": "x"}]}, r"kubernetes.contexts\[0\].zone"),
        ({"spot": {"node_selector": {"a": "b"}}}, "only with capacity_preset: custom"),
        ({"capacity_preset": "custom", "spot": {"node_selector": {"a": 1}}}, "node_selector"),
        ({"namespace": "Not_A_Name"}, "kubernetes.namespace"),
    ],
)
def test_bad_config_is_a_one_line_config_error(
    config: dict[str, Any], message: str, clock: FakeClock
) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        KubernetesProvider(config, clock=clock)
    assert "\n" not in str(err.value)


async def test_a_custom_preset_selects_and_tolerates_as_configured(
    tmp_path: Path, clock: FakeClock, clusters: dict[str, FakeKubernetes], kubeconfig: Path
) -> None:
    taint = {"key": "pool", "value": "cheap", "effect": "NoSchedule"}
    clusters["ctx-b"].add_node("cheap-1", {"pool": "cheap"}, taints=[taint])
    cfg = _config(
        kubeconfig,
        capacity_preset="custom",
        spot={
            "node_selector": {"pool": "cheap"},
            "tolerations": [
                {"key": "pool", "operator": "Equal", "value": "cheap", "effect": "NoSchedule"}
            ],
        },
        on_demand={"exclude_labels": {"pool": ["cheap"], "karpenter.sh/capacity-type": ["spot"]}},
    )
    p = KubernetesProvider(cfg, clock=clock)
    spot = await p.launch(make_request(make_spec(), _offer(B, True), 1))
    ondemand = await p.launch(make_request(make_spec(), _offer(B, False), 2))
    assert _pod(clusters["ctx-b"], spot.instance_id)["spec"]["nodeName"] == "cheap-1"
    assert _pod(clusters["ctx-b"], ondemand.instance_id)["spec"]["nodeName"] == "ctx-b-od-1"
    await p.close()


def test_check_names_the_contexts_without_showing_credentials(
    kubeconfig: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok, message = check({"kubeconfig": str(kubeconfig), "contexts": ["ctx-a", "ctx-b"]})
    assert ok and "ctx-a, ctx-b" in message and "token" not in message
    ok, message = check({"kubeconfig": str(kubeconfig), "contexts": ["ctx-z"]})
    assert not ok and "'ctx-z' is not in the kubeconfig" in message
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    ok, message = check({})
    assert not ok and "no kubeconfig found" in message


def test_importing_without_the_sdk_says_what_to_install() -> None:
    code = (
        "import sys; sys.modules['kubernetes'] = None\n"
        "from skyctl.errors import ConfigError\n"
        "try:\n    import providers.kubernetes\nexcept ConfigError as e:\n    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert "pip install 'skyctl[kubernetes]'" in out.stdout, out.stderr


@pytest.mark.parametrize("service", ["svc", "My.Svc_2", "x" * 63, "a-b"])
def test_pod_names_are_dns_labels_and_deterministic(service: str) -> None:
    import re

    name = pod_name(service, 12345, "tok")
    assert re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", name), name
    assert name == pod_name(service, 12345, "tok") != pod_name(service, 12345, "tok2")


def test_instance_ids_keep_contexts_that_contain_slashes() -> None:
    ctx = "arn:aws:eks:us-east-1:1234:cluster/prod"
    assert split_instance_id(f"{ctx}/ns/pod") == (ctx, "ns", "pod")
    with pytest.raises(ValueError):
        split_instance_id("just-a-name")


async def test_a_spec_candidate_names_the_accelerator_used_for_the_offering(
    provider: KubernetesProvider, clusters: dict[str, FakeKubernetes]
) -> None:
    clusters["ctx-a"].add_node(
        "gpu",
        {"karpenter.sh/capacity-type": "on-demand", "karpenter.k8s.aws/instance-gpu-name": "a100"},
        gpus=8,
    )
    spec = make_spec(
        spot=False,
        candidates=(
            ResourceCandidate(cloud="kubernetes", accelerators={"L4": 1}),
            ResourceCandidate(cloud="kubernetes", accelerators={"A100": 8}),
        ),
    )
    offers = [o for o in await provider.offerings(spec) if o.accelerators == "A100:8"]
    inst = await provider.launch(make_request(spec, offers[0]))
    assert _pod(clusters["ctx-a"], inst.instance_id)["spec"]["nodeName"] == "gpu"


@pytest.mark.parametrize(
    ("status", "state", "detail"),
    [
        (
            {"phase": "Failed", "reason": "Evicted", "message": "low on memory"},
            InstanceState.PREEMPTED,
            "Evicted: low on memory",
        ),
        ({"phase": "Failed", "reason": "Shutdown"}, InstanceState.PREEMPTED, "Shutdown"),
        (
            {
                "phase": "Running",
                "conditions": [
                    {
                        "type": "DisruptionTarget",
                        "status": "True",
                        "reason": "PreemptionByScheduler",
                    }
                ],
            },
            InstanceState.PREEMPTED,
            "PreemptionByScheduler",
        ),
        ({"phase": "Succeeded"}, InstanceState.TERMINATED, "pod completed"),
        (
            {
                "phase": "Pending",
                "containerStatuses": [
                    {"state": {"waiting": {"reason": "InvalidImageName", "message": "bad ref"}}}
                ],
            },
            InstanceState.FAILED,
            "InvalidImageName: bad ref",
        ),
        (
            {
                "phase": "Pending",
                "containerStatuses": [{"state": {"waiting": {"reason": "ImagePullBackOff"}}}],
            },
            InstanceState.PENDING,
            "ImagePullBackOff",
        ),
    ],
)
def test_pod_status_maps_to_the_instance_state(
    status: dict[str, Any], state: InstanceState, detail: str
) -> None:
    view = view_pod(
        {"metadata": {"name": "p", "labels": {"skyctl-replica": "2"}}, "status": status}
    )
    assert (view.state, view.detail, view.replica_id) == (state, detail, 2)


# ------------------------------------------------------------------- scenario


async def test_two_clusters_spot_moves_to_the_other_cluster_then_to_ondemand_and_down_cleans_both(
    provider: KubernetesProvider,
    clusters: dict[str, FakeKubernetes],
    events: list[InstanceEvent],
    clock: FakeClock,
) -> None:
    spec = make_spec()
    offers = {(o.location, o.spot): o for o in await provider.offerings(spec)}
    one = await provider.launch(make_request(spec, offers[(A, True)], 1))
    two = await provider.launch(make_request(spec, offers[(B, True)], 2))
    assert {one.location, two.location} == {A, B}
    assert one.state is two.state is InstanceState.RUNNING

    # cluster A's spot pool is reclaimed: its replica is preempted at once ...
    await wait_for(lambda: clusters["ctx-a"].watch_count > 0, "the watch of ctx-a")
    clusters["ctx-a"].remove_node("ctx-a-spot-1")
    await wait_for(lambda: [e.replica_id for e in events] == [1], "replica 1 preempted")
    # ... and a replacement there never schedules: given up, then the pool says no
    three = await provider.launch(make_request(spec, offers[(A, True)], 3))
    assert three.state is InstanceState.PENDING
    await advance_until(clock, lambda: [e.replica_id for e in events] == [1, 3], "3 given up")
    with pytest.raises(CapacityError):
        await provider.launch(make_request(spec, offers[(A, True)], 4))
    five = await provider.launch(make_request(spec, offers[(B, True)], 5))
    assert five.state is InstanceState.RUNNING and five.location == B

    # cluster B's spot pool goes too: on-demand in A carries the service
    await wait_for(lambda: clusters["ctx-b"].watch_count > 0, "the watch of ctx-b")
    clusters["ctx-b"].remove_node("ctx-b-spot-1")
    await wait_for(lambda: sorted(e.replica_id for e in events) == [1, 2, 3, 5], "B preempted")
    six = await provider.launch(make_request(spec, offers[(A, False)], 6))
    assert six.state is InstanceState.RUNNING and not six.spot
    assert all(e.kind is InstanceEventKind.PREEMPTED for e in events)

    states = {i.replica_id: i.state for i in await provider.list_instances("svc")}
    assert states == {
        1: InstanceState.PREEMPTED,
        2: InstanceState.PREEMPTED,
        3: InstanceState.PREEMPTED,
        5: InstanceState.PREEMPTED,
        6: InstanceState.RUNNING,
    }

    # serve down: terminate everything listed; neither cluster keeps a pod of ours
    for inst in await provider.list_instances("svc"):
        await provider.terminate(inst.instance_id)
    assert await provider.list_instances("svc") == []
    for fake in clusters.values():
        assert fake.pods(selector="skyctl-service") == []


# ------------------------------------------------- the controller, in process

CONTROLLER_SPEC = """\
name: web
resources:
  use_spot: true
  any_of:
    - infra: k8s/ctx-a
    - infra: k8s/ctx-b
service:
  ports: {port}
  readiness_probe: {{path: /, initial_delay_seconds: 60, period_seconds: 1}}
  replica_policy:
    min_replicas: 2
    max_replicas: 2
    spot_policy: spothedge
    dynamic_ondemand_fallback: true
run: serve
"""


async def test_a_controller_keeps_a_service_up_across_two_clusters_and_down_cleans_them(
    tmp_path: Path, clock: FakeClock
) -> None:
    import asyncio
    import socket

    import aiohttp

    from providers.registry import ProviderSet
    from skyctl.controller import Controller
    from skyctl.lifecycle import ReplicaStatus as S
    from skyctl.store import Store

    fakes = await start_clusters(clock)
    for fake in fakes.values():
        fake.serve_pods = True  # pods answer HTTP on their loopback pod IPs
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    kc = write_kubeconfig(tmp_path / "kc", fakes)
    provider = KubernetesProvider(
        _config(kc, unschedulable_timeout_seconds=10, capacity_cooldown_seconds=30), clock=clock
    )
    store = Store(tmp_path / "state.db")
    providers = ProviderSet(config={}, clock=clock, local_state=tmp_path / "local")
    providers.add(provider)
    controller = Controller(store, providers, clock, tick_seconds=1.0, gc_clouds=("kubernetes",))
    await controller.start()
    task = asyncio.create_task(controller.run())

    def live(spot: bool | None = None, status: S | None = None) -> list[Any]:
        return [
            r
            for r in store.list_replicas("web")
            if r.is_live
            and (spot is None or r.spot is spot)
            and (status is None or r.status is status)
        ]

    async def until(cond: Any, seconds: float = 300) -> None:
        waited = 0.0
        while not cond():
            assert waited < seconds, "not reached in time"
            await clock.advance(0.5)
            for _ in range(3):
                await asyncio.sleep(0.005)
            waited += 0.5

    async def get() -> int:
        svc = store.get_service("web")
        assert svc is not None and svc.router_port
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{svc.router_port}/") as r,
        ):
            return r.status

    try:
        await controller.create_service(CONTROLLER_SPEC.format(port=port), None)
        await until(lambda: len(live(True, S.READY)) == 2 and not live(False))
        assert {r.location for r in live(True)} == {A, B}  # spread over both clusters
        assert await get() == 200

        fakes["ctx-a"].remove_node("ctx-a-spot-1")  # cluster A's spot pool is reclaimed
        await until(lambda: any(e.kind == "preempted" for e in store.events("web")))
        await until(
            lambda: (
                len(live(status=S.READY)) >= 2
                and not any(r.location == A and r.spot for r in live(status=S.READY))
            )
        )
        assert await get() == 200

        # a replacement in A never schedules: given up, then A's spot pool refuses launches
        await until(
            lambda: any(
                e.kind == "launch_failed" and "CapacityError" in e.message
                for e in store.events("web", limit=1000)
            )
        )
        assert len(live(status=S.READY)) >= 2 and await get() == 200  # on-demand covers

        await controller.delete_service("web")
        await until(lambda: not any(f.pods(selector="skyctl-service") for f in fakes.values()))
        assert await provider.list_services() == []
    finally:
        controller.request_stop()
        await task
        await controller.stop(0)
        await providers.close()
        store.close()
        for fake in fakes.values():
            await fake.stop()
