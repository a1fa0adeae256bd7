"""``skyctl serve down``: take services down, and say so only once it is verified.

A service is reported down when the controller has removed it from the store
*and* each provider it used lists none of its instances (:mod:`skyctl.teardown`);
else the command exits 1 with what is left. A controller that exits during the
shutdown is restarted (up to :data:`MAX_CONTROLLER_RESTARTS` times) to finish
it. ``--all --force`` needs neither the controller nor the state database: it
stops every instance skyctl tagged, on each provider it can reach.

``--timeout S`` stops waiting after S seconds (exit 1 with what is left);
``--purge`` (as ``sky serve down --purge``) then removes the services' records
anyway, once the best-effort terminate has begun, and says what may be left and
where. The wait is shown by :class:`~skyctl.cli_down_progress.DownProgress`.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from skyctl import supervisor_files
from skyctl.client import (
    ControllerClient,
    ControllerUnreachable,
    forget_services,
    services_query,
    stored_replica_clouds,
    stored_replicas,
    stored_services,
)
from skyctl.config import Paths
from skyctl.errors import ServiceNotFound, SkyctlError, StoreError

# the providers (teardown) and rich (DownProgress) are imported by the functions using
# them: `serve down` of a service that is not there, or with --no-wait, needs neither
if TYPE_CHECKING:
    from skyctl.cli_down_progress import DownProgress

POLL_SECONDS = 1.0
POLL_TIMEOUT = 10.0  # one status call; a controller slower than this counts as not answering


FORCE_HINT = "`skyctl serve down --all --force` stops every instance skyctl launched without it"
#: times `serve down` restarts a controller that exits before the shutdown is done
MAX_CONTROLLER_RESTARTS = 3
#: how long `serve down` waits for a controller that runs but does not answer
BUSY_SECONDS = 120.0
#: `serve down --purge` waits this long for the teardown before removing the record
PURGE_WAIT_SECONDS = 60.0


_GLOB = frozenset("*?[")  # never in a service name: a pattern, as sky serve down takes


def expand_names(client: ControllerClient, names: tuple[str, ...]) -> list[str]:
    """The services ``names`` give, each once in order: a name as is; a glob pattern
    (``'svc-*'``, as ``sky serve down "service-*"``) as every service it matches,
    none matching being the same error as an unknown name."""
    if not any(_GLOB & set(n) for n in names):
        return list(dict.fromkeys(names))
    known = [str(s["name"]) for s in client.call("GET", services_query())]
    out: list[str] = []
    for n in names:
        hits = fnmatch.filter(known, n) if _GLOB & set(n) else [n]
        if not hits:
            raise ServiceNotFound(f"no service named {n!r} (nor matching it as a pattern)")
        out += hits
    return list(dict.fromkeys(out))


def wait_down(
    p: Paths,
    client: ControllerClient,
    clouds: dict[str, list[str]],
    *,
    timeout: float | None = None,
    purge: bool = False,
) -> None:
    """Follow the services' shutdown on one live display until the store has none of them
    and their providers confirm nothing is left; else exit 1 with what is left.

    ``timeout``: give up waiting after that many seconds. ``purge``: a service whose
    teardown did not finish (in time, or at all) is removed from the store anyway,
    and the command says what may be left and where.
    """
    from skyctl.cli_down_progress import DownProgress  # rich: only for the wait

    pending = dict(clouds)
    problems: list[str] = []
    with DownProgress(sorted(clouds)) as progress:
        try:
            problems = _follow(p, client, pending, progress, timeout)
        except SkyctlError as e:
            if not purge:
                raise
            problems = [str(e)]
    if purge and pending:
        problems += _purge(p, pending)
    elif pending:
        problems.append(f"not down within {timeout:.0f}s; " + _what_is_left(p, pending))
    if problems:
        raise SkyctlError("; ".join(problems))


def _follow(
    p: Paths,
    client: ControllerClient,
    pending: dict[str, list[str]],
    progress: DownProgress,
    timeout: float | None,
) -> list[str]:
    """Poll until each service in ``pending`` is gone from the store (removing it from
    ``pending``), then confirm with its providers. Problems, if any; services still in
    ``pending`` when ``timeout`` is up are left there."""
    problems: list[str] = []
    restarts = 0
    busy_since: float | None = None
    start = time.monotonic()
    while pending:
        if timeout is not None and time.monotonic() - start > timeout:
            return problems
        try:
            for n in sorted(pending):
                try:
                    svc = client.call("GET", services_query(n), timeout=POLL_TIMEOUT)[0]
                except ServiceNotFound:
                    problems += _confirm_down(p, n, pending.pop(n), progress)
                    continue
                progress.show(n, [r for r in svc["replicas"] if r["status"] != "TERMINATED"])
            busy_since = None
        except ControllerUnreachable:
            found = ControllerClient.find(p)
            if found is not None and found.base != client.base:  # another one answers now
                restarts = _one_more_restart(p, pending, restarts)
                progress.note(
                    f"The controller exited before {', '.join(sorted(pending))} was down; "
                    f"restarted (by its supervisor or another command), it finishes the down "
                    f"(see {p.daemon_log})"
                )
            if found is not None:  # a hiccup, or a new controller
                client = found
                continue
            if _daemon_running(p):  # alive but not answering (overloaded): wait, bounded
                now = time.monotonic()
                if busy_since is None:
                    busy_since = now
                    progress.note("The controller is not answering; waiting for it")
                elif now - busy_since > BUSY_SECONDS:
                    raise SkyctlError(
                        f"the controller has not answered for {BUSY_SECONDS:.0f}s (see "
                        f"{p.daemon_log}); " + _what_is_left(p, pending)
                    ) from None
                time.sleep(POLL_SECONDS)
                continue
            busy_since = None
            try:
                stored = set(stored_services(p))
            except StoreError as e:
                raise SkyctlError(
                    f"the controller exited and {e}; {_what_is_left(p, pending)}; {FORCE_HINT}"
                ) from None
            for n in sorted(set(pending) - stored):  # removed, then the idle controller exited
                problems += _confirm_down(p, n, pending.pop(n), progress)
            if not pending:
                break
            restarts = _one_more_restart(p, pending, restarts)
            progress.note(
                f"The controller exited before {', '.join(sorted(pending))} was down; "
                f"restarting it to finish (see {p.daemon_log})"
            )
            try:
                client = ControllerClient.ensure(p)
            except SkyctlError as e:
                raise SkyctlError(f"{e}; {_what_is_left(p, pending)}") from None
            continue
        if pending:
            time.sleep(POLL_SECONDS)
    return problems


def _purge(p: Paths, pending: dict[str, list[str]]) -> list[str]:
    """``--purge``: forget services whose teardown did not finish, then say what may be
    left (the store's replicas, what each provider still lists) and where. Problems."""
    from skyctl import teardown

    left = _what_is_left(p, pending)  # before the rows go
    listed, unchecked = teardown.leftovers(p, pending)
    problems: list[str] = []
    for n in sorted(pending):
        try:
            forget_services(p, [n])
        except ServiceNotFound:  # it went down meanwhile: an ordinary down
            problems += _confirm_down(p, n, pending.pop(n))
        except StoreError as e:
            return [f"could not purge {', '.join(sorted(pending))}: {e}; {left}; {FORCE_HINT}"]
    if not pending:
        return problems
    names = ", ".join(sorted(pending))
    where = ", ".join(sorted({c for cs in pending.values() for c in cs}))
    if not any(listed.get(n) for n in pending) and not unchecked:
        click.echo(f"Purged {names} from the store; no instance of it is listed on {where}.")
        return problems
    problems.append(
        f"purged {names} from the store though its teardown did not finish; {left}; "
        f"what is left may keep running (and billing) on {where}: {FORCE_HINT}"
    )
    return problems


def _daemon_running(p: Paths) -> bool:
    """The controller's process exists (and is not a zombie), answering or not."""
    try:
        pid = int(json.loads(p.daemon_info.read_text())["pid"])
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError, KeyError, TypeError):  # none, or corrupt
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _confirm_down(
    p: Paths, name: str, clouds: list[str], progress: DownProgress | None = None
) -> list[str]:
    """The store no longer has ``name``: ask its providers too. Problems, if any."""
    from skyctl import teardown

    left, unchecked = teardown.leftovers(p, {name: clouds})
    problems = []
    if left.get(name):
        problems.append(
            f"service {name} was removed but its provider still lists "
            f"{', '.join(left[name])}; {FORCE_HINT}"
        )
    for cloud, why in sorted(unchecked.items()):
        problems.append(f"service {name}: could not confirm on {cloud} that nothing is left: {why}")
    where = ", ".join(sorted(clouds))
    said = (
        ""
        if problems
        else f"Service {name} is down: every replica terminated, nothing left on {where}."
    )
    if progress is not None:
        progress.done(name, ok=not problems, message=said)
    elif said:
        click.echo(said)
    return problems


