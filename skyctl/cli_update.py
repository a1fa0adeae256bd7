"""``skyctl serve update``: a new version of a service, shown as it rolls out.

``--mode rolling`` (the default) or ``--mode blue_green`` (policies.update says
what each does); a spec that changes only ``service:`` keys applies in place
(the replicas are kept, moved to the new version); an identical spec is a
no-op. Without ``--detach`` it follows the roll-out with one status line per
change and returns once every replica runs the new version and is READY.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from skyctl.cli_env import SECONDS, override_options, skypilot_flags
from skyctl.cli_spec import load_checked
from skyctl.cli_status import SETTLE_SECONDS, failure_line, settling
from skyctl.client import ControllerClient, ServiceWatch, service_path
from skyctl.errors import ServiceNotFound, SkyctlError

if TYPE_CHECKING:
    from skyctl.spec import ServiceSpec

POLL_SECONDS = 1.0


UPDATE_EXAMPLES = """
\b
Examples:
  skyctl serve up svc.yaml -n http2
  skyctl serve update http2 svc.yaml        # NAME wins over the spec's name:
  skyctl serve update -n http2 svc.yaml     # the same
  skyctl serve update http2 svc.yaml -d     # return once the new version is recorded
  skyctl serve update http2 svc.yaml --mode blue_green   # switch traffic at once
