"""Pure helpers of the Kubernetes provider: names, labels, pod and Service bodies,
and what a pod's status means for skyctl.

No client import and no I/O, so every rule here is table-testable. Objects are
plain dicts in the API's JSON shape (camelCase keys), as sent and received.

- Names are deterministic: ``sky-<service slug>-<replica>-<hash of the client
  token>`` (a DNS-1035 label, so the same name serves the pod and its Service);
  creating it twice is an AlreadyExists the provider treats as success.
- Labels on every object: ``skyctl-service``, ``skyctl-replica``,
  ``skyctl-version``, ``skyctl-capacity`` (spot/on-demand) and ``skyctl-pod``
  (the Service's selector), and the spec's ``resources.labels`` beside them
  (never over them); the full service name is also an annotation.
- The container runs ``bash -c 'setup && exec run'`` with ``setup`` and ``run``
  passed as separate arguments (``$1``, ``$2``), never pasted into the command;
  spec envs are container env vars. Without ``run`` the image's own command runs.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from providers.base import LaunchRequest, user_labels
from providers.kubernetes_config import KubeConfig, NodeSelection, accelerator_selector
from providers.replica_env import NODE_IP_VARS, skypilot_env
from skyctl.errors import ConfigError
from skyctl.spec import ResourceCandidate
from skyctl.types import InstanceState

__all__ = [
    "LABEL_CAPACITY",
    "LABEL_POD",
    "LABEL_REPLICA",
    "LABEL_SERVICE",
    "LABEL_VERSION",
    "PodView",
    "image_of",
    "instance_id",
    "label_value",
    "pod_body",
    "pod_name",
    "service_body",
    "split_instance_id",
    "view_pod",
]

LABEL_SERVICE = "skyctl-service"
LABEL_REPLICA = "skyctl-replica"
LABEL_VERSION = "skyctl-version"
LABEL_CAPACITY = "skyctl-capacity"
LABEL_POD = "skyctl-pod"
ANNOTATION_SERVICE = "skyctl.dev/service"
ANNOTATION_PRICE = "skyctl.dev/price"
CONTAINER = "replica"

#: pod ``status.reason`` values that mean the node or the cluster took the pod away
PREEMPT_REASONS = frozenset(
    {
        "Evicted",
        "Preempting",
        "Shutdown",
        "NodeShutdown",
        "Terminated",
        "NodeLost",
        "NodeAffinity",
        "OutOfcpu",
        "OutOfmemory",
    }
)
#: container waiting reasons that will never resolve on their own
FATAL_WAITING = frozenset({"InvalidImageName", "ErrImageNeverPull"})

_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RESERVED_ENVS = ("PORT", "SKYCTL_SERVICE", "SKYCTL_REPLICA_ID", "SKYCTL_VERSION")


def _digest(text: str, n: int = 8) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:n]


def _slug(text: str, limit: int) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:limit].rstrip("-") or "svc"


def label_value(service: str) -> str:
    """``service`` when it is a valid label value, else a slug plus a hash of it."""
    if _LABEL_VALUE.fullmatch(service) and service:
        return service
    return f"{_slug(service, 54)}-{_digest(service)}"


def pod_name(service: str, replica_id: int, client_token: str) -> str:
    """The pod's (and its Service's) name: a DNS-1035 label, deterministic per launch."""
    return f"sky-{_slug(service, 36)}-{replica_id}-{_digest(client_token)}"


def instance_id(context: str, namespace: str, name: str) -> str:
    return f"{context}/{namespace}/{name}"


def split_instance_id(iid: str) -> tuple[str, str, str]:
    """(context, namespace, pod name); a context may itself contain ``/``."""
    parts = iid.rsplit("/", 2)
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"not a kubernetes instance id (context/namespace/pod): {iid!r}")
    return parts[0], parts[1], parts[2]


def image_of(candidate: ResourceCandidate | None, default: str) -> str:
    """``resources.image_id: docker:IMAGE`` -> IMAGE; none -> ``default``."""
    image_id = candidate.image_id if candidate else None
    if not image_id:
        return default
    if not image_id.startswith("docker:") or not image_id[len("docker:") :].strip():
        raise ConfigError(
            f"resources.image_id: kubernetes runs container images, expected docker:IMAGE, "
            f"got {image_id!r}"
        )
    return image_id[len("docker:") :].strip()


def _quantity(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(str(text).rstrip("+").strip())
    except ValueError:
        return None


def _memory(gib: float) -> str:
    return f"{int(gib)}Gi" if float(gib).is_integer() else f"{math.ceil(gib * 1024)}Mi"


def resources_of(candidate: ResourceCandidate | None) -> dict[str, dict[str, str]]:
    """Container requests/limits from ``cpus``, ``memory`` and ``accelerators``."""
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if candidate is not None:
        cpus = _quantity(candidate.cpus)
        if cpus:
            requests["cpu"] = f"{int(cpus)}" if cpus.is_integer() else f"{math.ceil(cpus * 1000)}m"
        memory = _quantity(candidate.memory)
        if memory:
            requests["memory"] = _memory(memory)
        gpus = sum((candidate.accelerators or {}).values())
        if gpus:
            requests["nvidia.com/gpu"] = limits["nvidia.com/gpu"] = str(gpus)
    out: dict[str, dict[str, str]] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def _affinity(selection: NodeSelection) -> dict[str, Any] | None:
    if not selection.exclude_labels:
        return None
    exprs = [
        {"key": k, "operator": "NotIn", "values": list(v)}
        if v
        else {"key": k, "operator": "DoesNotExist"}
        for k, v in sorted(selection.exclude_labels.items())
    ]
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": exprs}]
            }
        }
    }


def labels_of(request: LaunchRequest, name: str) -> dict[str, str]:
    return {
        LABEL_SERVICE: label_value(request.service),
        LABEL_REPLICA: str(request.replica_id),
        LABEL_VERSION: str(request.version),
        LABEL_CAPACITY: "spot" if request.offering.spot else "on-demand",
        LABEL_POD: name,
    }


def _command(setup: str | None, run: str | None) -> list[str] | None:
    if not run:
        if setup:
            raise ConfigError("run: a kubernetes replica with `setup` needs `run` as well")
        return None  # the image's own entrypoint serves
    if setup:
        return ["/bin/bash", "-c", 'bash -c "$1" && exec bash -c "$2"', "skyctl", setup, run]
    return ["/bin/bash", "-c", 'exec bash -c "$1"', "skyctl", run]


def _env(request: LaunchRequest) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "PORT", "value": str(request.port)},
        {"name": "SKYCTL_SERVICE", "value": request.service},
        {"name": "SKYCTL_REPLICA_ID", "value": str(request.replica_id)},
        {"name": "SKYCTL_VERSION", "value": str(request.version)},
    ]
    for key, value in sorted(request.envs.items()):
        if not _ENV_NAME.fullmatch(key):
            raise ConfigError(f"envs.{key}: not a valid environment variable name")
        if key in _RESERVED_ENVS:
            raise ConfigError(f"envs.{key}: reserved by skyctl; choose another name")
        env.append({"name": key, "value": str(value)})
    ours = skypilot_env(request, node_ip=None)  # SkyPilot's task variables win
    env = [e for e in env if e["name"] not in ours and e["name"] not in NODE_IP_VARS]
    env += [{"name": k, "value": v} for k, v in ours.items()]
    pod_ip = {"fieldRef": {"fieldPath": "status.podIP"}}
    env += [{"name": var, "valueFrom": pod_ip} for var in NODE_IP_VARS]
    return env


def pod_body(
    request: LaunchRequest,
    cfg: KubeConfig,
    *,
    name: str,
    namespace: str,
    candidate: ResourceCandidate | None,
) -> dict[str, Any]:
    """The Pod a launch creates (restartPolicy Never: the controller replaces replicas)."""
    selection = cfg.spot if request.offering.spot else cfg.on_demand
    if selection is None:
        raise ConfigError(f"kubernetes.capacity_preset: {cfg.preset} has no spot node selection")
    selector = dict(selection.node_selector)
    for accel in (candidate.accelerators or {}) if candidate else {}:
        selector.update(accelerator_selector(cfg, accel))
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": image_of(candidate, cfg.image),
        "env": _env(request),
        "ports": [{"name": "http", "containerPort": request.port, "protocol": "TCP"}],
    }
    command = _command(request.spec.setup, request.spec.run)
    if command is not None:
        container["command"] = command
    resources = resources_of(candidate)
    if resources:
        container["resources"] = resources
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "containers": [container],
    }
    if selector:
        spec["nodeSelector"] = selector
    if selection.tolerations:
        spec["tolerations"] = [dict(t) for t in selection.tolerations]
    affinity = _affinity(selection)
    if affinity:
        spec["affinity"] = affinity
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            # the spec's labels beside skyctl's (listing and teardown select by those)
            "labels": {**user_labels(candidate, "kubernetes"), **labels_of(request, name)},
            "annotations": {
                ANNOTATION_SERVICE: request.service,
                ANNOTATION_PRICE: f"{request.offering.price:g}",
            },
        },
        "spec": spec,
    }


def service_body(pod: Mapping[str, Any], service_type: str, port: int) -> dict[str, Any]:
    """A Service exposing one replica's pod, owned by the pod (deleted with it)."""
    meta = pod["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "labels": dict(meta.get("labels") or {}),
            "annotations": dict(meta.get("annotations") or {}),
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]}
            ],
        },
        "spec": {
            "type": service_type,
            "selector": {LABEL_POD: meta["name"]},
            "ports": [{"name": "http", "port": port, "targetPort": port, "protocol": "TCP"}],
        },
    }


