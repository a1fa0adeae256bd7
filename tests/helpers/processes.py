"""Find and stop processes a test left behind (by their SKYCTL_HOME / state dir)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

from providers.local_records import EXEC_RETRY_SECONDS, _execing


def pids_mentioning(text: str) -> list[int]:
    """Live processes whose command line or environment mentions ``text``; one caught in
    an exec (both read empty for a moment) is read again after a pause, as the local
    provider's searches do (``providers.local_records.processes_with_env``)."""
    found = []
    pending = [e for e in Path("/proc").iterdir() if e.name.isdigit()]
    for pause in (*EXEC_RETRY_SECONDS, None):
        execing = []
        for entry in pending:
            if int(entry.name) == os.getpid():
                continue
            with contextlib.suppress(OSError, ValueError, IndexError):
                cmdline = (entry / "cmdline").read_bytes()
                environ = (entry / "environ").read_bytes()
                if text.encode() in cmdline or text.encode() in environ:
                    found.append(int(entry.name))
                elif not cmdline and not environ and _execing(entry):
                    execing.append(entry)
        if not execing or pause is None:
            break
        time.sleep(pause)
        pending = execing
    return found


def kill_leftovers(home: Path) -> list[int]:
    """SIGKILL every process tied to ``home``; return the pids that were alive."""
    pids = pids_mentioning(str(home))
    info = home / "controller.json"
    if info.exists():
        with contextlib.suppress(ValueError, KeyError, OSError):
            pids.append(int(json.loads(info.read_text())["pid"]))
    killed = kill_all(pids)
    for _ in range(4):  # what a dying controller or supervisor started meanwhile
        found = kill_all(pids_mentioning(str(home)))
        if not found:
            break
        killed += found
    return killed


def kill_under(folder: Path) -> list[int]:
    """SIGKILL every process tied to a path under ``folder`` (the separator keeps
    ``/tmp/pytest-1`` from matching ``/tmp/pytest-12``); return those that were alive.

    Scans again after each round: a controller or supervisor killed after the
    scan may have started a replica or a controller (in a session of its own)
    between the scan and its own death."""
    tied, killed = str(folder).rstrip(os.sep) + os.sep, []
    for _ in range(5):
        found = kill_all(pids_mentioning(tied))
        if not found:
            break
        killed += found
    return killed


def kill_all(pids: list[int]) -> list[int]:
    """SIGKILL each pid's process group (a daemon leads its own) and the pid; wait
    up to 5 s for them to be gone; return the pids that were alive."""
    alive = []
    for pid in set(pids):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            alive.append(pid)
    deadline = time.monotonic() + 5
    while alive and time.monotonic() < deadline:
        alive_now = []
        for pid in alive:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            if Path(f"/proc/{pid}").exists() and "Z" not in _state(pid):
                alive_now.append(pid)
        if not alive_now:
            break
        time.sleep(0.05)
    return alive


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return "X"


def wait_until_gone(text: str, seconds: float = 15.0) -> list[int]:
    """Wait for processes mentioning ``text`` to exit; return those still alive."""
    deadline = time.monotonic() + seconds
    while True:
        left = [p for p in pids_mentioning(text) if "Z" not in _state(p)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)
