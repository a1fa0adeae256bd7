"""The supervisor (skyctl.supervisor) with stand-in children (real processes).

- a controller that dies is started again, after a backoff that doubles up to
  its cap and starts over after a stable run; each exit is logged with its cause;
- a controller that exits with "no service left" stops the router process and
  the supervisor (status 0);
- a controller that fails its very first start stops everything (status 1: the
  CLI shows its error);
- a controller stopped by request (status 0) is not restarted until SIGUSR1,
  while the router process keeps running;
- a supervisor that was killed left its children running: the next one adopts
  them (no second router process that could not bind the ports), restarts them
  when they die, and tells an adopted controller's clean stop from a crash.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path

import pytest

from skyctl import supervisor
from skyctl.config import paths
from skyctl.supervisor import MAX_DELAY, NO_SERVICES, Child, Supervisor
from tests.helpers.waiting import eventually

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


def stand_in(tmp_path: Path, script: str) -> list[str]:
    """A controller stand-in: ``script`` runs with ``n``, how many times it started."""
    count = tmp_path / "starts"
    body = (
        "import os, signal, sys, pathlib\n"
        f"c = pathlib.Path({str(count)!r})\n"
        "n = int(c.read_text()) + 1 if c.exists() else 1\n"
        "c.write_text(str(n))\n" + script
    )
    return [sys.executable, "-c", body]


def test_the_backoff_doubles_to_its_cap_and_starts_over_after_a_stable_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    child = Child("x", ["true"])
    now = [1000.0]
    monkeypatch.setattr(supervisor.time, "monotonic", lambda: now[0])
    child.started_at = now[0]
    delays = [child.next_delay() for _ in range(8)]
    assert delays == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert max(delays) == MAX_DELAY
    now[0] += supervisor.STABLE_SECONDS  # it ran a minute before dying: quick again
    assert child.next_delay() == 0.25


async def test_a_dying_controller_is_restarted_with_its_cause_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sup = Supervisor(paths(tmp_path / "home"))
    sup.controller.argv = stand_in(
        tmp_path, f"os.kill(os.getpid(), signal.SIGKILL) if n < 3 else sys.exit({NO_SERVICES})\n"
    )
    for router in sup.routers:
        router.argv = SLEEPER
    with caplog.at_level(logging.INFO, logger="skyctl.supervisor"):
        assert await asyncio.wait_for(sup.run(), 60) == 0
    assert sup.controller.starts == 3
    assert caplog.text.count("controller exited (killed by SIGKILL); restarting in") == 2
    assert "no service left: stopping the router process" in caplog.text
    for router in sup.routers:  # stopped, not left behind
        assert router.proc is not None and router.proc.returncode == -signal.SIGTERM


async def test_a_controller_that_cannot_start_stops_the_supervisor_with_status_1(
    tmp_path: Path,
) -> None:
    sup = Supervisor(paths(tmp_path / "home"))
    sup.controller.argv = stand_in(tmp_path, "sys.exit(1)\n")
    for router in sup.routers:
        router.argv = SLEEPER
    assert await asyncio.wait_for(sup.run(), 60) == 1
    assert sup.controller.starts == 1
    assert all(r.proc is not None and r.proc.returncode is not None for r in sup.routers)


async def test_a_controller_that_served_then_exits_1_is_restarted_and_the_router_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Exit status 1 after a completed start (an error on its way out, which removed
    controller.json as every exit does) is a crash: restarted, the router untouched."""
    p = paths(tmp_path / "home")
    sup = Supervisor(p)
    info = str(p.daemon_info)
    sup.controller.argv = stand_in(
        tmp_path,
        "import json, time\n"
        f"if n > 1: sys.exit({NO_SERVICES})\n"
        f"pathlib.Path({info!r}).write_text(json.dumps({{'pid': os.getpid()}}))\n"
        "time.sleep(1.0)\n"  # it serves
        f"pathlib.Path({info!r}).unlink()\n"
        "sys.exit(1)\n",
    )
    for router in sup.routers:
        router.argv = SLEEPER
    caplog.set_level(logging.INFO, logger="skyctl.supervisor")
    running = asyncio.create_task(sup.run())
    try:
        await eventually(lambda: sup.controller.starts == 2, "the controller restarted", 30)
        assert "controller exited (exit status 1); restarting in" in caplog.text
        assert "could not start" not in caplog.text
        assert all(r.proc is not None and r.proc.returncode is None for r in sup.routers)
        assert await asyncio.wait_for(running, 30) == 0
    finally:
        sup.stopping.set()
        await asyncio.gather(running, return_exceptions=True)


