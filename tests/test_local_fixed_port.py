"""SkyServe's fixed serving port, for several replicas on one machine.

SkyPilot's service YAMLs fix the port (``resources.ports: 8080``, ``run:
python3 server.py --port 8080``): each replica has a machine of its own there.
On the local provider the first replica gets the fixed port; a replica that
finds it taken (another replica, another program) gets a free port, told as
``$PORT``, and ``providers/port_shim`` moves its Python processes' binds (and
loopback connects) of the fixed port there. A server that bypasses the shim
(another language; here ``python -I``, which ignores ``PYTHONPATH``) finds the
port taken and exits, and its log says why.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from providers.base import LaunchRequest
from providers.local import LocalProvider
from providers.local_ports import SHIM_DIR
from skyctl.clock import FakeClock
from skyctl.spec import ServiceSpec
from skyctl.spec_yaml import parse_spec
from skyctl.types import InstanceState
from tests.helpers.processes import pids_mentioning
from tests.helpers.waiting import eventually, wait_until
from tests.test_e2e_local import cli

SPEC = """\
name: fixed
service:
  readiness_probe: /
  replicas: {replicas}
resources:
  cloud: local
  ports: {port}
run: exec {python} -m http.server {port} --bind 127.0.0.1
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spec_of(replicas: int, port: int, python: str = sys.executable) -> ServiceSpec:
    text = SPEC.format(replicas=replicas, port=port, python=python)
    return parse_spec(text, source="fixed.yaml")


