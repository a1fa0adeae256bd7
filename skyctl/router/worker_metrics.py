"""An endpoint's ``/metrics`` summed over the router workers sharing its port.

With ``router.workers: N`` the kernel hands each connection, so each scrape, to
one of N processes. Each worker's :class:`WorkerMetrics` for an endpoint:

- **publishes** its router's figures (:func:`skyctl.metric_samples.snapshot`)
  every :data:`PUBLISH_SECONDS` to ``$SKYCTL_HOME/router-metrics/PORT/PID-START.json``
  (written aside, then renamed: a reader never sees half a file; ``START`` is
  the process's start time, so a recycled pid is not taken for a live worker);
- **answers a scrape** by publishing its own figures at once, then summing every
  live worker's published ones and what dead workers left (``retired.json``)
  (:func:`skyctl.metric_samples.merge`): counters, histograms (request duration,
  time to first byte, by replica and status class) and in-flight gauges. The
  other workers' share is at most :data:`PUBLISH_SECONDS` old. Each file only
  grows and every scrape reads them all, whichever worker answers, so a scrape
  never shows less than one before it (a scrape that used its own live figures
  with the others' published ones would not: two workers would each be ahead
  on their own share);
- **reaps** the files of workers that are gone (SIGKILL, a crash): under a lock
  on the port's directory, their counters and histograms are added to
  ``retired.json`` and their file is removed (their gauges are dropped: a dead
  worker has nothing in flight). So the sum does not go back when a worker is
  restarted: it loses at most what the dead worker counted after its last
  publish, which no scrape had seen. ``retired.json`` keeps only the series of
  replicas some live worker still exports (bounded, as a worker's own series
  are);
- **on close** (the endpoint removed or moved, the process stopping): with other
  live workers left it retires its own final figures the same way; the last one
  removes the directory, and ``router-metrics`` when it is empty. Nothing is
  left once every worker has stopped.

A restart of *every* worker at once with nothing left behind (``serve down``,
``controller stop --all``) starts from zero: a counter reset, as for any process.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from skyctl.config import write_private
from skyctl.metric_samples import (
    Family,
    cumulative,
    keep_replicas,
    merge,
    pack,
    replicas_of,
    snapshot,
    to_metrics,
    unpack,
)

log = logging.getLogger(__name__)

ROOT_NAME = "router-metrics"  # under $SKYCTL_HOME
PUBLISH_SECONDS = 1.0
RETIRED = "retired.json"


def process_start(pid: int) -> str | None:
    """The start time of ``pid`` (clock ticks after boot), or None when it is not running."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else fields[19]


def _alive(worker_id: str) -> bool:
    pid, _, start = worker_id.partition("-")
    return pid.isdigit() and process_start(int(pid)) == start


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _families(data: dict[str, Any]) -> list[Family]:
    """The families of a published or retired file (:func:`~skyctl.metric_samples.pack`ed)."""
    try:
        return unpack(data.get("families") or [])
    except (TypeError, ValueError, KeyError, AttributeError):  # not ours, or torn: none
        return []


def _write(path: Path, data: dict[str, Any]) -> None:
    """Written aside (``NAME.tmp``, 0600) and renamed: a reader sees all or nothing."""
    write_private(path, json.dumps(data, separators=(",", ":")))


