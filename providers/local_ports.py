"""Ports on this machine: a free one per replica, or the spec's fixed one, once.

A spec that fixes its serving port (``service.ports``, or the one port of
``resources.ports``: a server started with ``--port 8000``) gets that port as
``$PORT`` and its endpoint there. This machine has one port 8000, so one
replica at most can hold it: :func:`check_spec` refuses, at ``serve up``, a
spec that asks the local provider for more; :func:`claim` refuses a launch
whose fixed port is taken, saying by whom, before any process starts.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterable

from providers.local_records import Record, free_port
from skyctl.errors import ConfigError, SkyctlError
from skyctl.spec import ServiceSpec
from skyctl.spec_checks import LineDict, load_yaml, spec_error
from skyctl.spec_resources import all_ports


def fixed_port(spec: ServiceSpec) -> tuple[int, str] | None:
    """The port the spec's server listens on whatever ``$PORT`` says, and its key."""
    if spec.service.ports:
        return spec.service.ports, "service.ports"
    ports = all_ports(spec.resources)
    return (ports[0], "resources.ports") if len(ports) == 1 else None


def check_spec(spec: ServiceSpec) -> None:
    """A one-line SpecError when the spec needs its fixed port for several replicas."""
    fixed = fixed_port(spec)
    if fixed is None:
        return
    port, key = fixed
    rp = spec.service.replica_policy
    wanted = max(rp.min_replicas + (rp.num_overprovision or 0), rp.max_replicas or 0)
    if wanted <= 1:
        return
    raise spec_error(
        f"port {port} is fixed, and on the local provider one replica at most can have it "
        f"(this spec asks for up to {wanted} replicas); allowed: 1 replica, or no fixed port "
        "(each replica listens on its own $PORT)",
        key=key,
        line=_line(spec.yaml_text, key),
        source=spec.source,
    )


def claim(spec: ServiceSpec, records: Iterable[Record], log_path: str) -> int:
    """The port for a new replica: the spec's fixed one if nobody has it, else a free one.

    A fixed port that a replica (of any service) or another program holds is a
    ConfigError naming the holder and this replica's log file, where the reason
    is written too (``serve logs`` shows it).
    """
    records = list(records)
    fixed = fixed_port(spec)
    if fixed is None:
        return free_port({r.port for r in records})
    port, key = fixed
    holder = next((r for r in records if r.port == port), None)
    if holder is not None:
        who = f"replica {holder.replica_id} of {holder.service} (log {holder.log_path})"
    elif not _bindable(port):
        who = "another program on this machine"
    else:
        return port
    reason = (
        f"{key}: port {port} is fixed and {who} has it; on the local provider one replica "
        f"at most can listen there; log {log_path}"
    )
    with contextlib.suppress(OSError):  # private, like every replica log
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as log:
            log.write(f"skyctl: cannot start: {reason}\n")
    raise ConfigError(reason)


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def _line(text: str, key: str) -> int | None:
    """The YAML line of a dotted key (None when the text does not have it)."""
    try:
        node = load_yaml(text, None)
    except SkyctlError:
        return None
    line = None
    for part in key.split("."):
        if not isinstance(node, LineDict) or part not in node:
            return line
        line = node.key_lines.get(part, line)
        node = node[part]
    return line
