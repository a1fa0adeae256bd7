"""The last lines of a log file: where they begin, and following it as it grows.

Shared by the controller's replica-log endpoint (``?tail=N``) and the CLI's
``serve logs --controller/--load-balancer``, which read the daemon's own log.

A local replica's log is rotated at a size cap (``providers.local_logs``):
copied to ``<log>.1`` (older copies shift to ``.2``...) and truncated, inside
:func:`rotating`, which bumps the log's rotation count (odd while it rotates).
:class:`LogReader` reads such a log across rotations, exactly, in the process
that rotates it (the controller's): from its oldest copy (or its last N lines,
counted across the copies), then on as it grows; a rotation that happens while
it reads makes it finish the old content from the copy, then go on at the new
file's start.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO

#: the most rotated copies of a log kept (``<log>.1`` .. ``<log>.9``)
MAX_BACKUPS = 9
_SEQ_KEPT = 1000  # rotation counts remembered before those of removed logs are dropped
_seq: dict[str, int] = {}
_seq_lock = threading.Lock()


def tail_offset(f: BinaryIO, lines: int, block: int = 64 * 1024) -> int:
    """The offset in the open binary file ``f`` where its last ``lines`` lines begin."""
    end = f.seek(0, 2)
    if lines <= 0:
        return int(end)
    pos, found = end, 0
    f.seek(max(0, end - 1))
    if end and f.read(1) == b"\n":  # the last line's own newline does not count
        pos = end - 1
    while pos > 0:  # bytes.count and rfind, not a loop per byte (32 MiB took 4 s)
        start = max(0, pos - block)
        f.seek(start)
        chunk = f.read(pos - start)
        count = chunk.count(b"\n")
        if found + count >= lines:
            return start + _newline_from_end(chunk, lines - found) + 1
        found += count
        pos = start
    return 0


def _newline_from_end(chunk: bytes, k: int) -> int:
    """The index of the ``k``-th last newline in ``chunk`` (it holds at least ``k``)."""
    i = len(chunk)
    for _ in range(k):
        i = chunk.rfind(b"\n", 0, i)
    return i


def lines_to_end(f: BinaryIO) -> Iterator[str]:
    """The lines from ``f``'s position to its end (a last line without newline too)."""
    for raw in f:
        yield raw.decode(errors="replace").rstrip("\n")


def follow_lines(f: BinaryIO, poll: float = 0.5) -> Iterator[str]:
    """Lines written to ``f`` after its position, as they come, until the caller stops."""
    partial = b""
    while True:
        chunk = f.readline()
        if chunk.endswith(b"\n"):
            yield (partial + chunk).decode(errors="replace").rstrip("\n")
            partial = b""
        else:
            partial += chunk
            time.sleep(poll)


def log_limits_problem(section: Mapping[str, Any]) -> tuple[str, str] | None:
    """(key, one-line error) for a bad ``local.log_max_mb`` or ``local.log_backups`` of
    config.yaml (the replica logs' size cap in MiB, default 32; rotated copies kept, 1)."""
    mb = section.get("log_max_mb", 32)
    if isinstance(mb, bool) or not isinstance(mb, int | float) or not 0 < mb <= 1024 * 1024:
        got = f"expected a positive number of MiB (default 32), got {mb!r}"
        return "log_max_mb", f"local.log_max_mb: {got}"
    backups = section.get("log_backups", 1)
    if isinstance(backups, bool) or not isinstance(backups, int) or not 0 <= backups <= MAX_BACKUPS:
        got = f"expected an integer from 0 to {MAX_BACKUPS} (default 1), got {backups!r}"
        return "log_backups", f"local.log_backups: {got}"
    return None


def backup_path(path: str | os.PathLike[str], n: int) -> str:
    """The ``n``-th newest rotated copy of the log at ``path`` (``<path>.<n>``)."""
    return f"{os.fspath(path)}.{n}"


def rotation_seq(path: str | os.PathLike[str]) -> int:
    """How many times ``path`` began and finished a rotation in this process (odd: now)."""
    return _seq.get(os.fspath(path), 0)


@contextlib.contextmanager
def rotating(path: str | os.PathLike[str]) -> Iterator[None]:
    """The rotator truncates ``path`` and renames its copies inside this."""
    key = os.fspath(path)
    with _seq_lock:
        if len(_seq) > _SEQ_KEPT:  # only removed logs' counts go: nobody reads those
            for old in [k for k in _seq if k != key and not os.path.exists(k)]:
                del _seq[old]
        _seq[key] = _seq.get(key, 0) + 1
    try:
        yield
    finally:
        with _seq_lock:
            _seq[key] = _seq.get(key, 0) + 1


def tail_bytes(path: str | os.PathLike[str], size: int) -> bytes:
    """The last ``size`` bytes of a log and, when it holds fewer, of its rotated copies
    (b"" when there is no log)."""
    parts: list[bytes] = []
    for n in range(MAX_BACKUPS + 1):
        try:
            with open(backup_path(path, n) if n else path, "rb") as f:
                end = f.seek(0, 2)
                take = min(end, size)
                f.seek(end - take)
                parts.append(f.read(take))
                size -= take
        except FileNotFoundError:
            break
        if size <= 0:
            break
    return b"".join(reversed(parts))


