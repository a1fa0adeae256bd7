"""A launch cut midway (the controller killed after the cloud call returned, before
its record was stored): the next controller's listing must show the replica whole,
since it adopts what the listing shows rather than launching again.

The controller's side (a PENDING record with the client token before any call;
adopt a listed instance of that replica, relaunch with the same token otherwise,
terminate what no record claims) is covered by tests/test_crash_recovery.py and
tests/test_controller.py; this file covers what each provider's listing has to do.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from providers.aws import AWSProvider
from providers.gcp import GCPProvider
from providers.kubernetes import KubernetesProvider
from providers.kubernetes_build import split_instance_id
from skyctl.clock import FakeClock
from skyctl.types import InstanceState
from tests.fakes.gcp_server import FakeComputeEngine
from tests.fakes.gcp_server import _fingerprint as metadata_fingerprint
from tests.fakes.k8s_harness import make_request, make_spec
from tests.fakes.k8s_server import FakeKubernetes
from tests.fakes.moto_server import ec2, moto_ec2
from tests.test_aws_multinode import multi, nodes, tags
from tests.test_aws_provider import aws_env, boto, make_provider
from tests.test_gcp_multinode import meta
from tests.test_gcp_multinode import multi as gcp_multi
from tests.test_gcp_multinode import nodes as gcp_nodes
from tests.test_gcp_provider import _config as gcp_config
from tests.test_gcp_provider import fake
from tests.test_kubernetes_provider import B, _config, _offer, clock, clusters, kubeconfig

__all__ = [
    "aws_env",
    "boto",
    "clock",
    "clusters",
    "ec2",
    "fake",
    "kubeconfig",
    "make_provider",
    "moto_ec2",
]


async def test_kubernetes_a_pod_whose_service_was_never_created_gets_it_at_the_next_listing(
    kubeconfig: Path, clock: FakeClock, clusters: dict[str, FakeKubernetes]
) -> None:
    """Service mode: the pod was created, the controller died before creating its
    Service. Adopted as it is, the replica would never get an endpoint."""
    cfg = _config(kubeconfig, endpoint_mode="service", service_type="LoadBalancer")
    first = KubernetesProvider(cfg, clock=clock)
    inst = await first.launch(make_request(make_spec(), _offer(B), port=8000))
    await first.close()
    _, ns, name = split_instance_id(inst.instance_id)
    clusters["ctx-b"].delete("services", name, ns)  # as if the launch stopped before it
    second = KubernetesProvider(cfg, clock=clock)  # the next controller's provider
    try:
        [listed] = await second.list_instances("svc")
        assert listed.instance_id == inst.instance_id and listed.state is InstanceState.RUNNING
        [svc] = clusters["ctx-b"].services(selector="skyctl-service=svc")
        assert svc["metadata"]["ownerReferences"][0]["name"] == name  # goes with the pod
        ip = svc["status"]["loadBalancer"]["ingress"][0]["ip"]
        assert listed.endpoint == f"http://{ip}:8000"
        await second.terminate(inst.instance_id)
        assert clusters["ctx-b"].pods(selector="skyctl-service") == []
        assert clusters["ctx-b"].services(selector="skyctl-service") == []
    finally:
        await second.close()


async def test_aws_nodes_whose_tagging_was_cut_short_are_tagged_at_the_next_listing(
    make_provider: Callable[..., AWSProvider], boto: Any
) -> None:
    """A multi-node replica's nodes learn their rank and peers from tags written
    after ``run_instances`` returns; killed in between, the nodes wait at boot for
    tags nobody writes, while the next controller adopts the replica as listed."""
    first = make_provider()
    inst = await first.launch(multi(3))
    ids = [r["InstanceId"] for r in nodes(boto, "pending", "running")]
    written = {"skyctl-node-rank", "skyctl-head", "skyctl-node-ips-0"}
    boto.delete_tags(Resources=ids, Tags=[{"Key": k} for k in written])  # never written
    second = make_provider()  # the next controller's provider: nothing in memory
    [listed] = await second.list_instances("svc")
    assert listed.instance_id == inst.instance_id
    raws = nodes(boto, "pending", "running")
    ips = " ".join(r["PrivateIpAddress"] for r in raws)
    for rank, raw in enumerate(raws):
        t = tags(raw)
        assert (t["skyctl-node-rank"], t["skyctl-head"]) == (str(rank), inst.instance_id)
        assert t["skyctl-node-ips-0"] == ips
    await second.terminate(inst.instance_id)
    assert nodes(boto, "pending", "running") == []


async def test_gcp_nodes_whose_node_list_was_never_written_get_it_at_the_next_listing(
    fake: FakeComputeEngine, clock: FakeClock
) -> None:
    """GCP gives the nodes' addresses only once every insert is done; a controller
    killed before ``setMetadata`` leaves nodes waiting at boot for the node list."""
    first = GCPProvider(gcp_config(fake), clock=clock)
    try:
        inst = await first.launch(gcp_multi(3))
    finally:
        await first.close()
    for vm in fake.instances.values():  # as if the launch was cut short before writing it
        vm["metadata"]["items"] = [
            i for i in vm["metadata"]["items"] if i["key"] != "skyctl-node-ips"
        ]
        vm["metadata"]["fingerprint"] = metadata_fingerprint(vm["metadata"])
    second = GCPProvider(gcp_config(fake), clock=clock)  # the next controller's provider
    try:
        [listed] = await second.list_instances("svc")
        assert listed.instance_id == inst.instance_id
        assert listed.state is InstanceState.RUNNING and listed.endpoint == inst.endpoint
        vms = gcp_nodes(fake)
        ips = " ".join(v["networkInterfaces"][0]["networkIP"] for v in vms)
        assert [meta(v)["skyctl-node-ips"] for v in vms] == [ips] * 3
        await second.terminate(inst.instance_id)
        await second.list_instances("svc")
        assert fake.instances == {}
    finally:
        await second.close()
