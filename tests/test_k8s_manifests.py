"""The in-cluster deployment (manifests/kubernetes/, Dockerfile): valid against the
Kubernetes schemas, accepted by an API server, and granting the controller exactly
what the provider uses."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kubernetes_validate  # the test extra: a missing install must fail, not skip
import pytest
import yaml

from providers.kubernetes import KubernetesProvider
from providers.kubernetes_build import split_instance_id
from providers.kubernetes_config import parse_config
from skyctl.clock import FakeClock
from skyctl.types import Location, Offering
from tests.fakes.k8s_harness import make_request, make_spec, wait_for
from tests.fakes.k8s_server import FakeKubernetes

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = sorted((ROOT / "manifests" / "kubernetes").glob("*.yaml"))
KUBERNETES_VERSION = "1.30.0"


def _docs() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                out.append((f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return out


DOCS = _docs()


def _find(kind: str, name: str | None = None) -> dict[str, Any]:
    [doc] = [d for _, d in DOCS if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    return doc


def _controller() -> dict[str, Any]:
    return _find("Deployment", "skyctl-controller")


def _router() -> dict[str, Any]:
    return _find("Deployment", "skyctl-router")


def test_the_manifests_cover_what_the_controller_needs_in_a_cluster() -> None:
    kinds = sorted(d["kind"] for _, d in DOCS)
    assert kinds == sorted(
        [
            "Namespace",
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "ConfigMap",
            "PersistentVolumeClaim",
            "Deployment",
            "Deployment",
            "Service",
            "Service",
            "PodDisruptionBudget",
        ]
    )
    assert MANIFESTS[0].name.startswith("00-namespace")  # `kubectl apply -f` applies in name order


@pytest.mark.parametrize(("name", "doc"), DOCS, ids=[n for n, _ in DOCS])
def test_every_manifest_is_valid_against_the_kubernetes_schema(
    name: str, doc: dict[str, Any]
) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_validator_rejects_a_broken_manifest() -> None:
    """Guard the guard: a misspelt field must fail validation."""
    broken = yaml.safe_load(yaml.safe_dump(_controller()))
    broken["spec"]["replica"] = broken["spec"].pop("replicas")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_the_controller_runs_once_with_recreate_and_its_state_on_the_claim() -> None:
    deployment = _controller()
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == _find("ServiceAccount")["metadata"]["name"]
    [container] = pod["containers"]
    assert container["args"][:3] == ["skyctl", "controller", "run"]
    assert container["args"][container["args"].index("--host") + 1] == "0.0.0.0"
    assert "--router-process" in container["args"]  # the routers are their own pods
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["state"]["mountPath"] == env["SKYCTL_HOME"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    claim = _find("PersistentVolumeClaim")["metadata"]["name"]
    assert volumes["state"]["persistentVolumeClaim"]["claimName"] == claim
    assert mounts["config"]["mountPath"] == f"{env['SKYCTL_HOME']}/config.yaml"
    assert volumes["config"]["configMap"]["name"] == _find("ConfigMap")["metadata"]["name"]


def test_the_router_service_reaches_the_router_pods_ports() -> None:
    service = _find("Service", "skyctl-router")
    deployment = _router()
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert not service["spec"]["selector"].items() <= _controller_labels().items()
    ports = {
        p["name"]: p["containerPort"]
        for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
    }
    for port in service["spec"]["ports"]:
        assert ports[port["targetPort"]] == port["port"]
        assert port["name"].startswith("router")


def _controller_labels() -> dict[str, str]:
    return dict(_controller()["spec"]["template"]["metadata"]["labels"])


def test_the_routers_are_two_pods_fed_by_the_controller_service() -> None:
    """Endpoints outlive the controller in the cluster too: router pods of their own,
    following the controller's API through its Service, with the shared keys."""
    deployment = _router()
    assert deployment["spec"]["replicas"] >= 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"][:3] == ["skyctl", "router", "run"]
    url = container["args"][container["args"].index("--controller") + 1]
    api = _find("Service", "skyctl-controller")
    assert api["spec"]["selector"].items() <= _controller_labels().items()
    [api_port] = api["spec"]["ports"]
    assert url == f"http://{api['metadata']['name']}:{api_port['port']}"
    controller_ports = {
        p["name"]: p["containerPort"]
        for p in _controller()["spec"]["template"]["spec"]["containers"][0]["ports"]
    }
    assert controller_ports[api_port["targetPort"]] == 8000
    for pod in (deployment, _controller()):
        [c] = pod["spec"]["template"]["spec"]["containers"]
        refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"] if "valueFrom" in e}
        assert refs["SKYCTL_API_TOKEN"] == {"name": "skyctl-keys", "key": "api-token"}
        assert refs["SKYCTL_SECRET_KEY"] == {"name": "skyctl-keys", "key": "secret-key"}


