"""providers.local: real replica processes, trace-driven and random preemptions.

Replicas run ``tests/apps/echo_server.py`` (or a shell one-liner); trace time
is a FakeClock. Waits for real processes are bounded polls, never timing
assertions. Every process group a test starts is killed at teardown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

import providers.local as local_mod
from providers.base import LaunchRequest
from providers.local import LocalProvider
from providers.local_records import group_alive
from skyctl.clock import FakeClock
from skyctl.errors import CapacityError, ConfigError
from skyctl.spec import LocalOptions, LocalZone, ResourceCandidate, Resources, ServiceSpec
from skyctl.types import (
    Instance,
    InstanceEvent,
    InstanceEventKind,
    InstanceState,
    Location,
    Offering,
)
from tests.helpers.waiting import eventually

ECHO = Path(__file__).parent / "apps" / "echo_server.py"
ECHO_RUN = f"exec {sys.executable} {ECHO}"
T0 = 1_700_000_000.0
MakeProvider = Callable[..., LocalProvider]

# ---------------------------------------------------------------- helpers


def make_trace(root: Path, zones: dict[str, list[int]]) -> str:
    """A counts-format trace folder (available = count > 0) with an on-demand price."""
    root.mkdir(parents=True)
    for zone, values in zones.items():
        doc = {"metadata": {"gap_seconds": 60}, "data": values}
        (root / f"{zone}_v100_1.json").write_text(json.dumps(doc))
    (root / "trace.json").write_text('{"ondemand_price": 3.0}')
    return str(root)


def spec_for(
    options: LocalOptions | None,
    *,
    run: str = ECHO_RUN,
    spot: bool = True,
    setup: str | None = None,
) -> ServiceSpec:
    return ServiceSpec(
        name="svc", resources=Resources(use_spot=spot), run=run, setup=setup, local=options
    )


def request(
    spec: ServiceSpec, offering: Offering, replica_id: int, token: str = ""
) -> LaunchRequest:
    return LaunchRequest(
        service=spec.name or "svc",
        replica_id=replica_id,
        version=1,
        offering=offering,
        client_token=token or f"tok-{replica_id}",
        spec=spec,
        envs={"EXTRA": "x"},
    )


def pick(offerings: list[Offering], zone: str, spot: bool) -> Offering:
    return next(o for o in offerings if o.location.zone == zone and o.spot == spot)


async def http_get(url: str) -> tuple[int, bytes]:
    host, port = url.removeprefix("http://").split("/")[0].split(":")
    path = "/" + url.removeprefix("http://").partition("/")[2]
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        await writer.drain()
        data = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def get_when_up(url: str) -> tuple[int, bytes]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15.0
    while True:
        try:
            return await http_get(url)
        except OSError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.05)


def pid_of(inst: Instance, state_dir: Path) -> int:
    data = json.loads((state_dir / "instances" / f"{inst.instance_id}.json").read_text())
    return int(data["pid"])


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    return False


def port_closed(endpoint: str) -> bool:
    import socket

    port = int(endpoint.rsplit(":", 1)[1])
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
async def make_provider(
    state_dir: Path, clock: FakeClock, tmp_path: Path
) -> AsyncIterator[Callable[..., LocalProvider]]:
    made: list[LocalProvider] = []

    def make(options: LocalOptions | None = None, *, state: Path | None = None) -> LocalProvider:
        p = LocalProvider(
            options, clock=clock, state_dir=state or state_dir, base_dir=str(tmp_path)
        )
        made.append(p)
        return p

    yield make
    for p in made:
        await p.close()
    # whatever a test left running (even on failure): kill its process groups
    pgids = [json.loads(f.read_text())["pgid"] for f in tmp_path.rglob("instances/*.json")]  # noqa: ASYNC240
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    await eventually(lambda: not any(group_alive(g) for g in pgids), "leftover replicas gone")


@pytest.fixture
def events() -> list[InstanceEvent]:
    return []


# ---------------------------------------------------------------- offerings


async def test_offerings_list_each_zone_spot_and_on_demand(make_provider: MakeProvider) -> None:
    offerings = list(await make_provider().offerings(spec_for(None)))
    zones = {o.location for o in offerings}
    assert len(zones) == 3 and all(loc.cloud == "local" for loc in zones)
    for loc in zones:
        spot, od = (
            next(o for o in offerings if o.location == loc and o.spot == s) for s in (True, False)
        )
        assert 0 < spot.price < od.price


async def test_offerings_without_use_spot_are_on_demand_only(make_provider: MakeProvider) -> None:
    offerings = await make_provider().offerings(spec_for(None, spot=False))
    assert offerings and not any(o.spot for o in offerings)


async def test_offerings_follow_the_trace_zones_and_prices(
    make_provider: MakeProvider, tmp_path: Path
) -> None:
    trace = make_trace(tmp_path / "t", {"us-east-1a": [1, 1], "us-west-2b": [1, 0]})
    opts = LocalOptions(trace=trace, ondemand_price=2.5)
    offerings = await make_provider(opts).offerings(spec_for(opts))
    assert {str(o.location) for o in offerings} == {
        "local/us-east-1/us-east-1a",
        "local/us-west-2/us-west-2b",
    }
    assert {o.price for o in offerings if not o.spot} == {2.5}
    spot_prices = [o.price for o in offerings if o.spot]
    assert spot_prices == pytest.approx([0.9, 0.9])  # no spot price: 30% of the trace's 3.0


async def test_offerings_respect_the_requested_region(make_provider: MakeProvider) -> None:
    zones = (LocalZone("r1", "r1-a", 0.1, 1.0), LocalZone("r2", "r2-a", 0.1, 1.0))
    opts = LocalOptions(zones=zones)
    spec = ServiceSpec(
        name="svc",
        resources=Resources(
            candidates=(ResourceCandidate(region="r2", use_spot=True),), use_spot=True
        ),
        run=ECHO_RUN,
        local=opts,
    )
    assert {o.location.zone for o in await make_provider(opts).offerings(spec)} == {"r2-a"}


# ---------------------------------------------------------------- launch and terminate


async def test_spot_and_on_demand_replicas_answer_over_http(
    make_provider: MakeProvider, state_dir: Path
) -> None:
    provider = make_provider()
    spec = spec_for(None, setup="echo hello-from-setup")
    offerings = list(await provider.offerings(spec))
    spot = await provider.launch(request(spec, pick(offerings, "us-east-a", True), 1))
    od = await provider.launch(request(spec, pick(offerings, "us-west-a", False), 2))
    assert (spot.spot, od.spot) == (True, False)
    assert spot.state == InstanceState.RUNNING and spot.endpoint != od.endpoint
    for inst in (spot, od):
        assert inst.endpoint is not None and inst.endpoint.startswith("http://127.0.0.1:")
        status, body = await get_when_up(inst.endpoint + "/")
        info = json.loads(body)
        assert status == 200
        assert (info["replica"], info["service"], info["version"]) == (
            str(inst.replica_id),
            "svc",
            "1",
        )
    log = provider.log_path(spot.instance_id)
    assert log == str(state_dir / "logs" / "svc" / "replica-1.log")
    assert "hello-from-setup" in Path(log).read_text()  # noqa: ASYNC240
    # replica output may echo secrets: readable by the user only
    assert Path(log).stat().st_mode & 0o777 == 0o600  # noqa: ASYNC240
    assert Path(log).parent.stat().st_mode & 0o777 == 0o700
    records = list((state_dir / "instances").glob("*.json"))
    assert records and all(r.stat().st_mode & 0o777 == 0o600 for r in records)


async def test_launch_is_idempotent_on_the_client_token(make_provider: MakeProvider) -> None:
    provider = make_provider()
    spec = spec_for(None)
    offering = pick(list(await provider.offerings(spec)), "us-east-b", True)
    first, second = await asyncio.gather(
        provider.launch(request(spec, offering, 1, "same")),
        provider.launch(request(spec, offering, 1, "same")),
    )
    third = await provider.launch(request(spec, offering, 1, "same"))
    assert first.instance_id == second.instance_id == third.instance_id
    assert len(await provider.list_instances("svc")) == 1


async def test_terminate_leaves_no_process_port_or_record(
    make_provider: MakeProvider, state_dir: Path
) -> None:
    provider = make_provider()
    spec = spec_for(None)
    inst = await provider.launch(
        request(spec, pick(list(await provider.offerings(spec)), "us-east-a", False), 1)
    )
    assert inst.endpoint is not None
    await get_when_up(inst.endpoint)
    pid = pid_of(inst, state_dir)
    await provider.terminate(inst.instance_id)
    assert process_gone(pid)
    assert port_closed(inst.endpoint)
    assert await provider.list_instances("svc") == []
    assert list((state_dir / "instances").glob("*.json")) == []
    assert await provider.list_services() == []
    await provider.terminate(inst.instance_id)  # not found counts as done


async def test_a_released_service_takes_its_replica_logs_with_it(
    make_provider: MakeProvider, state_dir: Path
) -> None:
    """The logs stay while a replica of the service is left, and go once it is
    released (serve down): a later service of the same name starts with none."""
    provider = make_provider()
    spec = spec_for(None)
    offering = pick(list(await provider.offerings(spec)), "us-east-a", False)
    first = await provider.launch(request(spec, offering, 1))
    second = await provider.launch(request(spec, offering, 2))
    logs = state_dir / "logs" / "svc"
    assert {p.name for p in logs.iterdir()} == {"replica-1.log", "replica-2.log"}
    await provider.terminate(first.instance_id)
    # an ended replica's log is still its log (serve logs svc 1 after it FAILED)
    assert provider.log_path(first.instance_id) == str(logs / "replica-1.log")
    await provider.release_service("svc")  # replica 2 is left: nothing goes
    assert (logs / "replica-2.log").exists() and provider.log_path(second.instance_id)
    await provider.terminate(second.instance_id)
    await provider.release_service("svc")
    assert not logs.exists()
    assert provider.log_path(first.instance_id) is None


async def test_releasing_a_service_stops_its_replica_processes_that_no_record_knows(
    make_provider: Callable[..., LocalProvider], state_dir: Path
) -> None:
    """A controller killed between a spawn and its record leaves a process no record
    knows; once the service is gone (its launch never retried) its release stops it.
    Another service's such process may be a launch in flight: it is left alone."""
    provider = make_provider()

    async def stray(service: str) -> asyncio.subprocess.Process:
        env = {
            **os.environ,
            "SKYCTL_LOCAL_STATE": str(state_dir),
            "SKYCTL_SERVICE": service,
            "SKYCTL_INSTANCE_ID": f"{service}-r1-0000",
        }
        return await asyncio.create_subprocess_exec("sleep", "60", env=env, start_new_session=True)

    gone, other = await stray("svc"), await stray("other")
    try:
        await provider.release_service("svc")
        assert await asyncio.wait_for(gone.wait(), 10) == -signal.SIGKILL
        assert other.returncode is None
    finally:
        for proc in (gone, other):
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def test_terminate_kills_a_replica_that_ignores_sigterm(
    make_provider: MakeProvider, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_mod, "TERM_GRACE_SECONDS", 0.3)
    provider = make_provider()
    spec = spec_for(None, run="trap '' TERM; echo started; while true; do sleep 0.1; done")
    inst = await provider.launch(
        request(spec, pick(list(await provider.offerings(spec)), "us-east-a", False), 1)
    )
    log = Path(provider.log_path(inst.instance_id) or "")
    await eventually(lambda: "started" in log.read_text(), "the replica to start")
    pid = pid_of(inst, state_dir)
    first = asyncio.ensure_future(provider.terminate(inst.instance_id))
    await asyncio.sleep(0)  # under way: SIGTERM sent, waiting out the grace
    # a second terminate of the same instance (an orphan sweep, a retry) reports
    # success only once the instance is gone, not at once because one is under way
    await provider.terminate(inst.instance_id)
    assert process_gone(pid)
    assert await provider.list_instances("svc") == []
    await first