async def test_a_stopped_controller_waits_for_sigusr1_while_the_router_runs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sup = Supervisor(paths(tmp_path / "home"))
    sup.controller.argv = stand_in(tmp_path, f"sys.exit(0 if n == 1 else {NO_SERVICES})\n")
    for router in sup.routers:
        router.argv = SLEEPER
    caplog.set_level(logging.INFO, logger="skyctl.supervisor")
    running = asyncio.create_task(sup.run())
    try:
        await eventually(lambda: "controller stopped; endpoints keep answering" in caplog.text)
        assert sup.controller.starts == 1 and not sup.wanted.is_set()  # waiting, not restarting
        assert all(r.proc is not None and r.proc.returncode is None for r in sup.routers)
        os.kill(os.getpid(), signal.SIGUSR1)  # what `skyctl controller start` sends
        assert await asyncio.wait_for(running, 30) == 0  # started again; it found nothing
        assert sup.controller.starts == 2
    finally:
        sup.stopping.set()
        await asyncio.gather(running, return_exceptions=True)


async def left_running(home: Path, module: str, *options: str) -> asyncio.subprocess.Process:
    """A process a killed supervisor left: it runs ``module`` for ``home`` (then
    ``options``), as its command line says (a stand-in that only sleeps).

    Returned once ``/proc/PID/cmdline`` says so: the exec that the start waits for
    sets up the new command line a moment later, and a loaded machine can
    deschedule the child in between (the supervisor then read an empty command
    line, took the process for another one, and left it running: a CI failure)."""
    proc = await asyncio.create_subprocess_exec(
        *SLEEPER, "-m", module, "--home", str(home), *options
    )
    cmdline = Path(f"/proc/{proc.pid}/cmdline")
    await eventually(lambda: module.encode() in cmdline.read_bytes(), "its command line")
    return proc


async def test_a_router_process_left_by_a_killed_supervisor_is_adopted_then_restarted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home = tmp_path / "home"
    sup = Supervisor(paths(home))
    old = await left_running(home, "skyctl.router.process")
    (home / "router.json").write_text(json.dumps({"pid": old.pid, "ports": {}}))
    sup.controller.argv = SLEEPER
    caplog.set_level(logging.INFO, logger="skyctl.supervisor")
    running = asyncio.create_task(sup.run())
    (router,) = sup.routers
    try:
        await eventually(lambda: router.adopted == old.pid, "the old router process adopted")
        assert router.proc is None  # no second router process competing for the ports
        router.argv = SLEEPER  # what it restarts (a stand-in)
        old.kill()
        await old.wait()
        await eventually(lambda: router.proc is not None, "a new router process")
        assert "router process exited (exit status unknown: an adopted process)" in caplog.text
    finally:
        sup.stopping.set()
        await asyncio.wait_for(running, 30)
    assert router.proc is not None and router.proc.returncode is not None  # stopped, not left


async def test_an_unrelated_process_named_by_a_stale_file_is_not_adopted(tmp_path: Path) -> None:
    home = tmp_path / "home"
    sup = Supervisor(paths(home))
    stranger = await asyncio.create_subprocess_exec(*SLEEPER)  # a reused pid, say
    (home / "router.json").write_text(json.dumps({"pid": stranger.pid, "ports": {}}))
    try:
        assert not sup.routers[0].adopt(home)
        assert not Supervisor(paths(tmp_path / "other")).routers[0].adopt(tmp_path / "other")
    finally:
        stranger.kill()
        await stranger.wait()


@pytest.mark.parametrize("clean", [True, False])
async def test_an_adopted_controller_that_stops_cleanly_is_not_restarted(
    tmp_path: Path, clean: bool
) -> None:
    """A clean stop removes controller.json (and here no service is stored: the
    supervisor stops for good); a crash leaves it, and the controller is restarted."""
    home = tmp_path / "home"
    p = paths(home)
    sup = Supervisor(p)
    old = await left_running(home, "skyctl.controller.daemon")
    p.daemon_info.write_text(json.dumps({"pid": old.pid}))
    for router in sup.routers:
        router.argv = SLEEPER
    running = asyncio.create_task(sup.run())
    try:
        await eventually(lambda: sup.controller.adopted == old.pid, "the controller adopted")
        sup.controller.argv = stand_in(tmp_path, f"sys.exit({NO_SERVICES})\n")
        if clean:
            p.daemon_info.unlink()
        old.kill()
        await old.wait()
        assert await asyncio.wait_for(running, 30) == 0
        assert sup.controller.starts == (1 if clean else 2)  # adopted (+ restarted)
    finally:
        sup.stopping.set()
        await asyncio.gather(running, return_exceptions=True)
    assert all(r.proc is not None and r.proc.returncode is not None for r in sup.routers)


def controller_stand_in(tmp_path: Path, home: Path, script: str) -> list[str]:
    """A controller stand-in that is "up" (it writes controller.json naming itself)
    and then runs ``script``."""
    info = paths(home).daemon_info
    up = f"pathlib.Path({str(info)!r}).write_text(json.dumps({{'pid': os.getpid()}}))\n"
    return stand_in(tmp_path, "import json, time\n" + up + script)


