"""Checks of a parsed spec against this machine, made by ``serve up``/``update``
before a controller starts: the workdir and the files the controller will open
exist here (``serve validate`` checks the spec alone: SkyPilot's READMEs validate
with placeholder paths). Each problem is a one-line SpecError with key and line.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

from skyctl.spec import CacheAware, ServiceSpec
from skyctl.spec_checks import load_yaml, spec_error
from skyctl.spec_env import unresolved_references

__all__ = [
    "anchor_workdir",
    "check_files",
    "check_ports",
    "spec_notes",
    "unprivileged_port_start",
]

#: SkyPilot keys kept in ``spec.extra`` (so the spec round-trips) that skyctl does not
#: act on, though a replica's ``run`` may rely on them: what each would have done
NOT_ACTED_ON = {"file_mounts": "mounted", "volumes": "attached", "volume_mounts": "attached"}
#: SkyPilot keys kept in ``spec.extra`` that change what a replica gets on SkyPilot
#: (disk, network, a price cap, TPU settings, config overrides ...), and what replicas
#: get from skyctl instead; each present one is named in a note
IGNORED = {
    "config": "skyctl's own provider settings (its config.yaml), not these overrides",
    "experimental": "skyctl's own provider settings (its config.yaml), not these overrides",
    "resources.max_hourly_cost": "no price cap",
    "resources.disk_tier": "the provider's default disk",
    "resources.network_tier": "the provider's default network",
    "resources.local_disk": "no local disk request",
    "resources.ephemeral_storage": "no ephemeral storage request",
    "resources.volumes": "no extra volumes",
    "resources.accelerator_args": "no TPU arguments",
    "resources.autostop": "no autostop (a service's replicas run until scaled down)",
    "resources.priority": "no scheduling priority",
    "resources.priority_class": "no priority class",
    "api_server_access": "no SkyPilot API server access",
    "managed_secrets": "no managed secrets (skyctl has no secret store: pass --secret NAME)",
}

_ALTERNATIVE = re.compile(r"\.(any_of|ordered)\[\d+\]")

UNPRIVILEGED = Path("/proc/sys/net/ipv4/ip_unprivileged_port_start")


def unprivileged_port_start() -> int:
    """The lowest port a process without root may bind here (1024 unless lowered)."""
    try:
        return int(UNPRIVILEGED.read_text().strip())
    except (OSError, ValueError):
        return 1024


_WORKDIR_LINE = re.compile(
    r"^(?P<key>workdir[ \t]*:[ \t]*)(?P<value>[^#\s][^#]*?)(?P<rest>[ \t]*(#.*)?)$"
)


def anchor_workdir(spec: ServiceSpec, cwd: str | None = None) -> ServiceSpec:
    """The spec with its ``workdir`` made absolute, as SkyPilot reads it: a relative
    path is relative to the directory the command runs in (``cwd``); where that is
    no directory, relative to the spec file (skyctl's earlier rule). The stored
    text says the absolute path (the controller runs elsewhere); a SpecError with
    key and line names the paths tried when neither is a directory."""
    if not spec.workdir:
        return spec
    raw = os.path.expanduser(spec.workdir)
    tried = [os.path.normpath(os.path.join(cwd or os.getcwd(), raw))]
    if spec.source and spec.source != "-" and not os.path.isabs(raw):
        tried.append(os.path.normpath(os.path.join(os.path.dirname(spec.source) or ".", raw)))
    found = next((p for p in tried if os.path.isdir(p)), None)
    line = load_yaml(spec.yaml_text, spec.source).value_lines.get("workdir")
    if found is None:
        where = " nor ".join(dict.fromkeys(tried))
        raise spec_error(
            f"{spec.workdir}: not a directory ({where}; a relative path is relative to the "
            "directory skyctl runs in, as in SkyPilot, or else to the spec file)",
            key="workdir",
            line=line,
            source=spec.source,
        )
    if found == spec.workdir or line is None:
        return spec
    lines = spec.yaml_text.split("\n")
    matched = _WORKDIR_LINE.match(lines[line - 1]) if line <= len(lines) else None
    if matched is None:  # not a plain one-line ``workdir: path``: the stored text keeps it
        return dataclasses.replace(spec, workdir=found)
    lines[line - 1] = matched["key"] + json.dumps(found) + matched["rest"]
    return dataclasses.replace(spec, workdir=found, yaml_text="\n".join(lines))


def check_ports(spec: ServiceSpec) -> None:
    """Ports this machine will bind for the service (its router's, a local replica's
    fixed one) are ones this user may bind: else a SpecError with key and line."""
    if os.geteuid() == 0:
        return
    start = unprivileged_port_start()
    wanted: list[tuple[str, tuple[str, ...], int | None]] = [
        ("service.router.port", ("service", "router", "port"), spec.service.router.port)
    ]
    if spec.clouds == {"local"} and spec.serving_port:
        where = ("service", "ports") if spec.service.ports else ("resources", "ports")
        wanted.append((".".join(where), where, spec.serving_port))
    for key, path, port in wanted:
        if port is None or port >= start:
            continue
        data = load_yaml(spec.yaml_text, spec.source)
        for part in path[:-1]:
            data = data[part]
        raise spec_error(
            f"port {port} is privileged here (below {start}): only root may bind it; "
            f"use a port from {start} to 65535",
            key=key,
            line=data.value_lines.get(path[-1]),
            source=spec.source,
        )


def check_files(spec: ServiceSpec) -> None:
    """The files a controller started by this CLI will open (TLS key
    and certificate, the replicas' CA bundle) are there: else a SpecError naming the
    key and its line, now, rather than replicas or an endpoint that never start."""
    files = []
    if spec.service.tls is not None:
        files += [("keyfile", spec.service.tls.keyfile), ("certfile", spec.service.tls.certfile)]
    if spec.service.router.replica_ca_file:
        files.append(("replica_ca_file", spec.service.router.replica_ca_file))
    for key, path in files:
        if os.path.isfile(path) and os.access(path, os.R_OK):
            continue
        where = "router" if key == "replica_ca_file" else "tls"
        data = load_yaml(spec.yaml_text, spec.source)["service"][where]
        problem = "is a directory" if os.path.isdir(path) else "no such readable file"
        raise spec_error(
            f"{path}: {problem} (a relative path is relative to the spec file)",
            key=f"service.{where}.{key}",
            line=data.value_lines.get(key),
            source=spec.source,
        )


def spec_notes(spec: ServiceSpec) -> list[str]:
    """A line for each thing the spec asks for that its replicas will not get: a
    managed secret reference with no value given, file mounts and volumes, a git
    workdir (kept in the spec, not acted on), a container image where the local
    provider would run the replica; cache_aware options under another policy; and an
    initial delay no server can meet.
    Printed by ``serve up``, ``update`` and ``validate`` as notes: the spec still
    runs."""
    notes = [
        f"secrets:{name} is a managed secret reference and skyctl has no secret store: "
        f"replicas get no {name} unless you pass --secret {name}"
        for name in unresolved_references(spec.extra.get("secrets", []), spec.secrets)
    ]
    for key, verb in NOT_ACTED_ON.items():
        value = spec.extra.get(key)
        if not value:
            continue
        paths = list(value) if isinstance(value, dict) else []
        shown = ", ".join(map(_shown, paths[:4])) + (
            f" and {len(paths) - 4} more" if paths[4:] else ""
        )
        where = f": replicas will not find {shown}" if shown else ""
        notes.append(
            f"{key} is kept but not {verb} by skyctl{where} (fetch them in setup:, "
            f"or put local files in workdir:)"
        )
    present = {  # resources.any_of[1].disk_tier counts as resources.disk_tier
        _ALTERNATIVE.sub("", key)
        for key, value in spec.extra.items()
        if value not in (None, False, [], {})
    }
    for key, instead in IGNORED.items():
        if key in present:
            notes.append(f"{key} is kept but not acted on by skyctl: replicas get {instead}")
    if "resources.image_id" in present:
        notes.append(
            "resources.image_id: skypilot:... tags name SkyPilot's own images, which skyctl "
            "does not have: replicas get the provider's default image (give an image id to "
            "choose one)"
        )
    images = {
        c.image_id
        for c in spec.resources.candidates
        if c.image_id and c.image_id.startswith("docker:") and c.cloud in (None, "local")
    }
    for image in sorted(images):
        notes.append(
            f"resources.image_id {_shown(image)}: a replica placed on local runs in this "
            f"machine's environment, not in the image (kubernetes runs the image)"
        )
    types = {
        c.instance_type
        for c in spec.resources.candidates
        if c.instance_type and c.cloud in (None, "local")
    }
    for kind in sorted(types):  # SkyPilot finds the cloud that has it; local ignores it
        notes.append(
            f"resources.instance_type {_shown(kind)} names a cloud's machine type: a replica "
            f"placed on local runs on this machine, whatever its size (name the cloud in "
            f"resources.infra to get one)"
        )
    policy = spec.service.load_balancing_policy
    if spec.service.router.cache_aware != CacheAware() and policy != "cache_aware":
        notes.append(
            f"service.router.cache_aware is not used: load_balancing_policy is {policy} "
            f"(set it to cache_aware to route by prompt prefix)"
        )
    delay = spec.service.readiness_probe.initial_delay_seconds
    if delay < 1:
        notes.append(
            f"service.readiness_probe.initial_delay_seconds is {delay:g}: a replica that does "
            f"not answer its first probe ends FAILED_INITIAL_DELAY (give the seconds your "
            f"server needs to start; SkyServe's default is 1200)"
        )
    repo = spec.extra.get("workdir")
    if isinstance(repo, dict):
        notes.append(
            f"workdir: the git repository {repo.get('url', '?')} is kept but not cloned: "
            f"replicas run in a fresh directory of their own (clone it in setup:)"
        )
    return notes


def _shown(path: object) -> str:
    """A path from the spec as a note prints it: on one line, at most 80 characters."""
    text = str(path)
    text = text if text.isprintable() else repr(text)
    return text if len(text) <= 80 else text[:77] + "..."
