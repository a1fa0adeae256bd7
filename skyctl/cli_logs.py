"""``skyctl serve logs``: a replica's output, the service's events, the controller's
or the load balancer's log, each with ``--tail N`` and ``-f`` (as ``sky serve logs``).

The load balancer (the router process, or the routers inside a foreground
controller) writes to the same log as the controller, so its lines are that
log's lines from the ``skyctl.router`` loggers, in ``controller.log``.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from typing import Any

import click

from skyctl.client import ControllerClient, service_path, services_query, stored_services
from skyctl.config import Paths, paths
from skyctl.errors import ServiceNotFound, SkyctlError
from skyctl.logtail import follow_lines, lines_to_end, tail_offset

#: events asked for per call; more are fetched, doubling, until the log is exhausted
EVENT_PAGE = 500
FOLLOW_SECONDS = 1.0
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
"""


@click.command(epilog=EXAMPLES)
@click.argument("name")
@click.option(
    "--replica",
    type=click.IntRange(min=1),
    default=None,
    help="Replica id (default: the newest live one).",
)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines (Ctrl-C stops).")
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
    replica: int | None,
    follow: bool,
    tail: int | None,
    events: bool,
    controller_log: bool,
    router_log: bool,
) -> None:
    """A replica's output, or the service's events, or the controller's or load balancer's log."""
    if events + controller_log + router_log + (replica is not None) > 1:
        raise click.UsageError("give one of --replica, --events, --controller, --load-balancer")
    p = paths(ctx.obj.get("home") if ctx.obj else None)
    if controller_log or router_log:
        _daemon_log(p, tail, follow, router_only=router_log)
        return
    client = ControllerClient.find(p)
    if client is None and stored_services(p):  # resume managing them, as every command
        client = ControllerClient.ensure(p, progress=lambda m: click.echo(m, err=True))
    if client is None:
        raise ServiceNotFound(f"no service named {name!r} (no controller is running)")
    if events:
        _events(client, name, tail, follow)
        return
    if replica is None:
        svc = client.call("GET", services_query(name))[0]
        live = [r for r in svc["replicas"] if r["status"] != "TERMINATED"] or svc["replicas"]
        if not live:
            raise ServiceNotFound(f"service {name!r} has no replicas yet")
        replica = int(live[-1]["id"])
    query = [("follow=1" if follow else ""), (f"tail={tail}" if tail is not None else "")]
    path = service_path(name, "replicas", str(replica), "log")
    if any(query):
        path += "?" + "&".join(q for q in query if q)
    out = sys.stdout.buffer
    for chunk in client.stream(path):
        out.write(chunk)
        out.flush()


def format_event(e: dict[str, Any]) -> str:
    rid = f" replica {e['replica']}" if e["replica"] is not None else ""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["at"]))
    return f"{stamp} {e['kind']}{rid}: {e['message']}"


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


def _events(client: ControllerClient, name: str, tail: int | None, follow: bool) -> None:
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
        for e in latest:
            if int(e["id"]) > last:
                click.echo(format_event(e))
                last = int(e["id"])


def _daemon_log(p: Paths, tail: int | None, follow: bool, router_only: bool) -> None:
    if not p.daemon_log.exists():
        raise SkyctlError(f"no controller log yet at {p.daemon_log}")

    def wanted(line: str) -> bool:
        return not router_only or any(k in line for k in ROUTER_LOGGERS)

    with p.daemon_log.open("rb") as f:
        if not router_only and tail is not None:
            f.seek(tail_offset(f, tail))
        backlog = deque((ln for ln in lines_to_end(f) if wanted(ln)), maxlen=tail)
        for line in backlog:
            click.echo(line)
        if follow:
            for line in follow_lines(f):
                if wanted(line):
                    click.echo(line)
