"""Ports on this machine: a free one per replica, or the spec's fixed one.

A spec that fixes its serving port (``service.ports``, or the one port of
``resources.ports``: SkyServe's ``run: python3 server.py --port 8080``) gets
that port as ``$PORT`` and its endpoint there while it is free. On a cloud
every replica has a machine of its own; here the second replica finds the
port taken, so it gets a free port instead, told as ``$PORT``, and
``providers/port_shim`` (a ``sitecustomize`` first on its ``PYTHONPATH``)
moves its Python processes' binds of the fixed port there. A server in
another language that ignores ``$PORT`` finds the fixed port taken and exits;
the replica's log says why. :func:`claim` writes what it did to that log.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from providers.local_records import Record, free_port
from skyctl.spec import ServiceSpec
from skyctl.spec_resources import all_ports

SHIM_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "port_shim")


def fixed_port(spec: ServiceSpec) -> tuple[int, str] | None:
    """The port the spec's server listens on whatever ``$PORT`` says, and its key."""
    if spec.service.ports:
        return spec.service.ports, "service.ports"
    ports = all_ports(spec.resources)
    return (ports[0], "resources.ports") if len(ports) == 1 else None


@dataclass(frozen=True)
class Claim:
    """Where a replica listens: ``port``, its endpoint, and the fixed port that
    its Python processes bind as ``port`` (None: the fixed one is its own)."""

    port: int
    moved_from: int | None = None

    def env(self, base: Mapping[str, str]) -> dict[str, str]:
        """The variables that tell the replica (``base``: its environment so far)."""
        env = {"PORT": str(self.port)}
        if self.moved_from is not None:
            env["SKYCTL_PORT_MAP"] = f"{self.moved_from}:{self.port}"
            path = base.get("PYTHONPATH")
            env["PYTHONPATH"] = SHIM_DIR + (os.pathsep + path if path else "")
        return env


def claim(
    spec: ServiceSpec,
    records: Iterable[Record],
    log_path: str,
    starting: Mapping[int, str] | None = None,
) -> Claim:
    """The port for a new replica: the spec's fixed one if nobody has it, else a free one
    that its Python processes bind in place of the fixed one (said in its log).

    ``starting``: the ports of replicas being started (no record yet), and whose.
    """
    holders = {r.port: f"replica {r.replica_id} of {r.service}" for r in records}
    holders.update(starting or {})
    fixed = fixed_port(spec)
    if fixed is None:
        return Claim(free_port(set(holders)))
    port, key = fixed
    if port in holders:
        who = holders[port]
    elif not _bindable(port):
        who = "another program on this machine"
    else:
        return Claim(port)
    own = free_port({*holders, port})
    note = (
        f"skyctl: {key}: port {port} is fixed and {who} has it; this replica listens on "
        f"{own} ($PORT): its Python processes bind {own} when they ask for {port} "
        f"(SKYCTL_PORT_MAP, {SHIM_DIR}/sitecustomize.py); a server in another language "
        f"must listen on $PORT\n"
    )
    with contextlib.suppress(OSError):  # private, like every replica log
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as log:
            log.write(note)
    return Claim(own, moved_from=port)


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True
