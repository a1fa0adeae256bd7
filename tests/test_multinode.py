"""Multi-node replicas (``num_nodes: N``), as SkyServe runs them.

A replica of N nodes is one replica to the controller: N nodes in one place,
rank 0 the head that serves, SkyPilot's node variables on each, a price of N
nodes, and the loss of any node is the loss of the replica (which is then
replaced per policy). Here: the local provider (N processes), the simulated
provider, and end to end through the CLI and the controller daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from providers.base import LaunchRequest
from providers.feasibility import RUNS_ON, Machine, check_placement
from providers.local import LocalProvider
from providers.local_records import group_alive
from providers.simulated import SimulatedProvider
from skyctl.clock import FakeClock
from skyctl.spec import Resources, ServiceSpec
from skyctl.spec_yaml import parse_spec
from skyctl.types import InstanceEvent, InstanceEventKind, InstanceState, Offering
from tests.helpers.cli import run_cli
from tests.helpers.processes import pids_mentioning
from tests.helpers.waiting import eventually, wait_until

ECHO = Path(__file__).parent / "apps" / "echo_server.py"
# every node writes its SkyPilot variables to $OUT/node-<rank>.json, then serves
DUMP_THEN_SERVE = (
    f"{sys.executable} -c 'import json, os; "
    'env = {k: v for k, v in os.environ.items() if k.startswith(("SKYPILOT_", "PORT"))}; '
    'env["pid"] = os.getppid(); '
    'open(os.environ["OUT"] + "/node-" + os.environ["SKYPILOT_NODE_RANK"] + ".json", "w")'
    ".write(json.dumps(env))'; "
    f"exec {sys.executable} {ECHO}"
)


def spec(num_nodes: int, out: Path, *, spot: bool = False) -> ServiceSpec:
    return ServiceSpec(
        name="multi",
        resources=Resources(use_spot=spot),
        run=DUMP_THEN_SERVE,
        envs={"OUT": str(out)},
        num_nodes=num_nodes,
    )


def request(s: ServiceSpec, offering: Offering, replica_id: int = 1) -> LaunchRequest:
    return LaunchRequest("multi", replica_id, 1, offering, f"tok-{replica_id}", s)


def node_env(out: Path, rank: int) -> dict[str, str] | None:
    with contextlib.suppress(OSError, ValueError):
        return dict(json.loads((out / f"node-{rank}.json").read_text()))
    return None


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    return False


@pytest.fixture
async def local(tmp_path: Path) -> AsyncIterator[LocalProvider]:
    provider = LocalProvider(None, clock=FakeClock(1_700_000_000.0), state_dir=tmp_path / "state")
    yield provider
    await provider.close()
    for f in (tmp_path / "state" / "instances").glob("*.json"):  # whatever a failure left
        rec = json.loads(f.read_text())
        for pgid in [rec["pgid"], *(w["pid"] for w in rec.get("workers", []))]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)


async def test_two_nodes_are_two_processes_with_ranks_and_the_head_serves(
    local: LocalProvider, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    one = await local.offerings(spec(1, out))
    two = await local.offerings(spec(2, out))
    assert [o.price for o in two] == [2 * o.price for o in one]  # a replica bills N nodes
    offering = next(o for o in two if not o.spot)
    inst = await local.launch(request(spec(2, out), offering))
    assert inst.price == offering.price

    await eventually(lambda: node_env(out, 0) and node_env(out, 1), "both nodes started")
    head, worker = node_env(out, 0) or {}, node_env(out, 1) or {}
    assert head["SKYPILOT_NODE_RANK"] == "0" and worker["SKYPILOT_NODE_RANK"] == "1"
    assert head["SKYPILOT_NUM_NODES"] == worker["SKYPILOT_NUM_NODES"] == "2"
    # newline-separated, the head's address first, the same on every node
    assert head["SKYPILOT_NODE_IPS"] == worker["SKYPILOT_NODE_IPS"] == "127.0.0.1\n127.0.0.1"
    assert head["SKYPILOT_NODE_IPS"].splitlines()[0] == "127.0.0.1"
    assert head["SKYPILOT_SETUP_NODE_RANK"] == "0" and worker["SKYPILOT_SETUP_NODE_RANK"] == "1"
    assert head["pid"] != worker["pid"]  # two processes
    assert head["PORT"] != worker["PORT"]  # one machine: each node its own $PORT
    # the replica's endpoint is the head's
    assert inst.endpoint == f"http://127.0.0.1:{head['PORT']}"
    listed = await local.list_instances("multi")
    assert [i.state for i in listed] == [InstanceState.RUNNING]

    await local.terminate(inst.instance_id)
    assert gone(int(head["pid"])) and gone(int(worker["pid"]))
    assert await local.list_instances("multi") == []


async def test_the_loss_of_the_worker_is_the_loss_of_the_replica(
    local: LocalProvider, tmp_path: Path
) -> None:
    events: list[InstanceEvent] = []
    local.set_event_sink(events.append)
    out = tmp_path / "out"
    out.mkdir()
    offering = next(o for o in await local.offerings(spec(3, out)) if not o.spot)
    inst = await local.launch(request(spec(3, out), offering))
    await eventually(lambda: all(node_env(out, r) for r in range(3)), "three nodes started")
    envs = [node_env(out, r) or {} for r in range(3)]
    assert [e["SKYPILOT_NODE_RANK"] for e in envs] == ["0", "1", "2"]

    os.killpg(int(envs[2]["pid"]), signal.SIGKILL)  # one worker machine goes away

    for _ in range(400):  # the provider learns of the exit from the process itself
        [listed] = await local.list_instances("multi")
        if listed.state is InstanceState.FAILED:
            break
        await asyncio.sleep(0.05)
    assert "node 2 of 3 (a worker)" in listed.detail and listed.endpoint is None
    assert [e.kind for e in events] == [InstanceEventKind.EXITED]
    assert "node 2 of 3" in events[0].detail

    await local.terminate(inst.instance_id)  # the controller's move: every node goes
    assert all(gone(int(e["pid"])) for e in envs)
    assert not any(group_alive(int(e["pid"])) for e in envs)


async def test_a_preempted_node_preempts_the_whole_replica(
    local: LocalProvider, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    offering = next(o for o in await local.offerings(spec(2, out, spot=True)) if o.spot)
    inst = await local.launch(request(spec(2, out, spot=True), offering))
    await eventually(lambda: node_env(out, 0) and node_env(out, 1), "both nodes started")
    rec = local._store.records[inst.instance_id]
    local._preempt(rec, 1_700_000_001.0)  # the cloud takes the machines
    [listed] = await local.list_instances("multi")
    assert listed.state is InstanceState.PREEMPTED
    await eventually(
        lambda: all(gone(int((node_env(out, r) or {})["pid"])) for r in (0, 1)), "both killed"
    )
    await local.terminate(inst.instance_id)


async def test_the_simulated_provider_prices_and_preempts_a_replica_of_n_nodes() -> None:
    clock = FakeClock(0.0)
    sim = SimulatedProvider({"preemptions_per_hour": 0, "launch_seconds": 0}, clock=clock)
    try:
        s1 = ServiceSpec(name="multi", resources=Resources(use_spot=True), run="x")
        s4 = ServiceSpec(name="multi", resources=Resources(use_spot=True), run="x", num_nodes=4)
        one, four = await sim.offerings(s1), await sim.offerings(s4)
        assert [o.price for o in four] == [4 * o.price for o in one]
        inst = await sim.launch(request(s4, four[0]))
        assert inst.price == four[0].price and inst.endpoint
    finally:
        await sim.close()


# ---------------------------------------------------------------- end to end

E2E_SPEC = """\
name: two-nodes
service:
  readiness_probe:
    path: /health
    initial_delay_seconds: 60
    period_seconds: 0.5
  replicas: 1
