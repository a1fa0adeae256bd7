"""The supervisor: ``python -m skyctl.supervisor --home H``, what the CLI starts.

It runs two children and keeps them running:

- the controller (``skyctl.controller.daemon --router-process --exit-when-idle``),
  which writes ``controller.json`` naming its own pid, as without a supervisor;
- the router process (``skyctl.router.process``), every service's endpoint,
  fed by the controller's routing watch; with ``router.workers: N`` in
  ``config.yaml``, N of them sharing every port (``SO_REUSEPORT``), each
  supervised on its own.

A child that dies (a crash, SIGKILL, the OOM killer) is started again after a
backoff (:data:`FIRST_DELAY` doubling, capped at :data:`MAX_DELAY`, back to the
first once it ran :data:`STABLE_SECONDS`); each exit is logged with its cause.

A crashed controller is replaced by a *warm spare*: :data:`SPARE_AFTER` after
a controller starts, the supervisor starts a second one with ``--standby``,
which imports everything (most of a start's CPU, seconds on a loaded machine)
and then waits on its stdin. A crash restart writes it one line and it takes
over (lock, store, API) at once; a new spare follows the same way. The spare
holds nothing (no lock, no port, no file), exits when its
stdin closes (the supervisor gone, even by SIGKILL), and is not used after a
clean stop, so ``controller stop`` then ``start`` runs the code on disk (an
upgrade).
The controller is *not* restarted when it exits by itself:

- status 0 (``skyctl controller stop`` sent it SIGTERM): the router process keeps
  every endpoint answering; SIGUSR1 (``skyctl controller start``, or any
  command that needs the controller) starts it again, and the router re-syncs;
- :data:`NO_SERVICES` (its last service is down): the supervisor stops the
  router process and exits, leaving no process or port behind;
- status 1 before its first start ever completed (a corrupt database, another
  controller holding the home's lock): the supervisor stops and exits 1, so the
  CLI shows the controller's error. Whether a start completed is watched while
  the controller runs (``controller.json`` naming it), since its exit removes
  that file: one that served and then exits 1 is a crash, restarted as above.

A supervisor that was itself killed leaves its children running (the endpoints
keep answering). The next one *adopts* them instead of starting a second
router process that could not bind the ports, or a controller that could not
take the home's lock: a process named by ``router.json`` (``router-I.json``)
or ``controller.json`` that runs that module for this home is watched until it
exits (its exit status is unknown then: an adopted controller that removed its
``controller.json`` stopped by request, one with no service left stopped for
good, any other exit is a crash) and restarted as its own child would be.

SIGTERM or SIGINT (``skyctl controller stop --all``) stops both children
(SIGTERM, then SIGKILL after :data:`STOP_SECONDS`) and the supervisor.
``supervisor.json`` names the supervisor's pid while it runs. Output of all
three processes goes to ``controller.log`` (the CLI opens it for the supervisor).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

from skyctl.config import Paths, paths, router_workers, write_private
from skyctl.errors import ConfigError, SkyctlError
from skyctl.routing_wire import router_info_name
from skyctl.supervisor_files import (  # noqa: F401  (re-exported: the daemon, the tests)
    INFO_NAME,
    ROUTER_MODULE,
    STOP_SECONDS,
    UNKNOWN,
    info_path,
    options,
    running_command,
    running_module,
    running_pid,
    stop_orphan_routers,
)

log = logging.getLogger("skyctl.supervisor")

NO_SERVICES = 3  # the controller's exit status when it stopped with no service left
FIRST_DELAY = 0.25
MAX_DELAY = 8.0
STABLE_SECONDS = 60.0
# A spare starts this long after its controller: past the controller's imports on an
# idle machine (0.55 s of CPU), not to slow its start; early enough on a loaded one
# (imports of 5 s and more), where a kill soon after the start must find it ready.
SPARE_AFTER = 1.0
READY_POLL = 0.2  # seconds between looks for a starting controller's controller.json


async def terminate(pid: int, name: str) -> None:
    """SIGTERM a process that is not our child and wait for it; SIGKILL after
    :data:`STOP_SECONDS`."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(_exited(pid), STOP_SECONDS)
    except TimeoutError:
        log.warning("%s did not stop within %.0f s: killed", name, STOP_SECONDS)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _poll_until_gone(pid: int) -> None:
    while Path(f"/proc/{pid}").exists():
        time.sleep(0.5)


