"""Instance records and process helpers for the local provider.

Each local instance is one JSON file ``<state_dir>/instances/<id>.json``
(written atomically), so a restarted controller finds the replicas a previous
one started. The replay start of each service lives in
``<state_dir>/replay/<service>.json``. Process helpers check and signal a
replica's process group without ever touching an unrelated process (a pid
is trusted only while its start time matches the recorded one).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from skyctl.logtail import MAX_BACKUPS, backup_path
from skyctl.types import Instance, InstanceState, Location

#: an ended replica's log is kept this long after its last write: as long as its row
#: shows in `serve status -a` (skyctl.controller.reconcile.KEEP_TERMINATED_SECONDS)
LOG_KEEP_SECONDS = 3600.0
#: a service's logs folder is scanned at most this often (clock seconds), in a thread
LOG_PRUNE_EVERY_SECONDS = 300.0
_ROTATED = re.compile(r"\.([0-9]+|rotating)$")  # replica-1.log.2: a copy of replica-1.log

RUNNING = "RUNNING"
PREEMPTED = "PREEMPTED"
FAILED = "FAILED"


@dataclass
class Record:
    """What the local provider remembers about one replica process."""

    instance_id: str
    client_token: str
    service: str
    replica_id: int
    version: int
    location: str  # "local/region/zone"
    spot: bool
    price: float
    created_at: float
    pid: int
    pgid: int
    port: int
    log_path: str
    proc_start: str | None = None  # /proc start time, guards against pid reuse
    state: str = RUNNING  # RUNNING, PREEMPTED or FAILED
    interruption_at: float | None = None
    detail: str = ""
    # a multi-node replica's ranks 1..N-1: {"rank", "pid", "start", "port"} (local_nodes)
    workers: list[dict[str, Any]] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def to_instance(self) -> Instance:
        return Instance(
            instance_id=self.instance_id,
            service=self.service,
            replica_id=self.replica_id,
            version=self.version,
            location=Location.parse(self.location),
            spot=self.spot,
            state=InstanceState(self.state),
            endpoint=self.endpoint if self.state == RUNNING else None,
            price=self.price,
            created_at=self.created_at,
            interruption_at=self.interruption_at,
            detail=self.detail,
        )


def safe_name(text: str) -> str:
    """A file-name-safe form of a service name."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text) or "_"


_INSTANCE_ID = re.compile(r"(?P<service>.+)-r(?P<replica>[0-9]+)-[0-9a-f]{10}")


def instance_id(service: str, replica_id: int, client_token: str) -> str:
    """A replica's instance id: ``<service>-r<replica>-<token digest>``, the same for
    every launch with that token (a relaunch adopts the process it left)."""
    digest = hashlib.sha256(client_token.encode()).hexdigest()[:10]
    return f"{safe_name(service)}-r{replica_id}-{digest}"


def log_of(state_dir: Path, instance_id: str) -> Path | None:
    """Where the replica of ``instance_id`` logs (kept with its service after it ends)."""
    named = _INSTANCE_ID.fullmatch(instance_id)
    if named is None:
        return None
    return state_dir / "logs" / named["service"] / f"replica-{named['replica']}.log"


