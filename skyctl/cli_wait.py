"""``serve up``'s wait: the service's progress, one line per change, until a replica is
READY (docs/cli.md: exit 1 when it goes FAILED, its endpoint cannot open, it is taken
down meanwhile, or ``--timeout`` passes; scaled to zero, nothing to wait for)."""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import click

from skyctl.cli_status import SETTLE_SECONDS, failure_line, printable, settling
from skyctl.client import ControllerClient, ServiceWatch
from skyctl.errors import SkyctlError

POLL_SECONDS = 1.0


def wait_ready(client: ControllerClient, name: str, timeout: float | None) -> None:
    """Follow ``serve up`` until a replica is READY; a FAILED service, an endpoint that
    cannot open, a take-down or ``timeout`` end it with a one-line error (exit 1)."""
    start = time.monotonic()
    failed_at = 0.0  # when it was first seen FAILED
    last = said = ""
    say = partial(click.echo, err=True)
    watch = ServiceWatch(client, name, "waiting for a ready replica", say)
    while True:
        svc = watch.get()
        live = [r for r in svc["replicas"] if r["status"] != "TERMINATED"]
        counts: dict[str, int] = {}
        for r in live:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        summary = (
            ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())) or "no replicas yet"
        )
        line = f"[{time.monotonic() - start:5.0f}s] {svc['status']}: {summary}"
        if line.split("] ", 1)[1] != last:
            click.echo(line)
            last = line.split("] ", 1)[1]
        # ready replicas or not, nobody can reach them; a bare "endpoint not open" (no
        # reason) is a router process still opening it, under load for seconds
        if (svc.get("endpoint_error") or "").partition(":")[2].strip():
            raise SkyctlError(
                f"service {name} ({svc['endpoint']}): "
                f"{svc['endpoint_error']}; fix the spec and `skyctl serve update {name} FILE`, "
                f"or `skyctl serve down {name}` (an update cannot move its port: take it down "
                "and `serve up` it with another service.router.port)"
            )
        # ready, and its router listening: "ready at URL" is never a refused connection
        if svc["ready_replicas"] > 0 and svc.get("endpoint_open", True):
            click.echo(
                f"Service {name} is ready at {svc['endpoint']} "
                f"(first replica ready after {time.monotonic() - start:.1f}s)"
            )
            return
        if svc["status"] == "FAILED":
            failed_at = failed_at or time.monotonic()
            if settling(svc) and time.monotonic() - failed_at < SETTLE_SECONDS:
                time.sleep(POLL_SECONDS / 4)  # its last rows: exit code, log file
                continue
            failure = printable(failure_line(svc) or svc.get("last_error") or "")
            hint = _output_hint(name, svc, str(svc.get("failure") or failure))
            raise SkyctlError(
                f"service {name} FAILED: {failure}{hint}; "
                f"fix the spec and `skyctl serve update {name} FILE`"
            )
        if svc["status"] == "NO_REPLICA" and not live and svc["plan"].get("target") == 0:
            click.echo(  # scaled to zero: nothing to wait for until a request comes
                f"Service {name} is up at {svc['endpoint']} with no replica "
                "(min_replicas: 0): the first request starts one"
            )
            return
        if svc.get("last_error") and svc["last_error"] != said:
            said = svc["last_error"]
            click.echo(f"  last error: {printable(said)}", err=True)  # no terminal escapes
        if timeout is not None and time.monotonic() - start > timeout:
            raise SkyctlError(
                f"no replica of {name} became ready within {timeout:.0f}s; "
                f"see `skyctl serve status {name}` and `skyctl serve logs {name}`"
            )
        time.sleep(POLL_SECONDS)


def _output_hint(name: str, svc: dict[str, Any], failure: str) -> str:
    """Where the last replica's output is, when the failure line does not name its log
    (a setup or run that exited does; a server never ready, or failing its probes,
    says only why it was stopped)."""
    if "(log " in failure or not svc["replicas"]:
        return ""
    last = max(int(r["id"]) for r in svc["replicas"])
    return f"; its output: `skyctl serve logs {name} --replica {last}`"
