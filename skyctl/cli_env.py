"""``--env``, ``--env-file``, ``--secret``, ``--secret-file`` for the serve commands.

SkyPilot's flags with its semantics and precedence (see ``skyctl.spec_env``):
``--env KEY`` alone takes ``$KEY`` from this shell; ``--env-file`` values are
also secrets, below ``--secret-file`` and ``--secret``; the flags beat the
files. :func:`overrides` turns the parsed flags into the ``envs`` and
``secrets`` overrides that go, with the spec, to the controller (which stores
them sealed). Every problem is one line naming the flag.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

# skyctl.spec_env and dotenv are imported by the commands taking these flags, when they
# run: every command imports this module (the flags' definitions)
__all__ = ["SECONDS", "override_options", "overrides", "skypilot_flags"]

F = TypeVar("F", bound=Callable[..., Any])


class _Seconds(click.FloatRange):
    """``--timeout``: seconds, 0 or more (``inf``: no limit); ``nan`` is no duration
    (click's FloatRange lets it through, and every comparison with it is false)."""

    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if isinstance(number, float) and math.isnan(number):
            self.fail(f"{value!r} is not a number of seconds (0 or more)", param, ctx)
        return number


SECONDS = _Seconds(min=0)


def _pairs(
    ctx: click.Context, param: click.Parameter, values: Sequence[str]
) -> list[tuple[str, str]]:
    from skyctl.spec_env import parse_assignment

    flag = f"--{(param.name or '').replace('_', '-')}"
    try:
        return [parse_assignment(text, flag) for text in values]
    except ValueError as e:
        raise click.ClickException(str(e)) from None


def _dotenv(ctx: click.Context, param: click.Parameter, path: str | None) -> dict[str, str]:
    if path is None:
        return {}
    import dotenv
    from dotenv.parser import parse_stream

    from skyctl.spec_checks import MAX_SPEC_BYTES
    from skyctl.spec_env import ENV_NAME_RE

    flag = f"--{(param.name or '').replace('_', '-')}"
    if not os.path.isfile(path):  # /dev/zero, a FIFO: dotenv would read nothing, silently
        raise click.ClickException(f"{flag} {path}: not a regular file (a dotenv file)")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(MAX_SPEC_BYTES + 1)
    except (OSError, UnicodeDecodeError) as e:
        raise click.ClickException(f"{flag} {path}: cannot read it ({e})") from None
    if len(text) > MAX_SPEC_BYTES:
        raise click.ClickException(f"{flag} {path}: larger than {MAX_SPEC_BYTES >> 10} KiB")
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:  # dotenv would log a warning and skip the line
            raise click.ClickException(
                f"{flag} {path}:{binding.original.line}: expected KEY=VALUE (dotenv), "
                "a comment or a blank line"
            )
    values = dotenv.dotenv_values(stream=io.StringIO(text))
    for key in values:
        if not ENV_NAME_RE.fullmatch(key):
            raise click.ClickException(
                f"{flag} {path}: {key!r} is not a variable name "
                "(letters, digits and '_', not starting with a digit)"
            )
    return {k: v for k, v in values.items() if v is not None}


def override_options(f: F) -> F:
    """The four flags, on a click command."""
    file_type = click.Path(exists=True, dir_okay=False)
    options = [
        click.option(
            "--env",
            multiple=True,
            callback=_pairs,
            metavar="KEY[=VALUE]",
            help="Set envs KEY (over the spec's); KEY alone takes $KEY from this shell.",
        ),
        click.option(
            "--env-file",
            type=file_type,
            callback=_dotenv,
            help="A dotenv file of envs (--env wins); its values also fill secrets.",
        ),
        click.option(
            "--secret",
            multiple=True,
            callback=_pairs,
            metavar="KEY[=VALUE]",
            help="Set secret KEY (stored encrypted, redacted everywhere); KEY alone takes $KEY.",
        ),
        click.option(
            "--secret-file",
            type=file_type,
            callback=_dotenv,
            help="A dotenv file of secrets (--secret wins).",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def overrides(
    env: list[tuple[str, str]],
    env_file: dict[str, str],
    secret: list[tuple[str, str]],
    secret_file: dict[str, str],
) -> tuple[dict[str, str], dict[str, str]]:
    """(envs, secrets) to override the spec's, in SkyPilot's precedence."""
    from skyctl.spec_env import merge_overrides

    return merge_overrides([env_file], env), merge_overrides([env_file, secret_file], secret)


#: ``sky serve up``/``update`` resource flags and the spec key each overrides there
_RESOURCE_FLAGS: dict[str, str] = {
    "--infra": "resources.infra",
    "--cloud": "resources.cloud",
    "--region": "resources.region",
    "--zone": "resources.zone",
    "--gpus": "resources.accelerators",
    "--cpus": "resources.cpus",
    "--memory": "resources.memory",
    "--disk-size": "resources.disk_size",
    "--image-id": "resources.image_id",
    "--instance-type": "resources.instance_type",
    "--disk-tier": "resources.disk_tier",
    "--network-tier": "resources.network_tier",
    "--local-disk": "resources.local_disk",
    "--ports": "resources.ports",
    "--num-nodes": "num_nodes",
    "--workdir": "workdir",
}


_SHORT = {"--instance-type": ("-t",)}  # sky serve up -t


def _not_here(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    if value is None:
        return
    # the flag as typed: --no-use-spot is the secondary of --use-spot/--no-use-spot
    flag = param.secondary_opts[0] if value is False and param.secondary_opts else param.opts[0]
    key = _RESOURCE_FLAGS.get(flag, "resources.use_spot")
    raise click.UsageError(
        f"{flag}: skyctl reads resources from the spec only (no command-line overrides, "
        f"unlike sky serve up): set {key} in FILE"
    )


def skypilot_flags(f: F) -> F:
    """``sky serve`` muscle memory: ``-y/--yes`` is accepted (skyctl asks nothing
    here), and SkyPilot's resource overrides get one line naming the spec key."""
    options = [
        click.option(
            "-y",
            "--yes",
            is_flag=True,
            expose_value=False,
            help="Accepted as sky serve takes it; skyctl asks nothing here.",
        ),
        *(
            click.option(
                flag, *_SHORT.get(flag, ()), hidden=True, expose_value=False, callback=_not_here
            )
            for flag in _RESOURCE_FLAGS
        ),
        click.option(
            "--use-spot/--no-use-spot",
            default=None,
            hidden=True,
            expose_value=False,
            callback=_not_here,
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f
