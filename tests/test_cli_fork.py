"""The tests' ``skyctl`` runs (:func:`tests.helpers.cli.run_cli`) fork from a server that
imported the command line once: a command run that way gives what a new interpreter
(``python -m skyctl``) gives: exit status, standard output and error, the caller's
environment, working directory and standard input, and a kill at the timeout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.cli import ROOT, run_cli

SPEC = """\
service:
  readiness_probe: /
  replicas: 1
run: exec python3 -m http.server "$PORT" --bind 127.0.0.1
"""


@pytest.mark.parametrize(
    "args",
    [
        (),  # a group alone: its help, exit 2
        ("serve", "up"),  # a usage error
        ("serve", "validate", "missing.yaml"),  # a file that is not there, relative to cwd
        ("serve", "validate", "web.yaml"),  # a good spec, found in cwd
        ("serve", "validate", "-"),  # the spec on standard input (none: not a tty)
        ("serve", "status", "--endpoint", "nosuch"),  # exit 2, no controller started
        ("--version",),
    ],
    ids=["help", "usage", "missing", "valid", "stdin", "no-service", "version"],
)
def test_a_forked_command_answers_as_a_new_interpreter_does(
    skyctl_home: Path, tmp_path: Path, args: tuple[str, ...]
) -> None:
    (tmp_path / "web.yaml").write_text(SPEC)
    fresh = run_cli(skyctl_home, *args, cwd=tmp_path, fresh=True)
    forked = run_cli(skyctl_home, *args, cwd=tmp_path)
    assert (forked.returncode, forked.stdout, forked.stderr) == (
        fresh.returncode,
        fresh.stdout,
        fresh.stderr,
    )


def test_the_callers_environment_reaches_the_command(
    skyctl_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--env NAME`` takes NAME's value from the environment run_cli was called with."""
    spec = tmp_path / "web.yaml"
    spec.write_text(SPEC.replace("run:", "envs:\n  GREETING:\nrun:"))
    monkeypatch.setenv("GREETING", "hello")
    taken = run_cli(skyctl_home, "serve", "validate", str(spec), "--env", "GREETING")
    assert taken.returncode == 0, taken.stderr
    monkeypatch.delenv("GREETING")
    refused = run_cli(skyctl_home, "serve", "validate", str(spec), "--env", "GREETING")
    assert refused.returncode == 2 and "GREETING" in refused.stderr, refused.stderr


def test_a_command_past_its_timeout_is_killed_and_the_timeout_raised(
    skyctl_home: Path, tmp_path: Path
) -> None:
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    held = os.open(fifo, os.O_RDWR)  # a writer that never writes: the spec's read blocks
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            run_cli(skyctl_home, "serve", "validate", str(fifo), timeout=2)
    finally:
        os.close(held)


def test_a_command_whose_environment_changes_the_interpreters_start_gets_a_new_one(
    skyctl_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's streams were set up for its own environment: a command asking for
    another encoding is not forked (it would print in the server's)."""
    monkeypatch.setenv("PYTHONIOENCODING", "utf-16")
    shown = run_cli(skyctl_home, "--version")
    assert shown.returncode == 0
    assert "\x00" in shown.stdout  # UTF-16 read back as the locale's encoding


def test_a_test_process_that_ends_leaves_no_server_and_no_socket_behind(
    skyctl_home: Path,
) -> None:
    """Another test process runs a command, says where its server listened and ends:
    the server is gone with it, and so is the socket's directory."""
    code = (
        "from pathlib import Path\n"
        "from tests.helpers import cli_fork\n"
        "from tests.helpers.cli import run_cli\n"
        f"assert run_cli(Path({str(skyctl_home)!r}), '--version').returncode == 0\n"
        "proc, path = cli_fork._server\n"
        "print(proc.pid, path)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    pid, path = done.stdout.split()
    assert not Path(path).parent.exists()
    assert not Path(f"/proc/{pid}").exists()  # ended, and reaped by the process that ended