class LogReader:
    """A log and its rotated copies, read as one stream (see the module's doc)."""

    def __init__(
        self, path: str | os.PathLike[str], tail: int | None = None, follow: bool = True
    ) -> None:
        """``follow=False``: only what is there now (a replica printing fast made a
        ``--tail 2`` chase its log and print what it wrote meanwhile)."""
        self.path = os.fspath(path)
        self._left: int | None = None
        #: True when :meth:`read` returned b"" only because a rotation is under way
        self.pending = False
        self._queue: list[BinaryIO] = []  # copies to read to their end first
        self._cur: BinaryIO | None = None
        for attempt in range(5):  # a rotation may rename the copies while they open
            self._seq = rotation_seq(self.path)
            files = self._open_copies(_existing_copies(self.path))
            try:
                cur = open(self.path, "rb")  # kept open: closed in close()
            except OSError:
                _close_all(files)
                raise
            if (self._seq % 2 == 0 and rotation_seq(self.path) == self._seq) or attempt == 4:
                break
            _close_all([*files, cur])
        self._cur = cur
        self._queue, self._pos = files, 0
        if tail is not None:
            idx, offset = _tail_start([*files, cur], tail)
            _close_all(files[:idx])
            self._queue = files[idx:]
            if self._queue:
                self._queue[0].seek(offset)
            else:
                self._pos = offset
        if not follow:
            sizes = [os.fstat(f.fileno()).st_size - f.tell() for f in self._queue]
            self._left = sum(sizes) + os.fstat(cur.fileno()).st_size - self._pos

    def read(self, size: int = 64 * 1024) -> bytes:
        """The next bytes (b"" when there are none yet: see ``pending``)."""
        self.pending = False
        assert self._cur is not None
        if self._left is not None:
            size = min(size, self._left)
            if size <= 0:
                return b""
        chunk = self._read(size)
        if self._left is not None:
            self._left -= len(chunk)
        return chunk

    def _read(self, size: int) -> bytes:
        assert self._cur is not None
        for _ in range(3):
            while self._queue:
                chunk = self._queue[0].read(size)
                if chunk:
                    return chunk
                self._queue.pop(0).close()
            seq = rotation_seq(self.path)
            if seq % 2 == 0 and seq != self._seq:
                self._after_rotation(seq)
                continue
            if seq % 2 == 0:
                chunk = os.pread(self._cur.fileno(), size, self._pos)
                if rotation_seq(self.path) == seq:  # else it may be the new file's bytes
                    if not chunk and os.fstat(self._cur.fileno()).st_size < self._pos:
                        self._pos = 0  # truncated by its replica (`echo x >/dev/stderr`)
                        continue
                    self._pos += len(chunk)
                    return chunk
        self.pending = True
        return b""

    def close(self) -> None:
        _close_all([*self._queue, *([self._cur] if self._cur else [])])
        self._queue, self._cur = [], None

    def __enter__(self) -> LogReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _after_rotation(self, seq: int) -> None:
        """Rotated ``k`` times since the last read: each rotation took a copy's worth off
        the log's start (all of it when truncated; whole blocks when collapsed), the
        oldest now ``<log>.k``. The stream goes on at the read's offset, counted through
        ``.k``, ``.k-1`` .. ``.1``, then the log (from its start when some are gone)."""
        k = (seq - self._seq) // 2
        copies = _existing_copies(self.path)[:k]  # newest first
        files = self._open_copies(copies)
        if rotation_seq(self.path) != seq:  # rotated again meanwhile: next read
            _close_all(files)
            return
        rest = self._pos if len(copies) == k and len(files) == k else 0
        queue: list[BinaryIO] = []
        for f in files:  # oldest first
            size = os.fstat(f.fileno()).st_size
            if rest >= size:  # read already (or empty)
                rest -= size
                f.close()
                continue
            f.seek(rest)
            rest = 0
            queue.append(f)
        self._queue, self._pos, self._seq = queue, rest, seq

    @staticmethod
    def _open_copies(copies: list[str]) -> list[BinaryIO]:
        """The copies (given newest first), opened oldest first (gone ones skipped)."""
        files: list[BinaryIO] = []
        for name in reversed(copies):
            with contextlib.suppress(FileNotFoundError):
                files.append(open(name, "rb"))  # closed by the reader
        return files


def _existing_copies(path: str) -> list[str]:
    """``<path>.1``, ``.2``... while they exist (newest first)."""
    out: list[str] = []
    for n in range(1, MAX_BACKUPS + 1):
        name = backup_path(path, n)
        if not os.path.exists(name):
            break
        out.append(name)
    return out


def _close_all(files: list[BinaryIO]) -> None:
    for f in files:
        f.close()


def _tail_start(files: list[BinaryIO], lines: int, block: int = 64 * 1024) -> tuple[int, int]:
    """Where the last ``lines`` lines of the files read one after the other begin:
    (index of the file, offset in it)."""
    last = len(files) - 1
    if lines <= 0:
        return last, int(files[last].seek(0, 2))
    found, final_newline = 0, True  # the stream's own last newline does not count
    for idx in range(last, -1, -1):
        f = files[idx]
        pos = int(f.seek(0, 2))
        if final_newline and pos:
            f.seek(pos - 1)
            if f.read(1) == b"\n":
                pos -= 1
            final_newline = False
        while pos > 0:
            start = max(0, pos - block)
            f.seek(start)
            chunk = f.read(pos - start)
            count = chunk.count(b"\n")
            if found + count >= lines:
                return idx, start + _newline_from_end(chunk, lines - found) + 1
            found += count
            pos = start
    return 0, 0
