"""A spec that cannot run on the local provider fails fast, in one line.

A setup that fails: `serve up` exits 1 with the exit code and the replica's log
file, and launching stops.

A fixed serving port: given to one replica, refused for more.

A server started with ``--port 8000`` (SkyServe's ``resources.ports``) listens
there whatever ``$PORT`` says; this machine has one such port. A spec asking
the local provider for several replicas of it is refused at ``serve up`` in
one line naming the key and its line; a launch whose fixed port is taken fails
before any process starts, naming who has it and the replica's log file.
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from providers.base import LaunchRequest
from providers.local import LocalProvider
from skyctl.clock import FakeClock
from skyctl.errors import ConfigError, SpecError
from skyctl.spec import ServiceSpec
from skyctl.spec_yaml import parse_spec
from tests.helpers.processes import pids_mentioning
from tests.test_e2e_local import cli

SPEC = """\
name: fixed
service:
  readiness_probe: /
  replicas: {replicas}
resources:
  cloud: local
  ports: {port}
run: exec {python} -m http.server "$PORT" --bind 127.0.0.1
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spec_of(replicas: int, port: int) -> ServiceSpec:
    text = SPEC.format(replicas=replicas, port=port, python=sys.executable)
    return parse_spec(text, source="fixed.yaml")


@pytest.fixture
async def provider(tmp_path: Path) -> AsyncIterator[LocalProvider]:
    p = LocalProvider(None, clock=FakeClock(1_700_000_000.0), state_dir=tmp_path / "state")
    yield p
    for service in await p.list_services():
        for inst in await p.list_instances(service):
            await p.terminate(inst.instance_id)
    await p.close()


async def launch(p: LocalProvider, spec: ServiceSpec, replica_id: int):  # type: ignore[no-untyped-def]
    offering = next(o for o in await p.offerings(spec) if not o.spot)
    return await p.launch(
        LaunchRequest("fixed", replica_id, 1, offering, f"token-{replica_id}", spec)
    )


def test_several_replicas_of_a_fixed_port_are_refused_in_one_line_naming_key_and_line(
    tmp_path: Path,
) -> None:
    port = free_port()
    provider = LocalProvider(None, clock=FakeClock(), state_dir=tmp_path)
    with pytest.raises(SpecError) as refused:
        provider.check_spec(spec_of(2, port))
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("fixed.yaml:7: resources.ports: ")
    assert f"port {port} is fixed" in message and "up to 2 replicas" in message
    assert "allowed: 1 replica, or no fixed port" in message
    provider.check_spec(spec_of(1, port))  # one replica can have it
    free = SPEC.replace("  ports: {port}\n", "").format(replicas=3, python=sys.executable)
    provider.check_spec(parse_spec(free, source="free.yaml"))  # a $PORT each: fine


async def test_a_fixed_port_is_the_replicas_port_and_a_second_launch_fails_naming_the_log(
    provider: LocalProvider,
) -> None:
    port = free_port()
    spec = spec_of(1, port)
    first = await launch(provider, spec, 1)
    assert first.endpoint == f"http://127.0.0.1:{port}"
    with pytest.raises(ConfigError) as refused:
        await launch(provider, spec, 2)
    message = str(refused.value)
    log = Path(message.rsplit("log ", 1)[1])
    assert "\n" not in message
    assert f"resources.ports: port {port} is fixed and replica 1 of fixed" in message
    assert log.name == "replica-2.log"
    assert "skyctl: cannot start: resources.ports" in log.read_text()  # noqa: ASYNC240
    assert [i.replica_id for i in await provider.list_instances("fixed")] == [1]  # none started


async def test_a_fixed_port_another_program_holds_fails_the_launch(
    provider: LocalProvider,
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(ConfigError, match="another program on this machine"):
            await launch(provider, spec_of(1, port), 1)
    assert await provider.list_instances("fixed") == []


@pytest.mark.timeout(120)
def test_serve_up_refuses_it_at_once_and_launches_nothing(
    tmp_path: Path, skyctl_home: Path
) -> None:
    spec = tmp_path / "fixed.yaml"
    spec.write_text(SPEC.format(replicas=2, port=free_port(), python=sys.executable))
    up = cli(skyctl_home, "serve", "up", str(spec))
    assert up.returncode == 2, up.stdout + up.stderr
    line = up.stderr.strip()
    assert "\n" not in line and "fixed.yaml:7: resources.ports:" in line, line
    assert cli(skyctl_home, "serve", "status").stdout.strip() == "No services."
    assert not pids_mentioning(str(skyctl_home / "local"))


@pytest.mark.timeout(150)
def test_a_failing_setup_fails_serve_up_in_one_line_naming_the_log_and_stops_launching(
    tmp_path: Path, skyctl_home: Path
) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(
        "name: badsetup\nservice:\n  readiness_probe: /\n  replicas: 2\n"
        "setup: echo installing; exit 7\n"
        f'run: exec {sys.executable} -m http.server "$PORT" --bind 127.0.0.1\n'
    )
    up = cli(skyctl_home, "serve", "up", str(spec), "--timeout", "120")
    assert up.returncode == 1, up.stdout + up.stderr
    line = up.stderr.strip().splitlines()[-1]
    assert line.startswith("error: service badsetup FAILED: "), line
    assert "setup failed with exit code 7" in line
    log = Path(line.split("(log ", 1)[1].split(")", 1)[0])
    assert log.name.startswith("replica-") and "setup failed" in log.read_text()
    launched = len(list(log.parent.glob("replica-*.log")))
    time.sleep(3)
    assert len(list(log.parent.glob("replica-*.log"))) == launched  # nothing keeps launching
    down = cli(skyctl_home, "serve", "down", "badsetup")
    assert down.returncode == 0, down.stdout + down.stderr
