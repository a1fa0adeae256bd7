"""The router process: ``python -m skyctl.router.process --home H``.

Every service's endpoint lives here, not in the controller: the supervisor
(:mod:`skyctl.supervisor`) runs this process beside the controller, so a
controller that crashes, is stopped (``skyctl controller stop``) or upgraded
leaves every endpoint answering with the last routing table it gave.

:class:`Watch` follows the controller's routing watch (:mod:`skyctl.routing_wire`):
it finds the controller through ``$SKYCTL_HOME/controller.json`` and the API
token (or ``--controller URL`` with the token in ``$SKYCTL_API_TOKEN``),
long-polls for changes, applies each answer (:class:`~skyctl.router.endpoints.Endpoints`),
and when the controller is unreachable keeps the routers as they are and
reconnects with backoff (0.1 s doubling, capped at :data:`RECONNECT_CAP`); a
controller it has not seen before (another epoch) sends the full state, which
replaces what the routers knew. Every :data:`REPORT_SECONDS`, and at once when
a replica failed, it posts the routers' figures back (request rate, per-replica
requests and in-flight counts and latencies, passive-health ejections, endpoint
errors) for the autoscaler, drains, ``serve status`` and the console.

It writes ``$SKYCTL_HOME/router.json`` (pid, the open endpoints' ports; 0600)
and removes it at exit. The last table it applied is kept in ``routes.cache``
(0600; specs sealed as in the store): a router process restarted while no
controller answers (it crashed, or was stopped) serves from it until the
watch's full state replaces it; a clean exit removes it. SIGTERM/SIGINT:
endpoints stop accepting, in-flight requests get :data:`STOP_GRACE` seconds
(``--stop-grace``). ``--health-port`` answers a kubelet's liveness and
readiness probes (:func:`start_health`; the Kubernetes router Deployment).

With ``--worker I --reuse-port`` it is worker I of ``router.workers`` processes
(``config.yaml``) that the supervisor runs: every worker opens every endpoint
on the same port with ``SO_REUSEPORT`` (the kernel spreads new connections
over them), follows the watch and reports on its own (the controller sums the
workers' reports), and writes ``router-I.json`` (worker 0: ``router.json``).
Each endpoint's ``/metrics`` then answers the sum over the workers, whichever
worker the scrape reached (:mod:`skyctl.router.worker_metrics`: every worker
publishes its figures each second under ``$SKYCTL_HOME/router-metrics/PORT/``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from skyctl.clock import SteadyClock
from skyctl.config import TOKEN_ENV, Paths, paths, write_private
from skyctl.http_guard import GuardedSite, make_runner
from skyctl.router.endpoints import Endpoints
from skyctl.router.listener import REUSE_PORT_ENV
from skyctl.router.worker_metrics import PUBLISH_SECONDS, ROOT_NAME
from skyctl.routing_wire import REPORT_PATH, WAIT_SECONDS, WATCH_PATH, router_info_name
from skyctl.secrets import KEY_FILE_NAME, Secrets

log = logging.getLogger("skyctl.router.process")

RECONNECT_FIRST = 0.1
RECONNECT_CAP = 1.0  # seconds: the longest wait between two tries to reach the controller
# failed tries before a watch that never connected says why (about 2.5 s: a controller the
# supervisor starts beside the router answers by then; a wrong URL or token never does)
WARN_AFTER_TRIES = 5
REPORT_SECONDS = 1.0
STOP_GRACE = 10.0
Target = tuple[str, str]  # (API base URL, token)


def cache_name(worker: int) -> str:
    """The file a router worker keeps its last table in (under the home)."""
    return "routes.cache" if worker == 0 else f"routes-{worker}.cache"


def cached_table(path: Path) -> dict[str, dict[str, Any]] | None:
    """The last table a router process applied (``routes.cache``); None when absent,
    unreadable or no table (a corrupt one crashed every start: a restart loop)."""
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(table, dict) or not all(isinstance(e, dict) for e in table.values()):
        log.warning("%s holds no routing table: ignored, waiting for the watch", path)
        return None
    return table


def home_target(p: Paths) -> Callable[[], Target | None]:
    """The controller of this home as ``controller.json`` and the token file name it."""

    def locate() -> Target | None:
        try:
            info = json.loads(p.daemon_info.read_text())
            token = os.environ.get(TOKEN_ENV, "").strip() or p.token.read_text().strip()
            return f"http://{info['host']}:{int(info['port'])}", token
        except (OSError, ValueError, KeyError, TypeError):  # none, or corrupt
            return None

    return locate


class Watch:
    """Follows the routing watch and sends the reports (see the module docstring)."""

    def __init__(
        self, endpoints: Endpoints, locate: Callable[[], Target | None], router_id: str
    ) -> None:
        self.endpoints = endpoints
        self._locate = locate
        self.router_id = router_id
        self.epoch: str | None = None
        self.version = 0
        self.connected = False
        self.error: str | None = None  # why the last try to reach the controller failed
        self._warned: str | None = None  # the reason last logged, until it connects
        self.synced = asyncio.Event()  # set after each applied answer (tests wait on it)
        self.on_change: Callable[[], None] = lambda: None

    async def run(self, session: aiohttp.ClientSession) -> None:
        delay = RECONNECT_FIRST
        failures = 0
        while True:
            target = self._locate()
            try:
                if target is None:
                    raise ConnectionError("no controller.json: the controller is not running")
                answer = await self._poll(session, target)
            except (aiohttp.ClientError, OSError, ValueError, TimeoutError) as e:
                failures += 1
                self.error = str(e) or type(e).__name__
                # said once per reason: when it was connected, else once the tries show
                # it is no start-up race (a wrong --controller URL or token says so)
                if self.error != self._warned and (self.connected or failures >= WARN_AFTER_TRIES):
                    self._warned = self.error
                    log.warning(
                        "controller unreachable at %s (%s): serving the last table "
                        "(%d endpoints); retrying every %g s",
                        "?" if target is None else target[0],
                        self.error,
                        len(self.endpoints.routers),
                        RECONNECT_CAP,
                    )
                self.connected = False
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_CAP)
                await self.endpoints.retry_unopened()
                self.on_change()
                continue
            if not self.connected:
                log.info("routing watch connected (%s): version %s", target[0], answer["version"])
            self.connected = True
            self.error = self._warned = None
            delay, failures = RECONNECT_FIRST, 0
            try:
                await self.endpoints.apply(answer)
                self.epoch, self.version = str(answer["epoch"]), int(answer["version"])
            except Exception:  # a bug or a malformed answer: never stop following
                log.exception("routing watch: answer not applied; full resync after a pause")
                self.connected = False  # the next poll asks for the full state
                await asyncio.sleep(RECONNECT_CAP)
                continue
            self.synced.set()
            self.on_change()

    async def _poll(self, session: aiohttp.ClientSession, target: Target) -> dict[str, Any]:
        base, token = target
        params = {"since": str(self.version), "wait": str(WAIT_SECONDS)}
        if self.epoch is not None and self.connected:
            params["epoch"] = self.epoch
        async with session.get(
            base + WATCH_PATH,
            params=params,
            headers={"Authorization": f"Bearer {token}"},
            timeout=aiohttp.ClientTimeout(total=WAIT_SECONDS + 10, sock_connect=2),
        ) as r:
            if r.status != 200:
                raise aiohttp.ClientResponseError(
                    r.request_info, (), status=r.status, message=(await r.text())[:200]
                )
            answer = await r.json()
        # a corrupt answer is a failed poll (retried, said): it ended the watch task
        # (``answer["version"]`` below, outside its guard) and so the router process
        if not (
            isinstance(answer, dict)
            and isinstance(answer.get("epoch"), str)
            and isinstance(answer.get("version"), int)
            and isinstance(answer.get("services") or {}, dict)
        ):
            raise ValueError(f"not a routing watch answer: {str(answer)[:80]!r}")
        return answer

    async def report_loop(self, session: aiohttp.ClientSession) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.endpoints.errors_queued.wait(), REPORT_SECONDS)
            target = self._locate()
            if target is None or not self.connected:
                continue
            errors = self.endpoints.take_backend_errors()
            try:
                body = {
                    **self.endpoints.report(self.router_id),
                    "backend_errors": errors,
                    "epoch": self.epoch,  # the table its figures were counted under
                    "version": self.version,
                }
            except Exception:  # never stop reporting: the errors wait for the next one
                log.exception("routing report not made")
                self.endpoints.requeue(errors)
                await asyncio.sleep(REPORT_SECONDS)
                continue
            try:
                async with session.post(
                    target[0] + REPORT_PATH,
                    json=body,
                    headers={"Authorization": f"Bearer {target[1]}"},
                    timeout=aiohttp.ClientTimeout(total=5),
                ) as r:
                    if r.status != 200:
                        raise aiohttp.ClientResponseError(r.request_info, (), status=r.status)
            except (aiohttp.ClientError, OSError, TimeoutError):
                self.endpoints.requeue(errors)  # sent with the next report
                await asyncio.sleep(REPORT_SECONDS)


async def publish_loop(endpoints: Endpoints) -> None:
    """Each endpoint's figures for the other workers, every PUBLISH_SECONDS."""
    while True:
        await asyncio.sleep(PUBLISH_SECONDS)
        try:
            endpoints.publish_metrics()
        except Exception:  # never stop publishing: a scrape would miss this worker
            log.exception("router metrics not published")