async def test_terminate_kills_what_left_the_replicas_process_group(
    make_provider: MakeProvider, tmp_path: Path
) -> None:
    """A server started with setsid (or daemonized) leaves the replica's process
    group; terminating the replica still stops it, found by its environment."""
    pidfile = tmp_path / "escaped.pid"
    provider = make_provider()
    run = f"setsid sh -c 'echo $$ > {pidfile}; exec sleep 300' & exec {sys.executable} {ECHO}"
    spec = spec_for(None, run=run)
    inst = await provider.launch(
        request(spec, pick(list(await provider.offerings(spec)), "us-east-a", False), 1)
    )
    await eventually(lambda: pidfile.exists() and pidfile.read_text().strip(), "setsid to run")
    escaped = int(pidfile.read_text())
    assert os.getpgid(escaped) == escaped  # its own group: the group kill misses it
    await provider.terminate(inst.instance_id)
    assert process_gone(escaped)


async def test_a_restarted_provider_finds_and_controls_existing_replicas(
    make_provider: MakeProvider, state_dir: Path
) -> None:
    first = make_provider()
    spec = spec_for(None)
    offering = pick(list(await first.offerings(spec)), "us-west-a", True)
    inst = await first.launch(request(spec, offering, 7, "tok-7"))
    await first.close()

    second = make_provider()
    listed = await second.list_instances("svc")
    assert [(i.instance_id, i.state, i.endpoint) for i in listed] == [
        (inst.instance_id, InstanceState.RUNNING, inst.endpoint)
    ]
    assert await second.list_services() == ["svc"]
    again = await second.launch(request(spec, offering, 7, "tok-7"))
    assert again.instance_id == inst.instance_id
    assert inst.endpoint is not None
    status, _ = await get_when_up(inst.endpoint + "/health")
    assert status == 200
    pid = pid_of(inst, state_dir)
    await second.terminate(inst.instance_id)
    await eventually(lambda: process_gone(pid), "the adopted replica to be gone")
    assert await second.list_instances("svc") == []


