"""``serve status`` tables, as ``sky serve status`` lays them out, drawn with rich.

Two tables: services (NAME, VERSION, UPTIME, STATUS, REPLICAS, ENDPOINT, then
cost and policy) and replicas (SERVICE_NAME, ID, VERSION, ENDPOINT, LAUNCHED,
INFRA, RESOURCES, STATUS, then uptime, cost and requests). On a terminal rich
draws them with colour (none under ``NO_COLOR``); when the output is a pipe or a
file they are plain, space-aligned columns with no styling, for grep and awk.
Text that comes from replicas, specs or providers (log tails, errors, cells)
is printed with its control characters as visible ``\\x1b`` escapes and, in
rich tables, its ``[...]`` as text, not markup: a replica's log line cannot
move the cursor, retitle the terminal or restyle (or crash) the table.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:  # rich is imported when a table is shown, not by every command's
    from rich.console import Console  # printable() (cli_exit)
    from rich.table import Table

SERVICE_COLUMNS = [
    "NAME", "VERSION", "UPTIME", "STATUS", "REPLICAS", "ENDPOINT",
    "$/H", "ACCRUED $", "SAVED $", "POLICY",
]  # fmt: skip
REPLICA_COLUMNS = [
    "SERVICE_NAME", "ID", "VERSION", "ENDPOINT", "LAUNCHED", "INFRA", "RESOURCES",
    "STATUS", "UPTIME", "$/H", "ACCRUED $", "REQS",
]  # fmt: skip
STATUS_STYLE = {
    "READY": "green",
    "CONTROLLER_INIT": "blue",
    "STARTING": "cyan",
    "PROVISIONING": "cyan",
    "PENDING": "cyan",
    "NOT_READY": "yellow",
    "SHUTTING_DOWN": "yellow",
    "FAILED": "red",
    "TERMINATED": "dim",
}


_NAMED = re.compile(r"last replica (\d+):")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")  # C0 but tab, DEL, C1


def printable(text: object) -> str:
    """``text`` with its control characters (ESC, CR, BEL, newline...) as ``\\x1b``."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