class RecordStore:
    """Records on disk plus an in-memory copy (this process is the only writer).

    ``read_only``: another process's view (the controller may be running and is
    the writer): what it notices (a process ended) stays in memory. Written back,
    a record the controller removed meanwhile would come back as an instance of
    a service already gone."""

    def __init__(self, state_dir: Path, *, read_only: bool = False) -> None:
        self.read_only = read_only
        self.dir = state_dir / "instances"
        self.replay_dir = state_dir / "replay"
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.dir.chmod(0o700)  # records and logs are the user's alone
        self.records: dict[str, Record] = {}
        for path in sorted(self.dir.glob("*.json")):
            with contextlib.suppress(OSError, ValueError, TypeError):
                rec = Record(**json.loads(path.read_text()))
                self.records[rec.instance_id] = rec

    def by_token(self, token: str) -> Record | None:
        return next((r for r in self.records.values() if r.client_token == token), None)

    def save(self, rec: Record) -> None:
        self.records[rec.instance_id] = rec
        if not self.read_only:
            _write_json(self.dir / f"{rec.instance_id}.json", asdict(rec))

    def remove(self, instance_id: str) -> None:
        self.records.pop(instance_id, None)
        if not self.read_only:
            (self.dir / f"{instance_id}.json").unlink(missing_ok=True)

    def replay_t0(self, service: str) -> float | None:
        path = self.replay_dir / f"{safe_name(service)}.json"
        try:
            return float(json.loads(path.read_text())["t0"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def forget_replay(self, service: str) -> None:
        if not self.read_only:
            (self.replay_dir / f"{safe_name(service)}.json").unlink(missing_ok=True)

    def save_replay_t0(self, service: str, t0: float) -> None:
        if self.read_only:
            return
        self.replay_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_json(self.replay_dir / f"{safe_name(service)}.json", {"t0": t0})


def prune_logs(folder: Path, live: set[str], before: float) -> int:
    """Remove the replica logs in ``folder`` last written before ``before`` (epoch
    seconds) but those named in ``live``; return how many went. Blocking: run it in a
    thread."""
    removed = 0
    with contextlib.suppress(OSError):  # never fails a termination: next time, then
        for path in folder.iterdir():
            log = _ROTATED.sub("", path.name)  # its rotated copies go with it (local_logs)
            if log in live or not log.endswith(".log"):
                continue
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < before:
                    path.unlink()
                    removed += 1
    return removed


def end_files(work_dir: Path, log_path: str, now: float) -> None:
    """An ended replica's files: its own directory goes (as a cloud VM's disk does; a
    spec's workdir is the user's and stays), its log is stamped with its end (``now``,
    the clock's) so it is kept ``LOG_KEEP_SECONDS`` from there. Blocking: run it in a
    thread."""
    shutil.rmtree(work_dir, ignore_errors=True)
    for n in range(MAX_BACKUPS + 1):  # and its rotated copies
        with contextlib.suppress(OSError):
            os.utime(backup_path(log_path, n) if n else log_path, (now, now))


class LogPruner:
    """Ended replicas' logs go ``LOG_KEEP_SECONDS`` after their last write (a service
    that churns replicas for months kept every log until ``serve down``); each
    service's folder is looked at most every ``LOG_PRUNE_EVERY_SECONDS``."""

    def __init__(self, state_dir: Path, now: Callable[[], float]) -> None:
        self._dir = state_dir / "logs"
        self._now = now
        self._due: dict[str, float] = {}

    async def after_end(self, service: str, live: Iterable[Record]) -> int:
        now = self._now()
        if now < self._due.get(service, 0.0):
            return 0
        self._due[service] = now + LOG_PRUNE_EVERY_SECONDS
        keep = {Path(r.log_path).name for r in live if r.service == service}
        folder = self._dir / safe_name(service)
        return await asyncio.to_thread(prune_logs, folder, keep, now - LOG_KEEP_SECONDS)

    def forget(self, service: str) -> None:
        self._due.pop(service, None)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write atomically, readable by the user only."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            os.fchmod(fd, 0o600)
            out.write(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError:  # a full disk: no half-written .tmp left among the records
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# ---------------------------------------------------------------- processes


def proc_start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (Linux /proc), None when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def pid_alive(pid: int, proc_start: str | None) -> bool:
    """True while ``pid`` is the same live (not zombie) process as recorded."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # someone else's process now: ours is gone
    if _zombie(pid):
        return False
    return proc_start is None or proc_start_time(pid) in (None, proc_start)


#: a process in an exec reads with an empty environment and command line until the
#: kernel has set the new program up (right after a spawn, and at each ``exec`` of a
#: replica's shells: measured, 12 of 40 replica start-ups vanished so for a moment);
#: such a process is read again after these pauses (seconds) before it is passed over
EXEC_RETRY_SECONDS = (0.005, 0.02, 0.05, 0.1)
_PF_KTHREAD = 0x00200000  # /proc/PID/stat flags: a kernel thread (no environment, ever)


def processes_with_env(
    name: str,
    value: str,
    *,
    proc: Path = Path("/proc"),
    sleep: Callable[[float], None] = time.sleep,
) -> dict[int, dict[str, str]]:
    """Live processes (other than this one) whose environment holds ``name=value``,
    with their environment. Reads ``/proc/<pid>/environ`` (Linux); processes it
    cannot read are skipped; one caught in an exec is read again after a pause
    (:data:`EXEC_RETRY_SECONDS`), so a replica starting up is not missed. Blocking:
    run it in a thread.
    """
    needle = f"{name}={value}".encode()
    found: dict[int, dict[str, str]] = {}
    pending = [e for e in proc.iterdir() if e.name.isdigit() and int(e.name) != os.getpid()]
    for pause in (*EXEC_RETRY_SECONDS, None):
        execing = []
        for entry in pending:
            with contextlib.suppress(OSError, ValueError, IndexError):
                raw = (entry / "environ").read_bytes()
                if not raw and _execing(entry):
                    execing.append(entry)
                    continue
                if not raw:  # its exec may have ended between the two reads
                    raw = (entry / "environ").read_bytes()
                items = raw.split(b"\0")
                if needle in items and _stat(entry)[0] != "Z":
                    pairs = (i.decode(errors="replace").partition("=") for i in items if i)
                    found[int(entry.name)] = {k: v for k, _, v in pairs}
        if not execing or pause is None:
            return found
        sleep(pause)
        pending = execing
    return found


def _stat(entry: Path) -> list[str]:
    """The fields of ``/proc/PID/stat`` after the command name (state first)."""
    return (entry / "stat").read_text().rsplit(")", 1)[-1].split()


def _execing(entry: Path) -> bool:
    """True for a live user process with an empty command line (and environment):
    one in the middle of an exec."""
    if (entry / "cmdline").read_bytes():
        return False
    fields = _stat(entry)
    return fields[0] != "Z" and not int(fields[6]) & _PF_KTHREAD


def pgid_of(pid: int) -> int:
    """The process group of ``pid``; 0 once it is gone (or not ours)."""
    try:
        return os.getpgid(pid)
    except (ProcessLookupError, PermissionError):
        return 0


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def signal_group(pgid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to a process group; a group already gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def free_port(avoid: set[int]) -> int:
    """A TCP port on 127.0.0.1 that is free now and not in ``avoid``."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in avoid:
            return port
    raise OSError("no free TCP port on 127.0.0.1")