# ---------------------------------------------------------------- exits


@pytest.mark.parametrize(
    ("setup", "run", "detail"),
    [(None, "exit 3", "code 3"), ("echo setting up; exit 5", ECHO_RUN, "code 5")],
    ids=["run-exits", "setup-fails"],
)
async def test_a_replica_that_exits_is_reported_failed(
    make_provider: MakeProvider,
    events: list[InstanceEvent],
    setup: str | None,
    run: str,
    detail: str,
) -> None:
    provider = make_provider()
    provider.set_event_sink(events.append)
    spec = spec_for(None, run=run, setup=setup)
    inst = await provider.launch(
        request(spec, pick(list(await provider.offerings(spec)), "us-east-a", True), 1)
    )
    await eventually(lambda: any(e.kind == InstanceEventKind.EXITED for e in events), "EXITED")
    assert [(e.kind, e.replica_id, e.instance_id) for e in events] == [
        (InstanceEventKind.EXITED, 1, inst.instance_id)
    ]
    [listed] = await provider.list_instances("svc")
    assert listed.state == InstanceState.FAILED and detail in listed.detail
    await provider.terminate(inst.instance_id)
    assert await provider.list_instances("svc") == []


async def test_a_restarted_provider_notices_an_adopted_replica_died(
    make_provider: MakeProvider, state_dir: Path, events: list[InstanceEvent]
) -> None:
    first = make_provider()
    spec = spec_for(None, run="sleep 60")
    inst = await first.launch(
        request(spec, pick(list(await first.offerings(spec)), "us-east-a", False), 1)
    )
    await first.close()
    second = make_provider()
    second.set_event_sink(events.append)
    pid = pid_of(inst, state_dir)
    os.killpg(pid, signal.SIGKILL)
    await eventually(lambda: process_gone(pid), "the replica to die")
    [listed] = await second.list_instances("svc")
    assert listed.state == InstanceState.FAILED
    assert [e.kind for e in events] == [InstanceEventKind.EXITED]


