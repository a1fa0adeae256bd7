"""Local replicas' logs stay under a size cap (rotation in one thread, off the event loop).

A replica's processes write their output straight into ``replica-<id>.log``
through an inherited ``O_APPEND`` descriptor (``local_process``): no pipe, so a
replica outlives a controller restart and every node of a multi-node replica
shares the file. That descriptor cannot be renamed away, so a log over its cap
is rotated in place: its content is copied to ``replica-<id>.log.1`` (older
copies shift to ``.2`` .. ``.<backups>``, the oldest goes), then taken off the
file's start. Where the file system can (ext4, XFS), the file's whole blocks are
copied and then removed with ``fallocate(FALLOC_FL_COLLAPSE_RANGE)``, atomically
with the replica's appends: nothing is lost, and the log keeps its last partial
block. Elsewhere (tmpfs, overlayfs) it is ``logrotate``'s ``copytruncate``: all of
it is copied, the last copy to the file's end right before the truncate, and
what the replica writes between those two calls is lost (a replica writing
~15 MB/s on a loaded machine lost 60 to 140 kB at 4 of 80 rotations); the
replica's next write lands at offset 0 (``O_APPEND``). Copies go through
``copy_file_range`` (in the kernel).

One daemon thread per process (:data:`ROTATOR`) looks at the watched logs every
``CHECK_SECONDS`` (one ``stat`` each), every ``BUSY_CHECK_SECONDS`` for 5 s after
a rotation; a log grows at most by what its replica writes in that time past
the cap. Readers in this process (``serve logs``, ``-f``, ``--tail``, a
failure's last lines) read across the rotation exactly: see
``skyctl.logtail.LogReader`` and ``skyctl.logtail.rotating``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from skyctl.errors import ConfigError
from skyctl.logtail import MAX_BACKUPS, backup_path, log_limits_problem, rotating

logger = logging.getLogger(__name__)

MIB = 1024 * 1024
DEFAULT_MAX_MB = 32  # config.yaml local.log_max_mb
DEFAULT_BACKUPS = 1  # config.yaml local.log_backups
CHECK_SECONDS = 0.5  # real time between looks at the watched logs
BUSY_CHECK_SECONDS = 0.1  # for BUSY_ROUNDS looks after a rotation (a chatty replica)
BUSY_ROUNDS = 50
_CATCH_UP_ROUNDS = 4
_FALLOC_FL_COLLAPSE_RANGE = 0x08
_fallocate: Any = None  # libc's fallocate, False where there is none
_CHUNK = 8 * MIB


@dataclass(frozen=True)
class LogLimits:
    """A replica log's cap (bytes) and how many rotated copies are kept."""

    max_bytes: int = int(DEFAULT_MAX_MB * MIB)
    backups: int = DEFAULT_BACKUPS

    @classmethod
    def from_section(cls, section: Mapping[str, Any] | None) -> LogLimits:
        """``local.log_max_mb`` and ``local.log_backups`` of config.yaml (one-line errors)."""
        section = section or {}
        problem = log_limits_problem(section)
        if problem:
            raise ConfigError(problem[1])
        mb = section.get("log_max_mb", DEFAULT_MAX_MB)
        return cls(max(1, int(float(mb) * MIB)), int(section.get("log_backups", DEFAULT_BACKUPS)))


def rotate(path: str, limits: LogLimits) -> bool:
    """Rotate ``path`` when it is over ``limits.max_bytes``; True when it did.
    Blocking (copies up to the file's size): call it from a thread."""
    try:
        if os.stat(path).st_size <= limits.max_bytes:  # the common case: one stat
            return False
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
    except FileNotFoundError:
        return False
    try:
        if os.fstat(fd).st_size <= limits.max_bytes:
            return False
        _rotate_open(fd, path, limits.backups)
        return True
    finally:
        os.close(fd)


def _rotate_open(fd: int, path: str, backups: int) -> None:
    tmp = f"{path}.rotating"
    out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        copied = 0
        cut = _whole_blocks(fd) if backups else 0  # what a collapse can take off its start
        try:
            if cut:
                copied = _copy(fd, out, 0, cut)
            elif backups:  # copy what is there, then what came meanwhile (shorter each time)
                for _ in range(_CATCH_UP_ROUNDS):
                    end = os.fstat(fd).st_size
                    if end - copied < 64 * 1024 and copied:
                        break
                    copied = _copy(fd, out, copied, end)
        except OSError as e:
            backups, cut = _no_space(e, path), 0
        with rotating(path):  # readers wait (see skyctl.logtail.LogReader)
            if not (cut and _collapse(fd, cut)):  # lossless where the file system can
                try:
                    if backups:  # to the end, and truncate right at it: the window where a
                        copied = _copy(fd, out, copied, None)  # write is lost is one syscall's
                except OSError as e:
                    backups = _no_space(e, path)
                os.ftruncate(fd, 0)  # the replica's next write (O_APPEND) lands at 0
            for n in range(backups, 1, -1):
                with contextlib.suppress(FileNotFoundError):
                    os.replace(backup_path(path, n - 1), backup_path(path, n))
            if backups:
                os.replace(tmp, backup_path(path, 1))
    finally:
        os.close(out)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    for n in range(backups + 1, MAX_BACKUPS + 1):  # kept by a larger log_backups before
        with contextlib.suppress(FileNotFoundError):
            os.unlink(backup_path(path, n))