def answers(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(endpoint + "/", timeout=2) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


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


def test_a_spec_asking_for_several_replicas_of_a_fixed_port_is_accepted(tmp_path: Path) -> None:
    provider = LocalProvider(None, clock=FakeClock(), state_dir=tmp_path)
    provider.check_spec(spec_of(3, free_port()))


async def test_the_first_replica_gets_the_fixed_port_and_the_next_ones_serve_on_their_own(
    provider: LocalProvider,
) -> None:
    port = free_port()
    spec = spec_of(3, port)
    first = await launch(provider, spec, 1)
    assert first.endpoint == f"http://127.0.0.1:{port}"
    await eventually(lambda: answers(first.endpoint), limit=20)
    others = [await launch(provider, spec, 2), await launch(provider, spec, 3)]
    endpoints = {first.endpoint, *(o.endpoint for o in others)}
    assert len(endpoints) == 3  # three ports, all answering
    for other in others:
        await eventually(lambda other=other: answers(other.endpoint), limit=20)  # type: ignore[misc]
    log = Path(provider.log_path(others[0].instance_id) or "")
    note = log.read_text().splitlines()[0]  # noqa: ASYNC240
    own = others[0].endpoint.rsplit(":", 1)[1]
    assert note.startswith(f"skyctl: resources.ports: port {port} is fixed and replica 1 of fixed")
    assert f"this replica listens on {own} ($PORT)" in note


async def test_replicas_launched_together_never_claim_the_same_port(
    provider: LocalProvider,
) -> None:
    spec = spec_of(4, free_port())
    started = await asyncio.gather(*(launch(provider, spec, i) for i in range(1, 5)))
    assert len({s.endpoint for s in started}) == 4
    for s in started:
        await eventually(lambda s=s: answers(s.endpoint), limit=20)  # type: ignore[misc]


async def test_a_fixed_port_another_program_holds_is_moved_too(provider: LocalProvider) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        replica = await launch(provider, spec_of(1, port), 1)
        assert replica.endpoint != f"http://127.0.0.1:{port}"
        await eventually(lambda: answers(replica.endpoint), limit=20)
        log = Path(provider.log_path(replica.instance_id) or "")
        assert "another program on this machine has it" in log.read_text()  # noqa: ASYNC240


async def test_a_server_that_ignores_the_shim_exits_and_its_log_says_why(
    provider: LocalProvider,
) -> None:
    port = free_port()
    spec = spec_of(2, port, python=f"{sys.executable} -I")  # -I: PYTHONPATH ignored
    first = await launch(provider, spec, 1)
    await eventually(lambda: answers(first.endpoint), limit=20)
    second = await launch(provider, spec, 2)
    log = Path(provider.log_path(second.instance_id) or "")

    async def states() -> dict[int, InstanceState]:
        return {i.replica_id: i.state for i in await provider.list_instances("fixed")}

    for _ in range(400):  # its exit is noticed by the provider's waiter
        if (await states())[2] is not InstanceState.RUNNING:
            break
        await asyncio.sleep(0.05)
    assert await states() == {1: InstanceState.RUNNING, 2: InstanceState.FAILED}
    text = log.read_text()  # noqa: ASYNC240
    assert "a server in another language must listen on $PORT" in text
    assert "Address already in use" in text


def run_python(code: str, env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return out.stdout.strip()


BIND_AND_REPORT = """
import json, socket
s = socket.socket(); s.bind(("", {fixed})); s.listen()
c = socket.socket(); c.connect(("localhost", {fixed}))
far = socket.socket(); far.settimeout(0.2)
far_result = far.connect_ex(("192.0.2.1", {fixed}))  # TEST-NET-1: never moved
print(json.dumps([s.getsockname()[1], c.getpeername()[1]]))
"""


def test_the_shim_moves_binds_and_loopback_connects_of_the_fixed_port_only() -> None:
    fixed, own = free_port(), free_port()
    env = {"PYTHONPATH": SHIM_DIR, "SKYCTL_PORT_MAP": f"{fixed}:{own}"}
    bound, connected = json.loads(run_python(BIND_AND_REPORT.format(fixed=fixed), env))
    assert (bound, connected) == (own, own)
    other = free_port()
    code = f"import socket; s=socket.socket(); s.bind(('', {other})); print(s.getsockname()[1])"
    assert run_python(code, env) == str(other)  # another port: untouched


def test_without_a_map_the_shim_changes_nothing(tmp_path: Path) -> None:
    port = free_port()
    code = f"import socket; s=socket.socket(); s.bind(('', {port})); print(s.getsockname()[1])"
    assert run_python(code, {"PYTHONPATH": SHIM_DIR, "SKYCTL_PORT_MAP": ""}) == str(port)


def test_a_sitecustomize_further_on_the_path_still_runs(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text("import builtins\nbuiltins.SITE_RAN = True\n")
    fixed, own = free_port(), free_port()
    env = {
        "PYTHONPATH": os.pathsep.join([SHIM_DIR, str(tmp_path)]),
        "SKYCTL_PORT_MAP": f"{fixed}:{own}",
    }
    code = (
        f"import builtins, socket; s=socket.socket(); s.bind(('', {fixed})); "
        "print(getattr(builtins, 'SITE_RAN', False), s.getsockname()[1])"
    )
    assert run_python(code, env) == f"True {own}"


@pytest.mark.timeout(150)
def test_serve_up_runs_several_replicas_of_skyserves_fixed_port_spec(
    tmp_path: Path, skyctl_home: Path
) -> None:
    spec = tmp_path / "fixed.yaml"
    spec.write_text(SPEC.format(replicas=2, port=free_port(), python=sys.executable))
    up = cli(skyctl_home, "serve", "up", str(spec), "--timeout", "120")
    assert up.returncode == 0, up.stdout + up.stderr

    def ready() -> list[str]:
        (service,) = json.loads(cli(skyctl_home, "serve", "status", "--json").stdout)
        return [r["endpoint"] for r in service["replicas"] if r["status"] == "READY"]

    assert wait_until(lambda: len(set(ready())) == 2, seconds=60), ready()
    down = cli(skyctl_home, "serve", "down", "fixed")
    assert down.returncode == 0, down.stdout + down.stderr
    assert not pids_mentioning(str(skyctl_home / "local"))
