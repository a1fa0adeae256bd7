"""Replicas as pods on spot and on-demand node pools of one or more Kubernetes clusters.

Each kubeconfig context is a location ``kubernetes/<context>``, so spot
placement spreads replicas across clusters as it does across zones. The
provider decides nothing: it reports offerings (prices from the config; the
Kubernetes API has none) and carries out launches and terminations through the
official client (:mod:`providers.kubernetes_api`).

- Launch: a pod with a deterministic name from service, replica and client
  token (AlreadyExists is success), labels ``skyctl-service/-replica/-version``,
  spot or on-demand node selection from the capacity preset
  (:mod:`providers.kubernetes_config`), the body from
  :mod:`providers.kubernetes_build`. Outside the cluster each replica also gets
  a Service (type from config) owned by its pod; inside, the pod IP is used.
- Preemption: one watch of our pods per context (resourceVersion, a new list
  on 410 Gone), in a thread; a pod evicted, deleted by the cluster, or marked
  with a ``DisruptionTarget`` condition is reported PREEMPTED and pushed once.
- Multi-node replicas (``num_nodes`` N > 1): N pods created together, grouped
  by label into one replica lost with any pod (:mod:`providers.kubernetes_nodes`).
- Unschedulable: a pod the scheduler cannot place for
  ``unschedulable_timeout_seconds`` is deleted and reported PREEMPTED; its pool
  (context + spot/on-demand) answers launches with CapacityError for
  ``capacity_cooldown_seconds``, so placement moves on.

See docs/kubernetes.md for the user's side.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from providers import kubernetes_nodes, nodes
from providers.base import LaunchRequest, Provider, per_replica
from providers.kubernetes_api import (
    REQUEST_TIMEOUT,
    AlreadyExists,
    Discovery,
    KubeApi,
    discover,
    in_cluster,
)
from providers.kubernetes_build import (
    LABEL_SERVICE,
    PodView,
    instance_id,
    label_value,
    node_address,
    pod_body,
    pod_name,
    service_body,
    service_endpoint,
    split_instance_id,
    view_pod,
)
from providers.kubernetes_config import KubeConfig, parse_config
from providers.kubernetes_watch import PodTracker, make_instance
from providers.nodes import node_name
from skyctl.clock import Clock
from skyctl.errors import CapacityError, ConfigError, NotFoundError, SkyctlError
from skyctl.spec import ResourceCandidate, ServiceSpec
from skyctl.types import Instance, InstanceState, Location, Offering

__all__ = ["KubernetesProvider", "check"]

log = logging.getLogger("skyctl.providers.kubernetes")

NODE_CACHE_SECONDS = 300.0


def _is_kubernetes(candidate: ResourceCandidate) -> bool:
    return (candidate.cloud or "").lower() in ("kubernetes", "k8s")


def _accelerators(candidate: ResourceCandidate) -> tuple[str, float]:
    accels = candidate.accelerators or {}
    text = ",".join(f"{name}:{count}" for name, count in sorted(accels.items()))
    return text, sum(accels.values())


def _method(name: str, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
    """``core.<name>(*args, **kwargs)`` as a function of the CoreV1Api, for KubeApi.call."""
    kwargs.setdefault("_request_timeout", REQUEST_TIMEOUT)

    def run(core: Any) -> Any:
        return getattr(core, name)(*args, **kwargs)

    return run


def check(config: Mapping[str, Any]) -> tuple[bool, str]:
    """For ``skyctl check``: is a kubeconfig or an in-cluster account found (no secrets shown)."""
    try:
        cfg = parse_config(config)
        found = discover(cfg)
    except ConfigError as e:
        return False, str(e)
    wanted = [c.name for c in cfg.contexts] or ([found.current] if found.current else [])
    if not wanted:
        return False, "kubernetes: the kubeconfig has no current context; set kubernetes.contexts"
    missing = [c for c in wanted if c not in found.contexts]
    if missing:
        return False, f"kubernetes.contexts: {missing[0]!r} is not in the kubeconfig"
    where = "in-cluster service account" if found.config_file is None else found.config_file
    return True, f"{where}: contexts {', '.join(wanted)}; capacity preset {cfg.preset}"


class KubernetesProvider(Provider):
    """Pods in the configured kubeconfig contexts (see the module docstring)."""

    name = "kubernetes"

    def __init__(self, config: Mapping[str, Any], *, clock: Clock) -> None:
        self._cfg: KubeConfig = parse_config(config)
        self._clock = clock
        self._api = KubeApi(self._cfg, clock=clock)
        self._used: set[str] = set()  # contexts named by specs or launched in
        self._unknown: set[str] = set()  # contexts named by specs but not in the kubeconfig
        self._nodes: dict[tuple[str, str], tuple[float, str | None]] = {}
        self._launching: set[str] = set()  # head ids of multi-node launches in flight
        self._tracker = PodTracker(
            self._cfg,
            clock=clock,
            api=self._api,
            namespace=self._namespace,
            list_pods=self._list_all_pods,
            delete=self.terminate,
            emit=self._emit,
        )

    # ------------------------------------------------------------- contexts

    async def _discovery(self) -> Discovery:
        return await self._api.discovery()

    async def _allowed(self) -> list[str]:
        found = await self._discovery()
        if self._cfg.contexts:
            return [c.name for c in self._cfg.contexts]
        if found.current is None:
            raise ConfigError(
                "kubernetes: the kubeconfig has no current context; set kubernetes.contexts"
            )
        return [found.current]

    async def _contexts(self) -> list[str]:
        return sorted(set(await self._allowed()) | self._used)

    async def _namespace(self, context: str) -> str:
        found = await self._discovery()
        return (
            self._cfg.context(context).namespace
            or self._cfg.namespace
            or found.namespaces.get(context)
            or "default"
        )

    async def _service_mode(self) -> bool:
        if self._cfg.endpoint_mode is not None:
            return self._cfg.endpoint_mode == "service"
        found = await self._discovery()
        return not (found.config_file is None or in_cluster())

    # ------------------------------------------------------------ offerings

    async def offerings(self, spec: ServiceSpec) -> Sequence[Offering]:
        found = await self._discovery()
        allowed = await self._allowed()
        out: dict[tuple[Location, bool, str], Offering] = {}
        for cand in spec.resources.candidates:
            if not _is_kubernetes(cand) or cand.zone:
                continue
            contexts = [cand.region] if cand.region else allowed
            accel, gpus = _accelerators(cand)
            if not float(gpus).is_integer():
                continue  # a pod asks for whole GPUs (nvidia.com/gpu): no T4:0.5 here
            for ctx in contexts:
                if ctx not in allowed and ctx not in found.contexts:
                    if ctx not in self._unknown:
                        self._unknown.add(ctx)
                        log.warning("kubernetes: spec context %r is not in the kubeconfig", ctx)
                    continue
                self._used.add(ctx)
                prices = self._cfg.context(ctx)
                loc = Location("kubernetes", ctx, "")
                for spot in (True, False) if spec.use_spot else (False,):
                    if spot and self._cfg.spot is None:
                        continue
                    price = (prices.spot_price if spot else prices.ondemand_price) * max(1, gpus)
                    out[(loc, spot, accel)] = Offering(loc, spot, price, "", accel)
        ordered = sorted(out.values(), key=lambda o: (o.price, str(o.location), o.accelerators))
        return per_replica(ordered, spec)  # a multi-node replica is priced as its N pods

    # --------------------------------------------------------------- launch

    async def launch(self, request: LaunchRequest) -> Instance:
        off = request.offering
        ctx = off.location.region
        if off.location.cloud != "kubernetes" or not ctx:
            raise ConfigError(f"kubernetes: cannot launch at {off.location}")
        until = self._tracker.exhausted_until(ctx, off.spot)
        if self._clock.now() < until:
            kind = "spot" if off.spot else "on-demand"
            raise CapacityError(
                f"kubernetes/{ctx}: no {kind} capacity (pods stayed unschedulable); "
                f"retry after {until - self._clock.now():.0f}s",
                location=str(off.location),
            )
        self._used.add(ctx)
        ns = await self._namespace(ctx)
        name = pod_name(request.service, request.replica_id, request.client_token)
        self._tracker.ensure_watch(ctx)
        n = request.spec.num_nodes
        if n == 1:
            pod_dict = await self._create_pod(ctx, ns, request, name, None)
        else:  # every pod, or none (providers.kubernetes_nodes)
            head = instance_id(ctx, ns, name)
            self._launching.add(head)
            try:
                pods = await nodes.launch_all(
                    n,
                    lambda k: self._create_pod(ctx, ns, request, name, k),
                    lambda: self._delete_pods(ctx, ns, [node_name(name, k) for k in range(n)]),
                )
            finally:
                self._launching.discard(head)
            for k, pod in enumerate(pods):
                self._tracker.launched(ctx, instance_id(ctx, ns, node_name(name, k)), pod)
            try:
                await self._publish(ctx, ns, pods, n)
            except SkyctlError as e:  # the next listing writes it
                log.warning("kubernetes/%s: %s", ctx, e)
            pod_dict = pods[0]
        svc = None
        if await self._service_mode():
            svc = await self._create_service(ctx, pod_dict, request.port)
        iid = instance_id(ctx, ns, name)
        view = self._tracker.launched(ctx, iid, pod_dict)
        state, detail = self._tracker.state(iid, view)
        inst = make_instance(ctx, view, state, detail, await self._endpoint(ctx, view, svc))
        return inst if n == 1 else kubernetes_nodes.listed(pod_dict, inst)

    async def _create_pod(
        self, ctx: str, ns: str, request: LaunchRequest, head: str, rank: int | None
    ) -> dict[str, Any]:
        """Create one pod (node ``rank`` of a multi-node replica); the pod as a dict."""
        name = node_name(head, rank or 0)
        body = pod_body(
            request,
            self._cfg,
            name=name,
            namespace=ns,
            candidate=self._candidate(request.spec, request.offering),
        )
        if rank is not None:
            kubernetes_nodes.shape(body, head=head, rank=rank, count=request.spec.num_nodes)
        try:
            pod = await self._api.call(
                ctx,
                f"create pod {name}",
                _method("create_namespaced_pod", ns, body),
            )
        except AlreadyExists:
            pod = await self._api.call(
                ctx,
                f"read pod {name}",
                _method("read_namespaced_pod", name, ns),
            )
        except NotFoundError as e:
            raise ConfigError(
                f"kubernetes/{ctx}: namespace {ns!r} not found; create it or set "
                "kubernetes.namespace"
            ) from e
        return dict(self._api.to_dict(pod))

    async def _publish(self, ctx: str, ns: str, pods: list[dict[str, Any]], count: int) -> bool:
        """Write the node list on a replica's pods once all have an IP; True when all have it."""
        value, lacking = kubernetes_nodes.to_publish(pods, count)
        for name in lacking:
            patch = {"metadata": {"annotations": {kubernetes_nodes.ANNOTATION_IPS: value}}}
            await self._api.call(
                ctx,
                f"annotate pod {name} with its replica's node list",
                _method(
                    "patch_namespaced_pod",
                    name,
                    ns,
                    patch,
                    _content_type="application/merge-patch+json",
                ),
            )
            for pod in pods:
                if pod["metadata"]["name"] == name:
                    pod["metadata"].setdefault("annotations", {}).update(
                        patch["metadata"]["annotations"]
                    )
        return bool(value)

    def _candidate(self, spec: ServiceSpec, off: Offering) -> ResourceCandidate | None:
        for cand in spec.resources.candidates:
            if (
                _is_kubernetes(cand)
                and cand.region in (None, off.location.region)
                and (_accelerators(cand)[0] == off.accelerators)
            ):
                return cand
        return None

    async def _create_service(self, ctx: str, pod: dict[str, Any], port: int) -> dict[str, Any]:
        body = service_body(pod, self._cfg.service_type, port)
        ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
        try:
            svc = await self._api.call(
                ctx,
                f"create service {name}",
                _method("create_namespaced_service", ns, body),
            )
        except AlreadyExists:
            svc = await self._api.call(
                ctx,
                f"read service {name}",
                _method("read_namespaced_service", name, ns),
            )
        return dict(self._api.to_dict(svc))

    # ------------------------------------------------------------ terminate

    async def terminate(self, instance_id: str) -> None:
        try:
            ctx, ns, name = split_instance_id(instance_id)
        except ValueError:
            return  # not ours: nothing to delete
        # a multi-node replica's pods go with its head (even when the head is gone)
        pods, _ = await self._list(ctx, "pods", f"{nodes.TAG_HEAD}={name}", ns)
        known = [i for i, n in self._tracker.node_of.items() if n.head == instance_id]
        names = [p["metadata"]["name"] for p in pods] + [split_instance_id(i)[2] for i in known]
        await self._delete_pods(ctx, ns, [name, *sorted(set(names) - {name})])

    async def _delete_pods(self, ctx: str, ns: str, names: list[str]) -> None:
        kinds = ["pod", "service"] if await self._service_mode() else ["pod"]
        for name in dict.fromkeys(names):
            iid = instance_id(ctx, ns, name)
            self._tracker.deleting(iid)
            for kind in kinds:
                method = f"delete_namespaced_{kind}"
                try:
                    await self._api.call(
                        ctx,
                        f"delete {kind} {name}",
                        _method(method, name, ns),
                    )
                except NotFoundError:
                    if kind == "pod":
                        self._tracker.forget(iid)

    # ---------------------------------------------------------------- lists

    async def _list(
        self, ctx: str, plural: str, selector: str, ns: str | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        ns = ns or await self._namespace(ctx)
        method = "list_namespaced_pod" if plural == "pods" else "list_namespaced_service"
        result = await self._api.call(
            ctx,
            f"list {plural}",
            _method(method, ns, label_selector=selector),
        )
        data = self._api.to_dict(result)
        return list(data.get("items") or []), str(
            (data.get("metadata") or {}).get("resourceVersion") or ""
        )

    async def _list_all_pods(self, ctx: str) -> tuple[list[dict[str, Any]], str]:
        return await self._list(ctx, "pods", LABEL_SERVICE)

    async def list_instances(self, service: str) -> Sequence[Instance]:
        selector = f"{LABEL_SERVICE}={label_value(service)}"
        service_mode = await self._service_mode()
        out: list[Instance] = []
        for ctx in await self._contexts():
            pods, _ = await self._list(ctx, "pods", selector)
            self._tracker.ensure_watch(ctx)
            svcs: dict[str, dict[str, Any]] = {}
            if service_mode:
                found, _ = await self._list(ctx, "services", selector)
                svcs = {s["metadata"]["name"]: s for s in found}
            kept: list[tuple[dict[str, Any], PodView, str]] = []
            replicas: dict[str, list[dict[str, Any]]] = {}  # head id -> its pods
            for pod in pods:
                view = view_pod(pod)
                if view.service != service:
                    continue  # a label-value collision of two long names
                iid = instance_id(ctx, view.namespace, view.name)
                if await self._tracker.expire_if_unschedulable(ctx, view):
                    continue
                kept.append((pod, view, iid))
                if (node := kubernetes_nodes.node_of(ctx, pod)) is not None:
                    self._tracker.node_of[iid] = node
                    replicas.setdefault(node.head, []).append(pod)
            if service_mode:
                await self._repair_services(ctx, kept, svcs)
            why: dict[str, str] = {}  # head id -> why its node list is not written
            for head, group in replicas.items():  # the node list, once every pod has an IP
                if head not in self._launching:
                    count = int(group[0]["metadata"]["labels"][nodes.TAG_NODES])
                    try:
                        await self._publish(ctx, view_pod(group[0]).namespace, group, count)
                    except SkyctlError as e:  # the replica stays PENDING, saying why
                        log.warning("kubernetes/%s: %s", ctx, e)
                        why[head] = f"cannot write the replica's node list: {e}"
            for pod, view, iid in kept:
                state, detail = self._tracker.state(iid, view)
                endpoint = await self._endpoint(ctx, view, svcs.get(view.name))
                inst = make_instance(ctx, view, state, detail, endpoint)
                node = self._tracker.node_of.get(iid)
                if node is not None:
                    inst = kubernetes_nodes.listed(pod, inst, why.get(node.head))
                out.append(inst)
        out += self._tracker.gone(service, {i.instance_id for i in out})
        return nodes.group(
            ((self._tracker.node_of.get(i.instance_id), i) for i in out), launching=self._launching
        )

    async def _repair_services(
        self,
        ctx: str,
        kept: list[tuple[dict[str, Any], PodView, str]],
        svcs: dict[str, dict[str, Any]],
    ) -> None:
        """Create the Service of a live replica pod that has none: its launch was cut
        after the pod (a controller killed between the two calls), and the next
        controller adopts the pod as listed, without launching again."""
        for pod, view, iid in kept:
            node = self._tracker.node_of.get(iid)
            if view.name in svcs or view.deleting or (node is not None and node.rank != 0):
                continue
            if view.state not in (InstanceState.PENDING, InstanceState.RUNNING):
                continue
            try:
                svcs[view.name] = await self._create_service(ctx, pod, view.port)
            except SkyctlError as e:  # no endpoint yet; the next listing tries again
                log.warning("kubernetes/%s: cannot create the Service of %s: %s", ctx, iid, e)

    async def list_services(self) -> Sequence[str]:
        names: set[str] = set()
        for ctx in await self._contexts():
            pods, _ = await self._list(ctx, "pods", LABEL_SERVICE)
            names.update(v.service for v in map(view_pod, pods) if v.service)
        return sorted(names)

    # ----------------------------------------------------- state & endpoints

    async def _endpoint(self, ctx: str, view: PodView, svc: dict[str, Any] | None) -> str | None:
        if not await self._service_mode():
            if not view.pod_ip:
                return None
            host = f"[{view.pod_ip}]" if ":" in view.pod_ip else view.pod_ip
            return f"http://{host}:{view.port}"
        address = None
        if svc and (svc.get("spec") or {}).get("type") == "NodePort" and view.node:
            address = await self._node_address(ctx, view.node)
        return service_endpoint(svc, address)

    async def _node_address(self, ctx: str, node: str) -> str | None:
        cached = self._nodes.get((ctx, node))
        if cached and cached[0] > self._clock.now():
            return cached[1]
        try:
            obj = await self._api.call(
                ctx,
                f"read node {node}",
                _method("read_node", node),
            )
            address = node_address(self._api.to_dict(obj))
        except SkyctlError as e:
            log.warning("kubernetes/%s: no address for node %s: %s", ctx, node, e)
            address = None
        self._nodes[(ctx, node)] = (self._clock.now() + NODE_CACHE_SECONDS, address)
        return address

    # ---------------------------------------------------------------- close

    async def close(self) -> None:
        await self._tracker.close()
        await self._api.close()
