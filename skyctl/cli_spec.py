"""``serve up``, ``validate`` and ``update``: a spec file read and checked as the
controller will check it, before anything is sent (:func:`load_checked`).

The parsing and the checks (providers, secrets) are imported when a spec is read:
the other commands, most of the CLI's processes, need none of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from skyctl.cli_check import unusable_clouds
from skyctl.cli_env import overrides
from skyctl.config import load_user_config, paths
from skyctl.errors import ConfigError, SpecError

if TYPE_CHECKING:
    from skyctl.spec import ServiceSpec

Overrides = tuple[dict[str, str], dict[str, str]]


def load_checked(
    file: str, kw: dict[str, Any], ctx: click.Context, *, to_run: bool = True
) -> tuple[ServiceSpec, Overrides]:
    """Parse a spec file with the --env/--secret flags in ``kw`` and every check the
    controller will make: the regions and zones it names exist, an enabled provider
    can run it (as SkyPilot's optimizer), and that provider admits it
    (providers.admission.SPEC_CHECKS). The overrides are sent to the
    controller with the spec. This machine's files and ports (TLS files, workdir,
    privileged ports) refuse it when ``to_run`` (up, update), else (validate: a
    README's placeholder paths) are a warning line each."""
    from providers.admission import check_provider_rules, places_for
    from providers.feasibility import check_placement
    from skyctl.secrets import redact
    from skyctl.spec_files import anchor_workdir, check_files, check_ports, spec_notes
    from skyctl.spec_places import check_places
    from skyctl.spec_yaml import load_spec_file

    envs, secrets = overrides(
        kw.pop("env"), kw.pop("env_file"), kw.pop("secret"), kw.pop("secret_file")
    )
    spec = load_spec_file(file, envs=envs, secrets=secrets)
    for check in (anchor_workdir, check_files, check_ports):  # this machine's files, ports
        try:
            spec = check(spec) or spec
        except SpecError as e:
            if to_run:
                raise
            click.echo(f"warning: serve up here would refuse it: {e}", err=True)
    if spec.secrets:  # secrets must be redactable in place
        redact(spec.yaml_text, spec.source, envs=envs, secrets=secrets)
    config = load_user_config(paths(ctx.obj.get("home") if ctx.obj else None))
    check_places(spec, places_for(spec, config))
    check_placement(spec, config)
    check_provider_rules(spec)  # what the controller's provider refuses (as at serve up)
    unusable = unusable_clouds(spec.clouds, config)  # no credentials, no SDK: refused now
    if unusable is not None:
        if to_run:
            raise ConfigError(unusable)
        click.echo(f"warning: serve up here would refuse it: {unusable}", err=True)
    for note in spec_notes(spec):  # what replicas will not get (secrets, mounts, git)
        click.echo(f"note: {note}", err=True)
    return spec, (envs, secrets)
