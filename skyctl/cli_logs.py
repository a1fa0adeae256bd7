"""``skyctl serve logs``: a replica's output, the service's events, the controller's
or the load balancer's log, each with ``--tail N`` and ``-f`` (as ``sky serve logs``).

SkyPilot's spelling is accepted too: the replica as a second argument (``serve
logs NAME 1``), ``--no-follow`` (printing what is there is already the default),
and ``--sync-down``, which writes the service's logs (the controller's, the load
balancer's, and each replica's as ``replica-<id>.log``, or only the targets
named) into ``<home>/logs/service/<name>_<time>/`` and prints ``Service NAME
logs: DIR``.

The load balancer (the router process, or the routers inside a foreground
controller) writes to the same log as the controller, so its lines are that
log's lines from the ``skyctl.router`` loggers, in ``controller.log``.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import click

from skyctl.cli_status import printable
from skyctl.client import (
    ControllerClient,
    ControllerUnreachable,
    service_path,
    services_query,
    stored_services,
)
from skyctl.config import Paths, paths
from skyctl.errors import ServiceNotFound, SkyctlError
from skyctl.logtail import follow_lines, lines_to_end, tail_offset

#: events asked for per call; more are fetched, doubling, until the log is exhausted
EVENT_PAGE = 500
FOLLOW_SECONDS = 1.0
#: how long ``--events -f`` waits for a controller that went away while its service is
#: still stored (the supervisor restarts a controller that died within seconds)
REATTACH_SECONDS = 30.0
ROUTER_LOGGERS = (" skyctl.router", " skyctl.controller.runtime")

EXAMPLES = """
\b
Examples:
  skyctl serve logs llm                      # the newest replica's output
  skyctl serve logs llm --replica 3 -f       # follow replica 3
  skyctl serve logs llm --tail 50            # its last 50 lines
  skyctl serve logs llm --events -f          # the service's events, dated, followed
  skyctl serve logs llm --controller --tail 100
  skyctl serve logs llm --load-balancer -f   # the router's lines of the controller log
  skyctl serve logs llm 3 --no-follow        # replica 3, as sky serve logs llm 3
  skyctl serve logs llm --sync-down          # every log of the service into one folder
