"""Moves a replica's fixed port to its own, inside the replica's Python processes.

The local provider puts this folder first on ``PYTHONPATH`` of a replica whose
spec fixes its serving port (SkyServe's ``resources.ports: 8080`` with
``run: python3 server.py --port 8080``) while another replica already listens
there: Python imports ``sitecustomize`` at start-up, so every Python process of
that replica (the server, its workers) binds ``SKYCTL_PORT_MAP``'s port instead
(``8080:41234``: 8080 is bound as 41234), and its own connections to a
loopback address at 8080 go to 41234, the replica's endpoint. On a cloud each
replica has a machine of its own; here this lets several share one.

Only Python's ``socket`` methods are moved: a server in another language
binds the fixed port itself, finds it taken and exits, which the replica's
log shows. The standard library only, nothing of skyctl's: this runs in the
user's processes, under any Python from 3.7 on. A ``sitecustomize`` further on the path
(a distribution's own) still runs after this one.
"""

from __future__ import annotations

import os
import socket
from typing import Any

_LOOPBACK = ("", "0.0.0.0", "::", "localhost", "127.0.0.1", "::1")


def _parse(text: str) -> dict[int, int]:
    moves: dict[int, int] = {}
    for pair in text.split(","):
        fixed, sep, own = pair.partition(":")
        if sep and fixed.strip().isdigit() and own.strip().isdigit():
            moves[int(fixed)] = int(own)
    return moves


def _local(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    return host is None or host in _LOOPBACK or str(host).startswith("127.")


def _moved(sock: socket.socket, address: Any, moves: dict[int, int]) -> Any:
    if (
        sock.family in (socket.AF_INET, socket.AF_INET6)
        and isinstance(address, tuple)
        and len(address) >= 2
        and address[1] in moves
        and _local(address[0])
    ):
        return (address[0], moves[address[1]], *address[2:])
    return address


def _install(moves: dict[int, int]) -> None:
    bind, connect, connect_ex = socket.socket.bind, socket.socket.connect, socket.socket.connect_ex

    def moved_bind(self: socket.socket, address: Any) -> None:
        return bind(self, _moved(self, address, moves))

    def moved_connect(self: socket.socket, address: Any) -> None:
        return connect(self, _moved(self, address, moves))

    def moved_connect_ex(self: socket.socket, address: Any) -> int:
        return connect_ex(self, _moved(self, address, moves))

    socket.socket.bind = moved_bind  # type: ignore[method-assign,assignment]
    socket.socket.connect = moved_connect  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = moved_connect_ex  # type: ignore[method-assign,assignment]


def _chain() -> None:
    """Run the next ``sitecustomize`` on the path, the one this folder hides."""
    import importlib.machinery
    import importlib.util
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


_moves = _parse(os.environ.get("SKYCTL_PORT_MAP", ""))
if _moves:
    _install(_moves)
_chain()
