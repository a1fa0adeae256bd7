"""A corrupt ``controller.json`` or ``supervisor.json`` reads as "not running".

The CLI, the supervisor and the router process find the controller (and the
supervisor) through small JSON files in the home. A file that was JSON but
not the object they expect (``[]``, ``null``, ``"text"``, a pid that is a
list, no ``host``) raised TypeError or KeyError where only a missing or
truncated file was caught: ``skyctl controller stop`` said "internal error:
TypeError", and the router process's watch ended (so the process exited and
restarted, and met the same file). Now each reads such a file as no process.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from skyctl import supervisor
from skyctl.cli_down import _daemon_running
from skyctl.client import ControllerClient
from skyctl.config import paths
from skyctl.router.process import home_target

CORRUPT = ["[]", "null", '"text"', "5", '{"pid": [1]}', '{"pid": null}', '{"pid": %d}']


def home_with(tmp_path: Path, name: str, text: str) -> Path:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / name).write_text(text.replace("%d", str(os.getpid())))  # a live pid, no host
    (home / "api-token").write_text("t" * 40)
    return home


@pytest.mark.parametrize("text", CORRUPT)
def test_a_corrupt_controller_json_is_no_controller(tmp_path: Path, text: str) -> None:
    p = paths(home_with(tmp_path, "controller.json", text))
    assert p.daemon_info.name == "controller.json"
    assert ControllerClient.find(p) is None
    assert _daemon_running(p) is False or text == '{"pid": %d}'  # the pid lives: running
    assert home_target(p)() is None


@pytest.mark.parametrize("text", CORRUPT)
def test_a_corrupt_supervisor_json_is_no_supervisor(tmp_path: Path, text: str) -> None:
    p = paths(home_with(tmp_path, supervisor.info_path(paths(tmp_path / "x")).name, text))
    pid = supervisor.running_pid(p)
    assert pid is None or (text == '{"pid": %d}' and pid == os.getpid())
