"""The ``kubernetes:`` section of ``config.yaml``, validated into a frozen value.

Pure: no client import, no I/O. Every bad key or value is a one-line
:class:`~skyctl.errors.ConfigError` naming ``kubernetes.<key>`` and what is
allowed. See docs/kubernetes.md for the user's side.

Capacity presets say how a pod asks for a spot or an on-demand node:

=========  ==================================================  ==============================
preset     spot                                                on-demand
=========  ==================================================  ==============================
karpenter  ``karpenter.sh/capacity-type: spot``                ``... : on-demand``
gke        ``cloud.google.com/gke-spot: "true"`` + toleration  node affinity: label absent
aks        ``kubernetes.azure.com/scalesetpriority: spot``     node affinity: label not spot
           + toleration of its ``NoSchedule`` taint
custom     ``spot:`` / ``on_demand:`` blocks of the config     (same)
none       (no spot offerings)                                 no node selection
=========  ==================================================  ==============================
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from skyctl.errors import ConfigError

__all__ = [
    "CONFIG_KEYS",
    "DEFAULT_IMAGE",
    "IN_CLUSTER",
    "KubeConfig",
    "NodeSelection",
    "parse_config",
]

CONFIG_KEYS = (
    "kubeconfig",
    "contexts",
    "namespace",
    "capacity_preset",
    "spot",
    "on_demand",
    "endpoint_mode",
    "service_type",
    "unschedulable_timeout_seconds",
    "capacity_cooldown_seconds",
    "spot_price",
    "ondemand_price",
    "image",
    "accelerator_label",
)
CONTEXT_KEYS = ("name", "namespace", "spot_price", "ondemand_price")
SELECTION_KEYS = ("node_selector", "tolerations", "exclude_labels")
TOLERATION_KEYS = ("key", "operator", "value", "effect", "tolerationSeconds")
PRESETS = ("karpenter", "gke", "aks", "custom", "none")
ENDPOINT_MODES = ("pod_ip", "service")
SERVICE_TYPES = ("LoadBalancer", "NodePort", "ClusterIP")

#: the context name used when the controller runs inside a cluster without a kubeconfig
IN_CLUSTER = "in-cluster"
#: the image a replica runs when the spec has no ``resources.image_id: docker:IMAGE``
DEFAULT_IMAGE = "python:3.11-slim"
DEFAULT_SPOT_PRICE = 0.35
DEFAULT_ONDEMAND_PRICE = 1.0
DEFAULT_UNSCHEDULABLE_TIMEOUT = 120.0
DEFAULT_CAPACITY_COOLDOWN = 300.0

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


@dataclass(frozen=True)
class NodeSelection:
    """How a pod lands on one kind of node: selector, tolerations, exclusions.

    ``exclude_labels`` maps a node label to values the node must not have
    (``NotIn``); an empty tuple means the node must not carry the label at all
    (``DoesNotExist``).
    """

    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    exclude_labels: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class ContextConfig:
    name: str
    namespace: str | None  # None: the kubeconfig context's namespace, else "default"
    spot_price: float
    ondemand_price: float


@dataclass(frozen=True)
class KubeConfig:
    kubeconfig: str | None
    contexts: tuple[ContextConfig, ...]  # empty: the kubeconfig's current context
    namespace: str | None
    preset: str
    spot: NodeSelection | None  # None: no spot offerings
    on_demand: NodeSelection
    endpoint_mode: str | None  # None: pod_ip in a cluster, service outside
    service_type: str
    unschedulable_timeout: float
    capacity_cooldown: float
    spot_price: float
    ondemand_price: float
    image: str
    accelerator_label: str | None

    def context(self, name: str) -> ContextConfig:
        for ctx in self.contexts:
            if ctx.name == name:
                return ctx
        return ContextConfig(name, None, self.spot_price, self.ondemand_price)


def _gke_accelerator(name: str) -> str:
    known = {
        "A100": "nvidia-tesla-a100",
        "A100-80GB": "nvidia-a100-80gb",
        "H100": "nvidia-h100-80gb",
        "L4": "nvidia-l4",
        "T4": "nvidia-tesla-t4",
        "V100": "nvidia-tesla-v100",
        "P100": "nvidia-tesla-p100",
        "P4": "nvidia-tesla-p4",
    }
    return known.get(name.upper(), "nvidia-" + name.lower())


def preset_selections(preset: str) -> tuple[NodeSelection | None, NodeSelection]:
    """(spot, on-demand) node selection of a preset; spot is None when there is none."""
    if preset == "karpenter":
        key = "karpenter.sh/capacity-type"
        return NodeSelection({key: "spot"}), NodeSelection({key: "on-demand"})
    if preset == "gke":
        key = "cloud.google.com/gke-spot"
        tol = {"key": key, "operator": "Equal", "value": "true", "effect": "NoSchedule"}
        return (
            NodeSelection({key: "true"}, (tol,)),
            NodeSelection(exclude_labels={key: ()}),
        )
    if preset == "aks":
        key = "kubernetes.azure.com/scalesetpriority"
        tol = {"key": key, "operator": "Equal", "value": "spot", "effect": "NoSchedule"}
        return (
            NodeSelection({key: "spot"}, (tol,)),
            NodeSelection(exclude_labels={key: ("spot",)}),
        )
    return None, NodeSelection()


def accelerator_selector(cfg: KubeConfig, accelerator: str) -> dict[str, str]:
    """The node selector that picks nodes with ``accelerator`` (may be empty)."""
    if cfg.accelerator_label:
        return {cfg.accelerator_label: accelerator.lower()}
    if cfg.preset == "karpenter":
        return {"karpenter.k8s.aws/instance-gpu-name": accelerator.lower()}
    if cfg.preset == "gke":
        return {"cloud.google.com/gke-accelerator": _gke_accelerator(accelerator)}
    return {}


def _str(section: Mapping[str, Any], key: str, where: str = "kubernetes") -> str | None:
    value = section.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}.{key}: expected a non-empty string, got {value!r}")
    return value


def _number(
    section: Mapping[str, Any], key: str, default: float, where: str = "kubernetes"
) -> float:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{where}.{key}: expected a number, got {value!r}")
    if value < 0:
        raise ConfigError(f"{where}.{key}: must be >= 0, got {value!r}")
    return float(value)


def _choice(section: Mapping[str, Any], key: str, allowed: Sequence[str]) -> str | None:
    value = section.get(key)
    if value is None:
        return None
    if value not in allowed:
        raise ConfigError(f"kubernetes.{key}: expected one of {', '.join(allowed)}, got {value!r}")
    return str(value)


def _namespace(value: str | None, where: str) -> str | None:
    if value is not None and not _DNS_LABEL.fullmatch(value):
        raise ConfigError(f"{where}: {value!r} is not a valid namespace name (a DNS label)")
    return value


def _contexts(raw: Any, cfg: Mapping[str, Any]) -> tuple[ContextConfig, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw:
        raise ConfigError("kubernetes.contexts: expected a non-empty list of context names")
    spot = _number(cfg, "spot_price", DEFAULT_SPOT_PRICE)
    ondemand = _number(cfg, "ondemand_price", DEFAULT_ONDEMAND_PRICE)
    out: list[ContextConfig] = []
    for i, item in enumerate(raw):
        where = f"kubernetes.contexts[{i}]"
        if isinstance(item, str) and item:
            out.append(ContextConfig(item, None, spot, ondemand))
            continue
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: expected a context name or a mapping with 'name'")
        for key in item:
            if key not in CONTEXT_KEYS:
                raise ConfigError(f"{where}.{key}: unknown key; allowed: {', '.join(CONTEXT_KEYS)}")
        name = _str(item, "name", where)
        if name is None:
            raise ConfigError(f"{where}.name: required")
        out.append(
            ContextConfig(
                name,
                _namespace(_str(item, "namespace", where), f"{where}.namespace"),
                _number(item, "spot_price", spot, where),
                _number(item, "ondemand_price", ondemand, where),
            )
        )
    names = [c.name for c in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"kubernetes.contexts: {dupes[0]!r} is listed twice")
    return tuple(out)


def _selection(raw: Any, where: str) -> NodeSelection:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with {', '.join(SELECTION_KEYS)}")
    for key in raw:
        if key not in SELECTION_KEYS:
            raise ConfigError(f"{where}.{key}: unknown key; allowed: {', '.join(SELECTION_KEYS)}")
    selector = raw.get("node_selector") or {}
    if not isinstance(selector, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in selector.items()
    ):
        raise ConfigError(f"{where}.node_selector: expected a mapping of label -> string value")
    tolerations = raw.get("tolerations") or []
    if not isinstance(tolerations, list):
        raise ConfigError(f"{where}.tolerations: expected a list of tolerations")
    for i, tol in enumerate(tolerations):
        if not isinstance(tol, dict) or any(k not in TOLERATION_KEYS for k in tol):
            raise ConfigError(
                f"{where}.tolerations[{i}]: expected a mapping with {', '.join(TOLERATION_KEYS)}"
            )
    exclude = raw.get("exclude_labels") or {}
    if not isinstance(exclude, dict):
        raise ConfigError(f"{where}.exclude_labels: expected a mapping of label -> list of values")
    excl: dict[str, tuple[str, ...]] = {}
    for key, values in exclude.items():
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ConfigError(f"{where}.exclude_labels.{key}: expected a list of strings")
        excl[str(key)] = tuple(values)
    return NodeSelection(dict(selector), tuple(dict(t) for t in tolerations), excl)


def parse_config(config: Mapping[str, Any] | None) -> KubeConfig:
    """Validate the ``kubernetes:`` section; raises ConfigError naming the key."""
    cfg = dict(config or {})
    for key in cfg:
        if key not in CONFIG_KEYS:
            raise ConfigError(f"kubernetes.{key}: unknown key; allowed: {', '.join(CONFIG_KEYS)}")
    preset = _choice(cfg, "capacity_preset", PRESETS) or "none"
    if preset == "custom":
        if "on_demand" not in cfg and "spot" not in cfg:
            raise ConfigError(
                "kubernetes.capacity_preset: custom needs a spot: and/or on_demand: block"
            )
        spot = _selection(cfg["spot"], "kubernetes.spot") if "spot" in cfg else None
        on_demand = (
            _selection(cfg["on_demand"], "kubernetes.on_demand")
            if "on_demand" in cfg
            else NodeSelection()
        )
    else:
        for key in ("spot", "on_demand"):
            if key in cfg:
                raise ConfigError(f"kubernetes.{key}: only with capacity_preset: custom")
        spot, on_demand = preset_selections(preset)
    return KubeConfig(
        kubeconfig=_str(cfg, "kubeconfig"),
        contexts=_contexts(cfg.get("contexts"), cfg),
        namespace=_namespace(_str(cfg, "namespace"), "kubernetes.namespace"),
        preset=preset,
        spot=spot,
        on_demand=on_demand,
        endpoint_mode=_choice(cfg, "endpoint_mode", ENDPOINT_MODES),
        service_type=_choice(cfg, "service_type", SERVICE_TYPES) or "LoadBalancer",
        unschedulable_timeout=_number(
            cfg, "unschedulable_timeout_seconds", DEFAULT_UNSCHEDULABLE_TIMEOUT
        ),
        capacity_cooldown=_number(cfg, "capacity_cooldown_seconds", DEFAULT_CAPACITY_COOLDOWN),
        spot_price=_number(cfg, "spot_price", DEFAULT_SPOT_PRICE),
        ondemand_price=_number(cfg, "ondemand_price", DEFAULT_ONDEMAND_PRICE),
        image=_str(cfg, "image") or DEFAULT_IMAGE,
        accelerator_label=_str(cfg, "accelerator_label"),
    )
