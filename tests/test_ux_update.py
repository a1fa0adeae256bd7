"""``serve update`` as a new user reads it: it returns once the new version has its
replicas, not at the first poll where the replicas it has are ready."""

from __future__ import annotations

from typing import Any

import pytest

from skyctl import cli_update


class Polls:
    """A controller's status answers, one per poll (the last one repeats)."""

    def __init__(self, *answers: list[tuple[int, int, str]], planned: tuple[int, ...] = ()) -> None:
        self.answers = list(answers)
        self.planned = planned  # the version each answer's plan was made for (none: no field)
        self.calls = 0

    def call(self, method: str, path: str) -> list[dict[str, Any]]:
        replicas = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        rows = [{"id": i, "version": v, "status": s} for i, v, s in replicas]
        svc = {"version": 2, "replicas": rows, "serving_versions": [2], "failure": ""}
        if self.planned:
            svc["plan"] = {"version": self.planned[min(self.calls - 1, len(self.planned) - 1)]}
        return [svc]


def test_an_in_place_scale_up_waits_for_the_new_replica(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`replicas: 2` -> `3`, applied in place: the first poll came before the controller
    launched the third replica, and `serve update` said `runs version 2 on 2 ready
    replica(s)` and returned."""
    monkeypatch.setattr(cli_update.time, "sleep", lambda s: None)
    polls = Polls(
        [(1, 2, "READY"), (2, 2, "READY")],
        [(1, 2, "READY"), (2, 2, "READY"), (3, 2, "STARTING")],
        [(1, 2, "READY"), (2, 2, "READY"), (3, 2, "READY")],
    )
    cli_update._wait_rolled(polls, "web", 2, None, 3)  # type: ignore[arg-type]
    out = capsys.readouterr().out.splitlines()
    assert polls.calls == 3
    assert [line.split("] ", 1)[-1] for line in out] == [
        "version 2: 2/3 ready; older versions: 0 left; serving 2 (rolling)",
        "version 2: 3/3 ready; older versions: 0 left; serving 2 (rolling)",
        "Service web runs version 2 on 3 ready replica(s)",
    ]


def test_an_in_place_scale_down_waits_for_a_plan_of_the_new_version(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`replicas: 2` -> `1`, applied in place: the first poll came before the controller
    planned version 2, both replicas were version 2 and READY, and `serve update` said
    `runs version 2 on 2 ready replica(s)` while one of them was about to go."""
    monkeypatch.setattr(cli_update.time, "sleep", lambda s: None)
    polls = Polls(
        [(1, 2, "READY"), (2, 2, "READY")],
        [(1, 2, "READY"), (2, 2, "SHUTTING_DOWN")],
        [(1, 2, "READY")],
        planned=(1, 2, 2),
    )
    cli_update._wait_rolled(polls, "web", 2, None, 1)  # type: ignore[arg-type]
    out = capsys.readouterr().out.splitlines()
    assert polls.calls == 3
    assert out[-1].endswith("Service web runs version 2 on 1 ready replica(s)")
