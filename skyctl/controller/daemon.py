"""The controller process: ``python -m skyctl.controller.daemon`` (or ``skyctl controller run``).

It takes an exclusive lock on ``$SKYCTL_HOME/controller.lock`` (one controller
per home), serves the API on loopback, writes ``controller.json`` (pid, host,
port; mode 0600) for the CLI, and on SIGTERM/SIGINT stops gracefully: routers
finish in-flight requests within the grace period, state is already
persisted, replicas keep running for the next controller to adopt. The
specs' ``secrets:`` are stored encrypted with ``$SKYCTL_HOME/secret.key``.

With ``--router-process`` (how the supervisor, :mod:`skyctl.supervisor`, runs
it) the routers are not in this process: the API serves their state as a
versioned watch (:mod:`skyctl.controller.routing_feed`) to the router process,
which keeps every endpoint answering while this process is gone. It then exits
with :data:`NO_SERVICES` when it stops with no service stored, so the
supervisor stops the router process too.

With ``--standby`` it is the supervisor's warm spare: it imports everything,
then waits for one line on stdin before it starts (takes the lock, opens the
store and the API); an empty stdin (the supervisor gone) makes it exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import gc
import importlib
import json
import logging
import os
import signal
import sys

from aiohttp import web

from providers.registry import PROVIDERS, ProviderSet
from skyctl.clock import SteadyClock
from skyctl.config import (
    Paths,
    load_user_config,
    paths,
    read_or_create_token,
    write_private,
)
from skyctl.controller.api import make_app
from skyctl.controller.controller import Controller
from skyctl.controller.heap import HeapKeeper
from skyctl.controller.routing_feed import RoutingFeed
from skyctl.errors import SkyctlError
from skyctl.http_guard import GuardedSite, make_runner
from skyctl.secrets import KEY_FILE_NAME, Secrets
from skyctl.store import Store
from skyctl.supervisor import NO_SERVICES, stop_orphan_routers  # exit status: nothing to route

log = logging.getLogger("skyctl.controller")


def _router_ports(p: Paths) -> set[int]:
    """The ports the router processes have open (``router.json``, ``router-I.json``)."""
    ports: set[int] = set()
    for info in p.home.glob("router*.json"):
        with contextlib.suppress(OSError, ValueError, KeyError, AttributeError):
            ports |= {int(v) for v in json.loads(info.read_text())["ports"].values()}
    return ports


async def serve(
    p: Paths,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    exit_when_idle: bool = False,
    tick_seconds: float = 1.0,
    grace_seconds: float = 10.0,
    router_process: bool = False,
) -> bool:
    """Run until stopped; True when it stopped with no service stored."""
    lock = open(p.home / "controller.lock", "w")  # noqa: ASYNC230 - held while running
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SkyctlError(f"another controller is running for {p.home}") from None
    clock = SteadyClock()  # an NTP step of the wall clock must not age replicas
    config = load_user_config(p)
    store = Store(p.db)
    providers = ProviderSet(config=config, clock=clock, local_state=p.local_state)
    controller = Controller(
        store,
        providers,
        clock,
        tick_seconds=tick_seconds,
        exit_when_idle=exit_when_idle,
        gc_clouds=("local", *(k for k in config if k in PROVIDERS and k != "local")),
        secrets=Secrets(p.home / KEY_FILE_NAME),
    )
    feed = RoutingFeed(clock, lambda: _router_ports(p), ready=False) if router_process else None
    controller.routing_feed = feed
    token = read_or_create_token(p)
    app = make_app(controller, token, controller.request_stop)
    runner = make_runner(app)  # slow or idle clients cannot hold connections for ever
    await runner.setup()
    site = GuardedSite(runner, host, port, what="the controller API")
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, controller.request_stop)
    try:
        await site.start()
        bound = runner.addresses[0][1]
        await controller.start()
        if feed is not None:
            feed.mark_ready()  # every stored service is in it: routers may take its state
        write_private(p.daemon_info, json.dumps({"pid": os.getpid(), "host": host, "port": bound}))
        log.info("controller %d listening on %s:%d", os.getpid(), host, bound)
        # What start-up loaded (modules, SDKs, the restored state) lives as long as
        # the process: keep it out of every later collection, so the router's
        # short-lived objects are all a collection walks (docs/router-benchmarks.md)
        gc.collect()
        gc.freeze()
        # and what services made later (creates, launches) once it costs a collection
        # much: the survivors of costly full collections are frozen too (heap.py)
        keeper = HeapKeeper().install()
        reclaimer = loop.create_task(keeper.reclaim_every(clock))  # hourly, whole heap
        try:
            await controller.run()
        finally:
            reclaimer.cancel()
            keeper.uninstall()
    finally:
        log.info("controller stopping")
        with contextlib.suppress(FileNotFoundError):
            p.daemon_info.unlink()
        if feed is not None:
            feed.close()  # watches answer now, the API closes without waiting for them
        empty = await _shut_down(runner, controller, store, grace_seconds)
        lock.close()
    return empty


async def _shut_down(
    runner: web.AppRunner, controller: Controller, store: Store, grace_seconds: float
) -> bool:
    """The way out, every step taken even when one before it failed (each failure
    logged with its traceback): a stop asked for exits 0 and leaves the router process
    serving, rather than exit 1 as a crash with the providers left open. True when no
    service is stored (False when the store cannot say)."""
    empty = False
    for step, run in (
        ("closing the API", runner.cleanup),
        ("stopping the services' runtimes", lambda: controller.stop(grace_seconds)),
    ):
        try:
            await run()
        except Exception:  # the next steps still run
            log.exception("controller stopping: %s failed", step)
    try:
        empty = not store.list_services()
    except Exception:
        log.exception("controller stopping: the store could not list the services")
    try:
        store.close()
    except Exception:
        log.exception("controller stopping: the store did not close")
    return empty


# What a start imports beyond this module's imports (the store's SQLite dialect,
# the local provider): a warm spare imports them before it waits.
WARM_MODULES = ("sqlalchemy.dialects.sqlite", "providers.local")


def _warm() -> None:
    for name in WARM_MODULES:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="skyctl-controller")
    parser.add_argument("--home", default=None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--exit-when-idle", action="store_true")
    parser.add_argument("--tick-seconds", type=float, default=1.0)
    parser.add_argument(
        "--router-process",
        action="store_true",
        help="routers run in the router process (fed by the API's routing watch)",
    )
    parser.add_argument(
        "--standby",
        action="store_true",
        help="a warm spare: start only when a line arrives on stdin (exit 0 on EOF)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("SKYCTL_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    if args.standby:
        _warm()
        if not sys.stdin.buffer.readline():
            return 0  # never needed: the supervisor stopped (or died)
    try:
        empty = asyncio.run(
            serve(
                paths(args.home),
                host=args.host,
                port=args.port,
                exit_when_idle=args.exit_when_idle,
                tick_seconds=args.tick_seconds,
                router_process=args.router_process,
            )
        )
    except (SkyctlError, OSError) as e:  # one line, e.g. a corrupt database, a taken port
        log.error("%s", e)
        return 1
    if empty and args.router_process and args.exit_when_idle:  # its supervisor stops the
        stop_orphan_routers(paths(args.home))  # router process; if it was killed, this does
    return NO_SERVICES if empty and args.router_process else 0


if __name__ == "__main__":
    raise SystemExit(main())