# ---------------------------------------------------------------- trace-driven preemption


async def test_zone_turning_unavailable_notices_then_preempts_only_its_spot_replicas(
    make_provider: MakeProvider,
    clock: FakeClock,
    tmp_path: Path,
    state_dir: Path,
    events: list[InstanceEvent],
) -> None:
    trace = make_trace(
        tmp_path / "t", {"us-east-1a": [1, 1, 0, 0, 1], "us-west-2b": [1, 1, 1, 1, 1]}
    )
    opts = LocalOptions(trace=trace, trace_tick_seconds=10.0, notice_seconds=3.0)
    provider = make_provider(opts)
    provider.set_event_sink(events.append)
    spec = spec_for(opts)
    offerings = list(await provider.offerings(spec))
    doomed = await provider.launch(request(spec, pick(offerings, "us-east-1a", True), 1))
    safe_od = await provider.launch(request(spec, pick(offerings, "us-east-1a", False), 2))
    safe_spot = await provider.launch(request(spec, pick(offerings, "us-west-2b", True), 3))
    await get_when_up(f"{doomed.endpoint}/health")

    await clock.advance(19.0)
    assert events == []
    await clock.advance(1.0)  # tick 2: us-east-1a has no spot capacity
    notice = InstanceEvent(
        InstanceEventKind.NOTICE,
        "svc",
        1,
        doomed.instance_id,
        Location("local", "us-east-1", "us-east-1a"),
        T0 + 23.0,
    )
    assert events == [notice]
    listed = {i.replica_id: i for i in await provider.list_instances("svc")}
    assert listed[1].state == InstanceState.RUNNING and listed[1].interruption_at == T0 + 23.0
    assert listed[3].interruption_at is None

    await clock.advance(3.0)
    assert [(e.kind, e.replica_id, e.at) for e in events[1:]] == [
        (InstanceEventKind.PREEMPTED, 1, T0 + 23.0)
    ]
    pid = pid_of(doomed, state_dir)
    await eventually(lambda: process_gone(pid), "the preempted replica's process to die")
    listed = {i.replica_id: i for i in await provider.list_instances("svc")}
    assert listed[1].state == InstanceState.PREEMPTED and listed[1].endpoint is None
    assert listed[2].state == listed[3].state == InstanceState.RUNNING
    for inst in (safe_od, safe_spot):
        assert (await get_when_up(f"{inst.endpoint}/health"))[0] == 200

    await provider.terminate(doomed.instance_id)  # the controller cleans up
    assert {i.replica_id for i in await provider.list_instances("svc")} == {2, 3}


