"""``skyctl console``: print the web console's address (with a login token) and open it.

The console is served by the controller (started here if none runs), on the
API's loopback origin; see :mod:`skyctl.console`.
"""

from __future__ import annotations

import click

from skyctl.client import ControllerClient
from skyctl.config import paths


@click.command("console")
@click.option("--no-browser", is_flag=True, help="Only print the address; open no browser.")
@click.pass_context
def console(ctx: click.Context, no_browser: bool) -> None:
    """Open the web console: services, replicas, timeline, cost, traffic, events.

    \b
    Prints an address carrying a login token (exchanged for a read-only cookie
    on first visit) and opens it in a browser where there is one.

    \b
    Examples:
      skyctl console
      skyctl console --no-browser   # e.g. over ssh -L
    """
    import webbrowser

    from skyctl.console import login_url  # the web stack, only for this command

    p = paths(ctx.obj.get("home") if ctx.obj else None)
    client = ControllerClient.ensure(p, progress=lambda m: click.echo(m, err=True))
    url = login_url(client.base, client.token)
    click.echo(url)
    if not no_browser and not webbrowser.open(url):
        click.echo("no browser found here: open the address above", err=True)
