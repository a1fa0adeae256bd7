"""Service spec YAML -> :class:`skyctl.spec.ServiceSpec`: the only place that validates.

SkyServe's service YAML parses unchanged; keys it accepts that we do not act
on are kept in ``ServiceSpec.extra`` (by dotted key path), and whatever it
rejects is rejected here too. Our own keys (``local:``, ``service.router``,
``service.fan_out``, ``readiness_probe.period_seconds`` ...) are documented in
``docs/spec.md``. Every problem is one :class:`~skyctl.errors.SpecError`,
rendered on one line as ``file:LINE: key.path: message``; any input gives a
ServiceSpec or a SpecError, never another exception.

The YAML loader with line numbers and the typed readers live in
``skyctl.spec_checks``; the ``resources:`` section in ``skyctl.spec_resources``, ``local:``
in ``skyctl.spec_local``, envs and secrets in ``skyctl.spec_env``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from skyctl.spec import (
    TLS,
    Auth,
    CacheAware,
    ReplicaPolicy,
    Resources,
    RouterOptions,
    ServiceSection,
    ServiceSpec,
)
from skyctl.spec_checks import (
    MAX_SPEC_BYTES,
    LineDict,
    Section,
    did_you_mean,
    drop_nulls,
    keep_extra,
    load_yaml,
    shorten,
    spec_error,
    type_name,
)
from skyctl.spec_env import (
    SUBSTITUTED_KEYS,
    apply_overrides,
    env_map,
    read_secrets,
    substitute,
)
from skyctl.spec_hints import PROBE_KEYS, RESOURCE_KEYS, RETIRED_POLICY, belongs
from skyctl.spec_local import parse_local
from skyctl.spec_probe import TOKEN_RE, parse_probe
from skyctl.spec_resources import all_ports, parse_resources

__all__ = [
    "LOAD_BALANCING_POLICIES",
    "SPOT_POLICIES",
    "load_spec_file",
    "parse_spec",
    "service_name_problem",
]

#: Values of ``service.replica_policy.spot_policy`` (our key); see docs/policies.md.
SPOT_POLICIES: tuple[str, ...] = (
    "spothedge",
    "ondemand_only",
    "cheapest_spot",
    "round_robin_spot",
    "skyhedge",
)
SKYSERVE_LB_POLICIES = ("round_robin", "least_load", "instance_aware_least_load")
FAN_OUT_POLICIES = ("fan_out", "hedge")  # ours; they use service.fan_out
CACHE_AWARE = "cache_aware"  # ours; service.router.cache_aware
LOAD_BALANCING_POLICIES: tuple[str, ...] = SKYSERVE_LB_POLICIES + FAN_OUT_POLICIES + (CACHE_AWARE,)
RACES = ("hedge", "fan_out")  # service.router.cache_aware.race
SPOT_PLACERS = ("dynamic_fallback",)
HTTP_METHODS = ("GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE", "TRACE")

_TOP_KEYS = {"name", "resources", "service", "envs", "secrets", "workdir", "setup", "run"}
_TOP_KEYS |= {"num_nodes", "local"}
# SkyServe keys we accept but do not act on -> ServiceSpec.extra (types checked).
_TOP_EXTRA: dict[str, tuple[type, ...]] = {
    **dict.fromkeys(("file_mounts", "inputs", "outputs", "config", "volumes"), (dict,)),
    **dict.fromkeys(("file_mounts_mapping", "pool"), (dict,)),
    **dict.fromkeys(("volume_mounts", "managed_secrets"), (list,)),
    "event_callback": (str,),
    "_metadata": (dict,),
    "experimental": (dict,),  # SkyPilot <= 0.10: {config_overrides: ...}, now `config`
    "api_server_access": (bool,),
}
_SERVICE_KEYS = {"readiness_probe", "replica_policy", "replicas", "load_balancing_policy"}
_SERVICE_KEYS |= {"ports", "tls", "load_balancer", "router", "fan_out", "auth"}
_SERVICE_EXTRA: dict[str, tuple[type, ...]] = {"pool": (bool, dict), "workers": (int,)}
# Keys read by kind (see spec_checks.Section.read); the others are read by hand.
_POLICY = {
    "min_replicas": "count",
    "max_replicas": "count",
    "upscale_delay_seconds": "num>=0",
    "downscale_delay_seconds": "num>=0",
    "num_overprovision": "count",
    "base_ondemand_fallback_replicas": "count",
    "dynamic_ondemand_fallback": "bool",
    "spot_placer": "text",
    "spot_policy": "text",
}
_ROUTER = {
    "host": "text",
    "port": "port?",
    "retries": "int>=0",
    "max_buffer_bytes": "int>=0",
    "request_timeout_seconds": "num>0",
    "connect_timeout_seconds": "num>0",
    "hedge_delay_seconds": "num>=0?",
    "hedge_budget": "share",
    "max_body_bytes": "int>=0",
    "max_header_bytes": "int>=1",
    "max_headers": "int>=1",
    "max_connections": "int>=1",
    "max_connections_per_client": "int>=1",
    "client_header_timeout_seconds": "num>0",
    "client_body_timeout_seconds": "num>0",
    "client_body_min_bytes_per_second": "num>=0",
    "client_keepalive_timeout_seconds": "num>0",
    "replica_ca_file": "text",
    "wait_for_replica_seconds": "num>=0",
    "max_waiting_requests": "int>=0",
}
_CACHE_AWARE = {
    "session_header": "text",
    "json_path": "text?",
    "balance_factor": "num>0",
    "max_body_bytes": "int>=0",
    "max_prefixes": "int>=1",
    "ttl_seconds": "num>0",
    "race": "text?",
    "replica_metrics_seconds": "num>0?",
    "replica_cache_bytes": "int>=1?",
}
# Keys written one level off, and keys SkyServe used to take (skyctl.spec_hints)
_TOP_HINTS = {
    **belongs(("readiness_probe", "replicas", "replica_policy"), "`service:`, not at the top"),
    **belongs(("load_balancing_policy", "tls"), "`service:`, not at the top"),
    **belongs([*RESOURCE_KEYS, "ports"], "`resources:`, not at the top"),
    **belongs(PROBE_KEYS, "service.readiness_probe, not at the top"),
    **belongs([*_POLICY, "target_qps_per_replica"], "service.replica_policy, not at the top"),
}
_SERVICE_HINTS = {
    **belongs(PROBE_KEYS, "readiness_probe", "readiness_probe: {{path: /health, {key}: ...}}"),
    **belongs(
        [*_POLICY, "target_qps_per_replica"],
        "replica_policy",
        "replica_policy: {{{key}: ..., ...}}",
    ),
    **belongs(RESOURCE_KEYS, "the top-level `resources:`, not under service"),
    **RETIRED_POLICY,
}
_NAME_RE = re.compile(r"[a-zA-Z]([-_.a-zA-Z0-9]*[a-zA-Z0-9])?")
# SkyPilot's task names (sky/task.py): `name:` is one; SkyServe names a service
# with -n (or generates a name), so `name: 7b-chat` is valid there
_TASK_NAME_RE = re.compile(r"[a-zA-Z0-9]+(?:[._-]{1,2}[a-zA-Z0-9]+)*")
_ENV_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_PATH_RE = re.compile(r"/[!$&'()*+,;=:@%/A-Za-z0-9._~-]*")
_QPS_KEY_RE = re.compile(r"[A-Z0-9]+(?::[0-9]+)?")
_NEEDS_SPOT = "needs `resources.use_spot: true`"
#: nodes per replica (SkyServe's num_nodes). SkyPilot has no small cap; ours bounds
#: what one typo can launch (64 nodes of 8 GPUs is 512, beyond any model served today)
MAX_NUM_NODES = 64
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")


def load_spec_file(
    path: str | Path,
    *,
    envs: Mapping[str, str] | None = None,
    secrets: Mapping[str, str] | None = None,
) -> ServiceSpec:
    """Read and parse a spec file (``source`` = the path, ``yaml_text`` = its text)."""
    source = str(path)
    if source == "-":
        message = "a spec is read from a file, not standard input (as sky serve up): give its path"
        raise spec_error(message, line=None, source="-")
    try:
        # O_NONBLOCK: a named pipe no one writes to is opened, not waited on for ever;
        # read blocking, so process substitution's <(...) gives its writer's text
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with open(fd, encoding="utf-8") as f:  # bounded: /dev/zero, a 40 MB file
            fifo = stat.S_ISFIFO(os.fstat(fd).st_mode)
            os.set_blocking(fd, True)
            text = f.read(MAX_SPEC_BYTES + 1)
    except UnicodeDecodeError as e:
        raise spec_error(f"not UTF-8 text ({e.reason})", line=None, source=source) from None
    except OSError as e:
        raise spec_error(f"cannot read: {e.strerror or e}", line=None, source=source) from None
    except ValueError:  # "embedded null byte": no file has such a path
        message = "cannot read: a path cannot hold a NUL character"
        raise spec_error(message, line=None, source=source) from None
    if fifo and not text:
        message = "a named pipe (FIFO) no process writes to: nothing to read"
        raise spec_error(message, line=None, source=source)
    return parse_spec(text, source=source, envs=envs, secrets=secrets)


def parse_spec(
    text: str,
    source: str | None = None,
    *,
    envs: Mapping[str, str] | None = None,
    secrets: Mapping[str, str] | None = None,
) -> ServiceSpec:
    """Parse a service spec; raises :class:`SpecError` (one line) on any problem.

    ``envs`` and ``secrets`` are the command line's overrides (``--env``,
    ``--secret``): they replace or add to the spec's, before any check; then
    both are substituted where SkyServe does it (see ``skyctl.spec_env``).
    """
    if not isinstance(text, str):
        raise spec_error(f"expected text, got {type_name(text)}", line=None, source=source)
    data = load_yaml(text, source)
    if data is None:
        raise spec_error(
            "empty spec: expected a mapping with service and run", line=1, source=source
        )
    if not isinstance(data, LineDict):
        raise spec_error(f"expected a mapping, got {type_name(data)}", line=1, source=source)
    top = Section(data, "", source)
    top.check_keys(_TOP_KEYS | _TOP_EXTRA.keys(), hints=_TOP_HINTS)
    apply_overrides(data, "envs", envs)
    apply_overrides(data, "secrets", secrets)
    drop_nulls(data)
    extra: dict[str, Any] = {}
    env_values = env_map(top, "envs")
    secret_values = read_secrets(top, extra)
    variables = {**env_values, **secret_values}
    for key in SUBSTITUTED_KEYS:
        if key in data:
            data[key] = substitute(data[key], variables)
    keep_extra(top, _TOP_EXTRA, extra)
    _file_mounts(top)
    _experimental(top)
    if top.has("pool"):
        raise top.error("pool", "a pool is not a service: give `service`, not `pool`", at_key=True)
    name = top.string("name")
    task_name = name is not None and len(name) <= 63 and _TASK_NAME_RE.fullmatch(name)
    if name is not None and service_name_problem(name) and not task_name:
        raise top.error("name", service_name_problem(name))  # SkyPilot refuses it too
    num_nodes = top.integer("num_nodes")
    if num_nodes is not None and not 1 <= num_nodes <= MAX_NUM_NODES:
        raise top.error(
            "num_nodes",
            f"must be at most {MAX_NUM_NODES} nodes per replica, got {num_nodes}"
            if num_nodes > 1
            else f"must be at least 1, got {num_nodes}",
        )
    resources = parse_resources(top.mapping("resources", null_ok=True), extra)
    service = top.mapping("service")
    if service is None:
        raise top.error(None, "missing required key 'service' (the service: section)")
    section = _anchor_files(_service(service, resources, extra), source)
    run = top.string("run", nonempty=True) if top.has("run") else None  # SkyServe: optional
    local = top.mapping("local", null_ok=True)
    auth = service.mapping("auth", null_ok=True)
    if auth is not None:
        section = dataclasses.replace(section, auth=_auth(auth, secret_values))
    return ServiceSpec(
        name=name,
        resources=resources,
        service=section,
        envs=env_values,
        secrets=secret_values,
        workdir=_workdir(top, extra),
        setup=top.string("setup") if top.raw("setup") is not None else None,
        run=run,
        local=None if local is None else parse_local(local),
        num_nodes=num_nodes or 1,
        yaml_text=text,
        source=source,
        extra=extra,
    )


def service_name_problem(name: str) -> str:
    """Why ``name`` cannot name a service (SkyPilot's rule), or "" when it can."""
    if _NAME_RE.fullmatch(name) and len(name) <= 63:
        return ""
    return (
        f"invalid service name {shorten(name)}: letters, digits, '-', '_' and '.', "
        "starting with a letter and ending with a letter or digit, at most 63 characters"
    )


def _workdir(top: Section, extra: dict[str, Any]) -> str | None:
    value = top.raw("workdir")
    if not isinstance(value, LineDict):
        return top.string("workdir", nonempty=True) if value is not None else None
    repo = top.mapping("workdir")  # SkyServe: a git repository {url, ref}
    assert repo is not None
    repo.check_keys({"url", "ref"})
    repo.require("url")
    repo.read_all({"url": "text", "ref": "text"})
    extra["workdir"] = top.plain("workdir")
    return None


# -- service -------------------------------------------------------------------


def _service(sec: Section, resources: Resources, extra: dict[str, Any]) -> ServiceSection:
    sec.check_keys(_SERVICE_KEYS | _SERVICE_EXTRA.keys(), hints=_SERVICE_HINTS)
    drop_nulls(sec.data, keep=("readiness_probe",))  # SkyServe fails on a null probe
    keep_extra(sec, _SERVICE_EXTRA, extra)
    if sec.has("replicas") and sec.has("replica_policy"):
        raise sec.error(
            "replica_policy", "give `replicas` or `replica_policy`, not both", at_key=True
        )
    if sec.raw("pool") not in (None, False):  # SkyServe builds a job pool, not a service
        raise sec.error(
            "pool",
            "a pool (of workers for managed jobs) is not a service: remove `pool` to serve",
            at_key=True,
        )
    both = [k for k in ("replicas", "replica_policy") if sec.has(k)]
    if sec.has("workers") and both:  # SkyServe: "Cannot specify both `replicas` and `workers`"
        raise sec.error("workers", f"give `{both[0]}` or `workers`, not both", at_key=True)
    lb = sec.string("load_balancing_policy")
    lb = None if lb is None else lb.lower()  # SkyServe: a case-insensitive enum
    if lb is not None and lb not in LOAD_BALANCING_POLICIES:
        allowed = ", ".join(LOAD_BALANCING_POLICIES)
        hint = did_you_mean(lb, LOAD_BALANCING_POLICIES)
        raise sec.error(
            "load_balancing_policy", f"unknown policy {lb!r} (allowed: {allowed}){hint}"
        )
    policy = _replica_policy(sec, resources.use_spot)
    if isinstance(policy.target_qps_per_replica, dict) and lb != "instance_aware_least_load":
        where = sec.mapping("replica_policy")
        assert where is not None  # only a replica_policy gives a map
        raise where.error(
            "target_qps_per_replica",
            "a per-accelerator map needs `load_balancing_policy: instance_aware_least_load`",
            at_key=True,
        )
    if lb == "instance_aware_least_load" and not isinstance(policy.target_qps_per_replica, dict):
        raise sec.error(
            "load_balancing_policy",
            "instance_aware_least_load needs replica_policy.target_qps_per_replica "
            "as a per-accelerator map (e.g. {A100: 5, L4: 1})",
        )
    fan_out = sec.integer("fan_out", minimum=1)
    if fan_out is not None and lb not in (*FAN_OUT_POLICIES, CACHE_AWARE):
        raise sec.error(
            "fan_out",
            "only used with load_balancing_policy fan_out or hedge (or cache_aware)",
            at_key=True,
        )
    ports = sec.integer("ports", minimum=1, maximum=65535)
    if ports is None and len(all_ports(resources)) > 1:
        raise sec.error(None, "resources has several ports: set service.ports to the serving one")
    balancer = sec.mapping("load_balancer")
    stream_timeout = 120.0
    drain_timeout = ServiceSection.drain_timeout_seconds
    if balancer is not None:
        balancer.check_keys({"stream_timeout_seconds", "drain_timeout_seconds"})
        values = balancer.read_all(
            {"stream_timeout_seconds": "num>0", "drain_timeout_seconds": "num>=0"}
        )
        stream_timeout = values.get("stream_timeout_seconds", stream_timeout)
        drain_timeout = values.get("drain_timeout_seconds", drain_timeout)
    return ServiceSection(
        readiness_probe=parse_probe(sec),
        replica_policy=policy,
        load_balancing_policy=lb or "least_load",
        ports=ports,
        tls=_tls(sec),
        stream_timeout_seconds=stream_timeout,
        drain_timeout_seconds=drain_timeout,
        router=_router(sec.mapping("router", null_ok=True), fan_out),
    )


def _anchor_files(section: ServiceSection, source: str | None) -> ServiceSection:
    """Relative certificate paths are relative to the spec file, not the controller."""
    if source is None:
        return section

    def anchored(path: str) -> str:
        path = os.path.expanduser(path)
        return path if os.path.isabs(path) else os.path.join(os.path.dirname(source), path)

    if section.tls is not None:
        tls = TLS(keyfile=anchored(section.tls.keyfile), certfile=anchored(section.tls.certfile))
        section = dataclasses.replace(section, tls=tls)
    ca = section.router.replica_ca_file
    if ca:
        router = dataclasses.replace(section.router, replica_ca_file=anchored(ca))
        section = dataclasses.replace(section, router=router)
    return section


def _tls(sec: Section) -> TLS | None:
    tls = sec.mapping("tls")
    if tls is None:
        return None
    tls.check_keys({"keyfile", "certfile"})
    tls.require("keyfile")
    tls.require("certfile")
    return TLS(**tls.read_all({"keyfile": "text", "certfile": "text"}))


def _auth(sec: Section, secrets: dict[str, str]) -> Auth:
    if sec.has("api_keys"):
        raise sec.error(
            "api_keys",
            "keys written here would be stored in clear: put each under `secrets:` "
            "and name it in api_key_secrets",
            at_key=True,
        )
    sec.check_keys({"api_key_secrets", "api_keys_env", "forward_authorization"})
    names: dict[str, tuple[str, ...]] = {}
    for key in ("api_key_secrets", "api_keys_env"):  # one name or a list of names
        one = isinstance(sec.raw(key), str)
        items = [(sec.raw(key), sec.sub(key), sec.value_line(key))] if one else sec.items(key)
        for item, path, line in items or []:
            if not isinstance(item, str) or not _ENV_RE.fullmatch(item):
                raise sec.at(
                    path,
                    line,
                    f"expected a variable name (a letter or _, then letters, digits or _), "
                    f"got {item!r}",
                )
            if key == "api_key_secrets" and item not in secrets:
                raise sec.at(path, line, f"no secret {item!r} in the `secrets:` mapping")
        names[key] = tuple(dict.fromkeys(item for item, _, _ in items or []))
    if not names["api_key_secrets"] and not names["api_keys_env"]:
        raise sec.error(None, "give api_key_secrets or api_keys_env (the names of the keys)")
    forward = sec.read("forward_authorization", "bool")
    return Auth(**names, forward_authorization=bool(forward))


def _replica_policy(sec: Section, use_spot: bool) -> ReplicaPolicy:
    if sec.has("replicas"):
        return ReplicaPolicy(min_replicas=sec.read("replicas", "count"))
    if sec.has("workers"):  # SkyServe: `workers` stands for `replicas` outside a pool
        return ReplicaPolicy(min_replicas=sec.read("workers", "count"))
    rp = sec.mapping("replica_policy")
    if rp is None:
        return ReplicaPolicy()
    rp.check_keys(_POLICY.keys() | {"target_qps_per_replica"}, hints=RETIRED_POLICY)
    rp.require("min_replicas")
    values = rp.read_all(_POLICY)
    min_r, max_r = values["min_replicas"], values.get("max_replicas")
    qps = _target_qps(rp)
    if max_r is not None and max_r < min_r:
        raise rp.error("max_replicas", f"must be >= min_replicas ({min_r}), got {max_r}")
    if qps is not None and max_r is None:
        raise rp.error("target_qps_per_replica", "needs max_replicas to autoscale", at_key=True)
    if qps is None and max_r is not None and max_r != min_r:
        raise rp.error("max_replicas", "min_replicas != max_replicas needs target_qps_per_replica")
    if not use_spot:
        for key in ("base_ondemand_fallback_replicas", "dynamic_ondemand_fallback"):
            if values.get(key):
                raise rp.error(key, f"on-demand fallback {_NEEDS_SPOT}")
        if "spot_placer" in values:
            raise rp.error("spot_placer", f"a spot placer {_NEEDS_SPOT}")
    if "spot_placer" in values:
        values["spot_placer"] = values["spot_placer"].lower()
        if values["spot_placer"] not in SPOT_PLACERS:
            allowed = ", ".join(SPOT_PLACERS)
            raise rp.error("spot_placer", f"unknown spot placer (allowed: {allowed})")
    spot_policy = values.get("spot_policy")
    if spot_policy is not None and spot_policy not in SPOT_POLICIES:
        allowed, hint = ", ".join(SPOT_POLICIES), did_you_mean(spot_policy, SPOT_POLICIES)
        raise rp.error(
            "spot_policy", f"unknown spot policy {spot_policy!r} (allowed: {allowed}){hint}"
        )
    if spot_policy not in (None, "ondemand_only") and not use_spot:
        raise rp.error("spot_policy", f"{spot_policy} {_NEEDS_SPOT}")
    return ReplicaPolicy(target_qps_per_replica=qps, **values)


def _target_qps(rp: Section) -> float | dict[str, float] | None:
    qmap = rp.raw("target_qps_per_replica")
    if not isinstance(qmap, LineDict):
        return rp.read("target_qps_per_replica", "num>0")
    sec = rp.mapping("target_qps_per_replica")
    assert sec is not None
    if not qmap:
        raise rp.error("target_qps_per_replica", "the per-accelerator map is empty")
    for key in qmap:
        if not isinstance(key, str) or not _QPS_KEY_RE.fullmatch(key):
            raise sec.error(str(key), "expected an accelerator such as A100 or H100:1", at_key=True)
    return {key: sec.read(key, "num>0") for key in qmap}


def _router(sec: Section | None, fan_out: int | None) -> RouterOptions:
    values: dict[str, Any] = {} if fan_out is None else {"fan_out": fan_out}
    if sec is None:
        return RouterOptions(**values)
    sec.check_keys(_ROUTER.keys() | {"fan_out_methods", "metrics_path", "cache_aware"})
    values.update(sec.read_all(_ROUTER))
    if "host" in values and not _is_host(values["host"]):
        raise sec.error(
            "host",
            f"expected an IP address or a host name (letters, digits, '-' and '.'), "
            f"got {shorten(values['host'])}",
        )
    cache_aware = sec.mapping("cache_aware")
    if cache_aware is not None:
        values["cache_aware"] = _cache_aware(cache_aware)
    if sec.has("metrics_path"):
        values["metrics_path"] = _metrics_path(sec)
    items = sec.items("fan_out_methods")
    if items is not None:
        for item, path, line in items:
            if not isinstance(item, str) or item.upper() not in HTTP_METHODS:
                allowed = ", ".join(HTTP_METHODS)
                raise sec.at(path, line, f"unknown HTTP method {item!r} (allowed: {allowed})")
        values["fan_out_methods"] = tuple(dict.fromkeys(str(i).upper() for i, _, _ in items))
    return RouterOptions(**values)


def _is_host(text: str) -> bool:
    """An address the router can bind: an IP address, or an RFC 1123 host name."""
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return bool(_HOSTNAME_RE.fullmatch(text)) and len(text) <= 253


def _file_mounts(top: Section) -> None:
    """SkyPilot's rule (sky/task.py): each mount is ``TARGET: SOURCE`` with a path or
    URL as SOURCE, or a mapping (a storage or volume); anything else it cannot parse."""
    mounts = top.mapping("file_mounts", null_ok=True)
    if mounts is None:
        return
    for target, source in mounts.data.items():
        if not isinstance(target, str) or not target:
            raise mounts.error(str(target), "a mount's target must be a path", at_key=True)
        if not isinstance(source, str | dict):
            raise mounts.error(
                target,
                f"expected a path or URL, or a storage mapping (store, source, ...), "
                f"got {type_name(source)}",
            )


def _experimental(top: Section) -> None:
    """SkyPilot's old ``experimental: {config_overrides: ...}`` (now ``config:``,
    removed in 0.11): taken as ``config`` is, kept and not acted on."""
    sec = top.mapping("experimental", null_ok=True)
    if sec is None:
        return
    sec.check_keys({"config_overrides"})
    sec.mapping("config_overrides", null_ok=True)


def _cache_aware(sec: Section) -> CacheAware:
    sec.check_keys(_CACHE_AWARE.keys())
    values = sec.read_all(_CACHE_AWARE)
    if values.get("balance_factor", 1.0) < 1.0:
        raise sec.error("balance_factor", "expected a number >= 1 (1.25: 25% over the mean)")
    race = values.get("race")
    if race is not None and race not in RACES:
        raise sec.error("race", f"unknown race {race!r} (allowed: {', '.join(RACES)}, null)")
    header = values.get("session_header")
    if header is not None and not TOKEN_RE.fullmatch(header):
        raise sec.error("session_header", "expected an HTTP header name such as X-Session-Id")
    path = values.get("json_path")
    if path is not None and any(not part for part in path.split(".")):
        raise sec.error("json_path", "expected dotted keys such as inputs or input.0.text")
    return CacheAware(**values)


def _metrics_path(sec: Section) -> str | None:
    if sec.raw("metrics_path") is None:
        return None  # null: /metrics goes to the replicas (a model server's own)
    path = sec.string("metrics_path", nonempty=True)
    if path is None or not _PATH_RE.fullmatch(path) or path.startswith("/-/skyctl/"):
        message = "expected a path such as /metrics (no query, no spaces, not under /-/skyctl/)"
        raise sec.error("metrics_path", message + ", or null to pass it on to replicas")
    return path
