"""Reading trace files safely: bounded folder walks and reads, and one-line errors.

A trace folder or archive is read through :class:`Files`, a read-only view of
posix relative paths. Every limit is checked before the bytes are read: a
folder walk stops at :data:`MAX_DEPTH` levels and :data:`MAX_ENTRIES` entries
(symlinked folders are followed once, loops are skipped), a data file is at
most :data:`MAX_FILE_BYTES`, all of them together :data:`MAX_TOTAL_BYTES`
(archive members too, by their declared and their actual sizes), and only
regular files are read (a device such as ``/dev/zero``, a FIFO or a socket
named as a trace is refused). Errors are :class:`TraceError` (a ConfigError):
``trace FILE[:LINE]: what is wrong; what is allowed``, on one line.

JSON is parsed strictly (NaN and Infinity refused, nesting bounded) and text
must be UTF-8. Pure: reads the files it is given, nothing else.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import math
import os
import stat
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from skyctl.errors import ConfigError

# one availability CSV or zone JSON (a year at 60 s ticks: ~12 MB)
MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_TOTAL_BYTES = 512 * 1024 * 1024  # every file of one trace together
MAX_ENTRIES = 10_000  # folder entries walked, archive members listed
MAX_DEPTH = 4  # folder levels walked below the trace path


class TraceError(ConfigError):
    """A trace that cannot be read: ``trace WHERE: what is wrong; what is allowed``."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"trace {where}: {message}")


def _macos_metadata(name: str) -> bool:
    """macOS's own files beside the data: ``__MACOSX/`` in a zip Finder made, ``._<name>``
    (AppleDouble) in a tar macOS made or on a volume it wrote; never trace data."""
    parts = name.split("/")
    return "__MACOSX" in parts or parts[-1].startswith("._")


def _mib(n: int) -> str:
    return f"{n / 1024 / 1024:.0f} MiB"


class Files:
    """Read-only view of a folder or an archive: posix relative paths -> bytes."""

    def __init__(self, root: str, names: list[str], read: Callable[[str], bytes]) -> None:
        self.root = root
        self.names = [n for n in names if not _macos_metadata(n)]
        self._read = read
        self.total = 0

    def where(self, name: str) -> str:
        """How an error names ``name``: its path (inside the archive: ``archive:name``)."""
        if os.path.isdir(self.root):
            return os.path.join(self.root, name)
        return f"{self.root}:{name}"

    def read(self, name: str) -> bytes:
        data = self._read(name)
        self.total += len(data)
        if self.total > MAX_TOTAL_BYTES:
            raise TraceError(
                self.where(name),
                f"the trace's files come to more than {_mib(MAX_TOTAL_BYTES)}; "
                "a trace is at most that much data (split it)",
            )
        return data

    def text(self, name: str) -> str:
        data = self.read(name)
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise TraceError(
                self.where(name), f"not UTF-8 text (byte {e.start}); a trace file is UTF-8"
            ) from None

    def json(self, name: str) -> Any:
        return parse_json(self.where(name), self.text(name))

    def listdir(self, folder: str) -> list[str]:
        """File names directly inside ``folder`` ("" = the root), sorted."""
        prefix = f"{folder}/" if folder else ""
        return sorted(
            n[len(prefix) :]
            for n in self.names
            if n.startswith(prefix) and "/" not in n[len(prefix) :]
        )

    def folders(self) -> set[str]:
        out = {""}
        for n in self.names:
            parts = n.split("/")[:-1]
            out.update("/".join(parts[: i + 1]) for i in range(len(parts)))
        return out


def shown(value: object, limit: int = 60) -> str:
    """``repr(value)`` for an error message, cut to about ``limit`` characters (a value
    read from a hostile file can be megabytes long)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows here")


def parse_json(where: str, text: str) -> Any:
    """Strict JSON: NaN/Infinity refused, deep nesting refused, errors with line:column."""
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as e:
        raise TraceError(f"{where}:{e.lineno}", f"not JSON ({e.msg}, column {e.colno})") from None
    except ValueError as e:
        if "integer string conversion" in str(e):  # Python's int digit limit
            raise TraceError(
                where, "a number of more than 4,300 digits; no trace value is that long"
            ) from None
        raise TraceError(where, f"{e}; values must be finite numbers") from None
    except RecursionError:
        raise TraceError(where, "JSON nested too deeply for a trace file") from None


def finite(value: object) -> float | None:
    """``value`` as a finite float, or None when it is not a number (bools are not)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        f = float(value)
    except OverflowError:  # an int of hundreds of digits, as strict JSON allows
        return None
    return f if math.isfinite(f) else None


def _regular(path: Path, where: str) -> os.stat_result:
    try:
        st = path.stat()
    except OSError as e:
        reason = "a symlink loop" if e.errno == errno.ELOOP else (e.strerror or str(e))
        raise TraceError(where, f"cannot be read ({reason})") from None
    return st