resources:
  cloud: local
num_nodes: 2
envs:
  OUT: {out}
run: {run}
"""


@pytest.mark.timeout(240)
def test_killing_the_worker_node_replaces_the_replica(tmp_path: Path, skyctl_home: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    spec_file = tmp_path / "two.yaml"
    spec_file.write_text(E2E_SPEC.format(out=out, run=json.dumps(DUMP_THEN_SERVE)))
    up = run_cli(skyctl_home, "serve", "up", str(spec_file), "--timeout", "90")
    assert up.returncode == 0, up.stdout + up.stderr
    head, worker = node_env(out, 0) or {}, node_env(out, 1) or {}
    assert head["SKYPILOT_NODE_RANK"] == "0" and worker["SKYPILOT_NODE_RANK"] == "1"
    assert head["SKYPILOT_NODE_IPS"].splitlines() == ["127.0.0.1", "127.0.0.1"]
    for f in out.iterdir():
        f.unlink()

    os.killpg(int(worker["pid"]), signal.SIGKILL)  # the worker node is lost

    def status() -> list[dict[str, object]]:
        done = run_cli(skyctl_home, "serve", "status", "two-nodes", "-o", "json", "--all-replicas")
        return list(json.loads(done.stdout)[0]["replicas"])

    def replaced() -> bool:
        replicas = status()
        return any(r["id"] != 1 and r["status"] == "READY" for r in replicas)

    deadline = time.monotonic() + 120
    while not replaced():
        assert time.monotonic() < deadline, status()
        time.sleep(0.5)
    first = next(r for r in status() if r["id"] == 1)
    assert first["status"] in ("SHUTTING_DOWN", "TERMINATED") and first["reason"], first
    # the old head goes with its worker (after draining what it still had in flight)
    assert wait_until(lambda: gone(int(head["pid"])), 60), head["pid"]
    new_head, new_worker = node_env(out, 0) or {}, node_env(out, 1) or {}
    assert new_head["SKYPILOT_NODE_RANK"] == "0" and new_worker["SKYPILOT_NODE_RANK"] == "1"

    down = run_cli(skyctl_home, "serve", "down", "two-nodes")
    assert down.returncode == 0, down.stdout + down.stderr
    for _ in range(100):
        if not pids_mentioning(str(skyctl_home)):
            break
        time.sleep(0.1)
    assert pids_mentioning(str(skyctl_home)) == []  # no node of any replica is left


# ---------------------------------------------------------------- every cloud


@pytest.mark.parametrize("cloud", sorted(set(RUNS_ON) - {"local"}))
def test_every_cloud_places_a_multi_node_spec_as_it_places_one_node(cloud: str) -> None:
    """Each cloud's provider runs N nodes per replica (tests/test_<cloud>_multinode.py)."""
    for nodes in (1, 2, 64):
        spec = parse_spec(
            f"num_nodes: {nodes}\nresources: {{cloud: {cloud}}}\nservice: {{}}\nrun: x\n"
        )
        check_placement(spec, {}, Machine(4, 16, {}))