async def test_spot_launch_in_an_unavailable_zone_raises_capacity_error(
    make_provider: MakeProvider, clock: FakeClock, tmp_path: Path, state_dir: Path
) -> None:
    trace = make_trace(tmp_path / "t", {"us-east-1a": [0, 1], "us-west-2b": [1, 1]})
    opts = LocalOptions(trace=trace, trace_tick_seconds=10.0)
    provider = make_provider(opts)
    spec = spec_for(opts)
    offering = pick(list(await provider.offerings(spec)), "us-east-1a", True)
    with pytest.raises(CapacityError) as err:
        await provider.launch(request(spec, offering, 1))
    assert err.value.location == "local/us-east-1/us-east-1a"
    assert await provider.list_instances("svc") == []
    await clock.advance(10.0)  # tick 1: capacity is back
    inst = await provider.launch(request(spec, offering, 1, "tok-retry"))
    assert inst.state == InstanceState.RUNNING


async def test_trace_start_and_zone_subset_shape_the_replay(
    make_provider: MakeProvider, tmp_path: Path
) -> None:
    trace = make_trace(tmp_path / "t", {"us-east-1a": [1, 0], "us-west-2b": [1, 1]})
    opts = LocalOptions(trace=trace, trace_start=1, trace_zones=("us-east-1a",))
    provider = make_provider(opts)
    spec = spec_for(opts)
    offerings = list(await provider.offerings(spec))
    assert {o.location.zone for o in offerings} == {"us-east-1a"}
    with pytest.raises(CapacityError):
        await provider.launch(request(spec, pick(offerings, "us-east-1a", True), 1))