"""


@click.command(epilog=UPDATE_EXAMPLES)
@click.argument("name_and_file", nargs=-1, metavar="NAME FILE")
@click.option(
    "-n",
    "--name",
    "name_option",
    default=None,
    help="The service, as `serve up -n` named it (then FILE is the only argument).",
)
@click.option(
    "-d", "--detach", is_flag=True, help="Return once the update is recorded; don't wait."
)
@click.option(
    "--timeout",
    type=SECONDS,
    default=None,
    help="Give up waiting after this many seconds.",
)
@click.option(
    "--mode",
    type=click.Choice(["rolling", "blue_green"], case_sensitive=False),  # as sky serve
    default="rolling",
    show_default=True,
    help="rolling: new replicas replace old ones one by one, both versions serve meanwhile; "
    "blue_green: the old version serves alone until the new one has every replica READY, "
    "then traffic moves at once and the old replicas drain and go.",
)
@override_options
@skypilot_flags
@click.pass_context
def update(
    ctx: click.Context,
    name_and_file: tuple[str, ...],
    name_option: str | None,
    detach: bool,
    timeout: float | None,
    mode: str,
    **kw: Any,
) -> None:
    """Update service NAME to the spec in FILE (new replicas ready before old ones go).

    An identical spec changes nothing (no new version, no relaunch). A spec that
    differs only in `service:` (readiness probe, replica policy, load balancing,
    router, auth, TLS; not `service.ports`) and has no workdir or file_mounts
    keeps the replicas: they move to the new version without a relaunch.
    Without --detach it shows the roll-out and returns once every replica runs
    the new version and is READY.
    """
    from skyctl.cli import _controller  # the CLI's own helper (cli imports this module)
    from skyctl.secrets import api_keys_from_environment
    from skyctl.spec_yaml import service_name_problem

    name, file = _name_and_file(name_and_file, name_option)
    problem = service_name_problem(name)  # no such service can exist: say what can
    if problem:
        raise click.BadParameter(problem, param_hint="NAME")
    spec, (envs, secrets) = load_checked(file, kw, ctx)
    client = _controller(ctx)
    if client is None:
        raise ServiceNotFound(f"no service named {name!r} (no controller is running)")
    svc = client.call(
        "PUT",
        service_path(name),
        {
            "yaml": spec.yaml_text,
            "source": str(Path(file).resolve()),
            "envs": envs,
            "secrets": secrets,
            "api_keys": api_keys_from_environment(spec),
            "mode": mode,
        },
    )
    try:  # recorded: from here a Ctrl-C stops only the waiting (it came between the
        # "started" line and the wait, and got click's bare "Aborted.")
        _follow(client, name, svc, spec, mode, detach, timeout)
    except KeyboardInterrupt:
        click.echo(
            f"\nStopped waiting. The update of {name} goes on in the controller.\n"
            f"  To see its status: skyctl serve status {name}",
            err=True,
        )
        raise SystemExit(130) from None


def _follow(
    client: ControllerClient,
    name: str,
    svc: dict[str, Any],
    spec: ServiceSpec,
    mode: str,
    detach: bool,
    timeout: float | None,
) -> None:
    """What ``serve update`` prints once the update is recorded, and its wait."""
    for warning in svc.get("warnings") or ():
        click.echo(f"warning: {warning}", err=True)
    if svc.get("unchanged"):
        click.echo(f"Service {name}: the spec is version {svc['version']}'s; nothing to update")
        return
    kept = svc.get("in_place") or []
    if kept:
        ids = ", ".join(map(str, kept))
        click.echo(
            f"Service {name}: version {svc['version']} applied in place: only `service:` "
            f"changed, replica(s) {ids} kept (no relaunch)"
        )
    else:
        click.echo(f"Service {name}: {mode} update to version {svc['version']} started")
    if detach:
        click.echo(f"Follow it with: skyctl serve status {name}")
        return
    _wait_rolled(
        client, name, int(svc["version"]), timeout, spec.service.replica_policy.min_replicas
    )


def _name_and_file(args: tuple[str, ...], name_option: str | None) -> tuple[str, str]:
    """``NAME FILE``, or ``-n NAME FILE`` (both forms SkyPilot users type)."""
    if name_option is not None and len(args) == 1:
        return name_option, args[0]
    if len(args) == 2 and name_option in (None, args[0]):
        return args[0], args[1]
    if len(args) == 2:
        raise click.UsageError(f"-n {name_option} and NAME {args[0]} differ: give one of them")
    raise click.UsageError(
        "give the service and its spec: skyctl serve update NAME FILE (or -n NAME FILE)"
    )


def rollout_line(svc: dict[str, Any], version: int, floor: int = 0) -> str:
    """``version 2: 1/2 ready; older versions: 1 left; serving 1, 2 (rolling)`` from a
    status answer; out of the new version's replicas, or ``floor`` (its
    ``min_replicas``) while fewer are launched (it showed ``0/0 ready``)."""
    live = [r for r in svc["replicas"] if r["status"] != "TERMINATED"]
    new = [r for r in live if r["version"] == version]
    ready = sum(1 for r in new if r["status"] == "READY")
    old = len(live) - len(new)
    serving = ", ".join(map(str, svc.get("serving_versions") or [])) or "none"
    mode = svc.get("update_mode") or "rolling"
    return (
        f"version {version}: {ready}/{max(len(new), floor)} ready; older versions: {old} left; "
        f"serving {serving} ({mode})"
    )


def _wait_rolled(
    client: ControllerClient, name: str, version: int, timeout: float | None, floor: int
) -> None:
    """Until every live replica runs ``version`` and is READY, and at least ``floor`` of
    them (it returned at 2 of 3 when the poll came before the controller scaled up)."""
    start = time.monotonic()
    failed_at = 0.0  # when the version was first seen failed
    last = ""
    say = partial(click.echo, err=True)
    watch = ServiceWatch(client, name, f"rolling out version {version}", say)
    while True:
        svc = watch.get()
        line = rollout_line(svc, version, floor)
        if line != last:
            click.echo(f"[{time.monotonic() - start:5.0f}s] {line}")
            last = line
        live = [r for r in svc["replicas"] if r["status"] != "TERMINATED"]
        rolled = all(r["version"] == version and r["status"] == "READY" for r in live)
        # A poll before the controller's first plan for this version saw the old plan's
        # replicas (an in-place update to fewer replicas returned with the extra one
        # still READY); a controller that names no planned version is taken as current.
        planned = (svc.get("plan") or {}).get("version", version) == version
        if live and rolled and planned and len(live) >= floor:
            click.echo(f"Service {name} runs version {version} on {len(live)} ready replica(s)")
            return
        if svc["version"] != version:  # another update replaced this one
            raise SkyctlError(
                f"version {version} of {name} was replaced by version {svc['version']} "
                f"before it rolled out; see `skyctl serve status {name}`"
            )
        # `failure` is only ever the current version's (this update's). The service
        # itself stays READY while the older version still serves (a rolling update
        # keeps it until the new one is ready), so the status alone does not say it.
        if svc.get("failure"):
            failed_at = failed_at or time.monotonic()
            if settling(svc, version) and time.monotonic() - failed_at < SETTLE_SECONDS:
                time.sleep(POLL_SECONDS / 4)  # its last rows: exit code, log file
                continue
            serving = ", ".join(map(str, svc.get("serving_versions") or [])) or "none"
            raise SkyctlError(
                f"version {version} of {name} FAILED: {failure_line(svc)}; "
                f"still serving version(s): {serving}; "
                f"fix the spec and `skyctl serve update {name} FILE` again"
            )
        if timeout is not None and time.monotonic() - start > timeout:
            raise SkyctlError(
                f"version {version} of {name} was not rolled out within {timeout:.0f}s "
                f"({line}); see `skyctl serve status {name}`"
            )
        time.sleep(POLL_SECONDS)
