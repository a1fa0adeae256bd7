"""The CLI's check after ``serve down`` reads the local provider's records, never writes them.

The controller is their one writer. A check of one service (``two`` is down) that
writes back what it noticed (another service's replica whose process just ended:
FAILED) would bring back a record the controller removed meanwhile, once its
terminate finished: that service (``one``) would then be gone from the store with
an instance still listed, and its own check would fail. This happened in a loaded
run of tests/test_cli_down_parity.py (``serve down one two``). The simulated cloud's
journal likewise: a snapshot written from the check drops the controller's later lines.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import providers.local as local_mod
from providers import simulated
from providers.local_records import Record, RecordStore, instance_id
from skyctl import teardown
from skyctl.config import paths


def test_a_down_check_never_writes_back_a_record_the_controller_removed_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = paths(tmp_path / "home")
    iid = instance_id("one", 2, "token")
    RecordStore(p.local_state).save(  # the controller's record of one's replica 2
        Record(
            instance_id=iid,
            client_token="token",
            service="one",
            replica_id=2,
            version=1,
            location="local/local/local-a",
            spot=False,
            price=1.0,
            created_at=0.0,
            pid=2**22 + 1,  # above any pid_max: no such process
            pgid=2**22 + 1,
            port=1,
            log_path=str(tmp_path / "replica-2.log"),
        )
    )
    record = p.local_state / "instances" / f"{iid}.json"

    def terminate_finishes_meanwhile(pid: int, start: str | None) -> bool:
        # the controller's terminate: the process is gone, then so is its record
        record.unlink(missing_ok=True)
        return False

    monkeypatch.setattr(local_mod, "pid_alive", terminate_finishes_meanwhile)
    assert teardown.leftovers(p, {"two": ["local"]}) == ({}, {})
    assert not record.exists()
    monkeypatch.undo()
    assert teardown.leftovers(p, {"one": ["local"]}) == ({}, {})  # one's own check


def test_a_down_check_never_rewrites_the_simulated_clouds_journal_under_the_controller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = paths(tmp_path / "home")
    journal = p.local_state.parent / "simulated" / simulated.STATE_FILE
    journal.parent.mkdir(parents=True)
    row = {
        "instance_id": "sim-1-abcdefgh",
        "service": "one",
        "replica_id": 1,
        "version": 1,
        "location": "simulated/r1/r1-a",
        "spot": False,
        "state": "RUNNING",
        "price": 1.0,
        "created_at": 0.0,
        "token": "abcdefgh",
    }
    journal.write_text(json.dumps(row) + "\n")
    real_read = simulated._read_state

    def terminate_journaled_meanwhile(path: Path) -> list[dict[str, Any]]:
        rows = real_read(path)
        with journal.open("a") as f:  # the controller's terminate of one's instance
            f.write(json.dumps({"gone": row["instance_id"]}) + "\n")
        return rows

    monkeypatch.setattr(simulated, "_read_state", terminate_journaled_meanwhile)
    assert teardown.leftovers(p, {"two": ["simulated"]}) == ({}, {})
    monkeypatch.undo()
    assert simulated._read_state(journal) == [], "one's instance is back in the journal"
    assert teardown.leftovers(p, {"one": ["simulated"]}) == ({}, {})
