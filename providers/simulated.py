"""The simulated provider: cheap replicas for measuring the controller.

As Karpenter ships a simulated cloud, skyctl ships ``cloud: simulated``: a
provider that implements the whole interface (offerings, idempotent launch,
terminate, list by service, push events) while its instances are endpoints of
ONE HTTP server, routed by path (``http://127.0.0.1:PORT/i/<instance id>``).
An instance answers 503 until it has booted, then 200, and 404 once gone, so
probes and the router see real HTTP. 10,000 replicas cost one process and one
listening socket, so the controller's own cost can be measured at scale
(``benchmarks/control_plane.py``).

Configured by the ``simulated:`` section of ``config.yaml`` (all optional):

- ``launch_seconds`` (1.0): how long a launch call takes;
- ``boot_seconds`` (5.0): from launch until the endpoint answers 200;
- ``launch_failure_rate`` (0): the share of launches that fail, with a
  CapacityError for spot and a TransientError (a 503) for on-demand;
- ``preemptions_per_hour`` (0): each spot node's rate of preemption (a
  replica of ``num_nodes`` N is one instance priced as N nodes and lost with
  any of them: N times the rate); a preempted one gets an interruption notice
  ``notice_seconds`` (30) earlier;
- ``zones`` (3), ``spot_price`` (1.0), ``ondemand_price`` (3.0), ``seed`` (0);
- ``server``: ``inprocess`` (default: the endpoints run in the controller's
  event loop, on its clock) or ``process`` (one child process serves them on
  real time, so the controller's CPU is measured alone);
- ``max_concurrent_calls`` (256).

Times run on the injected clock (a FakeClock in tests) in ``inprocess`` mode.

Instances survive a controller restart, as a cloud's VMs do: given a
``state_dir`` (the controller passes ``$SKYCTL_HOME/simulated``), the provider
keeps its instances in ``instances.jsonl`` there (a journal: a line per change,
appended in a thread before a launch returns, after a termination, a notice or a
preemption; replaced by a snapshot past twice the live count), and the next
controller's provider serves them again from its own endpoint server, booted
(their endpoints move to its port; the controller follows the listing). Before,
they died with the controller's process and the next one recorded every one as
``instance gone``: spot ones as PREEMPTED (counted as preemptions), on-demand
ones as FAILED (counted against the version).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from providers.base import LaunchRequest, Provider, per_replica
from providers.simulated_server import EndpointServer, InProcessEndpoints, RemoteEndpoints
from skyctl.clock import Clock
from skyctl.errors import CapacityError, ConfigError, TransientError
from skyctl.spec import ServiceSpec
from skyctl.types import (
    Instance,
    InstanceEvent,
    InstanceEventKind,
    InstanceState,
    Location,
    Offering,
)

CLOUD = "simulated"
STATE_FILE = "instances.jsonl"  # a journal: one change a line, compacted as it grows
_DONE: Any = object()  # restored (or nothing to restore)
_NUMBERS = {
    "launch_seconds": 1.0,
    "boot_seconds": 5.0,
    "launch_failure_rate": 0.0,
    "preemptions_per_hour": 0.0,
    "notice_seconds": 30.0,
    "spot_price": 1.0,
    "ondemand_price": 3.0,
}


@dataclass(frozen=True)
class SimulatedOptions:
    launch_seconds: float = 1.0
    boot_seconds: float = 5.0
    launch_failure_rate: float = 0.0
    preemptions_per_hour: float = 0.0
    notice_seconds: float = 30.0
    spot_price: float = 1.0
    ondemand_price: float = 3.0
    zones: int = 3
    seed: int = 0
    server: str = "inprocess"
    max_concurrent_calls: int = 256

    @classmethod
    def parse(cls, section: Mapping[str, Any]) -> SimulatedOptions:
        """From the ``simulated:`` section; one-line errors naming the key."""
        known = {*_NUMBERS, "zones", "seed", "server", "max_concurrent_calls"}
        for key in section:
            if key not in known:
                raise ConfigError(
                    f"simulated.{key}: unknown key; allowed: {', '.join(sorted(known))}"
                )
        values: dict[str, Any] = {}
        for key in _NUMBERS:
            if key in section:
                value = section[key]
                if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                    raise ConfigError(f"simulated.{key}: expected a number >= 0, got {value!r}")
                values[key] = float(value)
        if values.get("launch_failure_rate", 0.0) > 1:
            raise ConfigError("simulated.launch_failure_rate: expected a share from 0 to 1")
        for key in ("zones", "seed", "max_concurrent_calls"):
            if key in section:
                value = section[key]
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ConfigError(f"simulated.{key}: expected a whole number, got {value!r}")
                values[key] = value
        if values.get("zones", 1) < 1 or values.get("max_concurrent_calls", 1) < 1:
            raise ConfigError("simulated.zones and max_concurrent_calls: at least 1")
        if "server" in section:
            if section["server"] not in ("inprocess", "process"):
                raise ConfigError(
                    f"simulated.server: expected inprocess or process, got {section['server']!r}"
                )
            values["server"] = section["server"]
        return cls(**values)


def check(config: Mapping[str, Any] | None) -> tuple[bool, str]:
    """For ``skyctl check``: usable whenever its section is valid (it needs no cloud)."""
    try:
        SimulatedOptions.parse(config or {})
    except ConfigError as e:
        return False, str(e)
    return True, "endpoints of one local HTTP server, for measuring the controller"


@dataclass
class _Sim:
    instance: Instance
    token: str
    notice_at: float | None = None  # spot: when its interruption notice is due


class SimulatedProvider(Provider):
    name = CLOUD

    def __init__(
        self,
        config: Mapping[str, Any] | None,
        *,
        clock: Clock,
        state_dir: Path | None = None,
        observer: bool = False,
    ) -> None:
        self.options = SimulatedOptions.parse(config or {})
        # another process's view (the CLI's checks): the controller's provider is the
        # state file's one writer (a snapshot from here would drop its later lines)
        self._observer = observer
        # where the instances are kept across restarts (None: in memory only)
        self._state = state_dir / STATE_FILE if state_dir is not None else None
        self._restored: asyncio.Lock | None = None if state_dir is not None else _DONE
        self._journal: list[dict[str, Any]] = []  # changes not yet written
        self._lines = 0  # lines in the file (a snapshot replaces it past 2x the instances)
        self._writing: asyncio.Lock | None = None
        self.max_concurrent_calls = self.options.max_concurrent_calls
        self._clock = clock
        self._rng = random.Random(self.options.seed)
        self._instances: dict[str, _Sim] = {}
        # instance ids per service: a listing costs its own instances, not everyone's
        self._by_service: dict[str, dict[str, None]] = {}
        self._by_token: dict[str, str] = {}
        self._token_locks: dict[str, asyncio.Lock] = {}
        self._ids = itertools.count(1)
        self._endpoints: EndpointServer | None = None
        self._starting: asyncio.Lock | None = None
        self._driver: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self.zones = tuple(
            Location(CLOUD, f"r{i // 2 + 1}", f"r{i // 2 + 1}-{'ab'[i % 2]}")
            for i in range(self.options.zones)
        )

    # ------------------------------------------------------------ Provider API
    async def offerings(self, spec: ServiceSpec) -> Sequence[Offering]:
        o = self.options
        out = [Offering(z, False, o.ondemand_price, "sim.small") for z in self.zones]
        if spec.use_spot:
            # zones differ a little in price, so placement has a cheapest one
            out += [
                Offering(z, True, round(o.spot_price * (1 + 0.05 * i), 4), "sim.small")
                for i, z in enumerate(self.zones)
            ]
        return per_replica(out, spec)  # a replica of num_nodes nodes costs that many

    async def launch(self, request: LaunchRequest) -> Instance:
        await self._restore()
        lock = self._token_locks.setdefault(request.client_token, asyncio.Lock())
        try:
            async with lock:
                iid = self._by_token.get(request.client_token)
                if iid is not None and iid in self._instances:
                    return self._instances[iid].instance
                inst = await self._launch(request)
                await self._persist(inst.instance_id)  # kept before the controller records it
                return inst
        finally:
            if not lock.locked():
                self._token_locks.pop(request.client_token, None)

    async def _launch(self, request: LaunchRequest) -> Instance:
        endpoints = await self._server()
        o, off = self.options, request.offering
        if off.location not in self.zones:
            raise CapacityError(f"simulated has no zone {off.location}", location=str(off.location))
        await self._clock.sleep(o.launch_seconds)
        if o.launch_failure_rate and self._rng.random() < o.launch_failure_rate:
            if off.spot:
                raise CapacityError(
                    f"no spot capacity in {off.location} (simulated)", location=str(off.location)
                )
            raise TransientError(f"503 from {off.location} (simulated)")
        iid = f"sim-{next(self._ids)}-{request.client_token[:8]}"
        now = self._clock.now()
        await endpoints.add(iid, boot_seconds=o.boot_seconds)
        inst = Instance(
            instance_id=iid,
            service=request.service,
            replica_id=request.replica_id,
            version=request.version,
            location=off.location,
            spot=off.spot,
            state=InstanceState.RUNNING,
            endpoint=f"{endpoints.base_url}/i/{iid}",
            price=off.price,
            created_at=now,
        )
        sim = _Sim(inst, request.client_token)
        if off.spot and o.preemptions_per_hour > 0:
            # any of its num_nodes nodes preempted ends the replica: N times the rate
            rate = o.preemptions_per_hour * request.spec.num_nodes / 3600.0
            sim.notice_at = now + self._rng.expovariate(rate)
            self._start_driver()
            self._wakeup.set()
        self._instances[iid] = sim
        self._by_service.setdefault(request.service, {})[iid] = None
        self._by_token[request.client_token] = iid
        return inst

    async def terminate(self, instance_id: str) -> None:
        await self._restore()
        sim = self._instances.pop(instance_id, None)
        if sim is None:
            return  # not found counts as done
        self._by_token.pop(sim.token, None)
        ids = self._by_service.get(sim.instance.service)
        if ids is not None:
            ids.pop(instance_id, None)
            if not ids:
                del self._by_service[sim.instance.service]
        if self._endpoints is not None:
            await self._endpoints.remove(instance_id)
        await self._persist(instance_id)

    async def list_instances(self, service: str) -> Sequence[Instance]:
        await self._restore()
        return [self._instances[i].instance for i in self._by_service.get(service, ())]

    async def list_services(self) -> Sequence[str]:
        await self._restore()
        return sorted(self._by_service)

    async def close(self) -> None:
        """Stop the endpoint server. Without a ``state_dir`` instances live only in it,
        so closing ends them; with one, the next provider serves them again."""
        if self._driver is not None:
            self._driver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._driver
            self._driver = None
        if self._endpoints is not None:
            await self._endpoints.close()
            self._endpoints = None
        self._instances.clear()
        self._by_service.clear()
        self._by_token.clear()

    # ------------------------------------------------------------ persistence
    async def _restore(self) -> None:
        """Once, before anything else: serve the instances a previous provider kept."""
        if self._restored is _DONE:
            return
        if self._restored is None:
            self._restored = asyncio.Lock()
        async with self._restored:
            if self._restored is _DONE or self._state is None:
                return
            saved = await asyncio.to_thread(_read_state, self._state)
            if saved:
                await self._adopt(saved)
            rows = [_saved(sim) for sim in self._instances.values()]
            if not self._observer:
                await asyncio.to_thread(_write_state, self._state, rows, replace_file=True)
            self._lines = len(rows)  # the journal starts compacted
            self._restored = _DONE

    async def _adopt(self, saved: list[dict[str, Any]]) -> None:
        endpoints = await self._server()
        now, top = self._clock.now(), 0
        for d in saved:
            try:
                sim = self._sim_of(d, endpoints.base_url)
            except (KeyError, ValueError, TypeError):
                continue  # not one of ours: its replica is found gone
            inst = sim.instance
            if inst.state is InstanceState.RUNNING:
                boot = inst.created_at + self.options.boot_seconds - now
                await endpoints.add(inst.instance_id, boot_seconds=max(0.0, boot))
            self._instances[inst.instance_id] = sim
            self._by_service.setdefault(inst.service, {})[inst.instance_id] = None
            self._by_token[sim.token] = inst.instance_id
            with contextlib.suppress(ValueError, IndexError):
                top = max(top, int(inst.instance_id.split("-")[1]))
        self._ids = itertools.count(top + 1)  # no id of theirs is handed out again
        if any(s.notice_at is not None for s in self._instances.values()):
            self._start_driver()

    @staticmethod
    def _sim_of(d: dict[str, Any], base_url: str) -> _Sim:
        inst = Instance(
            instance_id=d["instance_id"],
            service=d["service"],
            replica_id=int(d["replica_id"]),
            version=int(d["version"]),
            location=Location.parse(d["location"]),
            spot=bool(d["spot"]),
            state=InstanceState(d["state"]),
            endpoint=f"{base_url}/i/{d['instance_id']}",
            price=float(d["price"]),
            created_at=float(d["created_at"]),
            interruption_at=d.get("interruption_at"),
        )
        return _Sim(inst, str(d["token"]), d.get("notice_at"))

    async def _persist(self, instance_id: str) -> None:
        """Journal the instance as it is now (or its end), written in a thread; returns
        once a write that includes it is done (concurrent calls share writes). Each
        change costs a line, not the whole set (10,000s of instances in benchmarks)."""
        if self._state is None or self._observer:
            return
        sim = self._instances.get(instance_id)
        self._journal.append(_saved(sim) if sim is not None else {"gone": instance_id})
        if self._writing is None:
            self._writing = asyncio.Lock()
        async with self._writing:
            if not self._journal:
                return  # another call's write included this change
            batch, self._journal = self._journal, []
            if self._lines + len(batch) > 2 * len(self._instances) + 1024:
                batch, self._lines = [_saved(s) for s in self._instances.values()], 0
                await asyncio.to_thread(_write_state, self._state, batch, replace_file=True)
            else:
                await asyncio.to_thread(_write_state, self._state, batch, replace_file=False)
            self._lines += len(batch)

    # ------------------------------------------------------------ internals
    async def _server(self) -> EndpointServer:
        if self._endpoints is None:
            if self._starting is None:
                self._starting = asyncio.Lock()
            async with self._starting:
                if self._endpoints is None:
                    if self.options.server == "process":
                        self._endpoints = await RemoteEndpoints.start()
                    else:
                        self._endpoints = await InProcessEndpoints.start(self._clock)
        return self._endpoints

    def _start_driver(self) -> None:
        if self._driver is None or self._driver.done():
            self._driver = asyncio.get_running_loop().create_task(self._drive())

    async def _drive(self) -> None:
        """Send due interruption notices and preempt at their deadline."""
        while True:
            self._wakeup.clear()
            now = self._clock.now()
            due: list[float] = []
            for sim in list(self._instances.values()):
                inst = sim.instance
                if inst.state is not InstanceState.RUNNING or sim.notice_at is None:
                    continue
                if inst.interruption_at is not None:
                    if inst.interruption_at <= now:
                        await self._preempt(sim, now)
                    else:
                        due.append(inst.interruption_at)
                elif sim.notice_at <= now:
                    at = now + self.options.notice_seconds
                    sim.instance = replace(inst, interruption_at=at)
                    self._emit(self._event(InstanceEventKind.NOTICE, sim.instance, at))
                    await self._persist(inst.instance_id)
                    due.append(at)
                else:
                    due.append(sim.notice_at)
            timer = asyncio.ensure_future(self._clock.sleep(min(due) - now)) if due else None
            woken = asyncio.ensure_future(self._wakeup.wait())
            try:
                await asyncio.wait(
                    {woken} if timer is None else {woken, timer},
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                woken.cancel()
                if timer is not None:
                    timer.cancel()

    async def _preempt(self, sim: _Sim, now: float) -> None:
        sim.instance = replace(sim.instance, state=InstanceState.PREEMPTED)
        if self._endpoints is not None:
            await self._endpoints.remove(sim.instance.instance_id)
        self._emit(self._event(InstanceEventKind.PREEMPTED, sim.instance, now))
        await self._persist(sim.instance.instance_id)

    @staticmethod
    def _event(kind: InstanceEventKind, inst: Instance, at: float) -> InstanceEvent:
        return InstanceEvent(
            kind, inst.service, inst.replica_id, inst.instance_id, inst.location, at
        )


def _saved(sim: _Sim) -> dict[str, Any]:
    i = sim.instance
    return {
        "instance_id": i.instance_id,
        "token": sim.token,
        "service": i.service,
        "replica_id": i.replica_id,
        "version": i.version,
        "location": str(i.location),
        "spot": i.spot,
        "state": i.state.value,
        "price": i.price,
        "created_at": i.created_at,
        "interruption_at": i.interruption_at,
        "notice_at": sim.notice_at,
    }


def _read_state(path: Path) -> list[dict[str, Any]]:
    """The kept instances, the journal replayed (a line cut by a crash is skipped); a
    missing or unreadable file keeps none (the controller then finds its replicas
    gone, and says so)."""
    kept: dict[str, dict[str, Any]] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            d = json.loads(line)
        except ValueError:
            continue
        if isinstance(d, dict) and isinstance(d.get("gone"), str):
            kept.pop(d["gone"], None)
        elif isinstance(d, dict) and isinstance(d.get("instance_id"), str):
            kept[d["instance_id"]] = d
    return list(kept.values())


def _write_state(path: Path, rows: list[dict[str, Any]], *, replace_file: bool) -> None:
    """Append ``rows`` to the journal, or replace it with them (atomically); the file
    is readable by the user only."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in rows)
    target = path.with_name(f".{path.name}.{os.getpid()}.tmp") if replace_file else path
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if replace_file else os.O_APPEND)
    fd = os.open(target, flags, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    if replace_file:
        os.replace(target, path)