def _one_more_restart(p: Paths, pending: dict[str, list[str]], restarts: int) -> int:
    """Count one more controller restart during the down, or give up (with what is
    left) once :data:`MAX_CONTROLLER_RESTARTS` were spent."""
    if restarts >= MAX_CONTROLLER_RESTARTS:
        raise SkyctlError(
            f"the controller keeps exiting (see {p.daemon_log}); " + _what_is_left(p, pending)
        )
    return restarts + 1


def _what_is_left(p: Paths, pending: dict[str, list[str]]) -> str:
    """One line: the replicas the store still has live, and what the providers list."""
    from skyctl import teardown

    replicas: dict[str, list[tuple[int, str]]] | None
    try:
        replicas = stored_replicas(p, list(pending))
    except StoreError:
        replicas = None  # the caller says why
    listed, unchecked = teardown.leftovers(p, pending)
    parts: list[str] = []
    for n in sorted(pending):
        if replicas is None:
            rows = "unknown"
        else:
            rows = ", ".join(f"{rid} {status}" for rid, status in replicas.get(n, [])) or "none"
        instances = ", ".join(listed.get(n, [])) or "none"
        parts.append(f"{n} is not down (live replicas: {rows}; instances: {instances})")
    parts += [f"{cloud} not checked: {why}" for cloud, why in sorted(unchecked.items())]
    return "left: " + "; ".join(parts)