async def _exited(pid: int) -> None:
    """Wait for a process that is not our child to exit (a pidfd, else polling)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except (OSError, AttributeError):  # no pidfd here (Linux < 5.3): a thread polls
        await asyncio.to_thread(_poll_until_gone, pid)
        return
    loop = asyncio.get_running_loop()
    gone: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not gone.done():
            gone.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await gone
    finally:
        loop.remove_reader(fd)
        os.close(fd)


def _why(code: int) -> str:
    if code == UNKNOWN:
        return "exit status unknown: an adopted process"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit status {code}"


class Child:
    """One supervised process and its restart backoff."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        info: Path | None = None,
        spare_flag: str | None = None,
        exact: bool = False,
    ) -> None:
        """``info``: the file naming the running process (``-m`` module in ``argv``),
        for adopting one a previous supervisor left behind. ``spare_flag``: ``argv``
        plus it starts a warm spare (it waits for one line on stdin, then runs);
        only while ``argv`` is the one given here, unless ``spare_argv`` is set.
        ``exact``: adopt only a process with the options of ``argv``."""
        self.name = name
        self.exact = exact
        self.argv = argv
        self.info = info
        self.spare_flag = spare_flag
        self._given_argv = list(argv)
        self.spare_argv: list[str] | None = None  # how to start a spare, if not argv + flag
        self.spare: asyncio.subprocess.Process | None = None
        self._spare_of: tuple[list[str], list[str]] | None = None  # (argv, spare_argv)
        self.proc: asyncio.subprocess.Process | None = None
        self.adopted: int | None = None  # the pid of a process a previous supervisor started
        self.delay = FIRST_DELAY
        self.started_at = 0.0
        self.starts = 0

    async def start(self, warm: bool = False) -> None:
        """Start it: from its warm spare when ``warm`` and one waits, else afresh."""
        if warm and await self._promote_spare():
            assert self.proc is not None
            log.info("%s started from its warm spare (pid %d)", self.name, self.proc.pid)
        else:
            await self.discard_spare()
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv, stdin=asyncio.subprocess.DEVNULL
            )
            log.info("%s started (pid %d)", self.name, self.proc.pid)
        self.started_at = time.monotonic()
        self.starts += 1

    def _spare_command(self) -> list[str] | None:
        if self.spare_argv is not None:
            return self.spare_argv
        if self.spare_flag is None or self.argv != self._given_argv:
            return None
        return [*self.argv, self.spare_flag]

    async def start_spare(self) -> None:
        """Start a warm spare, unless it has none or one already waits."""
        command = self._spare_command()
        if command is None or self._spare_waiting():
            return
        await self.discard_spare()
        self._spare_of = (list(self.argv), command)
        self.spare = await asyncio.create_subprocess_exec(*command, stdin=asyncio.subprocess.PIPE)
        log.info("%s: warm spare started (pid %d)", self.name, self.spare.pid)

    def _spare_waiting(self) -> bool:
        spare, command = self.spare, self._spare_command()
        if spare is None or spare.returncode is not None or command is None:
            return False
        return self._spare_of == (self.argv, command)

    async def _promote_spare(self) -> bool:
        if not self._spare_waiting():
            return False
        spare, self.spare = self.spare, None
        assert spare is not None and spare.stdin is not None
        try:
            spare.stdin.write(b"go\n")
            await spare.stdin.drain()
            spare.stdin.close()
        except (BrokenPipeError, ConnectionResetError):  # it died meanwhile
            await spare.wait()
            return False
        self.proc = spare
        return True

    async def discard_spare(self) -> None:
        """Stop the waiting spare (it holds nothing: SIGTERM ends it at once, even
        mid-import; SIGKILL if it lingers)."""
        spare, self.spare = self.spare, None
        if spare is None or spare.returncode is not None:
            return
        if spare.stdin is not None:
            spare.stdin.close()
        with contextlib.suppress(ProcessLookupError):
            spare.terminate()
        try:
            await asyncio.wait_for(spare.wait(), 5.0)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                spare.kill()
            await spare.wait()

    @property
    def module(self) -> str:
        argv = self._given_argv
        return argv[argv.index("-m") + 1] if "-m" in argv else ""

    def runs_as_given(self, args: list[str]) -> bool:
        """Whether a command line has this child's options (a router worker's index
        and ``--reuse-port`` must match to share the ports as config.yaml asks)."""
        return options(args, self.module) == options(self._given_argv, self.module)

    def adopt(self, home: Path) -> bool:
        """Watch the process ``info`` names, if it runs this child's module for ``home``
        (a router process: with this child's options, see :meth:`runs_as_given`)."""
        module = self.module
        found = running_command(self.info, module, home) if self.info and module else None
        if found is None or (self.exact and not self.runs_as_given(found[1])):
            return False
        pid = found[0]
        self.adopted, self.proc = pid, None
        self.started_at = time.monotonic()
        self.starts += 1
        log.info("%s already running (pid %d): adopted", self.name, pid)
        return True

    @property
    def pid(self) -> int | None:
        if self.adopted is not None:
            return self.adopted
        return self.proc.pid if self.proc is not None else None

    async def wait(self) -> int:
        """Its exit status (:data:`UNKNOWN` for an adopted process)."""
        if self.adopted is not None:
            await _exited(self.adopted)
            self.adopted = None
            return UNKNOWN
        assert self.proc is not None
        return await self.proc.wait()

    def next_delay(self) -> float:
        """The wait before the next start: the backoff, reset after a stable run."""
        if time.monotonic() - self.started_at >= STABLE_SECONDS:
            self.delay = FIRST_DELAY
        delay, self.delay = self.delay, min(self.delay * 2, MAX_DELAY)
        return delay

    async def stop(self) -> None:
        if self.adopted is not None:
            await self._stop_adopted(self.adopted)
            return
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), STOP_SECONDS)
        except TimeoutError:
            log.warning("%s did not stop within %.0f s: killed", self.name, STOP_SECONDS)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    async def _stop_adopted(self, pid: int) -> None:
        await terminate(pid, self.name)
        self.adopted = None