async def test_unknown_trace_is_a_config_error(make_provider: MakeProvider) -> None:
    opts = LocalOptions(trace="no-such-trace")
    with pytest.raises(ConfigError, match="no-such-trace"):
        await make_provider(opts).offerings(spec_for(opts))


async def test_spec_without_run_cannot_launch(make_provider: MakeProvider) -> None:
    provider = make_provider()
    spec = spec_for(None, run="")
    offering = pick(list(await provider.offerings(spec)), "us-east-a", False)
    with pytest.raises(ConfigError, match="run"):
        await provider.launch(request(spec, offering, 1))


# ---------------------------------------------------------------- random preemption


async def random_run(tmp: Path, seed: int) -> list[tuple[str, int, float]]:
    clock = FakeClock(T0)
    opts = LocalOptions(preemption_rate_per_hour=3600.0, seed=seed, notice_seconds=1.0)
    provider = LocalProvider(opts, clock=clock, state_dir=tmp, base_dir=str(tmp))
    seen: list[InstanceEvent] = []
    provider.set_event_sink(seen.append)
    spec = spec_for(opts, run="sleep 60")
    try:
        offerings = list(await provider.offerings(spec))
        await provider.launch(request(spec, pick(offerings, "us-east-a", True), 1))
        await provider.launch(request(spec, pick(offerings, "us-west-a", True), 2))
        await provider.launch(request(spec, pick(offerings, "us-east-b", False), 3))
        for _ in range(40):
            await clock.advance(0.5)
        return [(e.kind.value, e.replica_id, round(e.at - T0, 6)) for e in seen]
    finally:
        for inst in await provider.list_instances("svc"):
            await provider.terminate(inst.instance_id)
        await provider.close()


async def test_seeded_random_preemptions_are_reproducible_and_spare_on_demand(
    tmp_path: Path,
) -> None:
    first = await random_run(tmp_path / "a", seed=7)
    again = await random_run(tmp_path / "b", seed=7)
    other = await random_run(tmp_path / "c", seed=8)
    assert first == again
    assert first != other
    assert {r for _, r, _ in first} == {1, 2}  # replica 3 is on-demand
    for replica in (1, 2):
        kinds = [k for k, r, _ in first if r == replica]
        assert kinds == ["NOTICE", "PREEMPTED"]


async def test_one_large_clock_advance_still_preempts_at_trace_times(
    make_provider: MakeProvider, clock: FakeClock, tmp_path: Path, events: list[InstanceEvent]
) -> None:
    trace = make_trace(tmp_path / "t", {"us-east-1a": [1, 1, 1, 0]})
    opts = LocalOptions(trace=trace, trace_tick_seconds=5.0, notice_seconds=2.0)
    provider = make_provider(opts)
    provider.set_event_sink(events.append)
    spec = spec_for(opts, run="sleep 60")
    offering = pick(list(await provider.offerings(spec)), "us-east-1a", True)
    await provider.launch(request(spec, offering, 1))
    await clock.advance(100.0)
    assert [(e.kind, e.at - T0) for e in events] == [
        (InstanceEventKind.NOTICE, 17.0),
        (InstanceEventKind.PREEMPTED, 17.0),
    ]


# ---------------------------------------------------------------- working directory
# the spec's workdir, else a directory of the replica's own: never the state folder
# (a file-serving replica, like the http-server demo, would list instances and logs)

# prints its working directory and what is in it, then stays up
SHOW_CWD = "echo cwd=$(pwd -P); echo files=$(ls -A | tr '\\n' ,); exec sleep 60"