def _walk(root: Path) -> list[str]:
    """Files below ``root`` (posix, relative), bounded; symlinked folders once."""
    names: list[str] = []
    seen: set[tuple[int, int]] = set()
    entries = 0

    def visit(folder: Path, rel: str, depth: int) -> None:
        nonlocal entries
        try:
            st = folder.stat()
            key = (st.st_dev, st.st_ino)
            if key in seen:
                return  # a symlink back to a folder already walked: a loop
            seen.add(key)
            with os.scandir(folder) as it:  # lazily: a folder of millions stops at the cap
                children = list(itertools.islice(it, MAX_ENTRIES + 1 - entries))
        except OSError:
            return  # unreadable or a broken/looping link: not trace data
        entries += len(children)
        if entries > MAX_ENTRIES:
            raise TraceError(
                str(root),
                f"more than {MAX_ENTRIES:,} files and folders; point --trace at the "
                "trace's own folder",
            )
        for entry in sorted(children, key=lambda e: e.name):
            name = f"{rel}{entry.name}"
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                if depth < MAX_DEPTH:
                    visit(Path(entry.path), f"{name}/", depth + 1)
            else:  # a device, FIFO or broken link is listed: reading it says what it is
                names.append(name)

    visit(root, "", 0)
    return sorted(names)


def _read_file(path: Path, where: str) -> bytes:
    st = _regular(path, where)
    if not stat.S_ISREG(st.st_mode):
        raise TraceError(where, "not a regular file; a trace file is a CSV or JSON file")
    if st.st_size > MAX_FILE_BYTES:
        raise TraceError(
            where,
            f"{st.st_size / 1024 / 1024:,.0f} MiB; a trace file is at most {_mib(MAX_FILE_BYTES)}",
        )
    try:
        with path.open("rb") as f:  # read(n) allocates n bytes: the size, not the cap
            data = f.read(min(st.st_size, MAX_FILE_BYTES) + 1)
            if len(data) > st.st_size:  # grown since stat(): the rest, bounded
                data += f.read(MAX_FILE_BYTES + 1 - len(data))
    except OSError as e:
        raise TraceError(where, f"cannot be read ({e.strerror or e})") from None
    if len(data) > MAX_FILE_BYTES:
        raise TraceError(where, f"larger than {_mib(MAX_FILE_BYTES)}; a trace file is at most that")
    return data


def _member_limit(where: str, size: int, total: int) -> None:
    if size > MAX_FILE_BYTES:
        raise TraceError(where, f"a member of {size:,} bytes; at most {_mib(MAX_FILE_BYTES)}")
    if total > MAX_TOTAL_BYTES:
        raise TraceError(where, f"members of more than {_mib(MAX_TOTAL_BYTES)} in all")


@contextlib.contextmanager
def open_files(path: Path) -> Iterator[Files]:
    """A :class:`Files` over the folder or the tar/zip archive at ``path``."""
    where = str(path)
    st = _regular(path, where)
    if stat.S_ISDIR(st.st_mode):
        yield Files(where, _walk(path), lambda n: _read_file(path / n, os.path.join(where, n)))
        return
    if not stat.S_ISREG(st.st_mode):
        raise TraceError(
            where, "not a folder or a regular file; a trace is a folder, a tar or a zip archive"
        )
    if st.st_size > MAX_TOTAL_BYTES:
        raise TraceError(where, f"an archive of more than {_mib(MAX_TOTAL_BYTES)}")
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                infos = [i for i in zf.infolist() if not i.is_dir()][: MAX_ENTRIES + 1]
                if len(infos) > MAX_ENTRIES:
                    raise TraceError(where, f"more than {MAX_ENTRIES:,} members")
                total = 0
                for i in infos:
                    total += i.file_size
                    _member_limit(f"{where}:{i.filename}", i.file_size, total)

                def read_zip(n: str) -> bytes:
                    with zf.open(n) as f:
                        data = f.read(MAX_FILE_BYTES + 1)
                    _member_limit(f"{where}:{n}", len(data), 0)
                    return data

                yield Files(where, sorted(i.filename for i in infos), read_zip)
                return
        if tarfile.is_tarfile(path):
            with tarfile.open(path) as tf:
                members: dict[str, tarfile.TarInfo] = {}
                total = 0
                while (m := tf.next()) is not None:
                    if len(members) >= MAX_ENTRIES:
                        raise TraceError(where, f"more than {MAX_ENTRIES:,} members")
                    if m.isfile():
                        total += m.size
                        _member_limit(f"{where}:{m.name}", m.size, total)
                        members[m.name.removeprefix("./")] = m

                def read_tar(n: str) -> bytes:
                    f = tf.extractfile(members[n])
                    assert f is not None
                    return f.read(MAX_FILE_BYTES + 1)

                yield Files(where, sorted(members), read_tar)
                return
    except (OSError, EOFError, tarfile.TarError, zipfile.BadZipFile) as e:
        raise TraceError(where, f"a damaged archive ({e})") from None
    raise TraceError(
        where,
        "not a folder, a tar archive or a zip archive (a trace is a folder holding "
        "availability/*.csv, zones/*.json or count *.json files, or an archive of one)",
    )
