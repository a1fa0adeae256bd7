"""A test run stopped by SIGTERM leaves no skyctl process behind.

``timeout 1200 pytest ...`` and a cancelled CI job end pytest with SIGTERM. The
daemons a test starts (supervisor, controller, router process, replicas) run in
sessions of their own, so only the suite can stop them: tests/conftest.py turns
the first SIGTERM into a KeyboardInterrupt (pytest then runs the teardowns) and
stops, at the session's end, whatever is still tied to its temporary directory.
This runs a pytest of its own with two services up, one under the
``skyctl_home`` fixture and one under a home the test made itself, SIGTERMs it
mid-test and checks that nothing of that run is left.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers.processes import kill_under, pids_mentioning, wait_until_gone
from tests.helpers.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent

INNER = textwrap.dedent(
    """
    import time
    from pathlib import Path

    from tests.helpers.cli import run_cli

    SPEC = '''
    service:
      readiness_probe: {{path: /health, initial_delay_seconds: 20, period_seconds: 0.5}}
      replicas: 1
    run: exec {python} {echo}
    '''


    def test_two_services_then_wait(skyctl_home: Path, tmp_path: Path) -> None:
        spec = tmp_path / "svc.yaml"
        spec.write_text(SPEC)
        raw = tmp_path / "raw-home"  # not the fixture's: only the session reaper knows it
        raw.mkdir()
        for home in (skyctl_home, raw):
            up = run_cli(home, "serve", "up", "-n", "svc", str(spec), "--timeout", "60")
            assert up.returncode == 0, up.stdout + up.stderr
        Path({marker!r}).write_text("up")
        time.sleep(600)
    """
)


def children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.timeout(180)
@pytest.mark.parametrize("mode", [("-p", "no:xdist"), ("-n", "1")], ids=["plain", "xdist"])
def test_a_sigterm_run_leaves_no_skyctl_process(tmp_path: Path, mode: tuple[str, str]) -> None:
    """SIGTERM to pytest alone (``kill PID``), with and without pytest-xdist workers."""
    basetemp, marker = tmp_path / "inner", tmp_path / "services-up"
    test_file = tmp_path / "test_inner.py"
    test_file.write_text(
        INNER.format(
            python=sys.executable,
            echo=ROOT / "tests" / "apps" / "echo_server.py",
            marker=str(marker),
        )
    )
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "tests.conftest",
            *mode,
            f"--basetemp={basetemp}",
            f"--rootdir={tmp_path}",
            str(test_file),
        ],
        cwd=ROOT,
        # a new interpreter per command: the inner run's processes are its daemons only
        env={**os.environ, "PYTHONPATH": str(ROOT), "SKYCTL_TEST_FRESH_CLI": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert wait_until(lambda: marker.exists() or run.poll() is not None, 120)
        assert marker.exists(), run.communicate()[0]
        tied = str(basetemp) + os.sep
        # both services: a supervisor, controller, router and replica each at least
        assert len(pids_mentioning(tied)) >= 8, pids_mentioning(tied)
        workers = children(run.pid)  # pytest-xdist's, or none
        assert len(workers) == (1 if "-n" in mode else 0), workers
        run.send_signal(signal.SIGTERM)
        out, _ = run.communicate(timeout=60)
        assert wait_until_gone(tied, 10) == [], out
        assert wait_until(lambda: not any(alive(w) for w in workers), 10), out
        assert run.returncode != 0 and "KeyboardInterrupt" in out, out
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        kill_under(basetemp)