async def launched_cwd(
    provider: LocalProvider, spec: ServiceSpec, replica_id: int
) -> tuple[Instance, Path, str]:
    offering = pick(list(await provider.offerings(spec)), "us-east-a", False)
    inst = await provider.launch(request(spec, offering, replica_id))
    log = Path(provider.log_path(inst.instance_id) or "")
    await eventually(lambda: "files=" in log.read_text(), "the replica to print its cwd")
    report = _cwd_report(log)
    return inst, Path(report["cwd"]), report["files"]


def _cwd_report(log: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in log.read_text().splitlines() if "=" in line)


async def test_a_replica_runs_in_a_fresh_directory_of_its_own_never_the_state_folder(
    make_provider: MakeProvider, state_dir: Path
) -> None:
    provider = make_provider()
    spec = ServiceSpec(name="svc", resources=Resources(), run=SHOW_CWD)
    first, cwd1, files1 = await launched_cwd(provider, spec, 1)
    second, cwd2, _ = await launched_cwd(provider, spec, 2)

    assert state_dir not in (cwd1, cwd2)  # tmp_path is already a real path
    assert cwd1 != cwd2  # one each
    assert files1 == ""  # nothing of skyctl's (instances, logs) to see from there
    assert not (cwd1 / "instances").exists() and not (cwd1 / "logs").exists()
    assert oct(cwd1.stat().st_mode & 0o777) == oct(0o700)

    await provider.terminate(first.instance_id)
    await provider.terminate(second.instance_id)
    assert not cwd1.exists() and not cwd2.exists()  # gone with the replica


async def test_the_specs_workdir_is_used_and_kept(
    make_provider: MakeProvider, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "model.txt").write_text("weights")
    provider = make_provider()
    spec = ServiceSpec(name="svc", resources=Resources(), run=SHOW_CWD, workdir=str(project))
    inst, cwd, files = await launched_cwd(provider, spec, 1)
    assert cwd == project.resolve()
    assert files == "model.txt,"
    await provider.terminate(inst.instance_id)
    assert (project / "model.txt").read_text() == "weights"  # the user's folder stays


# ---------------------------------------------------------------- SkyPilot's conventions

PRINT_THEN_WAIT = (
    f"exec {sys.executable} -c "
    "'import json, os, time; "
    'print(json.dumps({k: v for k, v in os.environ.items() if k.startswith("SKYPILOT_")})); '
    "time.sleep(120)'"
)


async def test_a_python_replica_logs_as_it_runs_with_skypilots_variables(
    make_provider: MakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)  # as in a user's shell
    provider = make_provider()
    spec = spec_for(None, run=PRINT_THEN_WAIT, spot=False)
    offerings = list(await provider.offerings(spec))
    inst = await provider.launch(request(spec, pick(offerings, "us-east-a", False), 4))
    log = Path(provider.log_path(inst.instance_id) or "")

    # the process keeps running: without PYTHONUNBUFFERED its line would sit in
    # Python's buffer until exit
    def first_line() -> str | None:
        return next((x for x in log.read_text().splitlines() if x.startswith("{")), None)

    await eventually(first_line, "the replica's first line in its log while it runs")
    assert not process_gone(pid_of(inst, provider._state_dir))
    env = json.loads(first_line() or "")
    assert env["SKYPILOT_NODE_RANK"] == "0" and env["SKYPILOT_NUM_NODES"] == "1"
    assert env["SKYPILOT_NODE_IPS"] == env["SKYPILOT_SETUP_NODE_IPS"] == "127.0.0.1"
    assert env["SKYPILOT_SERVE_REPLICA_ID"] == "4" and env["SKYPILOT_SERVICE_NAME"] == "svc"
    assert env["SKYPILOT_NUM_GPUS_PER_NODE"] == "0"  # a CPU offering
    assert json.loads(env["SKYPILOT_CLUSTER_INFO"])["cloud"] == "local"
    await provider.terminate(inst.instance_id)
