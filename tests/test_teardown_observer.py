"""The CLI's check after ``serve down`` reads the local provider's records, never writes them.

The controller is their one writer. A check of one service (``two`` is down) that
writes back what it noticed (another service's replica whose process just ended:
FAILED) would bring back a record the controller removed meanwhile, once its
terminate finished: that service (``one``) would then be gone from the store with
an instance still listed, and its own check would fail. This happened in a loaded
run of tests/test_cli_down_parity.py (``serve down one two``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import providers.local as local_mod
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
