"""``serve down``'s progress: one live table for every service going down.

On a terminal it is a single rich table redrawn in place (service, what it is
doing, its remaining replicas by id and status), replaced by each service's
final line as it finishes. When the output is not a terminal (a pipe, a log, CI)
it prints a plain line only when a service's remaining replicas change, never
one per poll.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any

import click
from rich.console import Console
from rich.live import Live
from rich.table import Table


def replicas_left(replicas: Sequence[dict[str, Any]]) -> str:
    """``replica 3 SHUTTING_DOWN, 4 READY`` (id and status of each live replica), or
    ``none``: the ids read as ids, not as counts."""
    left = ", ".join(f"{r['id']} {r['status']}" for r in replicas)
    return f"replica {left}" if left else "none"


class DownProgress:
    """What ``serve down`` shows while it waits; a context manager around the wait."""

    def __init__(self, names: Sequence[str], console: Console | None = None) -> None:
        self.console = console or Console(highlight=False)
        self.rows: dict[str, tuple[str, str]] = {n: ("shutting down", "?") for n in names}
        self._shown: dict[str, str] = {}
        self._said: list[str] = []  # final lines, printed below the table once it stops
        self._live: Live | None = None

    @property
    def live(self) -> bool:
        return self.console.is_terminal

    def __enter__(self) -> DownProgress:
        if self.live:
            self._live = Live(self._table(), console=self.console, auto_refresh=False)
            self._live.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.__exit__(exc_type, exc, tb)
            self._live = None
        for line in self._said:
            click.echo(line)

    def show(self, name: str, replicas: Sequence[dict[str, Any]]) -> None:
        """``name``'s live replicas now."""
        left = replicas_left(replicas)
        state = f"terminating {len(replicas)} replica(s)" if replicas else "releasing resources"
        self.rows[name] = (state, left)
        if self._live is not None:
            self._redraw()
        elif self._shown.get(name) != left:
            self._shown[name] = left
            if replicas:
                click.echo(f"  {name}: {len(replicas)} replica(s) still terminating ({left})")
            else:  # it printed "0 replica(s) still terminating (none)"
                click.echo(f"  {name}: no replica left; releasing resources")

    def done(self, name: str, ok: bool, message: str = "") -> None:
        """``name`` is gone from the store (``ok``: and confirmed); ``message`` its final
        line, printed now without a table, else once the table stops."""
        self.rows[name] = ("down" if ok else "removed; see below", "none")
        if self._live is not None:
            self._redraw()
            if message:
                self._said.append(message)
        elif message:
            click.echo(message)

    def note(self, message: str) -> None:
        """A line about the controller, above the table (or on stderr without one)."""
        if self._live is not None:
            self._live.console.print(message)
        else:
            click.echo(message, err=True)

    def _redraw(self) -> None:
        assert self._live is not None
        self._live.update(self._table(), refresh=True)

    def _table(self) -> Table:
        table = Table(box=None, pad_edge=False)
        for col in ("SERVICE", "STATE", "REPLICAS LEFT"):
            table.add_column(col)
        for name, (state, left) in sorted(self.rows.items()):
            table.add_row(name, state, left)
        return table
