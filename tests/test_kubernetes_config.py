"""The Kubernetes provider's configuration, `skyctl check`, the optional import, and
the pure pieces (pod names, instance ids, pod states). The fixtures are those of
``tests/test_kubernetes_provider.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from providers.kubernetes import KubernetesProvider, check
from providers.kubernetes_build import pod_name, split_instance_id, view_pod
from skyctl.clock import FakeClock
from skyctl.errors import ConfigError
from skyctl.spec import ResourceCandidate
from skyctl.types import InstanceState
from tests.fakes.k8s_harness import make_request, make_spec
from tests.fakes.k8s_server import FakeKubernetes
from tests.test_kubernetes_provider import (
    B,
    _config,
    _offer,
    _pod,
    clock,
    clusters,
    kubeconfig,
    provider,
)

__all__ = ["clock", "clusters", "kubeconfig", "provider"]  # fixtures, used by name

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
        ({"phase": "Succeeded"}, InstanceState.FAILED, "pod completed"),
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
