"""A fork server for the tests' ``python -m skyctl`` runs.

Each ``skyctl`` command the suite runs used to start a fresh interpreter that
imported the command line anew: about half a second of CPU a call, hundreds of
calls a run, on a two-core CI machine (a third of the suite's CPU, measured by
process kind). This server imports the command line once; for each command it
forks, and the fork runs ``skyctl/__main__.py`` as ``python -m skyctl`` does
(``runpy``, ``sys.argv``, the environment, working directory and standard
streams of the caller), then exits with the command's status. The command still
runs in a process of its own, from an interpreter that has run nothing else:
every fork starts from the server's state just after the imports.

Protocol (a Unix socket): the client sends one JSON request (``args``, ``env``,
``cwd``) with three file descriptors (stdin, stdout, stderr); the server forks
a waiter for it at once (so commands run concurrently), which forks the command,
answers ``{"pid": N}``, waits, and answers ``{"status": S}`` (an exit code, or
minus the signal that ended it, as :mod:`subprocess` reports it).

The server ends when the process that started it (a pytest worker) is gone.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import runpy
import shutil
import signal
import socket
import sys
import threading
import time

PRELOAD = (
    "skyctl.cli",
    "skyctl.cli_exit",
    "skyctl.client",
    "skyctl.spec",
    "yaml",
)


def _run_command(request: dict[str, object], fds: list[int]) -> int:
    """In the forked child: become ``python -m skyctl ARGS`` and return its status."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    env = request["env"]
    assert isinstance(env, dict)
    os.environ.clear()
    os.environ.update({str(k): str(v) for k, v in env.items()})
    time.tzset()
    cwd = str(request["cwd"])
    os.chdir(cwd)
    sys.path[0] = cwd  # what `python -m` puts first
    args = request["args"]
    assert isinstance(args, list)
    sys.argv = ["-m", *map(str, args)]
    code: int = 0
    try:
        runpy.run_module("skyctl", run_name="__main__", alter_sys=True)
    except SystemExit as e:
        if e.code is None:
            code = 0
        elif isinstance(e.code, int):
            code = e.code
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except BaseException:  # as the interpreter does: the traceback, exit 1
        import traceback

        traceback.print_exc()
        code = 1
    # what the interpreter does on the way out: wait for non-daemon threads, run
    # the exit handlers, flush the streams
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        with contextlib.suppress(Exception):
            shutdown()
    with contextlib.suppress(Exception):
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    return code


def _send(conn: socket.socket, message: dict[str, int]) -> None:
    conn.sendall(json.dumps(message).encode() + b"\n")


def _wait_and_report(conn: socket.socket, request: dict[str, object], fds: list[int]) -> None:
    """In the waiter: fork the command, say its pid, wait, say its status."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the server's SIG_IGN would reap it
    pid = os.fork()
    if pid == 0:
        conn.close()
        code = 1
        try:
            code = _run_command(request, fds)
        finally:
            os._exit(code & 0xFF if code >= 0 else 1)
    for fd in fds:
        os.close(fd)
    _send(conn, {"pid": pid})
    _, status = os.waitpid(pid, 0)
    _send(conn, {"status": os.waitstatus_to_exitcode(status)})


def serve(path: str, parent: int) -> None:
    for name in PRELOAD:
        __import__(name)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # waiters are reaped by the kernel
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    listener.settimeout(1.0)
    sys.stdout.buffer.write(b"ready\n")  # bytes: whatever the streams' encoding
    sys.stdout.buffer.flush()
    while os.getppid() == parent:
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        conn.settimeout(None)
        with conn:
            try:
                data, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
                while not data.endswith(b"\n"):
                    more = conn.recv(1 << 20)
                    if not more:
                        break
                    data += more
                request = json.loads(data)
            except (OSError, ValueError):
                continue
            if os.fork() == 0:
                listener.close()
                try:
                    _wait_and_report(conn, request, fds)
                finally:
                    os._exit(0)
            for fd in fds:
                os.close(fd)
    listener.close()
    shutil.rmtree(os.path.dirname(path), ignore_errors=True)


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