async def start_health(port: int, state: Callable[[], dict[str, Any]]) -> web.AppRunner:
    """``GET /healthz`` (200 while the process runs its loop) and ``GET /readyz`` (200
    once it has a routing table to serve, from the watch or ``routes.cache``; 503
    before) on every interface at ``port``, for a kubelet's probes."""

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        now = state()
        return web.json_response(now, status=200 if now["ready"] else 503)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    runner = make_runner(app)  # on every interface: no client holds its connections
    await runner.setup()
    reuse = os.environ.get(REUSE_PORT_ENV) == "1" or None
    site = GuardedSite(runner, "0.0.0.0", port, what="the router's health port", reuse_port=reuse)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


async def serve(
    p: Paths,
    locate: Callable[[], Target | None] | None = None,
    worker: int = 0,
    health_port: int | None = None,
    stop_grace: float = STOP_GRACE,
) -> bool:
    """Serve until SIGTERM/SIGINT (True) or until a task of this process ended (False).

    ``health_port``: answer a kubelet's probes there (:func:`start_health`);
    ``stop_grace``: seconds in-flight requests get once SIGTERM came.
    """
    # a wall-clock step must not stop request rates (a step back: 0 req/s for its
    # length) or keep a replica ejected for hours; ~60 ns a read more than time.time
    clock = SteadyClock()
    shared = os.environ.get(REUSE_PORT_ENV) == "1"  # one of several workers per port
    endpoints = Endpoints(
        Secrets(p.home / KEY_FILE_NAME), clock, p.home / ROOT_NAME if shared else None
    )
    watch = Watch(endpoints, locate or home_target(p), f"{socket.gethostname()}:{os.getpid()}")
    info, cache = p.home / router_info_name(worker), p.home / cache_name(worker)
    cached = ""

    unwritable = ""  # the last reason the files could not be written, said once

    def write_info() -> None:
        """Rewrite router.json and routes.cache. A full (or read-only) disk must not
        close the endpoints: said once, serving goes on, and the next change (every
        watch answer) tries again."""
        nonlocal cached, unwritable
        try:
            write_private(info, json.dumps({"pid": os.getpid(), "ports": endpoints.ports}))
            table = json.dumps(endpoints.entries)
            if table != cached:
                write_private(cache, table)
                cached = table
        except OSError as e:
            if str(e) != unwritable:
                unwritable = str(e)
                log.error("cannot write %s: %s; serving on, retried on each change", info, e)
            return
        if unwritable:
            unwritable = ""
            log.info("%s written again", info.name)

    watch.on_change = write_info
    from_cache = False

    def health() -> dict[str, Any]:
        return {
            "ready": from_cache or watch.synced.is_set(),
            "controller": watch.connected,
            "controller_error": watch.error,
            "endpoints": endpoints.ports,
            "errors": dict(endpoints.errors),
        }

    # first: a port taken fails the start before any endpoint opened
    probes = None if health_port is None else await start_health(health_port, health)
    last = cached_table(cache)
    if last is not None:  # else none, or unreadable: wait for the watch
        await endpoints.apply({"full": True, "services": last})
        from_cache = True
        log.info("serving %d endpoints from the last table until the watch answers", len(last))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    write_info()
    failed = False
    async with aiohttp.ClientSession() as session:
        tasks = [
            asyncio.create_task(watch.run(session)),
            asyncio.create_task(watch.report_loop(session)),
        ]
        if shared:
            tasks.append(asyncio.create_task(publish_loop(endpoints)))
        stopping = asyncio.create_task(stop.wait())
        try:  # a task that ended is a bug: exit, and the supervisor starts a fresh process
            done, _ = await asyncio.wait([stopping, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in done - {stopping}:
                log.error("router process: %s ended (%r)", task.get_name(), task.exception())
                failed = True
        finally:
            stopping.cancel()
            log.info("router process stopping")
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await endpoints.close(stop_grace)
            if probes is not None:
                await probes.cleanup()
            for path in (info, cache):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
    return not failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="skyctl-router")
    parser.add_argument("--home", default=None)
    parser.add_argument(
        "--controller",
        default=None,
        help="the controller's API URL (token in $SKYCTL_API_TOKEN); default: controller.json",
    )
    parser.add_argument("--worker", type=int, default=0, help="this worker's index")
    parser.add_argument(
        "--reuse-port", action="store_true", help="share every port with the other workers"
    )
    parser.add_argument(
        "--health-port",
        type=int,
        default=None,
        help="answer GET /healthz and /readyz on this port, every interface (a kubelet's probes)",
    )
    parser.add_argument(
        "--stop-grace",
        type=float,
        default=STOP_GRACE,
        help=f"seconds in-flight requests get after SIGTERM (default {STOP_GRACE:g})",
    )
    args = parser.parse_args(argv)
    if args.reuse_port:
        os.environ[REUSE_PORT_ENV] = "1"
    logging.basicConfig(
        level=os.environ.get("SKYCTL_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    locate: Callable[[], Target | None] | None = None
    if args.controller:
        url, token = args.controller.rstrip("/"), os.environ.get(TOKEN_ENV, "").strip()
        locate = lambda: (url, token)  # noqa: E731
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    served = serve(paths(args.home), locate, args.worker, args.health_port, args.stop_grace)
    return 0 if asyncio.run(served) else 1


if __name__ == "__main__":
    raise SystemExit(main())