def _whole_blocks(fd: int) -> int:
    """The file's whole file-system blocks short of its end: what ``_collapse`` may take."""
    try:
        block = os.fstatvfs(fd).f_bsize
    except OSError:
        return 0
    size = os.fstat(fd).st_size
    return ((size - 1) // block) * block if block > 0 and size > block else 0


def _collapse(fd: int, length: int) -> bool:
    """Take the first ``length`` bytes off the file, atomically with the replica's appends
    (``fallocate(FALLOC_FL_COLLAPSE_RANGE)``: ext4, XFS); False where it cannot."""
    global _fallocate
    if _fallocate is None:
        try:
            func = ctypes.CDLL(None, use_errno=True).fallocate
        except (OSError, AttributeError):  # not Linux
            _fallocate = False
            return False
        func.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
        func.restype = ctypes.c_int
        _fallocate = func
    return bool(_fallocate) and _fallocate(fd, _FALLOC_FL_COLLAPSE_RANGE, 0, length) == 0


def _no_space(error: OSError, path: str) -> int:
    """No copy kept (0) when the disk is full: the cap matters more than the old lines."""
    if error.errno != errno.ENOSPC:
        raise error
    logger.warning("local: no space to keep a copy of %s over its cap: truncated", path)
    return 0


def _copy(src: int, dst: int, start: int, end: int | None) -> int:
    """Append ``src``'s bytes [start, end) to ``dst`` (``end`` None: to its end, however
    far it grows meanwhile); returns the offset copied up to."""
    pos, rounds = start, 0
    while (end is None and rounds < _CATCH_UP_ROUNDS * 2) or (end is not None and pos < end):
        rounds += 1  # to its end: a writer faster than the kernel's copy is not chased on
        n = _CHUNK if end is None else min(_CHUNK, end - pos)
        try:
            done = os.copy_file_range(src, dst, n, pos)
        except OSError as e:  # not across these file systems: through this process
            if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            data = os.pread(src, n, pos)
            done = os.write(dst, data) if data else 0
        if done <= 0:  # its end (or truncated under us)
            break
        pos += done
    return pos


class LogRotator:
    """Watches replica logs and rotates those over their cap, in one daemon thread
    that runs while a log is watched (it ends with the last one unwatched)."""

    def __init__(self, interval: float | None = CHECK_SECONDS) -> None:
        self._interval = interval  # None: no thread (tests call check())
        self._watched: dict[str, LogLimits] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._failed: set[str] = set()  # logged once each
        self._one_at_a_time = threading.Lock()  # the thread's and a finish() on one log

    def watch(self, path: str, limits: LogLimits) -> None:
        with self._lock:
            self._watched[path] = limits
            if self._interval is not None and self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="skyctl-log-rotator", daemon=True
                )
                self._thread.start()

    def unwatch(self, path: str) -> None:
        with self._lock:
            self._watched.pop(path, None)
            self._failed.discard(path)
            if not self._watched:
                self._wake.set()  # the thread ends

    def finish(self, path: str, limits: LogLimits) -> None:
        """A replica ended: stop watching its log, rotate it a last time if it is over
        its cap. Blocking: call it from a thread."""
        self.unwatch(path)
        self._rotate(path, limits)

    def watching(self) -> list[str]:
        with self._lock:
            return sorted(self._watched)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def check(self) -> int:
        """One look at every watched log; returns how many were rotated."""
        with self._lock:
            watched = list(self._watched.items())
        return sum(self._rotate(path, limits) for path, limits in watched)

    def join(self, timeout: float = 5.0) -> None:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _rotate(self, path: str, limits: LogLimits) -> bool:
        try:
            with self._one_at_a_time:
                return rotate(path, limits)
        except Exception as e:  # never ends the thread: said once per log, tried again later
            if path not in self._failed:
                self._failed.add(path)
                logger.warning("local: cannot rotate replica log %s: %s", path, e)
            return False

    def _run(self) -> None:
        interval = self._interval or CHECK_SECONDS
        busy = 0  # looks left at the shorter pause
        while True:
            self._wake.wait(min(interval, BUSY_CHECK_SECONDS) if busy else interval)
            with self._lock:
                self._wake.clear()
                if not self._watched:  # the last log went: so does the thread
                    self._thread = None
                    return
            busy = BUSY_ROUNDS if self.check() else max(0, busy - 1)


#: the process's rotator: every local provider's replica logs
ROTATOR = LogRotator()


class ReplicaLogs:
    """One local provider's replica logs under the rotator: watched from the
    provider's first use or the replica's start, until the replica is terminated
    or the provider closed (the rotator's thread ends with the last log)."""

    def __init__(self, limits: LogLimits | None = None, rotator: LogRotator | None = None) -> None:
        self.limits = limits or LogLimits()
        self.rotator = rotator or ROTATOR
        self._paths: set[str] = set()

    def watch(self, paths: Iterable[str]) -> None:
        for path in paths:
            self._paths.add(path)
            self.rotator.watch(path, self.limits)

    def finish(self, path: str) -> None:
        """The replica ended: rotated a last time if over its cap. Blocking (a thread)."""
        self._paths.discard(path)
        self.rotator.finish(path, self.limits)

    def close(self) -> None:
        for path in self._paths:
            self.rotator.unwatch(path)
        self._paths.clear()
