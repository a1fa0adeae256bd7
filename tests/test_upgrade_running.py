"""Upgrading skyctl with services running: an older skyctl's controller was killed
(SIGKILL, as in a crash or an upgrade that replaced it) with its replicas running;
the first command of this version starts its controller on the same SKYCTL_HOME.

The home is what that older skyctl leaves: its state database (a real one of an
older schema, ``tests/data/upgrade/schema-N.sql``, see tests/test_upgrade_schemas.py)
and the local provider's instance records (the fields every release since the
first one writes) of two replica processes that run on. The controller must
migrate the database, show the service with its history and cost, *adopt* the
two replicas (same ids, same processes: no relaunch, none orphaned), serve the
endpoint, and `serve down` must leave no process, port or file of the service.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from skyctl.store import SCHEMA_VERSION
from tests.helpers.processes import pids_mentioning
from tests.helpers.status import wait_services
from tests.helpers.waiting import wait_until
from tests.test_upgrade_schemas import OLD_SCHEMAS, load

ROOT = Path(__file__).resolve().parent.parent
LIVE = (2, 3)  # the fixture's READY replicas (1 is TERMINATED)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


def cli(home: Path, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SKYCTL_HOME": str(home), "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "skyctl", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def proc_start(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[19]


def start_replica(home: Path, row: sqlite3.Row) -> tuple[subprocess.Popen[bytes], int]:
    """A replica process as the older controller left it running, and its record."""
    state = home / "local"
    (state / "instances").mkdir(mode=0o700, parents=True, exist_ok=True)
    log_path = state / "logs" / "web" / f"replica-{row['replica_id']}.log"
    log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "SKYCTL_SERVICE": "web",
        "SKYCTL_REPLICA_ID": str(row["replica_id"]),
        "SKYCTL_VERSION": "1",
        "SKYCTL_INSTANCE_ID": row["instance_id"],
        "SKYCTL_LOCAL_STATE": str(state),
    }
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
            cwd=state,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # as the local provider starts them: a group each
        )
    assert wait_until(lambda: listening(port), 20), "the replica process never listened"
    record = {  # the fields of the first release's record (later ones only added some)
        "instance_id": row["instance_id"],
        "client_token": row["client_token"],
        "service": "web",
        "replica_id": row["replica_id"],
        "version": 1,
        "location": f"{row['cloud']}/{row['region']}/{row['zone']}",
        "spot": bool(row["spot"]),
        "price": row["price"],
        "created_at": row["created_at"],
        "pid": proc.pid,
        "pgid": proc.pid,
        "port": port,
        "log_path": str(log_path),
        "proc_start": proc_start(proc.pid),
        "state": "RUNNING",
        "interruption_at": None,
        "detail": "",
    }
    path = state / "instances" / f"{row['instance_id']}.json"
    path.write_text(json.dumps(record, indent=1, sort_keys=True))
    path.chmod(0o600)
    return proc, port


EPOCHS = (1.6e9, 2.2e9)  # what a timestamp column holds (2020 to 2039), not a port or a cost


def recent(conn: sqlite3.Connection) -> None:
    """Move the dump's times so its latest is a minute ago, as after a crash: left as
    captured, they aged with the dump, and an hour later retention had removed the
    ended replica's row before the test looked (it passed only the day it was written)."""
    tables = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    columns = [(t, r[1]) for t in tables for r in conn.execute(f"PRAGMA table_info({t})")]
    where = "typeof({c}) IN ('real', 'integer') AND {c} BETWEEN ? AND ?"
    latest = max(
        (
            conn.execute(f"SELECT max({c}) FROM {t} WHERE {where.format(c=c)}", EPOCHS).fetchone()[
                0
            ]
            or 0.0
        )
        for t, c in columns
    )
    offset = time.time() - 60.0 - latest
    for t, c in columns:
        conn.execute(f"UPDATE {t} SET {c} = {c} + ? WHERE {where.format(c=c)}", (offset, *EPOCHS))


