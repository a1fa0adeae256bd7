"""The local provider: replicas are processes on this machine.

Each replica is ``bash`` running the spec's ``setup`` then ``run`` in its own process
group, listening on a free port of 127.0.0.1 given as ``$PORT``, with its output in
``<state_dir>/logs/<service>/replica-<id>.log`` (rotated at a size cap: ``local_logs``;
kept an hour after it ends, as its row in ``serve status -a``: ``local_records.LogPruner``).
It runs in the spec's ``workdir``, else in a directory of its own (``<state_dir>/work/
<instance id>``, removed at termination), never in the state folder itself. Instance
records are JSON files under ``state_dir`` (``providers.local_records``), so a restarted
controller finds the replicas a previous one started; launches are idempotent on the
client token. The controller's provider is their one writer: an ``observer`` (another
process's listing, e.g. the CLI's check after ``serve down``) writes none, drives nothing.

Zones, prices and preemptions come from ``providers.local_replay``: a
time-compressed replay of a real spot trace, or seeded random preemptions.
When a zone turns unavailable every spot replica there gets an
``InstanceEvent(NOTICE)``, is killed ``notice_seconds`` later (SIGKILL to its
group, as a cloud takes a machine) and reported PREEMPTED until terminated.
A background task sleeping on the injected clock drives this; it starts on first
use and stops in :meth:`LocalProvider.close`, which leaves replicas running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path

from providers import local_nodes, local_ports, local_process
from providers.base import LaunchRequest, Provider, per_replica
from providers.feasibility import this_machine
from providers.local_logs import ReplicaLogs
from providers.local_process import ReplicaProcess
from providers.local_records import (
    FAILED,
    PREEMPTED,
    RUNNING,
    LogPruner,
    Record,
    RecordStore,
    end_files,
    group_alive,
    log_of,
    pgid_of,
    pid_alive,
    proc_start_time,
    safe_name,
    signal_group,
)
from providers.local_records import instance_id as make_instance_id
from providers.local_replay import CLOUD, Replay, ZoneModel, matching_candidate
from providers.replica_env import skypilot_env
from skyctl.clock import Clock
from skyctl.errors import CapacityError, ConfigError, TransientError
from skyctl.spec import LocalOptions, ServiceSpec
from skyctl.types import Instance, InstanceEvent, InstanceEventKind, Location, Offering

# setup failure ends the replica with this code; run replaces the shell (exec)
_LAUNCHER = (
    'if [ -n "$1" ]; then bash -c "$1" || { code=$?; '
    'echo "skyctl: setup failed with exit code $code" >&2; exit $code; }; fi; '
    'exec bash -c "$2"'
)
logger = logging.getLogger(__name__)

TERM_GRACE_SECONDS = 5.0  # real time between SIGTERM and SIGKILL in terminate
EXIT_POLL_SECONDS = 2.0  # clock time between liveness checks of adopted replicas


class LocalProvider(Provider):
    name = CLOUD

    def __init__(
        self,
        spec_options: LocalOptions | None,
        *,
        clock: Clock,
        state_dir: Path,
        base_dir: str | None = None,
        accelerators: Mapping[str, float] | None = None,
        logs: ReplicaLogs | None = None,
        observer: bool = False,
    ) -> None:
        self._default_options = spec_options or LocalOptions()
        # what a replica can get here: this machine, and the configured accelerators
        self._machine = this_machine(accelerators)
        self._clock = clock
        self._state_dir = Path(state_dir)
        self._base_dir = base_dir
        self._store = RecordStore(self._state_dir, read_only=observer)
        self._logs = LogPruner(self._state_dir, clock.now)
        self._log_caps = logs or ReplicaLogs()  # each replica's log under its size cap
        self._replays: dict[str, Replay] = {}
        self._procs: dict[str, ReplicaProcess] = {}
        self._waiters: dict[str, asyncio.Task[None]] = {}
        self._starting: dict[int, str] = {}  # port -> whose, until its record is saved
        self._random_due: dict[str, float] = {}  # instance id -> random notice time
        self._terminating: dict[str, asyncio.Event] = {}  # set once that terminate ends
        self._token_locks: dict[str, asyncio.Lock] = {}
        self._driver: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self._planned: list[asyncio.Future[None]] = []  # resolved once the driver re-planned

    # ------------------------------------------------------------ replays

    def _options(self, spec: ServiceSpec) -> LocalOptions:
        return spec.local or self._default_options

    def _replay(self, service: str, spec: ServiceSpec, *, persist: bool = True) -> Replay:
        options = self._options(spec)
        replay = self._replays.get(service)
        if replay is not None and replay.options == options:
            return replay
        if replay is not None:
            t0 = replay.t0
        else:
            has_records = any(r.service == service for r in self._store.records.values())
            stored = self._store.replay_t0(service) if has_records else None
            t0 = stored if stored is not None else self._clock.now()
        base_dir = self._base_dir
        if spec.source and base_dir is None:
            base_dir = str(Path(spec.source).parent)
        try:
            replay = Replay(options, t0=t0, base_dir=base_dir, seed_key=service)
        except ValueError as exc:
            raise ConfigError(f"local: {exc}") from exc
        if persist:
            self._store.save_replay_t0(service, t0)
        self._replays[service] = replay
        return replay

    # ------------------------------------------------------------ Provider API

    async def offerings(self, spec: ServiceSpec) -> Sequence[Offering]:
        self._start_driver()
        service = spec.name or f"<anonymous {hash(self._options(spec))}>"
        fresh = service not in self._replays
        replay = self._replay(service, spec, persist=bool(spec.name))
        if fresh:  # adopted replicas of this service may now have deadlines
            await self._replan()
        now = self._clock.now()
        out: list[Offering] = []
        for zone in replay.zones:
            cand = matching_candidate(spec, zone.location, self._machine)
            if cand is None:
                continue
            accel = ",".join(f"{k}:{v}" for k, v in (cand.accelerators or {}).items())
            if spec.resources.use_spot:
                price = replay.spot_price(zone, now)
                out.append(Offering(zone.location, True, price, "local", accel))
            out.append(Offering(zone.location, False, zone.ondemand_price, "local", accel))
        return per_replica(out, spec)  # N processes of a multi-node replica bill as N nodes

    async def launch(self, request: LaunchRequest) -> Instance:
        self._start_driver()
        lock = self._token_locks.setdefault(request.client_token, asyncio.Lock())
        try:
            async with lock:
                existing = self._store.by_token(request.client_token)
                if existing is not None:
                    return existing.to_instance()
                rec = await self._spawn(request)
                self._log_caps.watch([rec.log_path])
        finally:
            if not lock.locked():
                self._token_locks.pop(request.client_token, None)
        await self._replan()
        return rec.to_instance()

    async def terminate(self, instance_id: str) -> None:
        while (ending := self._terminating.get(instance_id)) is not None:
            await ending.wait()  # the terminate under way; then: did it end the instance?
        rec = self._store.records.get(instance_id)
        if rec is None:
            return
        self._terminating[instance_id] = asyncio.Event()
        try:
            await self._stop(rec)
            self._store.remove(instance_id)
            now = self._clock.now()
            await asyncio.to_thread(self._log_caps.finish, rec.log_path)  # under its cap
            await asyncio.to_thread(end_files, self._replica_dir(instance_id), rec.log_path, now)
            self._random_due.pop(instance_id, None)
            await self._logs.after_end(rec.service, self._store.records.values())
        finally:
            self._terminating.pop(instance_id).set()

    async def list_instances(self, service: str) -> Sequence[Instance]:
        self._start_driver()
        self._check_exits()
        return [
            r.to_instance()
            for r in sorted(self._store.records.values(), key=lambda r: r.replica_id)
            if r.service == service
        ]

    async def list_services(self) -> Sequence[str]:
        return sorted({r.service for r in self._store.records.values()})

    async def release_service(self, service: str) -> None:
        """Once none of its replicas is left: forget the service's replay clock, stop its
        processes no record knows (a controller killed between a spawn and its record),
        remove its replicas' logs (a later service of the same name would show them)."""
        if any(r.service == service for r in self._store.records.values()):
            return
        known = set(self._store.records)
        await local_process.kill_strays(str(self._state_dir), known, service=service)
        self._replays.pop(service, None)
        self._store.forget_replay(service)
        self._logs.forget(service)
        logs = self._state_dir / "logs" / safe_name(service)
        await asyncio.to_thread(shutil.rmtree, logs, True)

    def log_path(self, instance_id: str) -> str | None:
        """The replica's log, also once it ended (kept an hour, or until the service goes)."""
        rec = self._store.records.get(instance_id)
        if rec is not None:
            return rec.log_path
        path = log_of(self._state_dir, instance_id)
        return str(path) if path is not None and path.is_file() else None

    async def recover(self) -> None:
        """Replica processes no record knows (a controller killed between a spawn and its
        record) become records, listed as the instances they are (local_process.adopt_strays)."""
        now = self._clock.now()
        for rec in await local_process.adopt_strays(self._state_dir, set(self._store.records), now):
            self._store.save(rec)

    async def strays(self, kill: bool = False) -> dict[str, list[int]]:
        """Replica processes no record knows, by service (``local_process.find_strays``)."""
        find = local_process.kill_strays if kill else local_process.find_strays
        return await find(str(self._state_dir), set(self._store.records))

    async def close(self) -> None:
        tasks = [t for t in (self._driver, *self._waiters.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._driver = None
        self._waiters.clear()
        self._procs.clear()  # from now on their liveness is checked by pid, like adopted ones
        self._log_caps.close()

    # ------------------------------------------------------------ launching

    async def _spawn(self, request: LaunchRequest) -> Record:
        spec, offering = request.spec, request.offering
        if not spec.run:
            raise ConfigError("run: the local provider needs a `run` command to start a replica")
        replay = self._replay(request.service, spec)
        instance_id = make_instance_id(request.service, request.replica_id, request.client_token)
        log_path = log_of(self._state_dir, instance_id)
        assert log_path is not None  # an id made here reads back
        log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # may echo secrets
        log_path.parent.chmod(0o700)
        adopted = await self._adopt_stray(request, instance_id, log_path)
        if adopted is not None:
            return adopted
        now = self._clock.now()
        zone = replay.zone(offering.location)
        if zone is None:
            raise CapacityError(
                f"local has no zone {offering.location} for service {request.service!r}",
                location=str(offering.location),
            )
        if offering.spot and not replay.available(zone, now):
            raise CapacityError(
                f"no spot capacity in {offering.location} now", location=str(offering.location)
            )
        cwd = self._workdir(spec, instance_id)
        claimed = local_ports.claim(
            spec, self._store.records.values(), str(log_path), self._starting
        )
        self._starting[claimed.port] = f"replica {request.replica_id} of {request.service}"
        try:
            return await self._start(request, instance_id, log_path, cwd, claimed, zone, now)
        finally:
            del self._starting[claimed.port]

    async def _start(
        self,
        request: LaunchRequest,
        instance_id: str,
        log_path: Path,
        cwd: str,
        claimed: local_ports.Claim,
        zone: ZoneModel,
        now: float,
    ) -> Record:
        """Start the claimed replica's processes and save its record."""
        spec, offering, port = request.spec, request.offering, claimed.port
        replay = self._replay(request.service, spec)
        env = {**os.environ, **spec.envs, **request.envs}
        # SkyPilot's task variables; this process is the head (rank 0)
        ips = local_nodes.node_ips(request)
        env.update(skypilot_env(request, node_ip=None, node_ips=ips))
        env.update(claimed.env(env))
        env.update(
            SKYCTL_SERVICE=request.service,
            SKYCTL_REPLICA_ID=str(request.replica_id),
            SKYCTL_VERSION=str(request.version),
            SKYCTL_INSTANCE_ID=instance_id,
            SKYCTL_LOCAL_STATE=str(self._state_dir),  # whose replica, for _adopt_stray
            SKYCTL_LOCATION=str(offering.location),
            SKYCTL_SPOT="1" if offering.spot else "0",
        )
        run = spec.run or ""  # _spawn refused a spec without one
        argv = ("bash", "-c", _LAUNCHER, "skyctl-replica", spec.setup or "", run)
        try:  # fork/exec in a worker thread, never on the event loop
            proc = await local_process.start(argv, cwd=cwd, env=env, log_path=log_path)
        except OSError as exc:
            raise TransientError(f"cannot start replica process: {exc}") from exc
        try:
            workers = await local_nodes.start_workers(
                request,
                argv,
                env=env,
                cwd=cwd,
                log_path=log_path,
                avoid_ports={port, *(r.port for r in self._store.records.values())},
            )
        except (OSError, asyncio.CancelledError) as exc:  # no record will name the head
            signal_group(proc.pid, signal.SIGKILL)
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise TransientError(f"cannot start a worker node's process: {exc}") from exc
        price = replay.spot_price(zone, now) if offering.spot else zone.ondemand_price
        price *= spec.num_nodes
        rec = Record(
            instance_id=instance_id,
            client_token=request.client_token,
            service=request.service,
            replica_id=request.replica_id,
            version=request.version,
            location=str(offering.location),
            spot=offering.spot,
            price=price,
            created_at=now,
            pid=proc.pid,
            pgid=proc.pid,
            port=port,
            log_path=str(log_path),
            proc_start=proc_start_time(proc.pid),
            workers=[entry for entry, _ in workers],
        )
        self._store.save(rec)
        self._procs[instance_id] = proc
        self._waiters[instance_id] = asyncio.create_task(self._wait_exit(instance_id, proc))
        for entry, wproc in workers:
            key = local_nodes.worker_key(instance_id, entry["rank"])
            self._procs[key] = wproc
            self._waiters[key] = asyncio.create_task(self._wait_exit(instance_id, wproc, key))
        if offering.spot:
            due = replay.draw_preemption_at(now)
            if due is not None:
                self._random_due[instance_id] = due
        return rec

    async def _adopt_stray(
        self, request: LaunchRequest, instance_id: str, log_path: Path
    ) -> Record | None:
        """The process of this launch when one runs that no record knows.

        A controller killed between starting a replica's process and saving its
        record leaves such a process; the relaunch with the same client token
        (hence the same instance id) adopts it instead of starting a second one.
        """
        found = {
            pid: env
            for pid, env in (
                await local_process.find_with_env("SKYCTL_INSTANCE_ID", instance_id)
            ).items()
            if env.get("SKYCTL_LOCAL_STATE") == str(self._state_dir)
        }
        leaders = [pid for pid in found if pgid_of(pid) == pid]  # the launcher leads its group
        port = int(found[leaders[0]].get("PORT") or 0) if leaders else 0
        if not port or request.spec.num_nodes > 1:  # a multi-node one starts afresh
            for pid in found:  # parts of a launch that cannot be adopted
                signal_group(pgid_of(pid) or pid, signal.SIGKILL)
            return None
        pid, now = leaders[0], self._clock.now()
        rec = Record(
            instance_id=instance_id,
            client_token=request.client_token,
            service=request.service,
            replica_id=request.replica_id,
            version=request.version,
            location=str(request.offering.location),
            spot=request.offering.spot,
            price=request.offering.price,
            created_at=now,
            pid=pid,
            pgid=pid,
            port=port,
            log_path=str(log_path),
            proc_start=proc_start_time(pid),
        )
        self._store.save(rec)
        logger.warning(
            "local: adopted process %d of %s (started before a restart)", pid, instance_id
        )
        return rec

    def _workdir(self, spec: ServiceSpec, instance_id: str) -> str:
        """The spec's ``workdir``, else a fresh directory of the replica's own: never
        this provider's state folder (a file server replica would list it)."""
        if not spec.workdir:
            path = self._replica_dir(instance_id)
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            return str(path)
        path = Path(spec.workdir).expanduser()
        if not path.is_absolute():
            base = Path(spec.source).parent if spec.source else Path(self._base_dir or ".")
            path = base / path
        if not path.is_dir():
            raise ConfigError(f"workdir: {path} is not a directory")
        return str(path)

    def _replica_dir(self, instance_id: str) -> Path:
        """Where a replica without a ``workdir`` runs; removed when it is terminated."""
        return self._state_dir / "work" / instance_id

    # ------------------------------------------------------------ exits and stops

    async def _wait_exit(
        self, instance_id: str, proc: ReplicaProcess, key: str | None = None
    ) -> None:
        """The head's (``key`` None) or a worker node's exit ends the replica."""
        code = await proc.wait()
        rec = self._store.records.get(instance_id)
        if rec is not None and rec.state == RUNNING and instance_id not in self._terminating:
            lost = local_nodes.lost_worker(rec, self._procs) if key else None
            self._mark_exited(rec, lost or f"process exited with code {code}")
        self._procs.pop(key or instance_id, None)
        self._waiters.pop(key or instance_id, None)

    def _mark_exited(self, rec: Record, detail: str) -> None:
        rec.state = FAILED
        rec.detail = detail
        self._store.save(rec)
        self._random_due.pop(rec.instance_id, None)
        self._emit(self._event(InstanceEventKind.EXITED, rec, self._clock.now(), detail))

    def _alive(self, rec: Record) -> bool:
        proc = self._procs.get(rec.instance_id)
        if proc is not None:
            return proc.returncode is None
        return pid_alive(rec.pid, rec.proc_start)

    def _check_exits(self) -> None:
        """Replicas we did not start ourselves (or whose waiter has not run yet)."""
        for rec in list(self._store.records.values()):
            if rec.state == RUNNING and rec.instance_id not in self._terminating:
                if rec.instance_id not in self._procs and not self._alive(rec):
                    self._mark_exited(rec, "process ended")
                elif rec.workers and (lost := local_nodes.lost_worker(rec, self._procs)):
                    self._mark_exited(rec, lost)

    async def _stop(self, rec: Record) -> None:
        proc = self._procs.get(rec.instance_id)
        local_nodes.signal_workers(rec, signal.SIGTERM)  # every node goes with the replica
        if rec.state == RUNNING and self._alive(rec):
            signal_group(rec.pgid, signal.SIGTERM)
            await self._wait_gone(rec, proc, TERM_GRACE_SECONDS)
        signal_group(rec.pgid, signal.SIGKILL)  # stragglers of the group too
        local_nodes.signal_workers(rec, signal.SIGKILL)
        await self._wait_gone(rec, proc, TERM_GRACE_SECONDS)
        await local_process.kill_escaped(rec.instance_id, str(self._state_dir))
        keys = [rec.instance_id]
        keys += [local_nodes.worker_key(rec.instance_id, int(w["rank"])) for w in rec.workers]
        for key in keys:
            waiter = self._waiters.pop(key, None)
            if waiter is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await waiter
            self._procs.pop(key, None)

    async def _wait_gone(self, rec: Record, proc: ReplicaProcess | None, limit: float) -> None:
        """Real-time bounded wait for the replica's process (and group) to end."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        if proc is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(proc.wait(), limit)
        while loop.time() < deadline:
            head_gone = not pid_alive(rec.pid, rec.proc_start) and not group_alive(rec.pgid)
            if head_gone and local_nodes.workers_gone(rec):
                return
            await asyncio.sleep(0.02)

    # ------------------------------------------------------------ preemption driver

    def _start_driver(self) -> None:
        if not self._store.read_only and (self._driver is None or self._driver.done()):
            self._driver = asyncio.create_task(self._drive(), name="local-provider-preemptions")
            self._log_caps.watch(r.log_path for r in self._store.records.values())

    async def _replan(self) -> None:
        """Wake the driver and wait until it has planned from the current state, so
        a FakeClock advanced right after a launch already sees the new deadlines."""
        self._start_driver()
        assert self._driver is not None
        planned: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._planned.append(planned)
        self._wakeup.set()
        await asyncio.wait({planned, self._driver}, return_when=asyncio.FIRST_COMPLETED)

    async def _drive(self) -> None:
        while True:
            self._wakeup.clear()
            now = self._clock.now()
            try:
                due = self._step(now)
            except Exception:  # a bug here must not stop preemptions for good
                logger.exception("local provider: preemption step failed")
                due = now + EXIT_POLL_SECONDS
            sleeper = asyncio.ensure_future(self._clock.sleep(due - now)) if due else None
            woken = asyncio.ensure_future(self._wakeup.wait())
            waiting = {woken} if sleeper is None else {woken, sleeper}
            await asyncio.sleep(0)  # let the sleeper register its deadline
            planned, self._planned = self._planned, []
            for fut in planned:
                if not fut.done():
                    fut.set_result(None)
            try:
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in waiting:
                    task.cancel()

    def _step(self, now: float) -> float | None:
        """Send due notices, kill due replicas; return when to look again."""
        self._check_exits()
        wake: list[float] = []
        for rec in list(self._store.records.values()):
            if not rec.spot or rec.state != RUNNING or rec.instance_id in self._terminating:
                continue
            if rec.interruption_at is not None:
                if rec.interruption_at <= now:
                    self._preempt(rec, now)
                else:
                    wake.append(rec.interruption_at)
                continue
            notice_at = self._notice_due(rec, now)
            if notice_at is None:
                continue
            if notice_at <= now:
                self._notify(rec, now)
                wake.append(rec.interruption_at or now)
            else:
                wake.append(notice_at)
        if any(
            r.state == RUNNING and r.instance_id not in self._procs
            for r in self._store.records.values()
        ):
            wake.append(now + EXIT_POLL_SECONDS)
        return min(wake) if wake else None

    def _notice_due(self, rec: Record, now: float) -> float | None:
        replay = self._replays.get(rec.service)
        if replay is None:
            return None  # adopted replica whose service has not been seen yet
        if rec.instance_id in self._random_due:
            return self._random_due[rec.instance_id]
        if replay.random_preemptions:
            due = replay.draw_preemption_at(now)
            if due is not None:
                self._random_due[rec.instance_id] = due
            return due
        zone = replay.zone(Location.parse(rec.location))
        return replay.next_unavailable_at(zone, now) if zone is not None else None

    def _notify(self, rec: Record, now: float) -> None:
        replay = self._replays[rec.service]
        rec.interruption_at = now + replay.options.notice_seconds
        self._store.save(rec)
        self._emit(self._event(InstanceEventKind.NOTICE, rec, rec.interruption_at))

    def _preempt(self, rec: Record, now: float) -> None:
        signal_group(rec.pgid, signal.SIGKILL)
        local_nodes.signal_workers(rec, signal.SIGKILL)  # the replica's every node
        rec.state = PREEMPTED
        replay = self._replays.get(rec.service)
        how = "random preemption" if replay and replay.random_preemptions else "trace replay"
        rec.detail = f"spot capacity reclaimed ({how})"
        self._store.save(rec)
        self._random_due.pop(rec.instance_id, None)
        self._emit(self._event(InstanceEventKind.PREEMPTED, rec, now))

    @staticmethod
    def _event(kind: InstanceEventKind, rec: Record, at: float, detail: str = "") -> InstanceEvent:
        loc = Location.parse(rec.location)
        return InstanceEvent(kind, rec.service, rec.replica_id, rec.instance_id, loc, at, detail)
