"""The crash-safety campaign: SIGKILL the controller at random points, restart, check.

A scenario keeps the controller busy: a spot service with seeded random
preemptions (so launches, notices and replacements never stop), rolling
updates that change its version and size, and a second, on-demand service
that is created and deleted. While it runs, the daemon gets SIGKILL after a
delay drawn from ``random.Random(seed)``; then a new daemon starts on the same
home and must converge:

- every service whose creation was acknowledged still exists (a deletion in
  doubt may go either way), with a version at least the last acknowledged
  one, and its router back on the same port, answering 200;
- the store's live replicas, the local provider's instance records and the
  replica processes alive on this machine are the same set (no orphan, no
  leaked record, nothing missing), all READY, at the current version and size;
- no replica id was ever started twice (each replica's log shows one start),
  so client tokens carried the launches across the restarts.

:func:`run_campaign` returns what it tried; the test runs a few kills, the
benchmark (``benchmarks/crash.py``) many.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from skyctl.client import ControllerClient
from skyctl.errors import ServiceError, ServiceNotFound, SkyctlError
from skyctl.lifecycle import ReplicaStatus
from skyctl.spec_yaml import parse_spec
from skyctl.store import Store
from tests.helpers.daemon import ECHO, Daemon, replica_processes

S = ReplicaStatus

SPEC = """\
name: {name}
envs:
  TAG: "{tag}"
service:
  readiness_probe:
    path: /health
    initial_delay_seconds: 30
    period_seconds: 0.5
  replicas: {replicas}
resources:
  cloud: local
  use_spot: {spot}
local:
  preemption_rate_per_hour: {rate}
  seed: {seed}
  notice_seconds: 1