def older_home(
    home: Path, version: int, spec_tweak: tuple[str, str] = ("", "")
) -> tuple[dict[int, subprocess.Popen[bytes]], int]:
    """``home`` as an older skyctl at ``version`` left it when SIGKILLed: the replica
    processes (by id) and the endpoint's port. ``spec_tweak``: (old, new) text
    replaced in its stored spec."""
    db = home / "state.db"
    load(db, version)
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    with conn:
        recent(conn)
    procs: dict[int, subprocess.Popen[bytes]] = {}
    with conn:
        if spec_tweak[0]:
            conn.execute(
                "UPDATE service_versions SET yaml_text = replace(yaml_text, ?, ?)", spec_tweak
            )
            [(stored,)] = conn.execute("SELECT yaml_text FROM service_versions").fetchall()
            assert spec_tweak[1] in stored
        for row in conn.execute("SELECT * FROM replicas WHERE replica_id IN (2, 3)").fetchall():
            proc, port = start_replica(home, row)
            procs[row["replica_id"]] = proc
            conn.execute(
                "UPDATE replicas SET endpoint = ? WHERE replica_id = ?",
                (f"http://127.0.0.1:{port}", row["replica_id"]),
            )
        router_port = free_port()
        conn.execute("UPDATE services SET router_port = ?", (router_port,))
    conn.close()
    return procs, router_port


@pytest.mark.timeout(180)
@pytest.mark.parametrize("version", [OLD_SCHEMAS[0], OLD_SCHEMAS[-1]])  # the first, the last
def test_the_current_controller_adopts_the_running_replicas_of_an_older_skyctl(
    skyctl_home: Path, version: int
) -> None:
    upgrade_and_take_down(skyctl_home, version)


@pytest.mark.timeout(180)
def test_a_stored_spec_with_a_key_the_older_skyctl_ignored_still_serves_and_goes_down(
    skyctl_home: Path,
) -> None:
    """Schema 6's skyctl dropped `gpu:` with no value (a null); this one refuses it in a
    new spec (a typo of gpus). Reading the stored one refused it too: the service had no
    endpoint after the upgrade and `serve down` never finished."""
    upgrade_and_take_down(skyctl_home, 6, ("  cloud: local\n", "  cloud: local\n  gpu:\n"))


def upgrade_and_take_down(
    skyctl_home: Path, version: int, spec_tweak: tuple[str, str] = ("", "")
) -> None:
    procs, router_port = older_home(skyctl_home, version, spec_tweak)
    ports = {}
    try:
        first = cli(skyctl_home, "serve", "status")
        assert first.returncode == 0, first.stderr
        assert "Traceback" not in first.stderr
        (svc,) = wait_services(  # through the API, then shown by `serve status -a -o json`
            skyctl_home,
            lambda shown: (
                len(shown) == 1
                and [(r["id"], r["status"]) for r in shown[0]["replicas"]]
                == [(1, "TERMINATED"), (2, "READY"), (3, "READY")]
            ),
            "replica 1 TERMINATED, 2 and 3 READY",
            60,
        )
        assert all(p.poll() is None for p in procs.values())  # the same processes
        ports = {r["id"]: int(r["endpoint"].rsplit(":", 1)[1]) for r in svc["replicas"]}
        assert svc["endpoint"] == f"http://127.0.0.1:{router_port}"
        assert wait_until(lambda: _get(svc["endpoint"]) == 200, 30)
        assert svc["accrued_cost"] > 0 and all(
            r["accrued_cost"] > 0 for r in svc["replicas"] if r["id"] in LIVE
        )
        events = cli(skyctl_home, "serve", "logs", "web", "--events")
        assert events.returncode == 0, events.stderr
        launches = [line for line in events.stdout.splitlines() if " launch replica " in line]
        assert len(launches) == 3, events.stdout  # the older ones; nothing relaunched
        conn = sqlite3.connect(skyctl_home / "state.db")
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        conn.close()

        down = cli(skyctl_home, "serve", "down", "web", timeout=120)
        assert down.returncode == 0, down.stdout + down.stderr
        for proc in procs.values():
            proc.wait(timeout=30)  # terminated by the controller (and reaped here)
        assert not [p for p in (router_port, *ports.values()) if listening(p)]
        local = skyctl_home / "local"
        assert list((local / "instances").iterdir()) == []
        assert not (local / "logs" / "web").exists()
        assert wait_until(lambda: pids_mentioning(str(skyctl_home)) == [], 30)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _get(url: str) -> int | str:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return int(r.status)
    except OSError as e:
        return repr(e)
