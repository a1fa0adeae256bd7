"""``resources.labels`` on Kubernetes: pod labels (a Service copies them) beside skyctl's own,
through the official client against the fake API server (which enforces the label
syntax). Listing and teardown select pods by skyctl's labels, so a label named
like one of them is refused before any call."""

from __future__ import annotations

from pathlib import Path

import pytest

from providers.kubernetes import KubernetesProvider
from providers.kubernetes_build import split_instance_id
from skyctl.clock import FakeClock
from skyctl.errors import ConfigError
from tests.fakes.k8s_harness import make_request, make_spec
from tests.fakes.k8s_server import FakeKubernetes
from tests.test_kubernetes_provider import A, _config, _offer, clock, clusters, kubeconfig, provider

__all__ = ["clock", "clusters", "kubeconfig", "provider"]


async def test_labels_go_on_the_pod_and_its_service_and_listing_still_finds_it(
    provider: KubernetesProvider,
    clusters: dict[str, FakeKubernetes],
    kubeconfig: Path,
    clock: FakeClock,
) -> None:
    labels = {"example.com/team": "ml", "tier": "gold"}
    inst = await provider.launch(make_request(make_spec(labels=labels), _offer(A)))
    _, ns, name = split_instance_id(inst.instance_id)
    got = clusters["ctx-a"].get("pods", name, ns)["metadata"]["labels"]
    assert got["example.com/team"] == "ml" and got["tier"] == "gold"
    assert got["skyctl-service"] == "svc" and got["skyctl-replica"] == "1"
    fresh = KubernetesProvider(_config(kubeconfig), clock=clock)  # no memory
    try:
        assert [i.instance_id for i in await fresh.list_instances("svc")] == [inst.instance_id]
        await fresh.terminate(inst.instance_id)
    finally:
        await fresh.close()
    assert clusters["ctx-a"].pods(selector="skyctl-service") == []


@pytest.mark.parametrize("name", ["skyctl-service", "skyctl-pod", "Skyctl-Capacity"])
async def test_a_label_named_like_a_skyctl_label_is_refused_before_any_call(
    provider: KubernetesProvider, clusters: dict[str, FakeKubernetes], name: str
) -> None:
    with pytest.raises(ConfigError, match=rf"resources.labels.{name}: .*reserved"):
        await provider.launch(make_request(make_spec(labels={name: "x"}), _offer(A)))
    assert not [r for r in clusters["ctx-a"].requests if r[0] == "POST"]
