"""A local replica's process, started and watched without blocking the event loop.

Starting a process (fork/exec with a large environment) and scanning
``/proc/*/environ`` for strays take milliseconds each and grow with the
machine's process count; a burst of 300 launches run on the loop stalled it
for seconds. Here both run in a worker thread (``asyncio.to_thread``), and a
process's exit is awaited through a pidfd registered with the loop (Linux
5.3+; elsewhere one daemon thread per process waits), so nothing polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from providers.local_records import (
    Record,
    log_of,
    pgid_of,
    pid_alive,
    proc_start_time,
    processes_with_env,
)

logger = logging.getLogger(__name__)


class ReplicaProcess:
    """The part of ``asyncio.subprocess.Process`` the local provider uses."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen
        self.pid = popen.pid
        self._exit: asyncio.Future[int] | None = None

    @property
    def returncode(self) -> int | None:
        return self._popen.poll()

    async def wait(self) -> int:
        """The exit code, once the process has ended (many waiters may share it)."""
        if self._exit is None:
            self._exit = self._watch()
        return await asyncio.shield(self._exit)

    def _watch(self) -> asyncio.Future[int]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        code = self._popen.poll()
        if code is not None:
            fut.set_result(code)
            return fut
        try:
            fd = os.pidfd_open(self.pid)
        except (OSError, AttributeError):  # no pidfd here: a thread waits instead
            popen = self._popen

            def wait_in_thread() -> None:
                code = popen.wait()
                loop.call_soon_threadsafe(_resolve, fut, code)

            threading.Thread(target=wait_in_thread, daemon=True).start()
            return fut

        def exited() -> None:
            loop.remove_reader(fd)
            os.close(fd)
            _resolve(fut, self._popen.wait())  # it has exited: this only reaps it

        loop.add_reader(fd, exited)
        return fut


def _resolve(fut: asyncio.Future[int], code: int) -> None:
    if not fut.done():
        fut.set_result(code)


def _start(
    argv: Sequence[str], cwd: str, env: Mapping[str, str], log_path: Path
) -> subprocess.Popen[bytes]:
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.fchmod(log, 0o600)  # a log left by an older version may be world-readable
        return subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        os.close(log)


async def start(
    argv: Sequence[str], *, cwd: str, env: Mapping[str, str], log_path: Path
) -> ReplicaProcess:
    """Start ``argv`` in its own session with its output appended to ``log_path``
    (in a worker thread). Raises OSError when it cannot be started. Cancelled, it
    still lets the thread finish, and kills the process it started: the cancelled
    launch saves no record of it (a missed deadline, a controller stopping)."""
    spawn = asyncio.ensure_future(asyncio.to_thread(_start, argv, cwd, env, log_path))
    try:
        return ReplicaProcess(await asyncio.shield(spawn))
    except asyncio.CancelledError:
        spawn.add_done_callback(_kill_started)
        raise


def _kill_started(spawn: asyncio.Future[subprocess.Popen[bytes]]) -> None:
    if not spawn.cancelled() and spawn.exception() is None:
        popen = spawn.result()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(popen.pid, signal.SIGKILL)  # its own session: its group is its pid
        threading.Thread(target=popen.wait, daemon=True).start()  # reaped, no zombie


async def find_with_env(name: str, value: str) -> dict[int, dict[str, str]]:
    """``local_records.processes_with_env`` in a worker thread (it reads all of /proc)."""
    return await asyncio.to_thread(processes_with_env, name, value)


async def kill_escaped(instance_id: str, state_dir: str, *, wait: float = 2.0) -> list[int]:
    """SIGKILL the processes of a replica that left its process group.

    A replica's processes are stopped through its process group, but a
    ``setsid``, ``daemon()`` or double-forked server leaves it and would outlive
    the replica. Every process the replica started inherits its
    ``SKYCTL_INSTANCE_ID`` and ``SKYCTL_LOCAL_STATE``, so the escaped ones are
    found by their environment (one ``/proc`` scan, in a worker thread). Waits
    up to ``wait`` seconds for them to be gone; returns their pids.
    """
    found = await find_with_env("SKYCTL_INSTANCE_ID", instance_id)
    pids = [pid for pid, env in found.items() if env.get("SKYCTL_LOCAL_STATE") == state_dir]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    if pids:
        logger.warning(
            "local: killed %s of %s: they had left its process group",
            ", ".join(map(str, pids)),
            instance_id,
        )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while loop.time() < deadline:
        if not any(pid_alive(pid, None) for pid in pids):
            break
        await asyncio.sleep(0.02)
    return pids


