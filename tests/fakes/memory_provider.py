"""An in-process provider for controller tests: each instance is a tiny aiohttp
server in the test's own event loop, so probes and routing are real HTTP.

Faults are injected by the test: ``preempt(replica_id)`` (push event + state
PREEMPTED, server closed), ``capacity_out(location)``, ``fail_next_launch``,
``set_health(replica_id, ok)``; ``exit_code`` makes every new instance's run
command exit at once (state FAILED, its log in ``log_dir``), ``born_unhealthy``
makes every new instance fail its probes.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from aiohttp import web

from providers.base import LaunchRequest, Provider
from skyctl.clock import Clock
from skyctl.errors import CapacityError, TransientError
from skyctl.spec import ServiceSpec
from skyctl.types import (
    Instance,
    InstanceEvent,
    InstanceEventKind,
    InstanceState,
    Location,
    Offering,
)

ZONES = (
    Location("local", "r1", "r1-a"),
    Location("local", "r1", "r1-b"),
    Location("local", "r2", "r2-a"),
)
SPOT_PRICES = {ZONES[0]: 1.0, ZONES[1]: 1.1, ZONES[2]: 1.2}
ONDEMAND_PRICE = 3.0


@dataclass
class _Running:
    instance: Instance
    runner: web.AppRunner | None
    healthy: bool = True
    hits: int = 0


@dataclass
class MemoryProvider(Provider):
    clock: Clock
    name: str = "local"
    instances: dict[str, _Running] = field(default_factory=dict)
    by_token: dict[str, str] = field(default_factory=dict)
    out_of_capacity: set[Location] = field(default_factory=set)
    transient_launch_errors: int = 0
    sick: set[Location] = field(default_factory=set)  # launches there fail with 503s
    launches: int = 0
    terminations: list[str] = field(default_factory=list)
    exit_code: int | None = None  # new instances exit at once with this code
    born_unhealthy: bool = False  # new instances never pass a probe
    log_dir: str | None = None  # where exited instances leave a log
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    async def offerings(self, spec: ServiceSpec) -> Sequence[Offering]:
        out = [Offering(z, False, ONDEMAND_PRICE, "mem.large") for z in ZONES]
        if spec.use_spot:
            out += [Offering(z, True, SPOT_PRICES[z], "mem.large") for z in ZONES]
        return out

    async def launch(self, request: LaunchRequest) -> Instance:
        if request.client_token in self.by_token:
            return self.instances[self.by_token[request.client_token]].instance
        if self.transient_launch_errors:
            self.transient_launch_errors -= 1
            raise TransientError("simulated 503")
        loc = request.offering.location
        if loc in self.sick:
            raise TransientError(f"503 from {loc}")
        if request.offering.spot and loc in self.out_of_capacity:
            raise CapacityError(f"no spot capacity in {loc}", location=str(loc))
        self.launches += 1
        iid = f"i-{next(self._ids)}"
        if self.exit_code is not None:
            return self._exited(request, iid, self.exit_code)
        running = _Running(instance=None, runner=None, healthy=not self.born_unhealthy)  # type: ignore[arg-type]

        async def handle(req: web.Request) -> web.StreamResponse:
            running.hits += 1
            if not running.healthy:
                return web.Response(status=503, text="unhealthy")
            if req.path == "/stream":  # ?n=N: N lines, one per second of the clock
                stream = web.StreamResponse()
                await stream.prepare(req)
                for i in range(int(req.query.get("n", "1"))):
                    await self.clock.sleep(1.0)
                    await stream.write(b"%d\n" % i)
                await stream.write_eof()
                return stream
            return web.json_response({"replica": request.replica_id, "version": request.version})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app, shutdown_timeout=0.05)  # a terminated VM cuts its streams
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        running.runner = runner
        running.instance = Instance(
            instance_id=iid,
            service=request.service,
            replica_id=request.replica_id,
            version=request.version,
            location=loc,
            spot=request.offering.spot,
            state=InstanceState.RUNNING,
            endpoint=f"http://127.0.0.1:{port}",
            price=request.offering.price,
            created_at=self.clock.now(),
        )
        self.instances[iid] = running
        self.by_token[request.client_token] = iid
        return running.instance

    def _exited(self, request: LaunchRequest, iid: str, code: int) -> Instance:
        if self.log_dir is not None:
            with open(self.log_path(iid) or "", "w") as f:
                f.write(f"starting replica {request.replica_id}\nboom: bad config\n")
        inst = Instance(
            instance_id=iid,
            service=request.service,
            replica_id=request.replica_id,
            version=request.version,
            location=request.offering.location,
            spot=request.offering.spot,
            state=InstanceState.FAILED,
            price=request.offering.price,
            created_at=self.clock.now(),
            detail=f"process exited with code {code}",
        )
        self.instances[iid] = _Running(instance=inst, runner=None)
        self.by_token[request.client_token] = iid
        return inst

    def log_path(self, instance_id: str) -> str | None:
        return f"{self.log_dir}/{instance_id}.log" if self.log_dir else None

    async def terminate(self, instance_id: str) -> None:
        self.terminations.append(instance_id)
        running = self.instances.pop(instance_id, None)
        if running is not None and running.runner is not None:
            await running.runner.cleanup()

    async def list_instances(self, service: str) -> Sequence[Instance]:
        return [r.instance for r in self.instances.values() if r.instance.service == service]

    async def list_services(self) -> Sequence[str]:
        return sorted({r.instance.service for r in self.instances.values()})

    # ------------------------------------------------------------- injection
    def running(self, service: str) -> list[Instance]:
        return [
            r.instance
            for r in self.instances.values()
            if r.instance.service == service and r.instance.state is InstanceState.RUNNING
        ]

    def find(self, service: str, replica_id: int) -> _Running:
        for r in self.instances.values():
            if r.instance.service == service and r.instance.replica_id == replica_id:
                return r
        raise KeyError(replica_id)

    async def preempt(self, service: str, replica_id: int) -> None:
        r = self.find(service, replica_id)
        if r.runner is not None:
            await r.runner.cleanup()
            r.runner = None
        r.instance = replace(r.instance, state=InstanceState.PREEMPTED)
        self._emit(
            InstanceEvent(
                InstanceEventKind.PREEMPTED,
                service,
                replica_id,
                r.instance.instance_id,
                r.instance.location,
                self.clock.now(),
            )
        )

    def notice(self, service: str, replica_id: int, at: float) -> None:
        r = self.find(service, replica_id)
        r.instance = replace(r.instance, interruption_at=at)
        self._emit(
            InstanceEvent(
                InstanceEventKind.NOTICE,
                service,
                replica_id,
                r.instance.instance_id,
                r.instance.location,
                at,
            )
        )

    async def close(self) -> None:
        for r in self.instances.values():
            if r.runner is not None:
                await r.runner.cleanup()
                r.runner = None
