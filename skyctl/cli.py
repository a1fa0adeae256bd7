"""The ``skyctl`` command line (click). The only place that exits or prints.

Every error is one line on stderr: exit 2 for bad input (a spec, an argument,
a missing service), 1 for anything else; never a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from skyctl import __version__, supervisor_files
from skyctl.cli_console import console
from skyctl.cli_costs import cost
from skyctl.cli_down import (
    FORCE_HINT,
    PURGE_WAIT_SECONDS,
    expand_names,
    force_down,
    restart_controller,
    stop_controller,
    stop_supervisor,
    wait_down,
)
from skyctl.cli_env import SECONDS, override_options, skypilot_flags
from skyctl.cli_exit import (
    INTERRUPTED_BEFORE_UP,
    interrupted_down,
    interrupted_submitting,
    interrupted_up,
    run,
)
from skyctl.cli_logs import logs
from skyctl.cli_router import router
from skyctl.cli_sim import sim
from skyctl.cli_spec import load_checked
from skyctl.cli_status import show as show_status
from skyctl.cli_update import update
from skyctl.cli_wait import wait_ready
from skyctl.client import (
    ControllerClient,
    ControllerRefused,
    service_path,
    services_query,
    stored_services,
)
from skyctl.config import paths, read_user_config
from skyctl.errors import ConfigError, ServiceNotFound, SkyctlError, StoreError


def _examples(*lines: str) -> str:
    """A command's help epilog: ``Examples:`` and one command per line, kept as written."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


def _home(ctx: click.Context) -> Any:
    return paths(ctx.obj.get("home") if ctx.obj else None)


def _controller(ctx: click.Context) -> ControllerClient | None:
    """The running controller, or None when there is nothing to manage.

    When the state database still holds services but no controller runs (it
    crashed, or was stopped), one is started to resume their management. A
    database skyctl cannot use stops here with its one-line error.
    """
    p = _home(ctx)
    client = ControllerClient.find(p)
    if client is not None or not stored_services(p):
        return client
    return ControllerClient.ensure(p, progress=lambda m: click.echo(m, err=True))


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=_examples(
        "skyctl check                          # which clouds are usable",
        "skyctl serve up manifests/spot-local-trace.yaml",
        "skyctl serve status",
        "skyctl sim svc.yaml --trace aws-v100-2023-02 --policy spothedge --policy ondemand_only",
        "skyctl console",
    ),
)
@click.option(
    "--home", envvar="SKYCTL_HOME", default=None, help="State directory (default ~/.skyctl)."
)
@click.version_option(__version__, prog_name="skyctl")
@click.pass_context
def cli(ctx: click.Context, home: str | None) -> None:
    """Serve AI models on the cheapest spot capacity, and keep them up."""
    ctx.ensure_object(dict)
    ctx.obj["home"] = home


@cli.group(
    epilog=_examples(
        "skyctl serve up svc.yaml",
        "skyctl serve status",
        "skyctl serve logs svc --events -f",
        "skyctl serve update svc svc.yaml",
        "skyctl serve down svc",
    )
)
def serve() -> None:
    """Run services: up, status, logs, update, down, retry, cost, validate."""


@serve.command(
    epilog=_examples(
        "skyctl serve validate svc.yaml",
        "skyctl serve validate svc.yaml --env MODEL=llama3 --secret HF_TOKEN",
    )
)
@click.argument("file", type=click.Path(dir_okay=False))
@override_options
@click.pass_context
def validate(ctx: click.Context, file: str, **kw: Any) -> None:
    """Check a service spec without running anything: refused (exit 2) as serve up
    would refuse it; files and ports serve up needs on this machine (TLS files,
    workdir, a privileged port) are warnings (exit 0)."""
    spec, _ = load_checked(file, kw, ctx, to_run=False)
    rp = spec.service.replica_policy
    replicas = f"{rp.min_replicas}" if rp.fixed else f"{rp.min_replicas}-{rp.max_replicas}"
    clouds = ", ".join(sorted(spec.clouds))
    spot = "spot" if spec.use_spot else "on-demand"
    click.echo(
        f"{file}: valid ({replicas} {spot} replica(s) on {clouds}, "
        f"load balancing {spec.service.load_balancing_policy})"
    )


