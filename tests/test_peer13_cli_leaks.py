"""A `serve up` the controller refuses leaves nothing running.

On a fresh home `serve up` starts the supervisor, the router process and the
controller (with its warm spare) for the service. When the controller refuses
the create (here its endpoint's port is taken), it has no service, and it exits
as after the last `serve down`: before, an idle exit needed a service it once
had, so all four processes stayed for good, with nothing to serve. A `serve up`
right after the refused one is not caught by that exit (a request refused by a
controller that just exited is sent again to one that answers). The controller
itself, refused its only create, exits when idle (the CLI also stops the
supervisor it started for it; a controller a `serve status` or `controller
start` woke is left to that idle exit).
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from providers.registry import ProviderSet
from skyctl.controller import Controller
from skyctl.errors import ConfigError
from tests.helpers.processes import pids_mentioning, wait_until_gone
from tests.test_controller import FIXED, Harness
from tests.test_e2e_local import cli

SPEC = """\
name: porty
service:
  readiness_probe: /
  replicas: 1
  router:
    port: {port}
run: exec {python} -m http.server "$PORT" --bind 127.0.0.1
"""


@pytest.mark.timeout(120)
def test_a_refused_serve_up_on_a_fresh_home_leaves_no_process(
    tmp_path: Path, skyctl_home: Path
) -> None:
    spec = tmp_path / "porty.yaml"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        spec.write_text(SPEC.format(port=port, python=sys.executable))
        up = cli(skyctl_home, "serve", "up", str(spec))
    assert up.returncode == 2, up.stdout + up.stderr
    assert "cannot open its endpoint" in up.stderr
    # the port is free now: at once, the same spec again
    again = cli(skyctl_home, "serve", "up", str(spec), "--detach")
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"endpoint http://127.0.0.1:{port}" in again.stdout
    down = cli(skyctl_home, "serve", "down", "porty")
    assert down.returncode == 0, down.stdout + down.stderr

    spec.write_text(SPEC.format(port=port, python=sys.executable))
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", port))
        taken.listen()
        up = cli(skyctl_home, "serve", "up", str(spec))
    assert up.returncode == 2, up.stdout + up.stderr
    assert not wait_until_gone(str(skyctl_home), seconds=30)
    assert not (skyctl_home / "controller.json").exists()


class IdleHarness(Harness):
    """The controller as the daemon runs it: it exits once idle."""

    def _controller(self) -> Controller:
        providers = ProviderSet(config={}, clock=self.clock, local_state=self.tmp / "local")
        providers.add(self.provider)
        return Controller(self.store, providers, self.clock, tick_seconds=1.0, exit_when_idle=True)


async def test_a_controller_that_refused_its_only_create_exits_when_idle(tmp_path: Path) -> None:
    h = IdleHarness(tmp_path)
    await h.start()
    try:
        spec = FIXED.format(name="tls", replicas=1).replace(
            "service:\n",
            f"service:\n  tls:\n    keyfile: {tmp_path}/nope.key\n    certfile: {tmp_path}/x.crt\n",
        )
        with pytest.raises(ConfigError, match="nope"):
            await h.controller.create_service(spec, None)
        assert h.task is not None
        await h.until(h.task.done, seconds=10)  # as after the last `serve down`
    finally:
        await h.close()


@pytest.mark.timeout(120)
def test_force_stops_replica_processes_whose_records_are_gone(
    tmp_path: Path, skyctl_home: Path
) -> None:
    # the local cloud's own state damaged (or a controller killed between a spawn and
    # its record): the processes still carry their tags, and `--force` finds them there
    spec = tmp_path / "lost.yaml"
    spec.write_text(
        SPEC.format(port=0, python=sys.executable)
        .replace("porty", "lost")
        .replace("  router:\n    port: 0\n", "")
    )
    assert cli(skyctl_home, "serve", "up", str(spec)).returncode == 0
    assert cli(skyctl_home, "controller", "stop", "--all").returncode == 0
    records = list((skyctl_home / "local" / "instances").glob("*.json"))
    assert records and pids_mentioning(str(skyctl_home / "local"))
    for record in records:
        record.unlink()
    force = cli(skyctl_home, "serve", "down", "--all", "--force", "-y")
    assert force.returncode == 0, force.stdout + force.stderr
    assert "(no record)" in force.stdout  # said, never "nothing found"
    assert not wait_until_gone(str(skyctl_home), seconds=10)