def parse_time(text: Any) -> float:
    if not text:
        return 0.0
    if isinstance(text, datetime):
        return text.timestamp()
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


@dataclass(frozen=True)
class PodView:
    """What skyctl reads from a pod (a dict in the API's JSON shape)."""

    name: str
    namespace: str
    uid: str
    service: str
    replica_id: int
    version: int
    spot: bool
    price: float
    port: int
    phase: str
    pod_ip: str | None
    node: str | None
    created_at: float
    deleting: bool
    disruption: str | None  # DisruptionTarget reason/message, when set
    unschedulable: str | None  # the scheduler's message while it cannot place the pod
    state: InstanceState
    detail: str


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for cond in status.get("conditions") or ():
        if cond.get("type") == kind:
            return dict(cond)
    return None


def _container_problem(status: Mapping[str, Any]) -> tuple[str, bool]:
    """(a short description of the container's trouble, whether it is fatal)."""
    for cs in status.get("containerStatuses") or ():
        state = cs.get("state") or {}
        if state.get("terminated"):
            t = state["terminated"]
            return f"exited with code {t.get('exitCode')} ({t.get('reason') or 'Error'})", True
        waiting = state.get("waiting")
        if waiting and waiting.get("reason") not in (None, "ContainerCreating", "PodInitializing"):
            reason = str(waiting.get("reason"))
            return f"{reason}: {waiting.get('message') or ''}".rstrip(": "), reason in FATAL_WAITING
    return "", False