@serve.command(
    epilog=_examples(
        "skyctl serve up svc.yaml                  # wait for the first ready replica",
        "skyctl serve up svc.yaml -n http2 -d      # another name; return at once",
        "skyctl serve up svc.yaml --env MODEL=llama3 --secret HF_TOKEN --timeout 600",
    )
)
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "-n",
    "--name",
    "--service-name",
    default=None,
    help="Service name (default: the spec's or the file's; --service-name as sky serve up).",
)
@click.option(
    "-d", "--detach", is_flag=True, help="Return once submitted; don't wait for a replica."
)
@click.option(
    "--timeout",
    type=SECONDS,
    default=None,
    help="Give up waiting after this many seconds.",
)
@override_options
@skypilot_flags
@click.pass_context
def up(
    ctx: click.Context,
    file: str,
    name: str | None,
    detach: bool,
    timeout: float | None,
    **kw: Any,
) -> None:
    """Start a service from a spec; print its endpoint."""
    from skyctl.secrets import api_keys_from_environment
    from skyctl.spec_yaml import service_name_problem

    if name is not None:  # checked before a controller is started for it
        problem = service_name_problem(name)
        if problem:
            raise click.BadParameter(problem, param_hint="'-n' / '--name'")
    spec, (envs, secrets) = load_checked(file, kw, ctx)
    target = name or spec.name or ""
    sent = submitted = False  # the request may have reached the controller / it did
    home = _home(ctx)
    fresh = supervisor_files.running_pid(home) is None  # the controller is started for this one
    try:
        client = ControllerClient.ensure(home, progress=click.echo)
        sent = True
        body = {
            "yaml": spec.yaml_text,
            "source": str(Path(file).resolve()),
            "name": name,
            "envs": envs,
            "secrets": secrets,
            "api_keys": api_keys_from_environment(spec),
        }
        try:
            svc = _create(client, home, body)
        except SkyctlError:  # refused (its port taken): stop what was started for it alone
            if fresh and not stored_services(home):
                stop_supervisor(home)  # it kept running, with no service, until stopped
            raise
        target, submitted = svc["name"], True
        click.echo(f"Service {svc['name']}: endpoint {svc['endpoint']}")
        for warning in svc.get("warnings") or ():
            click.echo(f"warning: {warning}", err=True)
        if detach:
            click.echo(f"Follow it with: skyctl serve status {svc['name']}")
            return
        wait_ready(client, svc["name"], timeout)
    except KeyboardInterrupt:
        if submitted:
            click.echo(interrupted_up(target), err=True)
        else:
            click.echo(interrupted_submitting(target) if sent else INTERRUPTED_BEFORE_UP, err=True)
        raise SystemExit(130) from None


def _create(client: ControllerClient, home: Any, body: dict[str, Any]) -> dict[str, Any]:
    """POST the service; a controller that exited since it was found (idle, with no
    service) never got the request: it goes again to the one that answers now."""
    try:
        return dict(client.call("POST", "/v1/services", body))
    except ControllerRefused:
        client = ControllerClient.ensure(home, progress=click.echo)
        return dict(client.call("POST", "/v1/services", body))


@serve.command(
    epilog=_examples(
        "skyctl serve status                       # every service and its replicas",
        "skyctl serve status llm -a                # terminated replicas too",
        "skyctl serve status -o json | jq '.[].accrued_cost'",
        "curl $(skyctl serve status --endpoint llm)/v1/models",
    )
)
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "json"]),
    default="table",
    help="json: a list of services, each with its replicas (docs/cli.md lists the fields).",
)
@click.option("--json", "as_json", is_flag=True, help="The same as -o json.")
@click.option(
    "-a",
    "--all-replicas",
    "-v",
    "--verbose",
    is_flag=True,
    help="Include terminated replicas (-v/--verbose: as sky serve status -v).",
)
@click.option(
    "--endpoint",
    "endpoint_only",
    is_flag=True,
    help="Print only the endpoint URL of service NAME "
    "(curl $(skyctl serve status --endpoint llm)/v1/models).",
)
@click.pass_context
def status(
    ctx: click.Context,
    names: tuple[str, ...],
    output: str,
    as_json: bool,
    all_replicas: bool,
    endpoint_only: bool,
) -> None:
    """Services and their replicas (all, or those named, as sky serve status NAME...)."""
    output = "json" if as_json else output
    if endpoint_only:
        if len(names) != 1:
            raise click.UsageError("--endpoint needs one service: serve status --endpoint NAME")
        click.echo(_endpoint(ctx, names[0]))
        return
    client = _controller(ctx)
    if client is None:
        if names:
            raise ServiceNotFound(f"no service named {names[0]!r} (no controller is running)")
        click.echo("[]" if output == "json" else "No services.")
        return
    if names:  # each once, in the order given; an unknown one is exit 2
        services = [s for n in dict.fromkeys(names) for s in client.call("GET", services_query(n))]
    else:
        services = client.call("GET", services_query())
    if output == "json":
        click.echo(json.dumps(services, indent=2))
        return
    if not services:
        click.echo("No services.")
        return
    show_status(services, all_replicas)


def _endpoint(ctx: click.Context, name: str) -> str:
    """The service's endpoint URL; a one-line error when there is none yet."""
    client = _controller(ctx)
    if client is None:
        raise ServiceNotFound(f"no service named {name!r} (no controller is running)")
    (svc,) = client.call("GET", services_query(name))
    if not svc.get("endpoint"):
        raise ServiceNotFound(f"service {name!r} has no endpoint yet (status {svc['status']})")
    return str(svc["endpoint"])


