"""Peer review of the Kubernetes provider, through the official client against the
fake API servers.

A replica's pod whose command ended with code 0 (phase Succeeded, restartPolicy
Never) no longer serves, yet the pod and its Service stay until deleted: it is
listed FAILED and pushed as EXITED, never TERMINATED (deleted or being deleted),
which teardown and the purge sweep skip.
"""

from __future__ import annotations

from providers.kubernetes import KubernetesProvider
from providers.kubernetes_build import split_instance_id
from skyctl.types import InstanceEvent, InstanceEventKind, InstanceState
from tests.fakes.k8s_harness import make_request, make_spec, namespace_of, wait_for
from tests.fakes.k8s_server import FakeKubernetes
from tests.test_kubernetes_provider import (
    B,
    _offer,
    clock,
    clusters,
    events,
    kubeconfig,
    provider,
)

__all__ = ["clock", "clusters", "events", "kubeconfig", "provider"]


async def test_a_pod_that_completed_is_failed_and_pushed_until_terminate_deletes_it(
    provider: KubernetesProvider, clusters: dict[str, FakeKubernetes], events: list[InstanceEvent]
) -> None:
    inst = await provider.launch(make_request(make_spec(), _offer(B)))
    await wait_for(lambda: clusters["ctx-b"].watch_count > 0, "the provider's watch")
    name = split_instance_id(inst.instance_id)[2]
    clusters["ctx-b"].exit(namespace_of("ctx-b"), name, 0)
    await wait_for(lambda: bool(events), "the exit event")
    assert events[0].kind is InstanceEventKind.EXITED
    [listed] = await provider.list_instances("svc")
    assert listed.state is InstanceState.FAILED and "exited with code 0" in listed.detail
    await provider.terminate(inst.instance_id)
    assert [i.state for i in await provider.list_instances("svc")] in (
        [],
        [InstanceState.TERMINATED],
    )
