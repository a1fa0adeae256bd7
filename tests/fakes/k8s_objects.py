"""Pure helpers of the fake Kubernetes API server: kinds, Status objects, label
selectors, validation, the scheduler's node fit and merge patches.

Shapes follow the API reference: errors are ``Status`` objects
(``{"kind": "Status", "apiVersion": "v1", "status": "Failure", "message",
"reason", "details", "code"}``); names are validated as the API server does
(DNS-1123 subdomains for most objects, DNS-1035 labels for Services).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

#: plural -> (kind, cluster scoped)
KINDS: dict[str, tuple[str, bool]] = {
    "pods": ("Pod", False),
    "services": ("Service", False),
    "secrets": ("Secret", False),
    "configmaps": ("ConfigMap", False),
    "serviceaccounts": ("ServiceAccount", False),
    "persistentvolumeclaims": ("PersistentVolumeClaim", False),
    "roles": ("Role", False),
    "rolebindings": ("RoleBinding", False),
    "deployments": ("Deployment", False),
    "poddisruptionbudgets": ("PodDisruptionBudget", False),
    "namespaces": ("Namespace", True),
    "nodes": ("Node", True),
    "clusterroles": ("ClusterRole", True),
    "clusterrolebindings": ("ClusterRoleBinding", True),
}
#: API group/version serving each plural ("v1" is the core group)
GROUPS: dict[str, str] = {
    "roles": "rbac.authorization.k8s.io/v1",
    "rolebindings": "rbac.authorization.k8s.io/v1",
    "clusterroles": "rbac.authorization.k8s.io/v1",
    "clusterrolebindings": "rbac.authorization.k8s.io/v1",
    "deployments": "apps/v1",
    "poddisruptionbudgets": "policy/v1",
}
REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "AlreadyExists",
    410: "Expired",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
}

_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS1035 = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
_LABEL_NAME = re.compile(r"([a-z0-9.-]{1,253}/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")


class ApiError(Exception):
    """Becomes a Status response."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        reason: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or REASONS.get(code, "InternalError")
        self.details = dict(details or {})


