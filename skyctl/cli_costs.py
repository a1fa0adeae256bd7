"""``skyctl serve cost``: what services cost over a time window, against on demand.

Read straight from the state database (no controller needed: cost is history),
through :mod:`skyctl.store.costs`, which documents which time bills (and
:mod:`skyctl.store.ledger`: what folding the ledger's old rows keeps exact).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from typing import Any

import click

from skyctl.config import paths
from skyctl.errors import ServiceNotFound, SkyctlError

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_DURATIONS = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class BadTime(SkyctlError):
    exit_code = 2


def parse_when(text: str, option: str, now: float) -> float:
    """A duration back from now (``90m``, ``24h``, ``7d``, ``1h30m``) or an ISO 8601 time."""
    t = text.strip()
    if _DURATIONS.fullmatch(t):
        return now - sum(float(n) * _UNIT[u] for n, u in _DURATION.findall(t))
    try:
        when = dt.datetime.fromisoformat(t)
    except ValueError:
        raise BadTime(
            f"{option} {text!r}: give a duration back from now (30m, 24h, 7d, 1h30m) "
            "or an ISO 8601 time (2026-12-06T18:00, UTC unless it names a zone)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _rows(title: str, groups: dict[str, dict[str, Any]]) -> list[list[str]]:
    return [
        [
            title,
            key,
            str(g["replicas"]),
            f"{g['replica_seconds'] / 3600:.3f}",
            f"{g['accrued_cost']:.4f}",
            f"{g['ondemand_cost']:.4f}",
            f"{g['savings']:.4f} ({g['savings_pct']:.0f}%)",
        ]
        for key, g in groups.items()
    ]


def render(rep: dict[str, Any]) -> str:
    header = ["BY", "NAME", "REPLICAS", "REPLICA-H", "COST $", "ON-DEMAND $", "SAVED $"]
    rows = [["total", "-", *_rows("", {"": rep["total"]})[0][2:]]]
    for group in ("service", "cloud", "location", "kind"):
        rows += _rows(group, rep[f"by_{group}"])
    cells = [header, *rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [f"cost from {_iso(rep['since'])} to {_iso(rep['until'])}"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


@click.command("cost")
@click.argument("name", required=False)
@click.option(
    "--since",
    "--window",
    "since",
    default=None,
    metavar="WHEN",
    help="Start of the window: a duration back from now (24h, 7d) or an ISO time. "
    "Default: everything recorded.",
)
@click.option("--until", default=None, metavar="WHEN", help="End of the window (default: now).")
@click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "json"]),
    default="table",
    help="json: the same figures for scripts (USD).",
)
@click.pass_context
def cost(
    ctx: click.Context, name: str | None, since: str | None, until: str | None, output: str
) -> None:
    """Accrued cost per service, cloud, location and kind, and savings against on demand.

    \b
    Examples:
      skyctl serve cost                 # everything, every service
      skyctl serve cost llm --since 24h # one service, the last day
      skyctl serve cost -o json --since 2026-12-01T00:00 --until 2026-12-02T00:00
    """
    from skyctl.store import Store, costs  # sqlalchemy, only for this command

    now = time.time()
    start = parse_when(since, "--since", now) if since else float("-inf")
    end = parse_when(until, "--until", now) if until else now
    if since and start >= end:  # an empty window would report zero cost as if it were true
        raise BadTime(
            f"--since {since!r} is not before --until {until or 'now'!r} "
            f"({_iso(start)} >= {_iso(end)}): the window must start before it ends"
        )
    p = paths(ctx.obj.get("home") if ctx.obj else None)
    rep = costs.Report(start, end)
    if p.db.exists():
        store = Store(p.db)
        try:  # summed a replica (or folded day) at a time: the ledger is never all loaded
            rep = store.cost_report(name, start, end)
        finally:
            store.close()
    if name is not None and not rep.seen:
        raise ServiceNotFound(f"no cost recorded for a service named {name!r}")
    out = rep.as_dict()
    click.echo(json.dumps(out, indent=2) if output == "json" else render(out))