class Supervisor:
    def __init__(self, p: Paths, workers: int = 1) -> None:
        self.paths = p
        python = [sys.executable, "-m"]
        home = ["--home", str(p.home)]
        daemon = [*python, "skyctl.controller.daemon", *home]
        daemon += ["--exit-when-idle", "--router-process"]
        self.controller = Child("controller", daemon, p.daemon_info, "--standby")
        router = [*python, ROUTER_MODULE, *home]
        if workers == 1:
            self.routers = [
                Child("router process", router, p.home / router_info_name(0), exact=True)
            ]
        else:
            self.routers = [
                Child(
                    f"router worker {i}",
                    [*router, "--worker", str(i), "--reuse-port"],
                    p.home / router_info_name(i),
                    exact=True,
                )
                for i in range(workers)
            ]
        self.stopping = asyncio.Event()
        self.wanted = asyncio.Event()  # SIGUSR1: start a stopped controller
        self.exit_code = 0
        self.controller_was_ready = False  # a start of the controller completed (ever)

    async def _sleep(self, seconds: float | None, also: asyncio.Event | None = None) -> None:
        """Sleep ``seconds`` (None: until woken), or until stopping or ``also`` is set."""
        events = [self.stopping] + ([also] if also is not None else [])
        waits = [asyncio.ensure_future(e.wait()) for e in events]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def _wait(self, child: Child) -> int | None:
        """The child's exit status, or None when the supervisor is stopping."""
        done = asyncio.ensure_future(child.wait())
        stop = asyncio.ensure_future(self.stopping.wait())
        await asyncio.wait({done, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if not done.done():
            done.cancel()
            return None
        return done.result()

    async def retire_stray_routers(self) -> None:
        """Stop the router processes a killed supervisor left that this one would not
        run as they are (``router.workers`` changed meanwhile): a worker beyond the
        count, or one with other options (``--reuse-port``, its index). Left alone,
        an extra worker kept its ports and served on, unsupervised, even after
        ``serve down``; a process without ``--reuse-port`` kept a new worker from
        binding its ports."""
        mine = {r.info: r for r in self.routers}
        module = self.routers[0].module
        strays = []
        for info in sorted(self.paths.home.glob("router*.json")):
            found = running_command(info, module, self.paths.home)
            if found is None:
                continue
            child = mine.get(info)
            if child is not None and child.runs_as_given(found[1]):
                continue  # adopted by its child
            log.warning(
                "router process (pid %d, %s) left by a previous supervisor runs as %s, "
                "not as config.yaml's router.workers (%d) asks: stopping it",
                found[0],
                info.name,
                " ".join(options(found[1], module)),
                len(self.routers),
            )
            strays.append(terminate(found[0], f"router process {found[0]}"))
        await asyncio.gather(*strays)

    async def keep_router(self, router: Child) -> None:
        first = True
        while not self.stopping.is_set():
            if not (first and router.adopt(self.paths.home)):
                await router.start()
            first = False
            code = await self._wait(router)
            if code is None:
                return
            delay = router.next_delay()
            log.error("%s exited (%s); restarting in %.2f s", router.name, _why(code), delay)
            await self._sleep(delay)

    async def keep_controller(self) -> None:
        first, crashed = True, False
        while not self.stopping.is_set():
            self.wanted.clear()
            if not (first and self.controller.adopt(self.paths.home)):
                await self.controller.start(warm=crashed)
            first, crashed = False, False
            spare = asyncio.create_task(self._spare_soon())
            ready = asyncio.create_task(self._note_ready())
            try:
                code = await self._wait(self.controller)
            finally:
                spare.cancel()
                ready.cancel()
                await asyncio.gather(spare, ready, return_exceptions=True)
            if code is None:
                return
            if code == UNKNOWN:
                code = self._adopted_exit()
            if code == NO_SERVICES:
                log.info("controller exited with no service left: stopping the router process")
                self.stopping.set()
                return
            if code == 0:
                log.info(
                    "controller stopped; endpoints keep answering "
                    "(`skyctl controller start` starts it again)"
                )
                await self.controller.discard_spare()  # the next start runs the code on disk
                await self._sleep(None, also=self.wanted)
                continue
            if code == 1 and self.controller.starts == 1 and not self.controller_was_ready:
                log.error("controller could not start (%s): supervisor stops", _why(code))
                self.exit_code = 1
                self.stopping.set()
                return
            delay = self.controller.next_delay()
            log.error("controller exited (%s); restarting in %.2f s", _why(code), delay)
            crashed = True
            await self._sleep(delay)

    async def _spare_soon(self) -> None:
        """Start the controller's warm spare :data:`SPARE_AFTER` after the controller."""
        await asyncio.sleep(SPARE_AFTER)
        await self.controller.start_spare()

    def _adopted_exit(self) -> int:
        """What an adopted controller's exit was: a crash leaves ``controller.json``
        behind; a clean stop removes it, for good when no service is stored."""
        if self.paths.daemon_info.exists():
            return UNKNOWN
        if not self.paths.db.exists():
            return NO_SERVICES
        from skyctl.store import Store  # only for this rare case

        try:
            store = Store(self.paths.db)
            try:
                return 0 if store.list_services() else NO_SERVICES
            finally:
                store.close()
        except SkyctlError:
            return 0  # the store cannot be read: keep the endpoints, wait to be asked

    async def _note_ready(self) -> None:
        """Watch for the controller's first completed start (``controller.json`` naming
        it), which its exit removes: a controller that served, then exits 1 (a crash, or
        an error on its way out) is restarted, never taken for one that could not start
        (which stops the supervisor and with it every endpoint)."""
        while not self.controller_was_ready:
            if self.controller.adopted is not None or self._ever_ready():
                self.controller_was_ready = True
                return
            await asyncio.sleep(READY_POLL)

    def _ever_ready(self) -> bool:
        try:
            pid = json.loads(self.paths.daemon_info.read_text())["pid"]
        except (OSError, ValueError, KeyError, TypeError):  # none, or corrupt: not yet
            return False
        return self.controller.pid is not None and pid == self.controller.pid

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        loop.add_signal_handler(signal.SIGUSR1, self.wanted.set)
        await self.retire_stray_routers()
        tasks = [asyncio.create_task(self.keep_router(r)) for r in self.routers]
        tasks.append(asyncio.create_task(self.keep_controller()))
        await self.stopping.wait()
        log.info("supervisor stopping")
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.controller.stop()  # first: it must not see the router go
        await self.controller.discard_spare()
        await asyncio.gather(*(r.stop() for r in self.routers))
        return self.exit_code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="skyctl-supervisor")
    parser.add_argument("--home", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("SKYCTL_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    p = paths(args.home)
    try:
        workers = router_workers(p)
    except ConfigError as e:
        log.error("%s", e)
        return 1
    lock = open(p.home / "supervisor.lock", "w")  # held while running
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log.error("another controller is running for %s (its supervisor holds the lock)", p.home)
        return 1
    write_private(info_path(p), json.dumps({"pid": os.getpid()}))
    try:
        return asyncio.run(Supervisor(p, workers).run())
    finally:
        with contextlib.suppress(FileNotFoundError):
            info_path(p).unlink()
        lock.close()


if __name__ == "__main__":
    raise SystemExit(main())