DOWN_EXAMPLES = """
\b
Examples:
  skyctl serve down llm                  # verify nothing is left, then forget it
  skyctl serve down llm chat             # several services
  skyctl serve down "llm-*"              # every service the pattern matches
  skyctl serve down --all -y             # every service, no confirmation prompt
  skyctl serve down llm --replica-id 3   # one replica; the service launches a replacement
  skyctl serve down --all --force        # no controller or database needed
  skyctl serve down llm --purge          # forget it even if its teardown is stuck
"""


@serve.command(epilog=DOWN_EXAMPLES)
@click.argument("names", nargs=-1)
@click.option("-a", "--all", "all_", is_flag=True, help="All services.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation (with --all).")
@click.option(
    "--replica-id",
    type=click.IntRange(min=1),
    default=None,
    help="Take down only this replica of NAME; the controller launches a replacement "
    "to keep the service at its target (as sky serve down --replica-id).",
)
@click.option("--no-wait", is_flag=True, help="Return once shutdown has begun.")
@click.option(
    "-p",
    "--purge",
    is_flag=True,
    help="Remove the services from the store even if their teardown fails or is stuck "
    "(after --timeout, 60 s by default), saying what may be left and where "
    "(as sky serve down --purge).",
)
@click.option(
    "--timeout",
    type=SECONDS,
    default=None,
    help="Stop waiting after this many seconds: exit 1 with what is left (or, with "
    "--purge, remove the services then).",
)
@click.option(
    "--force",
    is_flag=True,
    help="With --all: stop every instance skyctl launched, found by its tags on each "
    "provider, without the controller or the state database (e.g. a damaged one).",
)
@click.pass_context
def down(
    ctx: click.Context,
    names: tuple[str, ...],
    all_: bool,
    yes: bool,
    replica_id: int | None,
    no_wait: bool,
    purge: bool,
    timeout: float | None,
    force: bool,
) -> None:
    """Terminate services' replicas and remove them.

    It says a service is down only once the controller removed it from the store
    and every provider it used lists none of its instances; else it exits 1 with
    what is left. A controller that exits meanwhile is restarted to finish.
    """
    if bool(names) == all_:
        raise click.UsageError("give a service NAME or --all (several NAMEs are fine)")
    if replica_id is not None and len(names) != 1:
        raise click.UsageError("--replica-id takes down a replica of one service NAME")
    if purge and (no_wait or replica_id is not None or force):
        raise click.UsageError(
            "--purge waits for the teardown: not with --no-wait, --replica-id or --force"
        )
    p = _home(ctx)
    if all_ and not yes:
        _confirm_all()
    if force:
        if not all_:
            raise click.UsageError(
                "--force goes with --all: it stops every instance skyctl launched"
            )
        force_down(p)
        return
    try:
        client = _controller(ctx)
    except StoreError as e:
        raise StoreError(f"{e}; {FORCE_HINT}") from None
    if client is None:
        if all_:
            click.echo("No services.")
            return
        raise ServiceNotFound(f"no service named {names[0]!r} (no controller is running)")
    if replica_id is not None:
        client.call("DELETE", service_path(names[0], "replicas", str(replica_id)))
        click.echo(
            f"Replica {replica_id} of {names[0]} is shutting down; the controller launches a "
            f"replacement to keep the service at its target "
            f"(watch: skyctl serve status {names[0]})"
        )
        return
    targets = expand_names(client, names) or [
        s["name"] for s in client.call("GET", services_query())
    ]
    for n in targets:  # every name exists before any goes down
        client.call("GET", services_query(n))
    clouds: dict[str, list[str]] = {}
    asked: list[str] = []  # the services whose shutdown the controller may have begun
    if purge and timeout is None:
        timeout = PURGE_WAIT_SECONDS
    try:
        for n in targets:
            asked.append(n)
            answer = client.call("DELETE", service_path(n))
            clouds[n] = list(answer.get("clouds") or ["local"])
        click.echo(f"Shutting down {', '.join(targets)}...")
        if not no_wait:
            wait_down(p, client, clouds, timeout=timeout, purge=purge)
    except KeyboardInterrupt:
        click.echo(interrupted_down(asked), err=True)
        raise SystemExit(130) from None


def _confirm_all() -> None:
    """`down --all` asks first; "no" takes nothing down (exit 1), and no answer at all
    (a script's empty stdin) says to pass -y rather than a bare "Aborted."."""
    try:
        sure = click.confirm("Terminate every service and its replicas?", err=True)
    except click.Abort:
        if sys.stdin is not None and sys.stdin.isatty():
            raise  # Ctrl-C at the prompt
        raise click.UsageError("--all asks first and no answer came: pass -y to confirm") from None
    if not sure:
        click.echo("Nothing was taken down.", err=True)
        raise SystemExit(1)