class WorkerMetrics:
    """One worker's side of one endpoint's shared metrics (see the module docstring)."""

    def __init__(self, root: Path, service: str, port: int, own: CollectorRegistry) -> None:
        self.root = root
        self.dir = root / str(port)
        self.service = service
        self._own = own
        pid = os.getpid()
        self.worker_id = f"{pid}-{process_start(pid)}"
        self.path = self.dir / f"{self.worker_id}.json"
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Summed(self))

    # ------------------------------------------------------------------ publish
    def publish(self) -> None:
        """Write this worker's figures for the others, then reap dead workers' files."""
        data = {"service": self.service, "families": pack(snapshot(self._own))}
        for _ in range(2):  # the directory may just have been removed by a last closer
            try:
                self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
                _write(self.path, data)
                break
            except FileNotFoundError:
                continue
        self._reap()

    def _scan(self) -> tuple[list[Path], list[Path]]:
        """The other workers' files: (live, dead); dead includes stray temporary files."""
        live: list[Path] = []
        dead: list[Path] = []
        try:
            entries = list(os.scandir(self.dir))
        except FileNotFoundError:
            return [], []
        for entry in entries:
            name = entry.name
            if name == RETIRED or name == self.path.name or name.startswith(RETIRED):
                continue
            worker = name.split(".", 1)[0]
            if name.endswith(".tmp"):
                if not _alive(worker):
                    dead.append(Path(entry.path))
            elif name.endswith(".json"):
                (live if _alive(worker) else dead).append(Path(entry.path))
        return live, dead

    def _reap(self) -> None:
        _, dead = self._scan()
        if dead:
            with self._locked() as ok:
                if ok:
                    self._retire(dead, [])

    # -------------------------------------------------------------------- merge
    def families(self) -> list[Family]:
        """This endpoint's figures summed over its workers (what a scrape answers)."""
        self.publish()  # this worker's share as of now, read back with the others'
        mine = _read(self.path)
        parts = [snapshot(self._own) if mine is None else _families(mine)]  # None: disk full
        # under a shared lock: a worker retiring files (exclusive) moves their figures to
        # retired.json and removes them at once, so each is read exactly once here; the
        # files of workers that died since are counted too, until someone retires them
        with self._locked(fcntl.LOCK_SH):
            live, dead = self._scan()
            for path in [*live, *dead]:
                data = _read(path) if path.suffix == ".json" else None
                if data is not None and data.get("service") == self.service:
                    families = _families(data)
                    parts.append(families if path in live else cumulative(families))
            retired = _read(self.dir / RETIRED) or {}
        if retired.get("service") == self.service:
            known = {r for p in parts for r in replicas_of(p)}
            parts.append(keep_replicas(_families(retired), known))
        return merge(parts)

    # ------------------------------------------------------------------ retire
    @contextlib.contextmanager
    def _locked(self, how: int = fcntl.LOCK_EX) -> Iterator[bool]:
        """A lock on the port's directory, exclusive by default (False: it does not exist)."""
        try:
            fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            yield False
            return
        try:
            fcntl.flock(fd, how)
            yield self.dir.exists()  # a last closer may have removed it meanwhile
        finally:
            os.close(fd)

    def _retire(self, paths: list[Path], extra: list[list[Family]]) -> None:
        """Add the counters of ``paths`` (and ``extra``) to ``retired.json``, then
        remove those files; called with the lock held, so nothing counts twice."""
        parts: list[list[Family]] = [cumulative(f) for f in extra]
        for path in paths:
            data = _read(path) if path.suffix == ".json" else None
            if data is not None and data.get("service") == self.service:
                parts.append(cumulative(_families(data)))
        retired_path = self.dir / RETIRED
        retired = _read(retired_path) or {}
        if parts:
            before = _families(retired) if retired.get("service") == self.service else None
            summed = merge([before or [], *parts])
            live, _ = self._scan()
            known = replicas_of(snapshot(self._own))
            for path in live:
                known |= replicas_of(_families(_read(path) or {}))
            kept = keep_replicas(summed, known)
            _write(retired_path, {"service": self.service, "families": pack(kept)})
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def close(self, final: list[Family] | None = None) -> None:
        """The endpoint closed in this worker: retire its figures (``final``: taken
        before the router stopped, combined with now's by the larger of each) if
        others still serve the port, else remove everything (see the module docstring)."""
        now = snapshot(self._own)
        mine = merge([final, now], combine=max) if final is not None else now
        with self._locked() as ok:
            if not ok:
                return
            live, dead = self._scan()
            if live:
                self._retire(dead, [mine])
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
                return
            for entry in list(os.scandir(self.dir)):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
            with contextlib.suppress(OSError):
                self.dir.rmdir()
        with contextlib.suppress(OSError):  # not empty: another port's workers use it
            self.root.rmdir()

    def own_snapshot(self) -> list[Family]:
        return snapshot(self._own)


class _Summed(Collector):
    def __init__(self, shared: WorkerMetrics) -> None:
        self._shared = shared

    def collect(self) -> Iterator[Metric]:
        try:
            families = self._shared.families()
        except OSError as e:  # the shared files unreadable: this worker's own, said so
            log.warning("router %s: other workers' metrics not read: %s", self._shared.service, e)
            families = self._shared.own_snapshot()
        yield from to_metrics(families)
