"""The supervisor's processes as the files that name them (``supervisor.json``,
``router*.json``): which one runs, and stopping the router processes a killed
supervisor left. Apart from :mod:`skyctl.supervisor` (which re-exports them) so
the CLI, which asks these on most commands, imports no event loop.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

from skyctl.config import Paths

STOP_SECONDS = 20.0  # SIGTERM, then SIGKILL after this long
INFO_NAME = "supervisor.json"


def info_path(p: Paths) -> Path:
    return p.home / INFO_NAME


def running_pid(p: Paths) -> int | None:
    """The supervisor of this home, if one runs (not a zombie)."""
    try:
        pid = int(json.loads(info_path(p).read_text())["pid"])
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError, KeyError, TypeError):  # none, or corrupt
        return None
    return None if stat.rsplit(")", 1)[-1].split()[0] == "Z" else pid


UNKNOWN = 256  # the "exit status" of an adopted process (not our child: not knowable)


def running_command(info: Path, module: str, home: Path) -> tuple[int, list[str]] | None:
    """The pid ``info`` names and its command line, if that process runs
    ``python -m module`` for ``home``."""
    try:
        pid = int(json.loads(info.read_text())["pid"])
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if pid == os.getpid() or state == "Z" or module not in args or str(home) not in args:
        return None
    return pid, [a for a in args if a]


def running_module(info: Path, module: str, home: Path) -> int | None:
    """The pid ``info`` names if that process runs ``python -m module`` for ``home``."""
    found = running_command(info, module, home)
    return None if found is None else found[0]


def options(args: list[str], module: str) -> list[str]:
    """What follows ``module`` on a command line (its options)."""
    return args[args.index(module) + 1 :] if module in args else []


ROUTER_MODULE = "skyctl.router.process"


def stop_orphan_routers(p: Paths, wait: float = STOP_SECONDS) -> list[int]:
    """Stop the router processes of this home that no supervisor runs any more (a
    killed supervisor left them, and the controller or the CLI that would have had
    them stopped finds none): SIGTERM, SIGKILL after ``wait`` seconds. Their pids;
    none while a supervisor runs (it stops its own)."""
    if running_pid(p) is not None:
        return []
    import logging  # not for the CLI's other uses of this module

    log = logging.getLogger("skyctl.supervisor")
    found = [running_command(info, ROUTER_MODULE, p.home) for info in p.home.glob("router*.json")]
    pids = [f[0] for f in found if f is not None]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        log.info("router process %d left by a killed supervisor: stopped", pid)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.05)
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return pids


def _alive(pid: int) -> bool:
    try:  # a zombie (reaped by whoever is its parent) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False