def test_router_pods_join_the_service_when_they_have_a_table_and_leave_it_before_stopping() -> None:
    """Readiness is the router process's own /readyz (a routing table to serve) on
    the port given to `router run --health-port`; at the end the preStop pause
    lets the Service drop the pod before it stops accepting, and the kubelet
    waits out the stop grace (long LLM streams) before SIGKILL; the disruption
    budget keeps a pod serving while nodes drain."""
    deployment = _router()
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    args = container["args"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    health = int(args[args.index("--health-port") + 1])
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = container[probe]["httpGet"]
        assert (get["path"], ports[get["port"]]) == (path, health)
    assert "health" not in {
        p["targetPort"] for p in _find("Service", "skyctl-router")["spec"]["ports"]
    }
    pause = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pause[0] == "sleep"
    grace = float(args[args.index("--stop-grace") + 1])
    assert grace >= 600  # the replicas' drain_timeout_seconds default: a stream may run that long
    assert pod["terminationGracePeriodSeconds"] > int(pause[1]) + grace
    budget = _find("PodDisruptionBudget", "skyctl-router")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert 1 <= budget["spec"]["minAvailable"] < deployment["spec"]["replicas"]


def test_the_config_map_is_a_valid_kubernetes_provider_config() -> None:
    config = yaml.safe_load(_find("ConfigMap")["data"]["config.yaml"])
    cfg = parse_config(config["kubernetes"])
    assert cfg.endpoint_mode == "pod_ip"
    assert cfg.namespace == _find("Namespace")["metadata"]["name"]


def test_every_namespaced_object_lives_in_the_namespace() -> None:
    namespace = _find("Namespace")["metadata"]["name"]
    for name, doc in DOCS:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == namespace, name


def test_the_dockerfile_installs_the_kubernetes_extra_and_runs_the_controller() -> None:
    text = (ROOT / "Dockerfile").read_text()
    # the compiled wheel, built in the first stage, with the kubernetes extra
    assert re.search(r"^RUN SKYCTL_COMPILE=1 pip wheel .*--wheel-dir /wheels \.$", text, re.M)
    assert re.search(r"pip install \"\$\(ls /wheels/skyctl-\*\.whl\)\[kubernetes\]\"", text)
    # what the build reads: setup.py, its config and the in-tree build backend
    for source in ("setup.py", "setup.cfg", "pyproject.toml", "tools", "skyctl", "policies"):
        assert re.search(rf"^COPY (?:\S+ )*{re.escape(source)} ", text, re.M), source
    cmd = re.search(r"^CMD (.+)$", text, re.M)
    assert cmd is not None
    assert yaml.safe_load(cmd.group(1))[:5] == ["skyctl", "controller", "run", "--host", "0.0.0.0"]
    assert re.search(r"^USER 10001", text, re.M)  # matches the Deployment's runAsUser
    for deployment in (_controller(), _router()):
        sec = deployment["spec"]["template"]["spec"]["securityContext"]
        assert sec["runAsUser"] == 10001


# ------------------------------------------------------- against an API server


@pytest.fixture
async def fake() -> AsyncIterator[FakeKubernetes]:
    server = FakeKubernetes(token="admin")
    await server.start()
    yield server
    await server.stop()


async def test_the_manifests_apply_to_an_api_server(fake: FakeKubernetes, tmp_path: Path) -> None:
    import asyncio

    from kubernetes import config as kconfig
    from kubernetes import utils

    kc = FakeKubernetes.write_kubeconfig(tmp_path / "kc", [fake.kubeconfig_entry("admin")], "admin")

    def apply() -> None:
        client = kconfig.new_client_from_config(config_file=str(kc), persist_config=False)
        try:
            for path in MANIFESTS:
                utils.create_from_yaml(client, str(path))
        finally:
            client.close()

    await asyncio.to_thread(apply)
    for _, doc in DOCS:
        plural = {"PersistentVolumeClaim": "persistentvolumeclaims"}.get(
            doc["kind"], doc["kind"].lower() + "s"
        )
        stored = fake.get(plural, doc["metadata"]["name"], doc["metadata"].get("namespace", ""))
        assert stored["metadata"]["uid"] and stored["metadata"]["resourceVersion"]


def _granted(role: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (verb, res) for rule in role["rules"] for res in rule["resources"] for verb in rule["verbs"]
    }


async def test_the_role_grants_exactly_what_the_in_cluster_provider_uses(
    fake: FakeKubernetes, tmp_path: Path
) -> None:
    """Run the provider as the ConfigMap configures it and compare its requests to the Role."""
    clock = FakeClock()
    namespace = _find("Namespace")["metadata"]["name"]
    fake.create("namespaces", {"metadata": {"name": namespace}})
    fake.add_node("n1", {})
    kc = FakeKubernetes.write_kubeconfig(tmp_path / "kc", [fake.kubeconfig_entry("c")], "c")
    config = yaml.safe_load(_find("ConfigMap")["data"]["config.yaml"])["kubernetes"]
    provider = KubernetesProvider({**config, "kubeconfig": str(kc)}, clock=clock)
    fake.verbs.clear()
    try:
        loc = Location("kubernetes", "c")
        spec = make_spec(spot=False)
        inst = await provider.launch(make_request(spec, Offering(loc, False, 1.0)))
        await provider.launch(make_request(spec, Offering(loc, False, 1.0)))  # AlreadyExists
        await wait_for(lambda: fake.watch_count > 0, "the provider's watch")
        assert await provider.list_services() == ["svc"]
        assert len(await provider.list_instances("svc")) == 1
        multi = dataclasses.replace(spec, num_nodes=2)  # patches its pods with the node list
        two = await provider.launch(make_request(multi, Offering(loc, False, 2.0), 2))
        assert len(await provider.list_instances("svc")) == 2
        await provider.terminate(two.instance_id)
        await provider.terminate(inst.instance_id)
        assert split_instance_id(inst.instance_id)[1] == namespace
    finally:
        await provider.close()
    used = {(verb, res) for verb, res in fake.verbs}
    assert used == _granted(_find("Role"))


def test_the_documented_spec_and_config_are_accepted() -> None:
    from skyctl.spec_yaml import parse_spec

    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / "docs" / "kubernetes.md").read_text(), re.S)
    spec = parse_spec(blocks[0], "docs/kubernetes.md")
    assert spec.resources.candidates[0].cloud == "kubernetes"
    configs = [yaml.safe_load(b)["kubernetes"] for b in blocks if b.startswith("kubernetes:")]
    assert len(configs) == 2
    for config in configs:
        parse_config(config)
