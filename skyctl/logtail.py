"""The last lines of a log file: where they begin, and following it as it grows.

Shared by the controller's replica-log endpoint (``?tail=N``) and the CLI's
``serve logs --controller/--load-balancer``, which read the daemon's own log.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import BinaryIO


def tail_offset(f: BinaryIO, lines: int, block: int = 64 * 1024) -> int:
    """The offset in the open binary file ``f`` where its last ``lines`` lines begin."""
    end = f.seek(0, 2)
    if lines <= 0:
        return int(end)
    pos, found = end, 0
    f.seek(max(0, end - 1))
    if end and f.read(1) == b"\n":  # the last line's own newline does not count
        pos = end - 1
    while pos > 0:
        start = max(0, pos - block)
        f.seek(start)
        chunk = f.read(pos - start)
        for i in range(len(chunk) - 1, -1, -1):
            if chunk[i] == 10:
                found += 1
                if found >= lines:
                    return start + i + 1
        pos = start
    return 0


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