run: exec {python} {echo}
"""


def spec_text(
    name: str, *, replicas: int, tag: str, spot: bool = True, rate: float = 0.0, seed: int = 0
) -> str:
    return SPEC.format(
        name=name,
        tag=tag,
        replicas=replicas,
        spot="true" if spot else "false",
        rate=rate if spot else 0.0,
        seed=seed,
        python=sys.executable,
        echo=ECHO,
    )


@dataclass
class Expected:
    """What the clients were told about one service."""

    acked_version: int = 0  # highest version an API call confirmed
    port: int | None = None
    created: bool = False  # creation acknowledged
    deleting: bool = False  # a deletion was requested (acknowledged or in doubt)


@dataclass
class KillPoint:
    """One SIGKILL: when, during which step, and what the store showed in progress."""

    delay: float
    step: str
    launching: int
    terminating: int
    starting: int
    old_version: int
    preempting: int

    def kinds(self) -> list[str]:
        out = [
            kind
            for kind, n in (
                ("launch", self.launching),
                ("termination", self.terminating),
                ("startup", self.starting),
                ("update", self.old_version),
                ("preemption", self.preempting),
            )
            if n
        ]
        return out or ["steady"]


@dataclass
class CampaignResult:
    kills: list[KillPoint] = field(default_factory=list)
    checks: int = 0
    recover_seconds: list[float] = field(default_factory=list)


class Scenario:
    """The operations a user might be running when the controller dies."""

    def __init__(self, daemon: Daemon, rng: random.Random, *, rate: float, seed: int) -> None:
        self.daemon = daemon
        self.rng = rng
        self.rate = rate
        self.seed = seed
        self.expected: dict[str, Expected] = {}
        self.step_index = 0
        self.current = ""
        self.updates = 0
        self.side = 0  # how many side services were created

    def steps(self) -> list[tuple[str, Callable[[ControllerClient], None]]]:
        return [
            ("create main", self._create_main),
            ("wait ready", self._wait_ready),
            ("rolling update", self._update_main),
            ("create side", self._create_side),
            ("pause", self._pause),
            ("delete side", self._delete_side),
            ("pause", self._pause),
        ]

    async def run(self, client: ControllerClient) -> None:
        """Run steps (in a thread each, the client is synchronous) until cancelled."""
        steps = self.steps()
        while True:
            name, step = steps[self.step_index % len(steps)]
            self.current = name
            await asyncio.to_thread(step, client)
            self.step_index += 1

    # ---- steps -------------------------------------------------------------------
    def _create(self, client: ControllerClient, name: str, text: str) -> None:
        exp = self.expected.setdefault(name, Expected())
        try:
            svc = client.call("POST", "/v1/services", {"yaml": text, "source": None})
        except ServiceError as e:  # the client sees ServiceExists as a ServiceError
            if "already exists" not in str(e):
                raise
            return
        exp.created = True
        exp.acked_version = max(exp.acked_version, int(svc["version"]))
        exp.port = int(svc["endpoint"].rsplit(":", 1)[1])

    def _create_main(self, client: ControllerClient) -> None:
        text = spec_text("main", replicas=2, tag="t0", rate=self.rate, seed=self.seed)
        self._create(client, "main", text)

    def _wait_ready(self, client: ControllerClient) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if client.call("GET", "/v1/services?name=main")[0]["ready_replicas"] > 0:
                return
            time.sleep(0.2)

    def _update_main(self, client: ControllerClient) -> None:
        self.updates += 1
        replicas = 2 + self.updates % 2
        text = spec_text(
            "main", replicas=replicas, tag=f"t{self.updates}", rate=self.rate, seed=self.seed
        )
        svc = client.call("PUT", "/v1/services/main", {"yaml": text, "source": None})
        exp = self.expected["main"]
        exp.acked_version = max(exp.acked_version, int(svc["version"]))

    def _create_side(self, client: ControllerClient) -> None:
        self.side += 1
        name = f"side{self.side}"
        self._create(client, name, spec_text(name, replicas=1, tag="s", spot=False))

    def retry_deletions(self, client: ControllerClient) -> None:
        """A deletion in doubt (the kill cut its call) is sent again, as a user would."""
        for name, exp in self.expected.items():
            if exp.deleting:
                try:
                    client.call("DELETE", f"/v1/services/{name}")
                except ServiceNotFound:
                    pass

    def _pause(self, _: ControllerClient) -> None:
        time.sleep(self.rng.uniform(0.3, 1.5))

    def _delete_side(self, client: ControllerClient) -> None:
        name = f"side{self.side}"
        self.expected.setdefault(name, Expected()).deleting = True
        try:
            client.call("DELETE", f"/v1/services/{name}")
        except ServiceNotFound:
            pass


# ---- observation and checks ---------------------------------------------------------


def kill_point(home: Path, delay: float, step: str) -> KillPoint:
    """What was in progress, according to the store, when the controller died."""
    store = Store(home / "state.db")
    try:
        launching = terminating = starting = old = 0
        for svc in store.list_services():
            for r in store.list_replicas(svc.name):
                launching += r.status in (S.PENDING, S.PROVISIONING)
                terminating += r.status is S.SHUTTING_DOWN
                starting += r.status is S.STARTING
                old += r.version < svc.current_version
    finally:
        store.close()
    preempting = sum(
        1 for rec in _records(home) if rec["state"] != "RUNNING" or rec["interruption_at"]
    )
    return KillPoint(delay, step, launching, terminating, starting, old, preempting)


def _records(home: Path) -> list[dict[str, object]]:
    out = []
    for path in sorted((home / "local" / "instances").glob("*.json")):
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue  # being replaced right now
    return out


def duplicate_starts(home: Path) -> list[str]:
    """Replica ids whose process was started more than once (from their logs)."""
    dupes = []
    for log in sorted((home / "local" / "logs").glob("*/replica-*.log")):
        try:
            starts = log.read_text(errors="replace").count("echo server (replica")
        except FileNotFoundError:
            continue  # its service went down since the listing: its logs went with it
        if starts > 1:
            dupes.append(f"{log.parent.name}/{log.stem} started {starts} times")
    return dupes


def problems(home: Path, expected: dict[str, Expected]) -> list[str]:
    """Everything that keeps the system from being converged and correct (empty: fine)."""
    out = duplicate_starts(home)
    store = Store(home / "state.db")
    try:
        services = {s.name: s for s in store.list_services()}
        live: dict[str, tuple[str, int]] = {}
        for name, svc in services.items():
            exp = expected.get(name)
            if svc.status.value == "SHUTTING_DOWN" or (exp is not None and exp.deleting):
                out.append(f"{name}: still shutting down")
            replicas = store.list_replicas(name)
            try:
                version = store.get_version(name, svc.current_version)
            except ServiceNotFound:  # deleted by the daemon since we listed it
                continue
            want = parse_spec(version.yaml_text, version.source).service.replica_policy
            ready = [r for r in replicas if r.status is S.READY]
            if exp is None or not exp.deleting:
                # the policy may keep spares: at least the target, nothing in transit
                if len(ready) < want.min_replicas or len(ready) != len(replicas):
                    states = sorted(f"{r.replica_id}:{r.status.value}" for r in replicas)
                    out.append(f"{name}: want {want.min_replicas}+ READY, have {states}")
                if any(r.version != svc.current_version for r in replicas):
                    out.append(f"{name}: update to v{svc.current_version} not finished")
            for r in replicas:
                if r.instance_id:
                    live[r.instance_id] = (name, r.replica_id)
        for name, exp in expected.items():
            svc_rec = services.get(name)
            if exp.created and not exp.deleting and svc_rec is None:
                out.append(f"{name}: service LOST")
            if svc_rec is not None and svc_rec.current_version < exp.acked_version:
                out.append(f"{name}: version {svc_rec.current_version} < acked {exp.acked_version}")
            if svc_rec is not None and exp.port is not None and svc_rec.router_port != exp.port:
                out.append(f"{name}: router moved from {exp.port} to {svc_rec.router_port}")
    finally:
        store.close()
    records = {str(r["instance_id"]): r for r in _records(home)}
    procs = replica_processes(home)
    for iid in sorted(set(records) - set(live)):
        out.append(f"provider record {iid} ({records[iid]['state']}) not live in the store")
    for iid in sorted(set(live) - set(records)):
        out.append(f"store replica {live[iid]} has no provider record {iid}")
    for iid in sorted(set(procs) - set(live)):
        out.append(f"ORPHAN process {procs[iid]} of instance {iid}")
    for iid in sorted(set(live) - set(procs)):
        out.append(f"store replica {live[iid]} has no process")
    return out


def endpoint_answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
            return r.status == 200
    except OSError:
        return False


def wait_converged(home: Path, expected: dict[str, Expected], timeout: float) -> list[str]:
    """Poll until :func:`problems` is empty twice in a row; return the last problems."""
    deadline = time.monotonic() + timeout
    clean = 0
    found: list[str] = []
    while time.monotonic() < deadline:
        found = problems(home, expected)
        clean = clean + 1 if not found else 0
        if clean >= 2:
            return []
        time.sleep(0.25)
    return found


# ---- the campaign -------------------------------------------------------------------


async def run_campaign(
    home: Path,
    *,
    seed: int,
    kills: int,
    max_delay: float = 5.0,
    rate: float = 120.0,
    converge_timeout: float = 45.0,
    report: Callable[[str], None] = lambda _: None,
) -> CampaignResult:
    """Kill the controller ``kills`` times at seeded random points; check after each.

    Raises AssertionError naming the problems when a restart does not converge.
    """
    rng = random.Random(seed)
    daemon = Daemon(home)
    scenario = Scenario(daemon, rng, rate=rate, seed=seed)
    result = CampaignResult()
    try:
        client = daemon.start()
        for n in range(kills):
            delay = rng.uniform(0.05, max_delay)
            task = asyncio.create_task(scenario.run(client))
            done, _ = await asyncio.wait({task}, timeout=delay)
            daemon.kill()
            if task in done:
                task.result()  # a scenario bug: surface it
            point = kill_point(home, delay, scenario.current)
            result.kills.append(point)
            task.cancel()
            try:
                await task  # the step's thread sees the dead daemon and returns an error
            except (asyncio.CancelledError, SkyctlError):
                pass
            if scenario.current != "create main" or "main" in _services(home):
                scenario.step_index += 1  # a step in doubt is not retried
            started = time.monotonic()
            client = daemon.start()
            scenario.retry_deletions(client)
            found = await asyncio.to_thread(
                wait_converged, home, scenario.expected, converge_timeout
            )
            result.recover_seconds.append(time.monotonic() - started)
            result.checks += 1
            assert not found, f"kill {n + 1} ({point}) did not converge: {found}"
            for name, exp in scenario.expected.items():
                if exp.port is not None and not exp.deleting:
                    assert endpoint_answers(exp.port), f"{name}: no answer on port {exp.port}"
            report(
                f"kill {n + 1}/{kills} after {delay:.2f}s during {point.step!r} "
                f"({', '.join(point.kinds())}): converged in {result.recover_seconds[-1]:.1f}s"
            )
        return result
    finally:
        daemon.close()


def _services(home: Path) -> set[str]:
    store = Store(home / "state.db")
    try:
        return {s.name for s in store.list_services()}
    finally:
        store.close()
