"""The router of one service: an HTTP reverse proxy in the router process's loop.

The router process (or a foreground controller) owns one :class:`Router` per service::

    router = Router(service, section, clock=clock, on_backend_error=probe_now,
                    secrets=spec.secrets)       # the values service.auth names
    port = await router.start(host, port)       # port None/0: a free port
    router.set_backends(backends)               # takes effect for the next request
    router.reconfigure(section, spec.secrets)   # on `serve update`
    router.request_rate(60.0); router.replica_stats()
    await router.stop(grace_seconds=10.0)

Requests arrive through our own HTTP/1.1 server (:mod:`skyctl.router.front`), are
matched to replicas by the policy in ``service.load_balancing_policy`` (ranking in
:mod:`policies.routing`), sent over keep-alive connections of our own client
(:mod:`skyctl.router.client`) and their responses streamed back
(:mod:`skyctl.router.upstream`); ``fan_out`` and ``hedge`` race copies
(:mod:`skyctl.router.race`). Paths under ``/-/skyctl/`` belong to the router
(``health``, ``metrics``), and so does ``service.router.metrics_path`` (``/metrics``
unless set to another path or null); every other path goes to a replica.

With ``service.auth`` every request but ``/-/skyctl/health`` needs a ``Bearer`` key
(:mod:`skyctl.router.auth`), else 401; with ``service.tls`` the endpoint speaks HTTPS
only (TLS 1.2 or later). Limits and timeouts for hostile clients come from
``service.router`` (see :mod:`skyctl.router.front`).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from policies import routing
from skyctl.clock import Clock
from skyctl.router import local, metrics, security, tunnel
from skyctl.router.affinity import for_policy
from skyctl.router.affinity_metrics import AffinityCollector
from skyctl.router.exchange import Call, Context, Exchange
from skyctl.router.forward import Forward
from skyctl.router.front import Connection, Request
from skyctl.router.headers import MAX_REQUEST_ID_LENGTH, new_request_id, request_id, upstream_lines
from skyctl.router.health import Health
from skyctl.router.hedging import Hedging
from skyctl.router.http1 import BodyStream
from skyctl.router.listener import FrontServer
from skyctl.router.race import Race, RacePlan, plan_race
from skyctl.router.stats import Histogram, RateWindow, ReplicaState, Reservoir
from skyctl.router.upstream import Upstream
from skyctl.spec import ServiceSection
from skyctl.types import Backend

log = logging.getLogger(__name__)

LOCAL_PREFIX = "/-/skyctl/"
_LOCAL_PREFIX: Final = LOCAL_PREFIX.encode()
_HEALTH: Final = _LOCAL_PREFIX + b"health"  # open to health checkers even with service.auth
_RACING: Final = frozenset((routing.FAN_OUT, routing.HEDGE))


def _metrics_path(section: ServiceSection) -> bytes | None:
    path = section.router.metrics_path
    return None if path is None else path.encode("ascii")


class Router:
    """Reverse proxy for one service (see the module docstring)."""

    def __init__(
        self,
        service: str,
        section: ServiceSection,
        *,
        clock: Clock,
        on_backend_error: Callable[[int, str], None] | None = None,
        secrets: Mapping[str, str] | None = None,
    ) -> None:
        """``secrets``: the spec's ``secrets:`` values (the keys ``service.auth`` names)."""
        self.service = service
        self._clock = clock
        self._on_backend_error = on_backend_error
        self._section = section
        self._policy = routing.check_policy(section.load_balancing_policy)
        self._affinity = for_policy(None, self._policy, section.router.cache_aware, clock)
        self._metrics_path = _metrics_path(section)
        # what a target the router may answer itself starts with (one C call per request)
        self._own_prefixes = (_LOCAL_PREFIX, self._metrics_path or _LOCAL_PREFIX)
        self._replicas: list[ReplicaState] = []
        self._have_replicas = asyncio.Event()  # set while ``_replicas`` is not empty
        self._waiting = 0  # requests waiting for a first ready replica (bounded)
        self._states: dict[int, ReplicaState] = {}  # routable ones, and retired ones still busy
        self._cursor = 0
        self._rate = RateWindow()
        self._latency = Reservoir(512)  # time to headers over all replicas (hedge delay)
        self._hedging = Hedging(self._latency)
        self._requests = 0
        self._active = 0
        self._idle: asyncio.Event | None = None  # while stop() waits for the active ones
        self._upstream: Upstream | None = None
        self._ctx: Context | None = None
        self._front: FrontServer | None = None
        self._port = 0
        self._secrets: Mapping[str, str] = dict(secrets or {})
        self._auth = security.load_api_keys(service, section.auth, self._secrets)
        self._tls: ssl.SSLContext | None = None
        self._unauthorized = 0
        self._health = Health(service, clock, on_backend_error)
        self._first_byte = Histogram()
        self._duration = Histogram()
        self._ejected = self._health.ejected  # non-empty: filter the ready replicas
        self.registry = metrics.make_registry(
            metrics.RouterCollector(
                service,
                self.replica_stats,
                self._router_stats,
                {"time_to_first_byte": self._first_byte, "request_duration": self._duration},
            )
        )
        self.registry.register(AffinityCollector(service, lambda: self._affinity))

    # ---- life cycle ---------------------------------------------------------------

    async def start(self, host: str, port: int | None) -> int:
        """Listen on ``host:port`` (None or 0: a free port) and return the bound port."""
        if self._front is not None:
            raise RuntimeError(f"router for {self.service!r} already started")
        opts = self._section.router
        tls = self._section.tls
        self._tls = None if tls is None else security.server_context(tls)
        replica_ssl = security.replica_context(opts.replica_ca_file)
        self._upstream = Upstream(
            connect_timeout=opts.connect_timeout_seconds,
            read_timeout=self._section.stream_timeout_seconds,
            on_backend_error=self._on_backend_error,
            ssl_context=replica_ssl,
        )
        self._ctx = Context(
            self._upstream,
            self._clock,
            self._latency,
            self.service,
            asyncio.get_running_loop(),
            self._leave,
            self._first_byte,
            self._duration,
            self._health,
        )
        front = FrontServer(self._handle, ssl_context=self._tls, fast=self._fast)
        # one batch for the writes to replicas and to clients: a race decided at the
        # end of an iteration answers its client in that iteration's burst
        front.batch = self._upstream.pool.batch
        security.apply_limits(front, opts, self._section.stream_timeout_seconds)
        try:
            self._port = await front.start(host, port or 0)
        except BaseException:
            await self._upstream.close()
            self._upstream = self._ctx = None
            raise
        self._front = front
        self._upstream.pool.retain({s.origin for s in self._replicas})
        if self._affinity is not None:
            self._affinity.start_polling(self._poll_targets, replica_ssl)
        return self._port

    def _poll_targets(self) -> list[tuple[int, str]]:
        return [(r.replica_id, r.url) for r in self._replicas]

    @property
    def port(self) -> int:
        if self._front is None or not self._front.listening:
            raise RuntimeError(f"router for {self.service!r} is not listening")
        return self._port

    @property
    def scheme(self) -> str:
        """``https`` when the endpoint serves TLS (``service.tls``), else ``http``."""
        if self._front is not None:
            return "https" if self._tls is not None else "http"
        return "https" if self._section.tls is not None else "http"

    @property
    def listening(self) -> bool:
        """Accepting new connections (false from the start of :meth:`stop`)."""
        return self._front is not None and self._front.listening

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Stop accepting, let in-flight requests finish within the grace, close everything."""
        front, upstream = self._front, self._upstream
        if front is None:
            return
        front.stop_accepting()  # idle keep-alive connections close now, busy ones after
        await self._health.stop_checks()  # no client waits for a check
        if self._active and grace_seconds > 0:
            self._idle = asyncio.Event()  # set by _leave (none to set per request while serving)
            try:
                await asyncio.wait_for(self._idle.wait(), grace_seconds)
            except TimeoutError:
                log.warning("router %s: %d requests cut at stop", self.service, self._active)
            finally:
                self._idle = None
        await front.close()  # cancels what is left
        self._front = None
        if self._affinity is not None:
            await self._affinity.stop_polling()
        if upstream is not None:
            await upstream.close()
        self._upstream = None
        self._ctx = None

    # ---- control ------------------------------------------------------------------

    def set_backends(self, backends: Sequence[Backend]) -> None:
        """Replace the routable replicas; the very next request uses the new set."""
        replicas: list[ReplicaState] = []
        seen: set[int] = set()
        if self._affinity is not None:  # a replica that left takes only its prefixes
            self._affinity.forget(
                {r.replica_id for r in self._replicas} - {b.replica_id for b in backends}
            )
        for backend in backends:
            if backend.replica_id in seen:
                continue
            seen.add(backend.replica_id)
            state = self._states.get(backend.replica_id)
            try:
                if state is None:
                    state = ReplicaState(backend)
                    state.on_outlier = self._health.eject
                    self._states[backend.replica_id] = state
                elif state.backend.url != backend.url:
                    fresh = ReplicaState(backend)  # parse first: a bad URL changes nothing
                    state.origin, state.url = fresh.origin, fresh.url
                state.backend = backend
            except ValueError as exc:
                log.error(
                    "router %s: replica %d skipped: %s", self.service, backend.replica_id, exc
                )
                continue
            replicas.append(state)
        self._replicas = replicas
        self._health.routable_count = len(replicas)
        self._health.forget({s.replica_id for s in replicas})
        if replicas:
            self._have_replicas.set()
        else:
            self._have_replicas.clear()
        self._set_target_qps()
        self._prune()
        if self._upstream is not None:
            self._upstream.pool.retain({s.origin for s in replicas})

    def reconfigure(
        self, section: ServiceSection, secrets: Mapping[str, str] | None = None
    ) -> None:
        """Apply a new service section (``serve update``) to the next requests; ``secrets``:
        the new spec's secret values (None: keep them). New TLS files serve the next
        handshakes; turning TLS on or off needs a router restart (the controller's), logged."""
        self._policy = routing.check_policy(section.load_balancing_policy)
        targets = self._poll_targets if self._front is not None else None
        options = section.router.cache_aware
        upstream = self._upstream  # its context verifies https replicas: the polls' too
        replica_ssl = upstream.pool.replica_ssl() if upstream is not None else None
        self._affinity = for_policy(
            self._affinity, self._policy, options, self._clock, targets, replica_ssl
        )
        self._metrics_path = _metrics_path(section)
        # what a target the router may answer itself starts with (one C call per request)
        self._own_prefixes = (_LOCAL_PREFIX, self._metrics_path or _LOCAL_PREFIX)
        if secrets is not None:
            self._secrets = dict(secrets)
        self._auth = security.load_api_keys(self.service, section.auth, self._secrets)
        self._section = section
        self._set_target_qps()
        if self._front is not None:
            security.reload_tls(self.service, self._tls, section.tls)
            security.apply_limits(self._front, section.router, section.stream_timeout_seconds)
        if self._upstream is not None:
            self._upstream.set_timeouts(
                connect_timeout=section.router.connect_timeout_seconds,
                read_timeout=section.stream_timeout_seconds,
            )

    def request_rate(self, window_seconds: float = 60.0) -> float:
        """Client requests per second over the last ``window_seconds`` of the clock."""
        return self._rate.rate(self._clock.now(), window_seconds)

    def ejected(self) -> dict[int, float]:
        """Replicas out of routing by passive health: id -> until (clock time)."""
        return self._health.ejected_until(self._replicas)

    def replica_stats(self) -> dict[int, dict[str, float]]:
        """Per replica id: requests, wins, cancelled, errors, in_flight, latency_p50_ms/p99_ms."""
        self._prune()
        return {rid: state.snapshot() for rid, state in sorted(self._states.items())}

    def _router_stats(self) -> dict[str, float]:
        return {
            "requests": float(self._requests),
            "hedges": float(self._hedging.sent),
            "ready_replicas": float(len(self._replicas)),
            "ejections": float(self._health.ejections),
            "unauthorized": float(self._unauthorized),
            "upstream_connections": float(self._upstream.pool.connects if self._upstream else 0),
        }

    def _set_target_qps(self) -> None:
        qps = self._section.replica_policy.target_qps_per_replica
        for state in self._replicas:
            state.target_qps = routing.target_qps(state.backend.accelerators, qps)

    def _prune(self) -> None:
        current = {state.replica_id for state in self._replicas}
        for rid in [r for r, s in self._states.items() if r not in current and s.in_flight == 0]:
            del self._states[rid]
        kept = set(self._states)
        self._first_byte.forget(kept)
        self._duration.forget(kept)

    # ---- request path ---------------------------------------------------------------

    def _fast(self, request: Request, out: Connection) -> Exchange | None:
        """The front's fast hook: the exchange for a request that needs no waiting
        (replicas ready, body absent or whole within the replay buffer), else None
        and :meth:`_handle` runs in a task."""
        head = request.head
        auth = self._auth
        target = head.target
        if (auth is not None and not auth.check(head.authorization)) or (
            target.startswith(self._own_prefixes) and self._own(target)
        ):
            return None
        if head.upgrade:
            return None  # a tunnel: in a task
        replicas = self._replicas if not self._ejected else self._health.routable(self._replicas)
        ctx = self._ctx
        if not replicas or ctx is None:
            return None
        data = request.whole  # a body that came whole with its head (front.py)
        if data is not None:
            if len(data) > self._section.router.max_buffer_bytes:
                return None  # streamed once, in a task
        elif request.body is None:
            data = b""
        else:
            body = request.body
            if not (
                body.complete
                and head.content_length is not None
                and head.content_length <= self._section.router.max_buffer_bytes
            ):
                return None
            data = body.take()
        # self._enter, inline (the hot path)
        self._requests += 1
        self._rate.record(self._clock.now())
        self._active += 1
        if self._active == 1 and self._idle is not None:
            self._idle.clear()
        # (headers.request_id, inline: a parsed value holds no control byte but HTAB)
        rid = head.request_id
        if not rid or len(rid) > MAX_REQUEST_ID_LENGTH or not rid.isascii() or rid.count(9):
            rid = new_request_id()
        if self._affinity is not None or self._policy in _RACING:
            return self._exchange(request, out, rid, replicas, data)
        # one replica at a time (self._exchange, self._lines and self._forward, inline)
        opts = self._section.router
        lines = upstream_lines(
            head,
            rid=rid,
            client_ip=request.remote,
            scheme=b"http" if self._tls is None else b"https",
            drop_authorization=auth is not None and not auth.forward,
        )
        length = len(data) if head.content_length is not None or head.chunked else None
        tries, timeout, pick = 1 + opts.retries, opts.request_timeout_seconds, self._pick
        return Forward(ctx, out, request, rid, lines, replicas, pick, data, length, tries, timeout)

    async def _handle(self, request: Request, out: Connection) -> None:
        auth = self._auth
        if auth is not None and not auth.check(request.head.authorization):
            if request.head.target != _HEALTH:
                self._deny(request, out)
                return
        if self._own(request.head.target):
            self._local(request, out)
            return
        if request.head.upgrade:
            await self._tunnel(request, out)
            return
        self._enter()
        exchange: Exchange | None = None
        try:
            exchange = await self._prepare(request, out)
        finally:
            if exchange is None:
                self._leave()
        if exchange is not None:
            await exchange.wait()

    async def _tunnel(self, request: Request, out: Connection) -> None:
        """WebSocket or another Upgrade: one replica (never raced), the least loaded
        by the policy, then a byte tunnel (:mod:`skyctl.router.tunnel`)."""
        rid = request_id(request.head.request_id)
        replicas = self._health.routable(self._replicas or await self._wait_for_replica())
        upstream = self._upstream
        if not replicas or upstream is None:
            out.send_json(503, {"error": "no ready replicas", "service": self.service}, rid)
            return
        replica, opts = replicas[self._pick(replicas, frozenset())], self._section.router
        self._enter()
        try:
            lines = self._lines(request, rid)
            await tunnel.tunnel(request, out, replica, lines, opts, upstream.pool.replica_ssl, rid)
        finally:
            self._leave()

    def _enter(self) -> None:
        self._requests += 1
        self._rate.record(self._clock.now())
        self._active += 1
        if self._active == 1 and self._idle is not None:
            self._idle.clear()

    def _leave(self) -> None:
        self._active -= 1
        if self._active == 0 and self._idle is not None:
            self._idle.set()

    async def _wait_for_replica(self) -> list[ReplicaState]:
        """No replica is ready: wait a bounded time (and in bounded numbers) for one,
        so a moment with every replica gone (a preemption burst, a restart) delays
        requests instead of failing them."""
        opts = self._section.router
        if opts.wait_for_replica_seconds <= 0 or self._waiting >= opts.max_waiting_requests:
            return []
        self._waiting += 1
        try:
            await asyncio.wait_for(self._have_replicas.wait(), opts.wait_for_replica_seconds)
        except TimeoutError:
            return []
        finally:
            self._waiting -= 1
        return self._replicas

    async def _prepare(self, request: Request, out: Connection) -> Exchange | None:
        """Wait for what a request needs (a ready replica, its body); None once answered."""
        rid = request_id(request.head.request_id)
        started = self._clock.now()
        replicas = self._replicas or await self._wait_for_replica()
        if self._ejected:
            replicas = self._health.routable(replicas)
        if not replicas or self._ctx is None:
            out.send_json(503, {"error": "no ready replicas", "service": self.service}, rid)
            elapsed = self._clock.now() - started
            self._first_byte.observe(-1, 503, elapsed)
            self._duration.observe(-1, 503, elapsed)
            return None
        body = await self._replay_body(request)
        return self._exchange(request, out, rid, replicas, body)

    def _exchange(
        self,
        request: Request,
        out: Connection,
        rid: bytes,
        replicas: list[ReplicaState],
        body: bytes | None,
    ) -> Exchange:
        """A race for fan-out and hedging, else one replica at a time.

        ``body``: the whole request body (b"" without one), or None when it is
        too large to keep for replays: it then streams to one replica, untried
        elsewhere.
        """
        ctx = self._ctx
        assert ctx is not None
        opts = self._section.router
        lines = self._lines(request, rid)
        if self._affinity is not None:  # cache_aware: races keep the prefix's order
            route = self._affinity.route(request, replicas, body, opts)
            if route.ranked is not None and body is not None:
                plan = self._race_plan(replicas, route.ranked, opts.cache_aware.race)
                ex = Race(
                    Call(ctx, out, request, rid, lines),
                    plan=plan,
                    body=body,
                    try_hedge=self._hedging.try_hedge,
                    on_send=route.sent,
                    on_fail=route.copy_failed,
                )
                return route.bind(ex)
            forward = self._forward(ctx, out, request, rid, lines, replicas, body, route.pick)
            return route.bind(forward)
        if (
            body is not None
            and self._policy in _RACING
            and len(replicas) > 1
            and request.method in opts.fan_out_methods
        ):
            plan = self._race_plan(replicas)
            call = Call(ctx, out, request, rid, lines)
            return Race(call, plan=plan, body=body, try_hedge=self._hedging.try_hedge)
        return self._forward(ctx, out, request, rid, lines, replicas, body, self._pick)

    def _forward(
        self,
        ctx: Context,
        out: Connection,
        request: Request,
        rid: bytes,
        lines: bytes,
        replicas: list[ReplicaState],
        body: bytes | None,
        pick: Callable[[Sequence[ReplicaState], frozenset[int]], int],
    ) -> Exchange:
        opts = self._section.router
        head = request.head
        data: bytes | BodyStream | None
        if body is not None:
            data, tries = body, 1 + opts.retries
            declared = head.content_length is not None or head.chunked
            length = len(body) if declared else None
        else:  # streamed once, to one replica
            data, tries, length = request.body, 1, head.content_length
        # positional: keywords to a class call cost a dict per request
        timeout = opts.request_timeout_seconds
        return Forward(ctx, out, request, rid, lines, replicas, pick, data, length, tries, timeout)

    async def _replay_body(self, request: Request) -> bytes | None:
        """The whole request body when it fits the replay buffer; None to stream it once."""
        if request.body is None:
            return b""
        length = request.head.content_length
        if length is None or length > self._section.router.max_buffer_bytes:
            return None
        return await request.body.read_all()

    def _deny(self, request: Request, out: Connection) -> None:
        self._unauthorized += 1
        rid = request_id(request.head.request_id)
        security.unauthorized(out, rid, self.service, request.head.authorization is not None)

    def _lines(self, request: Request, rid: bytes) -> bytes:
        auth = self._auth
        return upstream_lines(
            request.head,
            rid=rid,
            client_ip=request.remote,
            scheme=b"http" if self._tls is None else b"https",
            drop_authorization=auth is not None and not auth.forward,
        )

    def _pick(self, replicas: Sequence[ReplicaState], excluded: frozenset[int]) -> int:
        policy = self._policy
        if len(replicas) == 1:  # every policy's only choice (no list to build)
            index = -1 if excluded and 0 in excluded else 0
        elif policy == routing.ROUND_ROBIN:
            index = routing.pick_round_robin(len(replicas), self._cursor, excluded)
        elif policy == routing.INSTANCE_AWARE_LEAST_LOAD:
            loads = [r.in_flight / r.target_qps for r in replicas]
            index = routing.pick_least_load(loads, self._cursor, excluded)
        else:
            index = routing.pick_least_load([r.in_flight for r in replicas], self._cursor, excluded)
        self._cursor = index + 1
        return index

    def _race_plan(
        self,
        replicas: list[ReplicaState],
        ranked: list[ReplicaState] | None = None,
        race: str | None = None,
    ) -> RacePlan:
        """``ranked``/``race``: an order and a race kind already chosen (cache_aware)."""
        kind = self._policy if race is None else race
        opts, health, hedging = self._section.router, self._health, self._hedging
        plan, self._cursor = plan_race(kind, opts, replicas, ranked, self._cursor, health, hedging)
        return plan

    # ---- router-local endpoints -------------------------------------------------------

    def _own(self, target: bytes) -> bool:
        """Whether the router answers this target itself (its paths, its metrics path)."""
        if target.startswith(_LOCAL_PREFIX):
            return True
        path = self._metrics_path
        # the path itself, or with a query (63: "?"), without building a bytes per request
        return (
            path is not None
            and target.startswith(path)
            and (len(target) == len(path) or target[len(path)] == 63)
        )

    def _local(self, request: Request, out: Connection) -> None:
        ready = len(self._replicas)
        health: dict[str, object] = {"service": self.service, "ready_replicas": ready}
        health.update(status="ok" if ready else "no_replicas", policy=self._policy)
        health["request_rate"] = round(self.request_rate(60.0), 3)
        local.answer(request, out, self.registry, health)