def spare_stand_in(tmp_path: Path, script: str) -> list[str]:
    """A warm spare stand-in: waits for a line on stdin (EOF: exits 0), records
    its pid in ``promoted``, then runs ``script``."""
    promoted = tmp_path / "promoted"
    body = (
        "import os, sys, pathlib\n"
        "if not sys.stdin.readline(): sys.exit(0)\n"
        f"pathlib.Path({str(promoted)!r}).write_text(str(os.getpid()))\n" + script
    )
    return [sys.executable, "-c", body]


async def test_a_crashed_controller_is_replaced_by_its_warm_spare(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The spare starts soon after the controller; the crash restart hands over to
    it (no start-up imports to wait for); no spare is left when the supervisor stops."""
    monkeypatch.setattr(supervisor, "SPARE_AFTER", 0.0)
    home = tmp_path / "home"
    sup = Supervisor(paths(home))
    spare_up = tmp_path / "spare-up"
    sup.controller.argv = controller_stand_in(
        tmp_path,
        home,
        f"while not pathlib.Path({str(spare_up)!r}).exists(): time.sleep(0.05)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n",
    )
    sup.controller.spare_argv = spare_stand_in(tmp_path, f"sys.exit({NO_SERVICES})\n")
    for router in sup.routers:
        router.argv = SLEEPER
    caplog.set_level(logging.INFO, logger="skyctl.supervisor")
    running = asyncio.create_task(sup.run())
    try:
        await eventually(lambda: sup.controller.spare is not None, "a warm spare")
        spare = sup.controller.spare
        assert spare is not None and spare.returncode is None  # waiting
        spare_up.write_text("")  # now the controller crashes
        assert await asyncio.wait_for(running, 30) == 0
    finally:
        sup.stopping.set()
        await asyncio.gather(running, return_exceptions=True)
    assert int((tmp_path / "promoted").read_text()) == spare.pid
    assert sup.controller.starts == 2
    assert f"controller started from its warm spare (pid {spare.pid})" in caplog.text
    assert sup.controller.spare is None  # none left behind


async def test_after_a_clean_stop_the_controller_starts_afresh_not_from_the_spare(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`controller stop` then `start` runs the code on disk (an upgrade): the spare,
    started from the old code, is stopped with the controller."""
    monkeypatch.setattr(supervisor, "SPARE_AFTER", 0.0)
    home = tmp_path / "home"
    sup = Supervisor(paths(home))
    sup.controller.argv = controller_stand_in(
        tmp_path, home, f"time.sleep(1.5); sys.exit(0 if n == 1 else {NO_SERVICES})\n"
    )
    sup.controller.spare_argv = spare_stand_in(tmp_path, f"sys.exit({NO_SERVICES})\n")
    for router in sup.routers:
        router.argv = SLEEPER
    running = asyncio.create_task(sup.run())
    try:
        await eventually(lambda: sup.controller.spare is not None, "a warm spare")
        spare = sup.controller.spare
        assert spare is not None
        await eventually(lambda: spare.returncode is not None, "the spare stopped with it")
        os.kill(os.getpid(), signal.SIGUSR1)  # `skyctl controller start`
        assert await asyncio.wait_for(running, 30) == 0
    finally:
        sup.stopping.set()
        await asyncio.gather(running, return_exceptions=True)
    assert sup.controller.starts == 2
    assert not (tmp_path / "promoted").exists()  # started afresh


async def test_the_real_warm_spare_holds_nothing_until_told_and_exits_when_its_stdin_closes(
    tmp_path: Path,
) -> None:
    """``skyctl.controller.daemon --standby``: no lock, no controller.json while it
    waits; EOF (its supervisor gone) ends it with status 0; one line starts it."""
    home = tmp_path / "home"
    home.mkdir()
    argv = [sys.executable, "-m", "skyctl.controller.daemon", "--home", str(home)]
    argv += ["--router-process", "--standby"]
    idle = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.PIPE)
    live = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.PIPE)
    try:
        await asyncio.sleep(0.5)
        assert idle.returncode is None and not paths(home).daemon_info.exists()
        assert idle.stdin is not None and live.stdin is not None
        idle.stdin.close()
        assert await asyncio.wait_for(idle.wait(), 60) == 0
        assert not (home / "controller.lock").exists()
        live.stdin.write(b"go\n")
        await live.stdin.drain()
        await eventually(lambda: paths(home).daemon_info.exists(), "it runs", 60)
        assert json.loads(paths(home).daemon_info.read_text())["pid"] == live.pid
        live.terminate()
        assert await asyncio.wait_for(live.wait(), 30) == NO_SERVICES  # stopped, nothing stored
    finally:
        for proc in (idle, live):
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