async def find_strays(state_dir: str, known: set[str]) -> dict[str, list[int]]:
    """Service -> pids of the replica processes of ``state_dir`` whose instance id is not
    in ``known`` (no record knows them: a record file lost or damaged, or a controller
    killed between a spawn and its record). Every replica process inherits
    ``SKYCTL_LOCAL_STATE`` and ``SKYCTL_INSTANCE_ID``: the local cloud's tags, read from
    ``/proc`` (one scan, in a worker thread). For teardowns, never a tick."""
    found = await find_with_env("SKYCTL_LOCAL_STATE", state_dir)
    out: dict[str, list[int]] = {}
    for pid, env in sorted(found.items()):
        if env.get("SKYCTL_INSTANCE_ID") not in known:
            out.setdefault(env.get("SKYCTL_SERVICE", "?"), []).append(pid)
    return out


async def kill_strays(
    state_dir: str, known: set[str], *, wait: float = 2.0, service: str | None = None
) -> dict[str, list[int]]:
    """SIGKILL what :func:`find_strays` finds (each process and its group, never this
    process's own), only ``service``'s if given; wait up to ``wait`` seconds for them to
    go. Returns what was killed."""
    strays = await find_strays(state_dir, known)
    if service is not None:
        strays = {service: strays[service]} if service in strays else {}
    own = os.getpgrp()
    pids = [pid for group in strays.values() for pid in group]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            group = os.getpgid(pid)
            if group != own:
                os.killpg(group, signal.SIGKILL)
            os.kill(pid, signal.SIGKILL)
    if pids:
        logger.info("local: killed %s: replica processes no record knows", pids)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while pids and loop.time() < deadline:
        if not any(pid_alive(pid, None) for pid in pids):
            break
        await asyncio.sleep(0.02)
    return strays


async def adopt_strays(state_dir: Path, known: set[str], now: float) -> list[Record]:
    """Records for the replica processes of ``state_dir`` that no record in ``known``
    names: a controller killed between starting a replica's process and saving its
    record left them. A single-node replica's head tells, in its environment, whose
    replica it is, its version, place and port (its price is unknown: 0); what cannot
    be adopted (a multi-node replica's processes, a head or port not found) is
    SIGKILLed with its group. One ``/proc`` scan, in a worker thread."""
    found = await find_with_env("SKYCTL_LOCAL_STATE", str(state_dir))
    strays: dict[str, dict[int, dict[str, str]]] = {}
    for pid, env in found.items():
        if env.get("SKYCTL_INSTANCE_ID", "") not in known:
            strays.setdefault(env.get("SKYCTL_INSTANCE_ID", ""), {})[pid] = env
    out, own = [], os.getpgrp()
    for instance_id, procs in sorted(strays.items()):
        rec = _stray_record(state_dir, instance_id, procs, now)
        if rec is not None:
            out.append(rec)
            continue
        for pid in procs:
            group = pgid_of(pid)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if group and group != own:
                    os.killpg(group, signal.SIGKILL)
                os.kill(pid, signal.SIGKILL)
        logger.warning(
            "local: killed %s of %s: no record, not adoptable", sorted(procs), instance_id
        )
    return out


def _stray_record(
    state_dir: Path, instance_id: str, procs: dict[int, dict[str, str]], now: float
) -> Record | None:
    leaders = [pid for pid in procs if pgid_of(pid) == pid]  # the launcher leads its group
    log_path = log_of(state_dir, instance_id)
    if len(leaders) != 1 or log_path is None:
        return None  # a multi-node replica has one leader per node
    pid = leaders[0]
    env = procs[pid]
    try:
        if int(env.get("SKYPILOT_NUM_NODES", "1")) != 1:
            return None
        rec = Record(
            instance_id=instance_id,
            client_token="",  # unknown: a relaunch with it adopts the process again
            service=env["SKYCTL_SERVICE"],
            replica_id=int(env["SKYCTL_REPLICA_ID"]),
            version=int(env["SKYCTL_VERSION"]),
            location=env["SKYCTL_LOCATION"],
            spot=env.get("SKYCTL_SPOT") == "1",
            price=0.0,
            created_at=now,
            pid=pid,
            pgid=pid,
            port=int(env["PORT"]),
            log_path=str(log_path),
            proc_start=proc_start_time(pid),
        )
    except (KeyError, ValueError):
        return None
    logger.warning("local: adopted process %d of %s (no record: a launch cut)", pid, instance_id)
    return rec