def view_pod(pod: Mapping[str, Any]) -> PodView:
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    status = pod.get("status") or {}
    spec = pod.get("spec") or {}
    phase = str(status.get("phase") or "Pending")
    disruption = _condition(status, "DisruptionTarget")
    disrupted = None
    if disruption and disruption.get("status") == "True":
        disrupted = (
            f"{disruption.get('reason') or 'DisruptionTarget'}: {disruption.get('message') or ''}"
        )
        disrupted = disrupted.rstrip(": ")
    scheduled = _condition(status, "PodScheduled")
    unschedulable = None
    if (
        phase == "Pending"
        and scheduled
        and scheduled.get("status") == "False"
        and scheduled.get("reason") == "Unschedulable"
    ):
        unschedulable = str(scheduled.get("message") or "unschedulable")
    problem, fatal = _container_problem(status)
    reason = str(status.get("reason") or "")
    if disrupted:
        state, detail = InstanceState.PREEMPTED, disrupted
    elif phase == "Failed" and reason in PREEMPT_REASONS:
        state, detail = (
            InstanceState.PREEMPTED,
            f"{reason}: {status.get('message') or ''}".rstrip(": "),
        )
    elif phase == "Failed" or (phase == "Pending" and fatal):
        state, detail = InstanceState.FAILED, problem or reason or "pod failed"
    elif phase == "Succeeded":  # a server that ended; the pod (and its Service) stay
        state, detail = InstanceState.FAILED, problem or "pod completed"
    elif phase == "Running":
        state, detail = InstanceState.RUNNING, problem
    else:
        state, detail = InstanceState.PENDING, unschedulable or problem
    ports = [p for c in spec.get("containers") or () for p in c.get("ports") or ()]
    try:
        price = float(annotations.get(ANNOTATION_PRICE, 0.0))
    except ValueError:
        price = 0.0
    return PodView(
        name=str(meta.get("name") or ""),
        namespace=str(meta.get("namespace") or ""),
        uid=str(meta.get("uid") or ""),
        service=str(annotations.get(ANNOTATION_SERVICE) or labels.get(LABEL_SERVICE, "")),
        replica_id=_int(labels.get(LABEL_REPLICA)),
        version=_int(labels.get(LABEL_VERSION), 1),
        spot=labels.get(LABEL_CAPACITY) == "spot",
        price=price,
        port=_int(ports[0].get("containerPort"), 8080) if ports else 8080,
        phase=phase,
        pod_ip=status.get("podIP") or None,
        node=spec.get("nodeName") or None,
        created_at=parse_time(meta.get("creationTimestamp")),
        deleting=bool(meta.get("deletionTimestamp")),
        disruption=disrupted,
        unschedulable=unschedulable,
        state=state,
        detail=detail,
    )


def service_endpoint(svc: Mapping[str, Any] | None, node_address: str | None) -> str | None:
    """``http://host:port`` of a replica's Service, once the cluster assigned one."""
    if not svc:
        return None
    spec = svc.get("spec") or {}
    ports = spec.get("ports") or [{}]
    port = ports[0]
    kind = spec.get("type") or "ClusterIP"
    if kind == "LoadBalancer":
        for ingress in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or ():
            host = ingress.get("ip") or ingress.get("hostname")
            if host:
                return f"http://{host}:{port.get('port')}"
        return None
    if kind == "NodePort":
        if node_address and port.get("nodePort"):
            return f"http://{node_address}:{port['nodePort']}"
        return None
    ip = spec.get("clusterIP")
    if ip and ip != "None":
        return f"http://{ip}:{port.get('port')}"
    return None


def node_address(node: Mapping[str, Any]) -> str | None:
    """A node's ExternalIP, else its InternalIP."""
    addresses = (node.get("status") or {}).get("addresses") or ()
    for kind in ("ExternalIP", "InternalIP"):
        for addr in addresses:
            if addr.get("type") == kind and addr.get("address"):
                return str(addr["address"])
    return None
