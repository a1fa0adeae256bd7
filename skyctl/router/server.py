"""The router of one service: an HTTP reverse proxy in the controller's event loop.

The controller owns one :class:`Router` per service::

    router = Router(service, section, clock=clock, on_backend_error=probe_now)
    port = await router.start(host, port)       # port None/0: a free port
    router.set_backends(backends)               # takes effect for the next request
    router.reconfigure(section)                 # on `serve update`
    router.request_rate(60.0); router.replica_stats()
    await router.stop(grace_seconds=10.0)

A request is matched to replicas by the policy in
``service.load_balancing_policy`` (ranking in :mod:`policies.routing`), sent
over one shared keep-alive client session, and its response streamed back
(:mod:`skyctl.router.upstream`); ``fan_out`` and ``hedge`` race copies
(:mod:`skyctl.router.race`). Paths under ``/-/skyctl/`` belong to the router
(``health``, ``metrics``); every other path goes to a replica.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from policies import routing
from skyctl.clock import Clock
from skyctl.router import metrics
from skyctl.router.headers import REQUEST_ID, request_id, upstream_headers
from skyctl.router.race import Race, RacePlan
from skyctl.router.stats import Attempt, RateWindow, ReplicaState, Reservoir
from skyctl.router.upstream import AttemptFailed, Upstream, json_response, relay
from skyctl.spec import ServiceSection
from skyctl.types import Backend

log = logging.getLogger(__name__)

LOCAL_PREFIX = "/-/skyctl/"
_NO_EXCLUSION: frozenset[int] = frozenset()
_UNREAD = object()  # the request body has not been looked at yet


class Router:
    """Reverse proxy for one service (see the module docstring)."""

    def __init__(
        self,
        service: str,
        section: ServiceSection,
        *,
        clock: Clock,
        on_backend_error: Callable[[int], None] | None = None,
    ) -> None:
        self.service = service
        self._clock = clock
        self._on_backend_error = on_backend_error
        self._section = section
        self._policy = routing.check_policy(section.load_balancing_policy)
        self._replicas: list[ReplicaState] = []
        self._states: dict[int, ReplicaState] = {}  # routable ones, and retired ones still busy
        self._cursor = 0
        self._rate = RateWindow()
        self._latency = Reservoir(512)  # time to headers over all replicas (hedge delay)
        self._p95: float | None = None
        self._p95_total = -1
        self._hedge_tokens = 0.0
        self._hedges = 0
        self._requests = 0
        self._active = 0
        self._idle: asyncio.Event | None = None
        self._upstream: Upstream | None = None
        self._race: Race | None = None
        self._runner: web.ServerRunner | None = None
        self._site: web.TCPSite | None = None
        self.registry = metrics.make_registry(
            metrics.RouterCollector(service, self.replica_stats, self._router_stats)
        )

    # ---- life cycle ---------------------------------------------------------------

    async def start(self, host: str, port: int | None) -> int:
        """Listen on ``host:port`` (None or 0: a free port) and return the bound port."""
        if self._runner is not None:
            raise RuntimeError(f"router for {self.service!r} already started")
        opts = self._section.router
        self._upstream = Upstream(
            connect_timeout=opts.connect_timeout_seconds,
            read_timeout=self._section.stream_timeout_seconds,
            on_backend_error=self._on_backend_error,
        )
        self._race = Race(self._upstream, self._clock, self._latency, self._try_hedge, self.service)
        self._idle = asyncio.Event()
        self._idle.set()
        server = web.Server(self._handle, handler_cancellation=True, access_log=None)
        self._runner = web.ServerRunner(server, shutdown_timeout=0.5)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, host, port or 0)
        try:
            await self._site.start()
        except BaseException:
            await self._runner.cleanup()
            await self._upstream.close()
            self._runner = self._site = self._upstream = None
            raise
        return self.port

    @property
    def port(self) -> int:
        if self._site is None or self._site._server is None:
            raise RuntimeError(f"router for {self.service!r} is not listening")
        sockets: list[Any] = list(getattr(self._site._server, "sockets", None) or ())
        return int(sockets[0].getsockname()[1])

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Stop accepting, let in-flight requests finish within the grace, close everything."""
        if self._runner is None:
            return
        runner, site, upstream = self._runner, self._site, self._upstream
        self._runner = self._site = None
        if site is not None:
            await site.stop()  # close the listening socket; open connections stay
        if self._idle is not None and grace_seconds > 0:
            try:
                await asyncio.wait_for(self._idle.wait(), grace_seconds)
            except TimeoutError:
                log.warning("router %s: %d requests cut at stop", self.service, self._active)
        await runner.cleanup()  # closes idle keep-alive connections, cancels what is left
        if upstream is not None:
            await upstream.close()
        self._upstream = None
        self._race = None

    # ---- control ------------------------------------------------------------------

    def set_backends(self, backends: Sequence[Backend]) -> None:
        """Replace the routable replicas; the very next request uses the new set."""
        replicas: list[ReplicaState] = []
        seen: set[int] = set()
        for backend in backends:
            if backend.replica_id in seen:
                continue
            seen.add(backend.replica_id)
            state = self._states.get(backend.replica_id)
            if state is None:
                state = ReplicaState(backend)
                self._states[backend.replica_id] = state
            else:
                state.backend = backend
                state.url = backend.url.rstrip("/")
            replicas.append(state)
        self._replicas = replicas
        self._set_target_qps()
        self._prune()

    def reconfigure(self, section: ServiceSection) -> None:
        """Apply a new service section (``serve update``) to the next requests."""
        self._policy = routing.check_policy(section.load_balancing_policy)
        self._section = section
        self._set_target_qps()
        if self._upstream is not None:
            self._upstream.set_timeouts(
                connect_timeout=section.router.connect_timeout_seconds,
                read_timeout=section.stream_timeout_seconds,
            )

    def request_rate(self, window_seconds: float = 60.0) -> float:
        """Client requests per second over the last ``window_seconds`` of the clock."""
        return self._rate.rate(self._clock.now(), window_seconds)

    def replica_stats(self) -> dict[int, dict[str, float]]:
        """Per replica id: requests, wins, cancelled, errors, in_flight, latency_p50_ms/p99_ms."""
        self._prune()
        return {rid: state.snapshot() for rid, state in sorted(self._states.items())}

    def _router_stats(self) -> dict[str, float]:
        return {
            "requests": float(self._requests),
            "hedges": float(self._hedges),
            "request_rate": self.request_rate(60.0),
            "ready_replicas": float(len(self._replicas)),
        }

    def _set_target_qps(self) -> None:
        qps = self._section.replica_policy.target_qps_per_replica
        for state in self._replicas:
            state.target_qps = routing.target_qps(state.backend.accelerators, qps)

    def _prune(self) -> None:
        current = {state.replica_id for state in self._replicas}
        for rid in [r for r, s in self._states.items() if r not in current and s.in_flight == 0]:
            del self._states[rid]

    # ---- request path ---------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.path.startswith(LOCAL_PREFIX):
            return self._local(request)
        self._requests += 1
        self._rate.record(self._clock.now())
        self._active += 1
        if self._idle is not None:
            self._idle.clear()
        try:
            return await self._proxy(request)
        finally:
            self._active -= 1
            if self._active == 0 and self._idle is not None:
                self._idle.set()

    async def _proxy(self, request: web.BaseRequest) -> web.StreamResponse:
        rid = request_id(request.headers.get(REQUEST_ID))
        replicas = self._replicas
        if not replicas:
            return json_response(503, {"error": "no ready replicas", "service": self.service}, rid)
        opts = self._section.router
        body: object = _UNREAD
        if (
            self._policy in (routing.FAN_OUT, routing.HEDGE)
            and len(replicas) > 1
            and request.method in opts.fan_out_methods
        ):
            body = await self._replay_body(request)
            if isinstance(body, bytes):
                return await self._fan_out(request, rid, replicas, body)
        return await self._forward(request, rid, replicas, body)

    async def _replay_body(self, request: web.BaseRequest) -> bytes | None:
        """The whole request body when it fits the replay buffer; None to stream it once."""
        if not request.body_exists:
            return b""
        length = request.content_length
        if length is None or length > self._section.router.max_buffer_bytes:
            return None
        return await request.content.readexactly(length)

    def _headers(self, request: web.BaseRequest, rid: str) -> CIMultiDict[str]:
        return upstream_headers(
            request.headers,
            rid=rid,
            client_ip=request.remote,
            scheme=request.scheme,
            host=request.headers.get("Host"),
        )

    def _pick(self, replicas: list[ReplicaState], excluded: frozenset[int]) -> int:
        policy = self._policy
        if policy == routing.ROUND_ROBIN:
            index = routing.pick_round_robin(len(replicas), self._cursor, excluded)
        elif policy == routing.INSTANCE_AWARE_LEAST_LOAD:
            loads = [r.in_flight / r.target_qps for r in replicas]
            index = routing.pick_least_load(loads, self._cursor, excluded)
        else:
            loads = [float(r.in_flight) for r in replicas]
            index = routing.pick_least_load(loads, self._cursor, excluded)
        self._cursor = index + 1
        return index

    async def _forward(
        self, request: web.BaseRequest, rid: str, replicas: list[ReplicaState], body: object
    ) -> web.StreamResponse:
        """One replica at a time; on a connection error, the next untried one."""
        upstream = self._upstream
        assert upstream is not None
        opts = self._section.router
        if body is _UNREAD:
            body = await self._replay_body(request)
        data: object = request.content if body is None else (body or None)
        tries = 1 + opts.retries if body is not None else 1
        headers = self._headers(request, rid)
        excluded = _NO_EXCLUSION
        last: AttemptFailed | None = None
        for _ in range(tries):
            index = self._pick(replicas, excluded)
            if index < 0:
                break
            excluded = excluded | {index}
            replica = replicas[index]
            attempt = Attempt(replica)
            try:
                started = self._clock.now()
                try:
                    resp = await upstream.open(
                        replica,
                        request.method,
                        request.raw_path,
                        headers,
                        data,
                        opts.request_timeout_seconds,
                    )
                except AttemptFailed as exc:
                    replica.errors += 1
                    if exc.kind == "timeout":
                        return json_response(
                            504,
                            {"error": "replica did not answer in time", "service": self.service},
                            rid,
                        )
                    last = exc
                    continue
                elapsed = self._clock.now() - started
                replica.latency.add(elapsed)
                self._latency.add(elapsed)
                if resp.status >= 500:
                    replica.errors += 1
                else:
                    replica.wins += 1
                return await relay(request, resp, rid, partial(self._broken, replica))
            finally:
                attempt.release()
        detail = last.detail if last is not None else "no replica to try"
        return json_response(
            502,
            {
                "error": f"all {len(excluded)} tried replicas failed",
                "service": self.service,
                "detail": detail,
            },
            rid,
        )

    def _broken(self, replica: ReplicaState) -> None:
        replica.errors += 1
        if self._upstream is not None:
            self._upstream.report(replica.replica_id)

    async def _fan_out(
        self, request: web.BaseRequest, rid: str, replicas: list[ReplicaState], body: bytes
    ) -> web.StreamResponse:
        race = self._race
        assert race is not None
        opts = self._section.router
        locations = [r.backend.location for r in replicas]
        loads = [float(r.in_flight) for r in replicas]
        order = routing.pick_diverse(locations, loads, len(replicas), self._cursor)
        self._cursor += 1
        ranked = [replicas[i] for i in order]
        if self._policy == routing.FAN_OUT:
            k = max(1, min(opts.fan_out, len(ranked)))
            plan = RacePlan(
                first=ranked[:k],
                spares=ranked[k:],
                retries=opts.retries,
                deadline=opts.request_timeout_seconds,
            )
        else:
            self._hedge_tokens = routing.earn_hedge_tokens(self._hedge_tokens, opts.hedge_budget)
            plan = RacePlan(
                first=ranked[:1],
                spares=ranked[1:],
                hedge_delay=self._hedge_delay(),
                retries=opts.retries,
                deadline=opts.request_timeout_seconds,
            )
        headers = self._headers(request, rid)
        return await race.run(request, rid, plan, headers, body)

    def _hedge_delay(self) -> float | None:
        fixed = self._section.router.hedge_delay_seconds
        if fixed is not None:
            return routing.hedge_delay(fixed, ())
        # the P95 is recomputed every 16 new samples, not on every request
        if self._p95 is None or self._latency.total - self._p95_total >= 16:
            self._p95 = routing.hedge_delay(None, self._latency.values())
            self._p95_total = self._latency.total
        return self._p95

    def _try_hedge(self) -> bool:
        allowed, self._hedge_tokens = routing.spend_hedge_token(self._hedge_tokens)
        if allowed:
            self._hedges += 1
        return allowed

    # ---- router-local endpoints -------------------------------------------------------

    def _local(self, request: web.BaseRequest) -> web.StreamResponse:
        rid = request_id(request.headers.get(REQUEST_ID))
        name = request.path[len(LOCAL_PREFIX) :]
        if name == "health":
            body = {
                "service": self.service,
                "status": "ok" if self._replicas else "no_replicas",
                "ready_replicas": len(self._replicas),
                "policy": self._policy,
                "request_rate": round(self.request_rate(60.0), 3),
            }
            return web.Response(
                text=json.dumps(body), content_type="application/json", headers={REQUEST_ID: rid}
            )
        if name == "metrics":
            return web.Response(
                body=metrics.render(self.registry),
                headers={"Content-Type": metrics.CONTENT_TYPE, REQUEST_ID: rid},
            )
        return json_response(
            404,
            {"error": f"unknown router path {request.path!r}; known: health, metrics"},
            rid,
        )
