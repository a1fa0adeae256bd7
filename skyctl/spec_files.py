"""Checks of a parsed spec against this machine, made by ``serve up``/``update``
before a controller starts: the workdir and the files the controller will open
exist here (``serve validate`` checks the spec alone: SkyPilot's READMEs validate
with placeholder paths). Each problem is a one-line SpecError with key and line.
"""

from __future__ import annotations

import os
from pathlib import Path

from skyctl.spec import ServiceSpec
from skyctl.spec_checks import load_yaml, spec_error

__all__ = ["check_files", "check_ports", "unprivileged_port_start"]

UNPRIVILEGED = Path("/proc/sys/net/ipv4/ip_unprivileged_port_start")


def unprivileged_port_start() -> int:
    """The lowest port a process without root may bind here (1024 unless lowered)."""
    try:
        return int(UNPRIVILEGED.read_text().strip())
    except (OSError, ValueError):
        return 1024


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
    """The workdir and the files a controller started by this CLI will open (TLS key
    and certificate, the replicas' CA bundle) are there: else a SpecError naming the
    key and its line, now, rather than replicas or an endpoint that never start."""
    files = []
    if spec.service.tls is not None:
        files += [("keyfile", spec.service.tls.keyfile), ("certfile", spec.service.tls.certfile)]
    if spec.service.router.replica_ca_file:
        files.append(("replica_ca_file", spec.service.router.replica_ca_file))
    if spec.workdir:
        workdir = os.path.expanduser(spec.workdir)
        if spec.source and not os.path.isabs(workdir):
            workdir = os.path.join(os.path.dirname(spec.source), workdir)
        if not os.path.isdir(workdir):
            line = load_yaml(spec.yaml_text, spec.source).value_lines.get("workdir")
            raise spec_error(
                f"{workdir}: not a directory (a relative path is relative to the spec file)",
                key="workdir",
                line=line,
                source=spec.source,
            )
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