def status(
    code: int, message: str, reason: str, details: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success" if code < 400 else "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = dict(details)
    return body


def timestamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def api_version(plural: str) -> str:
    return GROUPS.get(plural, "v1")


# ----------------------------------------------------------------- selectors

Requirement = tuple[str, str, tuple[str, ...]]  # (key, operator, values)
_SET_RE = re.compile(r"^\s*(!?)\s*([^\s!=,()]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")


def _split_top(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p for p in (p.strip() for p in parts) if p]


def parse_selector(text: str | None) -> list[Requirement]:
    """A label selector (``a=b,c!=d,e,!f,g in (x,y),h notin (z)``); 400 when malformed."""
    out: list[Requirement] = []
    for part in _split_top(text or ""):
        for op in ("==", "!=", "="):
            if op in part:
                key, _, value = part.partition(op)
                key, value = key.strip(), value.strip()
                if not _LABEL_NAME.fullmatch(key) or not _LABEL_VALUE.fullmatch(value):
                    raise ApiError(400, f"unable to parse requirement: {part!r}")
                out.append((key, "!=" if op == "!=" else "=", (value,)))
                break
        else:
            m = _SET_RE.match(part)
            if not m or not _LABEL_NAME.fullmatch(m.group(2)):
                raise ApiError(400, f"unable to parse requirement: {part!r}")
            if m.group(3):
                values = tuple(v.strip() for v in m.group(4).split(",") if v.strip())
                out.append((m.group(2), m.group(3), values))
            else:
                out.append((m.group(2), "!" if m.group(1) else "exists", ()))
    return out


def matches(selector: Sequence[Requirement], labels: Mapping[str, str]) -> bool:
    for key, op, values in selector:
        has = key in labels
        value = labels.get(key)
        ok = {
            "=": has and value in values,
            "!=": not has or value not in values,
            "in": has and value in values,
            "notin": not has or value not in values,
            "exists": has,
            "!": not has,
        }[op]
        if not ok:
            return False
    return True


# ---------------------------------------------------------------- validation


def validate(plural: str, obj: Mapping[str, Any]) -> None:
    """422 Invalid for what the API server's validation would reject."""
    meta = obj.get("metadata") or {}
    name = meta.get("name") or ""
    kind = KINDS[plural][0]
    causes: list[str] = []
    pattern = _DNS1035 if plural == "services" else _SUBDOMAIN
    if not name:
        causes.append("metadata.name: Required value: name or generateName is required")
    elif not pattern.fullmatch(name) or len(name) > 253:
        causes.append(f"metadata.name: Invalid value: {name!r}: a lowercase RFC 1123 name")
    for key, value in (meta.get("labels") or {}).items():
        if (
            not _LABEL_NAME.fullmatch(str(key))
            or not isinstance(value, str)
            or not (_LABEL_VALUE.fullmatch(value))
        ):
            causes.append(f"metadata.labels: Invalid value: {value!r}")
    spec = obj.get("spec") or {}
    if plural == "pods":
        containers = spec.get("containers") or []
        if not containers:
            causes.append("spec.containers: Required value")
        for i, c in enumerate(containers):
            if not c.get("name") or not c.get("image"):
                causes.append(f"spec.containers[{i}]: Required value: name and image")
        if spec.get("restartPolicy") not in (None, "Always", "OnFailure", "Never"):
            causes.append(f"spec.restartPolicy: Unsupported value: {spec['restartPolicy']!r}")
    if plural == "services":
        if not spec.get("ports"):
            causes.append("spec.ports: Required value")
        if spec.get("type", "ClusterIP") not in (
            "ClusterIP",
            "NodePort",
            "LoadBalancer",
            "ExternalName",
        ):
            causes.append(f"spec.type: Unsupported value: {spec.get('type')!r}")
    if plural == "deployments" and not (spec.get("selector") and spec.get("template")):
        causes.append("spec.selector, spec.template: Required value")
    if causes:
        raise ApiError(
            422,
            f"{kind} {name!r} is invalid: {'; '.join(causes)}",
            details={
                "name": name,
                "kind": kind,
                "causes": [{"reason": "FieldValueInvalid", "message": c} for c in causes],
            },
        )


# ------------------------------------------------------------------ scheduler


def _tolerates(tolerations: Sequence[Mapping[str, Any]], taint: Mapping[str, Any]) -> bool:
    for tol in tolerations:
        if tol.get("effect") and tol.get("effect") != taint.get("effect"):
            continue
        if tol.get("operator") == "Exists":
            if not tol.get("key") or tol.get("key") == taint.get("key"):
                return True
        elif tol.get("key") == taint.get("key") and tol.get("value", "") == taint.get("value", ""):
            return True
    return False


def _expression_ok(expr: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, op, values = str(expr.get("key")), expr.get("operator"), expr.get("values") or []
    if op == "In":
        return key in labels and labels[key] in values
    if op == "NotIn":
        return key not in labels or labels[key] not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    return False


def fits(pod: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """Whether the scheduler may place ``pod`` on ``node`` (selector, affinity, taints, GPUs)."""
    spec = pod.get("spec") or {}
    labels = (node.get("metadata") or {}).get("labels") or {}
    if (node.get("spec") or {}).get("unschedulable"):
        return False
    for key, value in (spec.get("nodeSelector") or {}).items():
        if labels.get(key) != value:
            return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms") or []
    if terms and not any(
        all(_expression_ok(e, labels) for e in t.get("matchExpressions") or []) for t in terms
    ):
        return False
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not _tolerates(
            spec.get("tolerations") or [], taint
        ):
            return False
    gpus = sum(
        int(((c.get("resources") or {}).get("limits") or {}).get("nvidia.com/gpu", 0))
        for c in spec.get("containers") or []
    )
    capacity = int(((node.get("status") or {}).get("capacity") or {}).get("nvidia.com/gpu", 0))
    return gpus <= capacity


def merge_patch(obj: dict[str, Any], body: Any, content_type: str) -> None:
    """Apply a PATCH body to ``obj``: a JSON merge patch (RFC 7386; a strategic merge
    patch treats maps the same way) as ``application/merge-patch+json`` or
    ``strategic-merge-patch+json`` ask; a JSON patch must be a list of operations
    (400 otherwise; not supported here: 415); other media types 415."""
    kind = content_type.split(";")[0].strip()
    if kind == "application/json-patch+json":
        if not isinstance(body, list):
            raise ApiError(
                400, "json: cannot unmarshal object into Go value of type jsonpatch.Patch"
            )
        raise ApiError(415, "fake: JSON patch operations are not supported")
    if kind not in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
        raise ApiError(
            415,
            "the body of the request was in an unknown format - accepted media types "
            f'include: application/merge-patch+json; got "{kind}"',
        )
    if not isinstance(body, dict):
        raise ApiError(400, "the patch is not an object")
    name = obj["metadata"]["name"]
    if (body.get("metadata") or {}).get("name", name) != name:
        raise ApiError(422, f'"{name}" is invalid: metadata.name: field is immutable')
    _merge(obj, body)


def _merge(target: dict[str, Any], patch: Mapping[str, Any]) -> None:
    """RFC 7386: maps merge key by key, null removes, anything else replaces."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
