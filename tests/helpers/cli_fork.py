"""The client of :mod:`tests.helpers.cli_server`: ``python -m skyctl ARGS`` forked
from a server that imported the command line once, with what
:func:`subprocess.run` (``capture_output``, ``text``, ``timeout``) gives.

One server per test process, started at its first command, restarted if it died
(a test's clean-up may kill it). Its environment holds nothing of any test (no
``SKYCTL_*``, nothing under pytest's temporary directory), so the clean-ups that
stop every process mentioning a test's home never take it for the test's.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import locale
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent.parent

_lock = threading.Lock()
_server: tuple[subprocess.Popen[bytes], str] | None = None
_server_env: dict[str, str] = {}  # the environment the running server started with


def _clean_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SKYCTL_") and "pytest-of-" not in v and k != "PYTEST_CURRENT_TEST"
    }


# What an interpreter reads once, at its start (its streams' encoding, warnings, modes):
# a command run with other values than the server started with needs a new interpreter.
STARTUP_VARIABLES = (
    "PYTHONIOENCODING",
    "PYTHONUTF8",
    "PYTHONWARNINGS",
    "PYTHONDEVMODE",
    "PYTHONUNBUFFERED",
    "PYTHONHASHSEED",
    "PYTHONSAFEPATH",
    "LC_ALL",
    "LC_CTYPE",
    "LANG",
)


def forks_like_a_start(env: dict[str, str]) -> bool:
    """Whether a command with ``env`` can fork from the server: it agrees with the
    server's environment on every :data:`STARTUP_VARIABLES` (``run_cli``'s PYTHONPATH
    only ever names this checkout, whose code the server imported)."""
    with _lock:
        running = _server is not None and _server[0].poll() is None
    started = _server_env if running else _clean_env()
    return all(env.get(k) == started.get(k) for k in STARTUP_VARIABLES)


def _start() -> tuple[subprocess.Popen[bytes], str]:
    path = os.path.join(tempfile.mkdtemp(prefix="cli-fork-"), "sock")
    env = _clean_env()
    _server_env.clear()
    _server_env.update(env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.helpers.cli_server", path, str(os.getpid())],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        start_new_session=True,  # a test's Ctrl-C to its own process group is not for it
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    proc.stdout.close()
    if line.strip() != b"ready":
        _stop(proc, path)
        raise RuntimeError("the CLI fork server did not start (see the output above)")
    return proc, path


def _stop(proc: subprocess.Popen[bytes], path: str) -> None:
    """End the server and remove its socket's directory."""
    with contextlib.suppress(OSError):
        proc.kill()
    proc.wait()
    shutil.rmtree(os.path.dirname(path), ignore_errors=True)


@atexit.register
def _stop_at_exit() -> None:
    """The test process is ending: so does its server (it would notice within a second
    anyway), and nothing of it is left in the temporary directory."""
    global _server
    with _lock:
        if _server is not None:
            _stop(*_server)
            _server = None


def _server_path() -> str:
    global _server
    with _lock:
        if _server is None or _server[0].poll() is not None:
            _server = _start()
        return _server[1]


def _connect() -> socket.socket:
    for attempt in range(2):
        path = _server_path()
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(path)
            return conn
        except OSError:
            conn.close()
            if attempt:
                raise
            with _lock:  # gone without exiting yet (killed, being reaped): start anew
                global _server
                if _server is not None:
                    _stop(*_server)
                    _server = None
    raise AssertionError("unreachable")


def _text(stream: IO[bytes]) -> str:
    """As ``subprocess.run(text=True)`` decodes: the locale's encoding, universal newlines."""
    stream.seek(0)
    data = stream.read().decode(locale.getpreferredencoding(False))
    return data.replace("\r\n", "\n").replace("\r", "\n")


def _read_message(reader: IO[bytes]) -> dict[str, int]:
    line = reader.readline()
    if not line:
        raise RuntimeError("the CLI fork server hung up")
    message: dict[str, int] = json.loads(line)
    return message


def forked_cli(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float | None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m skyctl ARGS`` forked from the server; on ``timeout`` the command
    is killed and :class:`subprocess.TimeoutExpired` raised, as ``subprocess.run`` does."""
    argv = [sys.executable, "-m", "skyctl", *args]
    request = json.dumps({"args": args, "env": env, "cwd": str(cwd)}).encode() + b"\n"
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        _connect() as conn,
        conn.makefile("rb") as reader,
    ):
        try:
            stdin = os.dup(0)
        except OSError:
            stdin = os.open(os.devnull, os.O_RDONLY)
        try:
            socket.send_fds(conn, [request], [stdin, out.fileno(), err.fileno()])
        finally:
            os.close(stdin)
        pid = _read_message(reader)["pid"]
        conn.settimeout(timeout)
        try:
            status = _read_message(reader)["status"]
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            conn.settimeout(30)
            with contextlib.suppress(OSError, RuntimeError, ValueError):
                _read_message(reader)
            raise subprocess.TimeoutExpired(
                argv, timeout or 0.0, output=_text(out), stderr=_text(err)
            ) from None
        return subprocess.CompletedProcess(argv, status, _text(out), _text(err))
