"""``skyctl router run``: the router process in the foreground (its own container).

Under the supervisor (what ``skyctl`` starts on a machine) the router process
runs by itself; this command is for a Kubernetes Deployment of routers beside
the single controller (``manifests/kubernetes/``, docs/kubernetes.md): it
follows the controller's routing watch at ``--controller`` with the API token
in ``$SKYCTL_API_TOKEN`` and opens the specs' secrets with ``$SKYCTL_SECRET_KEY``.
"""

from __future__ import annotations

import os

import click

EXAMPLE = "\b\nExamples:\n  skyctl router run --controller http://skyctl-controller:8000"


@click.group(epilog=EXAMPLE)
def router() -> None:
    """Run the router process (every service's endpoint) on its own."""


@router.command(
    "run",
    epilog=EXAMPLE,
)
@click.option(
    "--controller",
    required=True,
    help="The controller's API URL (its token in $SKYCTL_API_TOKEN).",
)
@click.option(
    "--health-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Answer GET /healthz and /readyz on this port (a kubelet's probes).",
)
@click.option(
    "--stop-grace",
    type=click.FloatRange(0),
    default=10.0,
    show_default=True,
    help="Seconds in-flight requests get after SIGTERM.",
)
@click.pass_context
def router_run(
    ctx: click.Context, controller: str, health_port: int | None, stop_grace: float
) -> None:
    """Serve every service's endpoint, fed by the controller's routing watch."""
    from urllib.parse import urlsplit

    from skyctl.config import TOKEN_ENV, paths
    from skyctl.router import process

    if stop_grace != stop_grace:  # click's FloatRange lets nan through
        raise click.BadParameter("nan is not a number of seconds", param_hint="'--stop-grace'")
    parts = urlsplit(controller)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter(
            f"{controller!r} is not a URL: give http(s)://HOST:PORT of the controller's API",
            param_hint="--controller",
        )
    if not os.environ.get(TOKEN_ENV, "").strip():
        raise click.UsageError(f"${TOKEN_ENV} is not set: the controller's API token goes there")
    home = paths(ctx.obj.get("home") if ctx.obj else None).home
    argv = ["--home", str(home), "--controller", controller, "--stop-grace", str(stop_grace)]
    if health_port is not None:
        argv += ["--health-port", str(health_port)]
    raise SystemExit(process.main(argv))