@serve.command(epilog=_examples("skyctl serve retry llm"))
@click.argument("name")
@click.pass_context
def retry(ctx: click.Context, name: str) -> None:
    """Launch a FAILED service's replicas again (its failures and backoff forgotten)."""
    client = _controller(ctx)
    if client is None:
        raise ServiceNotFound(f"no service named {name!r} (no controller is running)")
    svc = client.call("POST", service_path(name, "retry"))
    if svc["status"] == "FAILED":
        click.echo(f"Service {name}: retrying version {svc['version']}")
    else:  # a backoff lifted, say, but nothing had given up
        click.echo(
            f"Service {name} is not FAILED ({svc['status']}): version {svc['version']}'s "
            "failures and backoff are forgotten; nothing else changes"
        )


@cli.group(epilog=_examples("skyctl controller stop", "skyctl controller restart"))
def controller() -> None:
    """Run, start, stop or restart the controller process."""


@controller.command(
    "run", epilog=_examples("skyctl controller run --host 0.0.0.0 --port 8123  # in a container")
)
@click.option("--host", default="127.0.0.1", help="API address (loopback unless you mean it).")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    help="API port (0: a free one, written to $SKYCTL_HOME/controller.json).",
)
@click.option(
    "--router-process",
    is_flag=True,
    help="Routers run apart (`skyctl router run`), fed by the API's routing watch.",
)
@click.pass_context
def controller_run(ctx: click.Context, host: str, port: int, router_process: bool) -> None:
    """Run the controller in the foreground (containers, debugging)."""
    from skyctl.controller import daemon

    args = ["--host", host, "--port", str(port), "--home", str(_home(ctx).home)]
    raise SystemExit(daemon.main(args + ["--router-process"] * router_process))


@controller.command(
    "stop",
    epilog=_examples("skyctl controller stop", "skyctl controller stop --all"),
)
@click.option(
    "--all",
    "everything",
    is_flag=True,
    help="Also stop the router process: every endpoint closes (replicas keep running).",
)
@click.pass_context
def controller_stop(ctx: click.Context, everything: bool) -> None:
    """Stop the controller gracefully (replicas keep running, and so do the endpoints:
    the router process keeps serving until `--all`)."""
    p = _home(ctx)
    if everything and supervisor_files.running_pid(p) is not None:
        stop_supervisor(p)
        click.echo("Controller and router process stopped.")
        return
    if ControllerClient.find(p) is None:
        click.echo("No controller is running.")
        return
    stop_controller(p)
    if everything:  # no supervisor: the router processes a killed one left
        supervisor_files.stop_orphan_routers(p)
    if supervisor_files.running_pid(p) is not None and stored_services(p):
        click.echo("Controller stopped; the endpoints keep answering (`--all` stops them).")
    else:  # no service: no endpoint to keep (the supervisor and router process exit too)
        click.echo("Controller stopped.")


@controller.command("start", epilog=_examples("skyctl controller start"))
@click.pass_context
def controller_start(ctx: click.Context) -> None:
    """Start the controller (and the router process) if they are not running."""
    p = _home(ctx)
    if ControllerClient.find(p) is not None:
        click.echo("The controller is running.")
        return
    ControllerClient.ensure(p)
    click.echo("Controller started.")


@controller.command(
    "restart",
    epilog=_examples("skyctl controller restart", "skyctl controller restart --all"),
)
@click.option(
    "--all",
    "everything",
    is_flag=True,
    help="Also restart the router process: every endpoint closes meanwhile (replicas keep "
    "running).",
)
@click.pass_context
def controller_restart(ctx: click.Context, everything: bool) -> None:
    """Stop the controller and start it again (on the skyctl installed now), returning
    once the new one answers; replicas keep running, and so do the endpoints (the router
    process keeps serving) unless `--all`. A config.yaml it would refuse stops nothing."""
    click.echo(restart_controller(_home(ctx), everything=everything))


@cli.command(epilog=_examples("skyctl check"))
@click.pass_context
def check(ctx: click.Context) -> None:
    """Say which clouds are usable and what to configure for the others."""
    from skyctl.cli_check import CLOUDS, run_check

    config, problems = read_user_config(_home(ctx))  # a bad cloud section: on its line
    for section, problem in problems.items():
        if section not in CLOUDS:
            raise ConfigError(problem)
    run_check(config, problems)


cli.add_command(sim)
cli.add_command(router)
serve.add_command(update)
serve.add_command(cost)
serve.add_command(logs)
cli.add_command(console)


def main() -> None:
    run(cli)


if __name__ == "__main__":
    main()