def force_down(p: Paths) -> None:
    """Stop everything skyctl launched, by the providers' tags, store or no store."""
    from skyctl import teardown

    if supervisor_files.running_pid(p) is not None:
        click.echo("Stopping the controller and the router process first")
        stop_supervisor(p, kill_after=True)
    if _daemon_running(p):
        click.echo("Stopping the controller first (it would relaunch what is stopped)")
        stop_controller(p, kill_after=True)
    extra: set[str] = set()
    try:
        names = stored_services(p)
        damaged = ""
        for rows in stored_replica_clouds(p, names).values():
            extra |= set(rows)
    except StoreError as e:
        names, damaged = [], str(e)
    clouds = teardown.configured_clouds(p, extra)
    click.echo(f"Listing the instances skyctl tagged on {', '.join(clouds)}...")
    result = teardown.sweep(p, clouds)
    for cloud in result.checked:
        done = result.terminated.get(cloud, {})
        for service, ids in sorted(done.items()):
            click.echo(
                f"  {cloud}: terminated {len(ids)} instance(s) of {service}: {', '.join(ids)}"
            )
        if not done:
            click.echo(f"  {cloud}: no instance found")
    if damaged:
        click.echo(
            f"The state database could not be read ({damaged}); move it aside to start "
            f"afresh: mv {p.db} {p.db}.damaged"
        )
    elif names and result.clean:
        forget_services(p, names)
        click.echo(f"Removed {', '.join(names)} from the store.")
    if not result.clean:
        left = [
            f"{cloud}: {service} ({', '.join(ids)})"
            for cloud, by_service in sorted(result.left.items())
            for service, ids in sorted(by_service.items())
        ]
        left += [f"{cloud} not checked: {why}" for cloud, why in sorted(result.unchecked.items())]
        raise SkyctlError("not everything is stopped; left: " + "; ".join(left))
    click.echo(f"Nothing skyctl launched is left on {', '.join(result.checked)}.")


