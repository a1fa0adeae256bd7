"""Every key of ``config.yaml``, checked when the file is read (:mod:`skyctl.config`).

A provider also checks its own section when it is built (``providers/*_config.py``,
``providers/simulated.py``), but that happens when a service first uses the cloud,
possibly deep in the controller: a typo or a wrong type in a section is found here
first, with the file, the line and the dotted key. Only our own keys and their types
and ranges are checked (no cloud SDK is imported, no file or network is looked at:
credentials, a ``catalog`` or ``ca_bundle`` file are the provider's to check). The
rules mirror the providers' (``tests/test_config_schema.py`` holds the two to the
same keys and the same refusals).

A rule is a function ``(value, path)`` raising :class:`Bad` with the dotted path and
what is allowed; ``None`` (a key given with no value) is allowed only where the
provider reads it as "not set" (:func:`unset_ok`).
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from skyctl.logtail import log_limits_problem

Path = tuple[str | int, ...]
Rule = Callable[[Any, Path], None]

MAX_ROUTER_WORKERS = 64


class Bad(Exception):
    """``path`` (section, keys, list indexes) is wrong: ``message`` says what is allowed."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def dotted(path: Path) -> str:
    """``("kubernetes", "contexts", 0, "name")`` -> ``kubernetes.contexts[0].name``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        name = part if part.isprintable() else repr(part)  # the error stays one line
        out += f".{name}" if out else name
    return out


def _raise(path: Path, message: str) -> None:
    raise Bad(path, message)


def _got(value: Any) -> str:
    return f"got {value!r}"


# -- leaf rules ------------------------------------------------------------------------
def unset_ok(rule: Rule) -> Rule:
    """``rule``, with ``None`` (``key:`` and no value) read as not set."""

    def check(value: Any, path: Path) -> None:
        if value is not None:
            rule(value, path)

    return check


def text(*, nonempty: bool = False, what: str = "a string") -> Rule:
    def check(value: Any, path: Path) -> None:
        if not isinstance(value, str) or (nonempty and not value.strip()):
            raise Bad(path, f"expected {'a non-empty string' if nonempty else what}, {_got(value)}")

    return check


def number(minimum: float, *, whole: bool = False, maximum: float | None = None) -> Rule:
    """A number (an integer when ``whole``) from ``minimum`` (to ``maximum``); never a
    boolean, never inf or nan."""

    def check(value: Any, path: Path) -> None:
        kind = int if whole else (int, float)
        ok = isinstance(value, kind) and not isinstance(value, bool) and math.isfinite(value)
        ok = ok and value >= minimum and (maximum is None or value <= maximum)
        if not ok:
            noun = "an integer" if whole else "a number"
            span = f"from {minimum:g} to {maximum:g}" if maximum is not None else f">= {minimum:g}"
            raise Bad(path, f"expected {noun} {span}, {_got(value)}")

    return check


def choice(*allowed: str, fold: bool = False) -> Rule:
    def check(value: Any, path: Path) -> None:
        given = value.upper() if fold and isinstance(value, str) else value
        if not isinstance(value, str) or given not in allowed:
            raise Bad(path, f"expected one of {', '.join(allowed)}, {_got(value)}")

    return check


def names(what: str, *, scalar_ok: bool = False, numbers_ok: bool = False) -> Rule:
    """A list of non-empty strings (``numbers_ok``: or integers, Azure's zones; and
    ``scalar_ok``: one alone)."""
    kinds: tuple[type, ...] = (str, int) if numbers_ok else (str,)

    def check(value: Any, path: Path) -> None:
        items = [value] if scalar_ok and isinstance(value, kinds) else value
        if not isinstance(items, list) or not all(
            isinstance(v, kinds) and not isinstance(v, bool) and (v or v == 0) for v in items
        ):
            raise Bad(path, f"expected {what}, {_got(value)}")

    return check


def cidrs(value: Any, path: Path) -> None:
    names("a list of CIDR ranges such as [0.0.0.0/0]")(value, path)
    import ipaddress  # only for a gcp.source_ranges

    for i, cidr in enumerate(value):
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise Bad(
                (*path, i), f"expected a CIDR range such as 10.0.0.0/8, {_got(cidr)}"
            ) from None


def label_values(value: Any, path: Path) -> None:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise Bad(path, f"expected a mapping of label -> string value, {_got(value)}")


_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def namespace(value: Any, path: Path) -> None:
    text(nonempty=True)(value, path)
    if not _DNS_LABEL.fullmatch(value):
        raise Bad(path, f"expected a namespace name (a DNS label: a-z, 0-9, -), {_got(value)}")


# -- mappings ---------------------------------------------------------------------------
def unknown_key(path: Path, key: Any, allowed: Mapping[str, Any]) -> Bad:
    """The existing config style: ``router.worker: unknown key (did you mean
    'workers'?); allowed: workers``."""
    close = difflib.get_close_matches(str(key), list(allowed), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return Bad((*path, str(key)), f"unknown key{hint}; allowed: {', '.join(allowed)}")


class Keys:
    """A mapping whose keys are among ``rules``, each value checked by its rule; then
    ``after`` on the whole (checks across keys)."""

    def __init__(
        self, rules: Mapping[str, Rule], *, after: Rule | None = None, what: str = ""
    ) -> None:
        self.rules, self.after, self.what = rules, after, what

    def __call__(self, value: Any, path: Path) -> None:
        if not isinstance(value, dict):
            shape = self.what or f"a mapping with {', '.join(self.rules)}"
            raise Bad(path, f"expected {shape}, {_got(value)}")
        for key, item in value.items():
            rule = self.rules.get(key) if isinstance(key, str) else None
            if rule is None:
                raise unknown_key(path, key, self.rules)
            rule(item, (*path, key))
        if self.after is not None:
            self.after(value, path)


def each(rule: Rule, what: str, *, nonempty: bool = False) -> Rule:
    def check(value: Any, path: Path) -> None:
        if not isinstance(value, list) or (nonempty and not value):
            raise Bad(path, f"expected {what}, {_got(value)}")
        for i, item in enumerate(value):
            rule(item, (*path, i))

    return check


def falsy_ok(rule: Rule) -> Rule:
    """``rule``, with an empty or null value read as none (``raw.get(k) or {}``)."""

    def check(value: Any, path: Path) -> None:
        if value:
            rule(value, path)

    return check


# -- the sections -----------------------------------------------------------------------
POSITIVE = number(1)
AT_LEAST_0 = number(0)


def _ami(value: Any, path: Path) -> None:
    if isinstance(value, dict) and all(isinstance(a, str) for a in value.values()):
        return
    if not isinstance(value, str):
        raise Bad(path, f"expected an AMI id or a mapping region -> AMI id, {_got(value)}")


AWS = Keys(
    {
        "regions": unset_ok(names("a list of region names such as [us-east-1, us-west-2]")),
        "endpoint_url": unset_ok(text()),
        "profile": unset_ok(text()),
        "catalog": unset_ok(text()),
        "ami": unset_ok(_ami),
        "max_attempts": POSITIVE,
        "price_ttl_seconds": POSITIVE,
    }
)


def _project(value: Any, path: Path) -> None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise Bad(path, f"expected a project id, {_got(value)}")


GCP = Keys(
    {
        "project": unset_ok(_project),
        "api_endpoint": unset_ok(text()),
        "regions": unset_ok(names("a list of region names such as [us-central1]")),
        "catalog": unset_ok(text()),
        "credentials": unset_ok(choice("default", "anonymous")),
        "network": text(nonempty=True),
        "subnetwork": unset_ok(text()),
        "image": text(nonempty=True),
        "gpu_image": text(nonempty=True),
        "disk_size": number(1, whole=True),
        "service_account": unset_ok(text()),
        "source_ranges": unset_ok(cidrs),
    }
)

AZURE_CLOUDS = ("AZURE_PUBLIC_CLOUD", "AZURE_CHINA_CLOUD", "AZURE_US_GOVERNMENT")


def _https(value: Any, path: Path) -> None:
    text(nonempty=True)(value, path)
    if not value.strip().startswith("https://"):
        raise Bad(path, f"expected an https:// URL (ARM requires TLS), {_got(value)}")


def _whole(value: Any, path: Path) -> None:
    number(1)(value, path)
    if value != int(value):
        raise Bad(path, f"expected an integer >= 1, {_got(value)}")


NONEMPTY = unset_ok(text(nonempty=True))
AZURE = Keys(
    {
        "subscription_id": NONEMPTY,
        "resource_group": NONEMPTY,
        "regions": unset_ok(names("a list of region names", scalar_ok=True, numbers_ok=True)),
        "zones": unset_ok(
            names("a list of zones such as [1, 2, 3]", scalar_ok=True, numbers_ok=True)
        ),
        "cloud": unset_ok(choice(*AZURE_CLOUDS, fold=True)),
        "base_url": unset_ok(_https),
        "credential_scope": NONEMPTY,
        "ca_bundle": NONEMPTY,
        "catalog": NONEMPTY,
        "image_id": NONEMPTY,
        "ssh_public_key": NONEMPTY,
        "poll_interval_seconds": AT_LEAST_0,
        "max_attempts": _whole,
    }
)

K8S_PRESETS = ("karpenter", "gke", "aks", "custom", "none")
TOLERATION_KEYS = ("key", "operator", "value", "effect", "tolerationSeconds")


def _anything(value: Any, path: Path) -> None:
    """A toleration's fields: Kubernetes's to check."""


def _exclude_labels(value: Any, path: Path) -> None:
    if not isinstance(value, dict):
        raise Bad(path, f"expected a mapping of label -> list of values, {_got(value)}")
    for label, values in value.items():
        names("a list of strings")(values, (*path, str(label)))


SELECTION = Keys(
    {
        "node_selector": falsy_ok(label_values),
        "tolerations": falsy_ok(
            each(
                Keys({k: _anything for k in TOLERATION_KEYS}, what="a toleration mapping"),
                "a list of tolerations",
            )
        ),
        "exclude_labels": falsy_ok(_exclude_labels),
    }
)
PRICE = AT_LEAST_0
CONTEXT = Keys(
    {
        "name": text(nonempty=True),
        "namespace": unset_ok(namespace),
        "spot_price": PRICE,
        "ondemand_price": PRICE,
    },
    after=lambda v, p: None if "name" in v else _raise((*p, "name"), "required"),
)


def _context(value: Any, path: Path) -> None:
    if isinstance(value, str) and value:
        return
    if not isinstance(value, dict):
        raise Bad(path, f"expected a context name or a mapping with 'name', {_got(value)}")
    CONTEXT(value, path)


def _contexts(value: Any, path: Path) -> None:
    each(_context, "a non-empty list of context names", nonempty=True)(value, path)
    seen = [c if isinstance(c, str) else c.get("name") for c in value]
    for i, name in enumerate(seen):
        if name in seen[:i]:
            raise Bad((*path, i), f"{name!r} is listed twice")


def _capacity(section: Any, path: Path) -> None:
    """``spot:`` and ``on_demand:`` only with ``capacity_preset: custom``, which needs one."""
    custom = section.get("capacity_preset") == "custom"
    given = [k for k in ("spot", "on_demand") if k in section]
    if custom and not given:
        raise Bad((*path, "capacity_preset"), "custom needs a spot: and/or on_demand: block")
    if given and not custom:
        raise Bad((*path, given[0]), "only with capacity_preset: custom")


KUBERNETES = Keys(
    {
        "kubeconfig": NONEMPTY,
        "contexts": unset_ok(_contexts),
        "namespace": unset_ok(namespace),
        "capacity_preset": unset_ok(choice(*K8S_PRESETS)),
        "spot": SELECTION,
        "on_demand": SELECTION,
        "endpoint_mode": unset_ok(choice("pod_ip", "service")),
        "service_type": unset_ok(choice("LoadBalancer", "NodePort", "ClusterIP")),
        "unschedulable_timeout_seconds": AT_LEAST_0,
        "capacity_cooldown_seconds": AT_LEAST_0,
        "spot_price": PRICE,
        "ondemand_price": PRICE,
        "image": NONEMPTY,
        "accelerator_label": NONEMPTY,
    },
    after=_capacity,
)

SIMULATED = Keys(
    {
        "launch_seconds": AT_LEAST_0,
        "boot_seconds": AT_LEAST_0,
        "launch_failure_rate": number(0, maximum=1),
        "preemptions_per_hour": AT_LEAST_0,
        "notice_seconds": AT_LEAST_0,
        "spot_price": AT_LEAST_0,
        "ondemand_price": AT_LEAST_0,
        "zones": number(1, whole=True),
        "seed": number(0, whole=True),
        "server": choice("inprocess", "process"),
        "max_concurrent_calls": number(1, whole=True),
    }
)


def _accelerators(value: Any, path: Path) -> None:
    """``{L4: 1}``, ``L4:1`` or ``[L4:1, T4]`` (providers/feasibility.local_accelerators)."""
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, str | list):
        items = [
            (n, c or 1)
            for n, _, c in (
                str(t).partition(":") for t in ([value] if isinstance(value, str) else value)
            )
        ]
    else:
        raise Bad(path, f"expected a mapping such as {{L4: 1}}, {_got(value)}")
    for name, count in items:
        try:
            ok = float(count) > 0
        except (TypeError, ValueError):
            ok = False
        if not (isinstance(name, str) and name and ok):
            raise Bad(path, f"expected NAME: COUNT (a positive number), got {name}: {count}")


def _log_limit(key: str) -> Rule:
    def check(value: Any, path: Path) -> None:
        problem = log_limits_problem({key: value})
        if problem is not None:
            raise Bad(path, problem[1].split(": ", 1)[1])

    return check


LOCAL = Keys(
    {
        "accelerators": unset_ok(_accelerators),
        "log_max_mb": _log_limit("log_max_mb"),
        "log_backups": _log_limit("log_backups"),
    }
)
ROUTER = Keys({"workers": number(1, whole=True, maximum=MAX_ROUTER_WORKERS)})

#: section -> its rule, in the order the docs list them
SECTIONS: dict[str, Keys] = {
    "local": LOCAL,
    "aws": AWS,
    "gcp": GCP,
    "azure": AZURE,
    "kubernetes": KUBERNETES,
    "simulated": SIMULATED,
    "router": ROUTER,
}


def check_section(name: str, value: Any) -> None:
    """Raise :class:`Bad` for the first wrong key of section ``name`` (None: empty)."""
    SECTIONS[name](value or {}, (name,))