def console() -> Console:
    """stdout as rich sees it: colour on a terminal unless NO_COLOR, else plain."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


def duration(seconds: float | None) -> str:
    """``45s``, ``12m 3s``, ``3h 5m``, ``2d 4h`` (as sky serve status)."""
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def ago(at: float | None, now: float) -> str:
    return "-" if at is None else f"{duration(now - at)} ago"


def status_cell(r: dict[str, Any]) -> str:
    """READY, or TERMINATED (FAILED, exit 3): the status with why it ended."""
    why = [x for x in (r.get("reason"), r.get("exit_code")) if x is not None]
    if len(why) == 2:
        why[1] = f"exit {why[1]}"
    return str(r["status"]) + (f" ({', '.join(str(x) for x in why)})" if why else "")


def version_cell(svc: dict[str, Any]) -> str:
    """``2``; during an update (older versions still live) also how it goes and which
    versions the router serves: ``2 (blue_green, serving 1)``."""
    live = {r["version"] for r in svc["replicas"] if r["status"] != "TERMINATED"}
    if live <= {svc["version"]}:
        return str(svc["version"])
    serving = ",".join(map(str, svc.get("serving_versions") or [])) or "none"
    return f"{svc['version']} ({svc.get('update_mode') or 'rolling'}, serving {serving})"


def service_row(svc: dict[str, Any], now: float) -> list[str]:
    live = [r for r in svc["replicas"] if r["status"] != "TERMINATED"]
    created = svc.get("created_at")
    return [
        svc["name"],
        version_cell(svc),
        duration(now - created if created else None),
        svc["status"],
        f"{svc['ready_replicas']}/{len(live)}",
        svc["endpoint"] or "-",
        f"{svc['cost_per_hour']:.2f}",
        f"{svc.get('accrued_cost', 0.0):.4f}",
        f"{svc.get('savings', 0.0):.4f}",
        str(svc["plan"].get("policy", "-")),
    ]


def replica_row(svc: dict[str, Any], r: dict[str, Any], now: float) -> list[str]:
    kind = "spot" if r["spot"] else "on-demand"
    resources = f"{r['instance_type']} ({kind})" if r.get("instance_type") else kind
    return [
        svc["name"],
        str(r["id"]),
        str(r["version"]),
        r["endpoint"] or "-",
        ago(r.get("launched_at"), now),
        r["location"],
        resources,
        status_cell(r),
        duration(r["uptime_seconds"]),
        f"{r['price_per_hour']:.2f}",
        f"{r.get('accrued_cost', 0.0):.4f}",
        str(int(r["router"].get("requests", 0))),
    ]


def plain(header: list[str], rows: list[list[str]]) -> str:
    cells = [header, *rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells
    )


def _styled(header: list[str], rows: list[list[str]], status_col: int) -> Table:
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
    for h in header:  # narrow terminals fold cells, never the headers
        table.add_column(h, min_width=len(h), overflow="fold")
    for row in rows:
        style = STATUS_STYLE.get(row[status_col].split(" ")[0], "")
        cells = [escape(c) for c in row]  # a cell's "[/x]" is text, not markup
        if style:
            cells[status_col] = f"[{style}]{cells[status_col]}[/]"
        table.add_row(*cells)
    return table


def failed_replica(svc: dict[str, Any]) -> dict[str, Any] | None:
    """The replica whose log tail goes under a FAILED service's line: the one the line
    names (``last replica 1: ...``), else the newest with a tail (two replicas that end
    together: the line named one and the tail was the other's)."""
    tailed = [r for r in svc["replicas"] if r.get("log_tail")]
    named = _NAMED.search(svc.get("failure") or "")
    if named is not None:
        for r in tailed:
            if str(r["id"]) == named.group(1):
                return r
    return tailed[-1] if tailed else None


_LOG = re.compile(r"(?:^|; )log (.+)$")  # a replica's failure: "...; log PATH"

# How long a command that saw a version fail waits for its replicas to finish shutting
# down, so the line it prints (and the status right after) has their final rows: the
# exit code, the reason and the log file are recorded as each one ends.
SETTLE_SECONDS = 15.0


def settling(svc: dict[str, Any], version: int | None = None) -> bool:
    """Whether a replica (of ``version``, if given) is still shutting down."""
    return any(
        r.get("status") == "SHUTTING_DOWN" and (version is None or r.get("version") == version)
        for r in svc.get("replicas") or []
    )


def failure_line(svc: dict[str, Any]) -> str:
    """A FAILED service's one line, naming the log file of the replica it names where the
    controller's line does not: a replica never ready (``last replica 3:
    FAILED_INITIAL_DELAY (not ready 20s after it started)``) or failing its probes has
    the file only on its own row (``failure``: ``...; log PATH``), while a run or setup
    that exited is already ``(log PATH)``."""
    failure = str(svc.get("failure") or "")
    named = _NAMED.search(failure)
    if named is None or "(log " in failure or "; log " in failure:
        return failure
    for r in svc.get("replicas") or []:
        if str(r.get("id")) == named.group(1):
            log = _LOG.search(str(r.get("failure") or ""))
            if log is not None:
                return f"{failure} (log {log.group(1)})"
    return failure


def show(services: list[dict[str, Any]], all_replicas: bool) -> None:
    """Print the services table, the replicas table, and each FAILED service's why."""
    out = console()
    now = time.time()  # a controller's answer says its own time (as_of): ages use that
    srows = [[printable(c) for c in service_row(s, s.get("as_of", now))] for s in services]
    rrows = [
        [printable(c) for c in replica_row(s, r, s.get("as_of", now))]
        for s in services
        for r in s["replicas"]
        if all_replicas or r["status"] != "TERMINATED"
    ]
    if out.is_terminal:
        for header, rows, col in ((SERVICE_COLUMNS, srows, 3), (REPLICA_COLUMNS, rrows, 7)):
            if rows:
                # a terminal narrower than the table: lines wrap, cells stay whole (a
                # folded endpoint, `http://1` over `27.0.0.1:348` over `33`, copied wrong)
                # (print(width=) is capped at the console's width: widen the console)
                cells = zip(header, *rows, strict=True)
                least = sum(max(len(c) for c in column) + 3 for column in cells)
                out.width = max(out.width, least)
                out.print(_styled(header, rows, col), crop=False)
    else:
        click.echo("Services")
        click.echo(plain(SERVICE_COLUMNS, srows))
        if rrows:
            click.echo("\nService Replicas")
            click.echo(plain(REPLICA_COLUMNS, rrows))
    for svc in services:
        if svc.get("failure"):
            click.echo(f"{svc['name']} FAILED: {printable(failure_line(svc))}")
            last = failed_replica(svc)
            if last is not None:
                click.echo(f"  last lines of replica {last['id']}'s log:")
                for line in last["log_tail"][-5:]:
                    click.echo(f"    {printable(line)}")
        elif svc.get("last_error"):
            click.echo(f"{svc['name']} last error: {printable(svc['last_error'])}")