def stop_supervisor(p: Paths, *, kill_after: bool = False) -> None:
    """SIGTERM the supervisor (it stops the controller and the router process, so
    every endpoint closes) and wait up to 45 s; then SIGKILL its process group
    if ``kill_after``, else raise."""
    pid = supervisor_files.running_pid(p)
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    for _ in range(450):
        if supervisor_files.running_pid(p) is None:
            return
        time.sleep(0.1)
    if not kill_after:
        raise SkyctlError(f"supervisor {pid} did not stop within 45s")
    click.echo(f"The supervisor did not stop within 45s; killing it (pid {pid})", err=True)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)  # its children share its process group
    files = [*p.home.glob("router*.json"), *p.home.glob("routes*.cache")]
    for info in [p.home / supervisor_files.INFO_NAME, *files]:
        with contextlib.suppress(FileNotFoundError):
            info.unlink()  # they could not remove theirs


def stop_controller(p: Paths, *, kill_after: bool = False) -> None:
    """SIGTERM the controller and wait up to 30 s for it to go (replicas keep
    running); then SIGKILL it if ``kill_after``, else raise."""
    pid = int(json.loads(p.daemon_info.read_text())["pid"])
    os.kill(pid, signal.SIGTERM)
    for _ in range(300):
        if not _daemon_running(p):
            return
        time.sleep(0.1)
    if not kill_after:
        raise SkyctlError(f"controller {pid} did not stop within 30s")
    click.echo(f"The controller did not stop within 30s; killing it (pid {pid})", err=True)
    os.kill(pid, signal.SIGKILL)
    for _ in range(50):
        if not _daemon_running(p):
            return
        time.sleep(0.1)


def _controller_pid(p: Paths) -> int | None:
    """The pid ``controller.json`` names while that process runs (answering or not)."""
    try:
        pid = int(json.loads(p.daemon_info.read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):  # none, or corrupt
        return None
    return pid if _daemon_running(p) else None


def restart_controller(p: Paths, *, everything: bool = False) -> str:
    """``skyctl controller restart``: stop the controller (with ``everything``, the
    supervisor and router process too), start it again, and return what to say once
    the new one answers. Refused before anything stops when the new one could not
    start (a bad config.yaml, a database it cannot open); a stop or a start that
    fails is a one-line error saying what runs then."""
    from skyctl.config import router_workers

    router_workers(p)  # config.yaml, all of it (and router.workers, the supervisor's)
    stored_services(p)  # a database the new controller could not open: its error, now
    note = lambda message: click.echo(message, err=True)  # noqa: E731
    old, supervisor = _controller_pid(p), supervisor_files.running_pid(p)
    try:
        if everything and supervisor is not None:
            note("Stopping the controller and the router process...")
            stop_supervisor(p)
        elif old is not None:
            note(f"Stopping the controller (pid {old})...")
            stop_controller(p)
            if everything:  # no supervisor: the router processes a killed one left
                supervisor_files.stop_orphan_routers(p)
            elif not stored_services(p):  # with no service the supervisor exits now:
                stop_supervisor(p)  # wait for it, so the start below starts a new one
    except SkyctlError as e:
        raise SkyctlError(f"{e}; nothing was restarted") from None
    try:
        ControllerClient.ensure(p, progress=note)  # returns once the new one answers
    except SkyctlError as e:
        serving = supervisor_files.running_pid(p) is not None and bool(stored_services(p))
        endpoints = "; the endpoints keep answering" if serving else ""
        raise SkyctlError(
            f"the controller stopped but did not start again: {e}{endpoints} "
            "(`skyctl controller start` tries again)"
        ) from None
    new = _controller_pid(p)
    if old is None and not (everything and supervisor is not None):
        return f"No controller was running; controller started (pid {new})."
    pids = f"pid {old} -> {new}" if old is not None else f"pid {new}"
    if everything:
        closed = "; the endpoints were closed meanwhile" if stored_services(p) else ""
        return f"Controller and router process restarted ({pids}){closed}."
    kept = supervisor is not None and supervisor_files.running_pid(p) == supervisor
    if kept and stored_services(p):
        return f"Controller restarted ({pids}); the endpoints kept answering."
    return f"Controller restarted ({pids})."
