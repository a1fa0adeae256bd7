"""How the ``skyctl`` command line ends: exit codes and the one line that says why.

0 success; 2 bad input (a usage error, a spec, a missing service); 1 anything
else (a controller that failed, a file the command cannot use, a bug); 130
interrupted (Ctrl-C), with what the interruption left and how to follow it.
Never a traceback (``SKYCTL_DEBUG=1`` shows one for a bug). A reader of our
output that goes away (``| head``) is click's: exit 1, quietly.
"""

from __future__ import annotations

import os

import click

from skyctl.cli_status import printable
from skyctl.errors import SkyctlError


def interrupted_up(name: str) -> str:
    """What Ctrl-C in `serve up` leaves behind, and what to do about it (as SkyPilot)."""
    return (
        f"\nStopped waiting. Service {name} keeps starting in the controller.\n"
        f"  To see its status:   skyctl serve status {name}\n"
        f"  To follow its events: skyctl serve logs {name} --events -f\n"
        f"  To take it down:     skyctl serve down {name}"
    )


def interrupted_submitting(name: str) -> str:
    """Ctrl-C while `serve up`'s request was on its way: created or not, the CLI cannot
    tell; what to look at (``name`` is "" when the controller names it after the file)."""
    who = f"service {name}" if name else "a service (named after the spec file)"
    return (
        f"\nInterrupted while the spec was being submitted: {who} may have been created.\n"
        f"  To see:            skyctl serve status{' ' + name if name else ''}\n"
        f"  To take it down:   skyctl serve down {name or 'NAME'}"
    )


INTERRUPTED_BEFORE_UP = (
    "\nInterrupted before the service was submitted: no service was created "
    "(a controller that started keeps running; `skyctl controller stop --all` stops it)."
)


def interrupted_down(names: list[str]) -> str:
    """What Ctrl-C in `serve down`'s wait leaves: the shutdown goes on without the CLI."""
    listed = " ".join(names)
    return (
        f"\nStopped waiting. The shutdown of {', '.join(names)} goes on in the controller; "
        "nothing is reported down until it is verified.\n"
        f"  To see what is left:  skyctl serve status {listed}\n"
        f"  To wait for it again: skyctl serve down {listed}"
    )


#: click 8.2+ raises a group's help page, given no command, as a usage error (it printed
#: the page squeezed into one `error: Usage: ...` line); older click prints it itself
NO_ARGS_IS_HELP: tuple[type[click.ClickException], ...] = tuple(
    getattr(click.exceptions, n) for n in ("NoArgsIsHelpError",) if hasattr(click.exceptions, n)
)


def main() -> None:
    """The ``skyctl`` entry point: Ctrl-C while the commands import is an exit too."""
    try:
        from skyctl.cli import cli
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    run(cli)


def run(cli: click.Group) -> None:
    """Run the command line; every way out is an exit code and at most one error line."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        raise SystemExit(130) from None
    except NO_ARGS_IS_HELP as e:  # `skyctl`, `skyctl serve`: click's help page, whole
        e.show()
        raise SystemExit(2) from None
    except click.ClickException as e:
        click.echo(f"error: {usage_line(e)}", err=True)
        raise SystemExit(2) from None
    except SkyctlError as e:
        click.echo(f"error: {printable(e)}", err=True)  # it may quote a spec or a replica
        raise SystemExit(e.exit_code) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except OSError as e:  # the state directory or a file the command needs
        where = f": {e.filename}" if e.filename else ""
        click.echo(f"error: {e.strerror or e}{where}", err=True)
        raise SystemExit(1) from None
    except Exception as e:  # a bug: still one line (SKYCTL_DEBUG=1 shows the traceback)
        if os.environ.get("SKYCTL_DEBUG"):
            raise
        message = str(e).splitlines()[0] if str(e) else ""
        click.echo(
            f"error: internal error: {type(e).__name__}: {message} "
            "(run again with SKYCTL_DEBUG=1 for the traceback, and please report it)",
            err=True,
        )
        raise SystemExit(1) from None


def usage_line(e: click.ClickException) -> str:
    """A usage error on one line, pointing at the command's --help (click prints three)."""
    message = " ".join(e.format_message().split())
    ctx = getattr(e, "ctx", None)
    if isinstance(e, click.UsageError) and ctx is not None:
        message += f" (see: {ctx.command_path} --help)"
    return message