"""


@click.command(epilog=EXAMPLES)
@click.argument("name")
@click.argument("replica_ids", nargs=-1, type=click.IntRange(min=1), metavar="[REPLICA_ID]...")
@click.option(
    "--replica",
    type=click.IntRange(min=1),
    default=None,
    help="Replica id (default: the newest live one).",
)
@click.option(
    "-f",
    "--follow/--no-follow",
    default=False,
    help="Keep printing new lines (Ctrl-C stops); --no-follow (the default) prints what is there.",
)
@click.option(
    "-s",
    "--sync-down",
    is_flag=True,
    help="Write the logs (all, or the targets named) into a new folder and print its path.",
)
@click.option("--tail", type=click.IntRange(min=0), default=None, help="Only the last N lines.")
@click.option("--events", is_flag=True, help="The service's event log (dated).")
@click.option("--controller", "controller_log", is_flag=True, help="The controller's log.")
@click.option(
    "--load-balancer",
    "router_log",
    is_flag=True,
    help="The load balancer's lines (the router process's, in the same log).",
)
@click.pass_context
def logs(
    ctx: click.Context,
    name: str,
    replica_ids: tuple[int, ...],
    replica: int | None,
    follow: bool,
    sync_down: bool,
    tail: int | None,
    events: bool,
    controller_log: bool,
    router_log: bool,
) -> None:
    """A replica's output, or the service's events, or the controller's or load balancer's log."""
    if replica is not None and replica_ids:
        raise click.UsageError("give the replica as REPLICA_ID or --replica, not both")
    ids = [*replica_ids, *([replica] if replica is not None else [])]
    p = paths(ctx.obj.get("home") if ctx.obj else None)
    if sync_down:
        if events or follow:
            raise click.UsageError("--sync-down writes files: not with --events or --follow")
        folder = _sync_down(p, name, ids, controller_log, router_log, tail)
        click.echo(f"Service {name} logs: {folder}")
        return
    if len(ids) > 1:
        raise click.UsageError("give one REPLICA_ID (several only with --sync-down)")
    replica = ids[0] if ids else None
    if events + controller_log + router_log + (replica is not None) > 1:
        raise click.UsageError("give one of --replica, --events, --controller, --load-balancer")
    if controller_log or router_log:
        _daemon_log(p, tail, follow, router_only=router_log)
        return
    client = _client(p, name)
    if events:
        _events(p, client, name, tail, follow)
        return
    if replica is None:
        svc = client.call("GET", services_query(name))[0]
        live = [r for r in svc["replicas"] if r["status"] != "TERMINATED"] or svc["replicas"]
        if not live:
            raise ServiceNotFound(f"service {name!r} has no replicas yet")
        replica = int(live[-1]["id"])
    out = sys.stdout.buffer
    for chunk in _replica_log(client, name, replica, tail, follow):
        out.write(chunk)
        out.flush()


def _client(p: Paths, name: str) -> ControllerClient:
    client = ControllerClient.find(p)
    if client is None and stored_services(p):  # resume managing them, as every command
        client = ControllerClient.ensure(p, progress=lambda m: click.echo(m, err=True))
    if client is None:
        raise ServiceNotFound(f"no service named {name!r} (no controller is running)")
    return client


def _replica_log(
    client: ControllerClient, name: str, replica: int, tail: int | None, follow: bool
) -> Iterator[bytes]:
    query = [("follow=1" if follow else ""), (f"tail={tail}" if tail is not None else "")]
    path = service_path(name, "replicas", str(replica), "log")
    if any(query):
        path += "?" + "&".join(q for q in query if q)
    return iter(client.stream(path))


def _sync_down(
    p: Paths, name: str, ids: list[int], controller_log: bool, router_log: bool, tail: int | None
) -> Path:
    """Write the chosen logs (every one when none is chosen) into a new folder, as
    ``sky serve logs --sync-down``: controller.log, load_balancer.log, replica-<id>.log."""
    everything = not (ids or controller_log or router_log)
    client = _client(p, name)
    svc = client.call("GET", services_query(name))[0]  # also: no such service, before any file
    if everything:
        ids = [int(r["id"]) for r in svc["replicas"]]
    stamp = time.strftime("%Y-%m-%d-%H-%M-%S") + f"-{time.time_ns() % 1_000_000:06d}"
    folder = p.home / "logs" / "service" / f"{name}_{stamp}"
    folder.mkdir(mode=0o700, parents=True)  # logs may echo secrets
    for want, file, router_only in (
        (controller_log, "controller.log", False),
        (router_log, "load_balancer.log", True),
    ):
        if (want or everything) and p.daemon_log.exists():
            _write(folder / file, (ln.encode() + b"\n" for ln in _log_lines(p, tail, router_only)))
    for rid in ids:
        _write(folder / f"replica-{rid}.log", _replica_log(client, name, rid, tail, False))
    return folder


def _write(path: Path, chunks: Iterable[bytes]) -> None:
    with path.open("xb") as f:
        path.chmod(0o600)
        for chunk in chunks:
            f.write(chunk)


def format_event(e: dict[str, Any]) -> str:
    rid = f" replica {e['replica']}" if e["replica"] is not None else ""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["at"]))
    return f"{stamp} {e['kind']}{rid}: {printable(e['message'])}"  # no terminal escapes


def all_events(client: ControllerClient, name: str, tail: int | None) -> list[dict[str, Any]]:
    """The last ``tail`` events, or all of them (pages of the API's ``limit``, doubling)."""
    path = service_path(name, "events")
    if tail is not None:
        return list(client.call("GET", f"{path}?limit={tail}"))
    limit = EVENT_PAGE
    while True:
        got = list(client.call("GET", f"{path}?limit={limit}"))
        if len(got) < limit:
            return got
        limit *= 2


def _events(p: Paths, client: ControllerClient, name: str, tail: int | None, follow: bool) -> None:
    last = -1
    for e in all_events(client, name, tail):
        click.echo(format_event(e))
        last = max(last, int(e.get("id", last)))
    while follow:
        time.sleep(FOLLOW_SECONDS)
        try:
            latest = client.call("GET", service_path(name, "events") + f"?limit={EVENT_PAGE}")
        except ServiceNotFound:
            click.echo(f"(service {name} is gone)", err=True)
            return
        except ControllerUnreachable as gone:
            found = _reattach(p, name, gone)
            if found is None:  # taken down, and the controller left with its last service
                click.echo(f"(service {name} is gone)", err=True)
                return
            client = found
            continue
        for e in latest:
            if int(e["id"]) > last:
                click.echo(format_event(e))
                last = int(e["id"])


def _reattach(p: Paths, name: str, error: ControllerUnreachable) -> ControllerClient | None:
    """The controller again once it is back, or None when ``name`` is no longer stored.

    Raises ``error`` when the service is still stored but no controller answers
    within ``REATTACH_SECONDS`` (nothing restarted it: ``serve status`` does)."""
    if name not in stored_services(p):  # `serve down` of the last service: said as gone
        return None
    click.echo(f"(the controller went away: {error}; waiting for it)", err=True)
    deadline = time.monotonic() + REATTACH_SECONDS
    pause = 0.25
    while True:
        if name not in stored_services(p):
            return None
        client = ControllerClient.find(p)
        if client is not None:
            return client
        if time.monotonic() > deadline:
            raise error
        time.sleep(pause)
        pause = min(pause * 2, 4.0)


def _wanted(line: str, router_only: bool) -> bool:
    return not router_only or any(k in line for k in ROUTER_LOGGERS)


def _log_lines(p: Paths, tail: int | None, router_only: bool) -> list[str]:
    with p.daemon_log.open("rb") as f:
        if not router_only and tail is not None:
            f.seek(tail_offset(f, tail))
        return list(deque((ln for ln in lines_to_end(f) if _wanted(ln, router_only)), maxlen=tail))


def _daemon_log(p: Paths, tail: int | None, follow: bool, router_only: bool) -> None:
    if not p.daemon_log.exists():
        raise SkyctlError(f"no controller log yet at {p.daemon_log}")
    with p.daemon_log.open("rb") as f:
        if not router_only and tail is not None:
            f.seek(tail_offset(f, tail))
        backlog = deque((ln for ln in lines_to_end(f) if _wanted(ln, router_only)), maxlen=tail)
        for line in backlog:  # skyctl's own log, quoting specs and providers: no escapes
            click.echo(printable(line))
        if follow:
            for line in follow_lines(f):
                if _wanted(line, router_only):
                    click.echo(printable(line))
