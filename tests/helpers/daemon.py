"""Run a real controller daemon for reliability tests and benchmarks.

:class:`Daemon` starts ``python -m skyctl.controller.daemon --home H`` in its
own session (as the CLI does), waits until it answers its API, and stops it
by SIGKILL (a crash) or SIGTERM (a graceful stop). Replica processes inherit
``SKYCTL_HOME``, so :func:`replica_processes` finds every replica a daemon of
this home ever started, whether or not any record still mentions it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from skyctl.client import ControllerClient
from skyctl.config import paths
from skyctl.errors import SkyctlError

ROOT = Path(__file__).resolve().parent.parent.parent
ECHO = ROOT / "tests" / "apps" / "echo_server.py"


class Daemon:
    """One controller process at a time for ``home``; restartable."""

    def __init__(self, home: Path, *, tick_seconds: float = 0.5) -> None:
        self.home = home
        self.tick_seconds = tick_seconds
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.log = home / "daemon-test.log"

    def start(self, timeout: float = 30.0) -> ControllerClient:
        """Start the daemon; return a client once its API answers (safety timeout only)."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        env = {**os.environ, "SKYCTL_HOME": str(self.home), "SKYCTL_LOG_LEVEL": "INFO"}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "skyctl.controller.daemon",
                    "--home",
                    str(self.home),
                    "--tick-seconds",
                    str(self.tick_seconds),
                ],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}: {self.tail()}")
            client = self.find()
            if client is not None:
                return client
            time.sleep(0.05)
        raise RuntimeError(f"daemon did not answer within {timeout}s: {self.tail()}")

    def find(self) -> ControllerClient | None:
        """A client for *our* process (not a stale controller.json of a killed one)."""
        if self.proc is None:
            return None
        try:
            info = json.loads((self.home / "controller.json").read_text())
        except (OSError, ValueError):
            return None
        if int(info.get("pid", -1)) != self.proc.pid:
            return None
        client = ControllerClient(paths(self.home), info["host"], int(info["port"]))
        try:
            client.call("GET", "/v1/health", timeout=5)
        except SkyctlError:
            return None
        return client

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL: a crash at whatever point the daemon has reached."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait for the exit; returns the exit status."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def close(self) -> None:
        self.kill()

    def tail(self, lines: int = 5) -> str:
        with contextlib.suppress(OSError):
            return " | ".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


def replica_processes(home: Path) -> dict[str, int]:
    """Live replica processes started for ``home``: instance id -> pid."""
    marker = f"SKYCTL_HOME={home}".encode()
    found: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if _state(entry) in ("Z", "X"):
                continue
            env = (entry / "environ").read_bytes().split(b"\0")
            if marker not in env:
                continue
            for item in env:
                if item.startswith(b"SKYCTL_INSTANCE_ID="):
                    found[item.split(b"=", 1)[1].decode()] = int(entry.name)
    return found


def _state(entry: Path) -> str:
    return entry.joinpath("stat").read_text().rsplit(")", 1)[-1].split()[0]
