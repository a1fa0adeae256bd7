"""`serve down --purge` and `down`'s progress display.

- ``--purge`` (as ``sky serve down --purge``) removes a service whose teardown did
  not finish within ``--timeout``, after the best-effort terminate it started, and
  says what may be left and where (exit 1 when a provider still lists something);
  the terminate already under way still finishes.
- ``--timeout`` alone gives up waiting with what is left, and keeps the service.
- the progress is one live table on a terminal, redrawn in place; without a
  terminal a plain line only when a service's remaining replicas change.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from skyctl.cli_down_progress import DownProgress
from skyctl.config import paths
from skyctl.errors import ServiceNotFound
from skyctl.store import Store
from tests.helpers.status import api_services
from tests.helpers.waiting import wait_until
from tests.test_cli_down import replica_pids, up
from tests.test_e2e_local import cli


def served(home: Path, name: str) -> bool:
    """The controller still knows NAME (``GET /v1/services?name=NAME``, in this process);
    no controller answering is not (it exits with its last service)."""
    try:
        return api_services(home, name) is not None
    except ServiceNotFound:
        return False


def kept(home: Path, name: str) -> bool:
    store = Store(paths(home).db)
    try:
        return store.get_service(name) is not None
    finally:
        store.close()


@pytest.mark.timeout(150)
def test_purge_forgets_a_service_whose_teardown_is_stuck_and_says_what_is_left(
    tmp_path: Path, skyctl_home: Path
) -> None:
    up(skyctl_home, tmp_path, "stuck")  # its replica ignores SIGTERM: 5 s to terminate
    assert replica_pids(skyctl_home)
    purged = cli(skyctl_home, "serve", "down", "stuck", "--purge", "--timeout", "0")
    assert purged.returncode == 1, purged.stdout + purged.stderr
    err = " ".join(purged.stderr.split())
    assert "purged stuck from the store though its teardown did not finish" in err, err
    assert "live replicas: 1 SHUTTING_DOWN" in err, err
    assert "may keep running (and billing) on local" in err, err
    assert "skyctl serve down --all --force" in err  # how to stop what is left

    gone = cli(skyctl_home, "serve", "status", "stuck")
    assert gone.returncode == 2 and "no service named 'stuck'" in gone.stderr
    # the terminate it had started still finishes: nothing is leaked
    assert wait_until(lambda: not replica_pids(skyctl_home), 30), replica_pids(skyctl_home)


@pytest.mark.timeout(120)
def test_a_timeout_gives_up_waiting_and_keeps_the_service(
    tmp_path: Path, skyctl_home: Path
) -> None:
    up(skyctl_home, tmp_path, "slow")  # its replica ignores SIGTERM: 5 s to terminate
    waited = cli(skyctl_home, "serve", "down", "slow", "--timeout", "1")
    assert waited.returncode == 1, waited.stdout + waited.stderr
    err = " ".join(waited.stderr.split())
    assert "not down within 1s; left: slow is not down (live replicas: 1 SHUTTING_DOWN" in err
    # still stored right after the CLI gave up (read in-process: a second CLI's start
    # can take longer, on a loaded machine, than the 5 s the teardown needs)
    assert kept(skyctl_home, "slow")
    # the shutdown goes on without the CLI: the service is gone, its replica too
    assert wait_until(lambda: not served(skyctl_home, "slow"), 30)  # (the API, in-process)
    gone = cli(skyctl_home, "serve", "status", "slow")
    assert gone.returncode == 2 and "no service named 'slow'" in gone.stderr, gone.stderr
    assert wait_until(lambda: not replica_pids(skyctl_home), 10), replica_pids(skyctl_home)


@pytest.mark.timeout(120)
def test_purge_of_a_service_that_goes_down_in_time_is_an_ordinary_down(
    tmp_path: Path, skyctl_home: Path
) -> None:
    up(skyctl_home, tmp_path, "quick")
    down = cli(skyctl_home, "serve", "down", "quick", "--purge")
    assert down.returncode == 0, down.stdout + down.stderr
    assert "Service quick is down: every replica terminated, nothing left on local." in down.stdout
    assert "purged" not in down.stdout + down.stderr
    assert "quick: 1 replica(s) still terminating (replica 1 SHUTTING_DOWN)" in down.stdout  # plain


def test_purge_is_refused_where_it_cannot_wait(skyctl_home: Path) -> None:
    for extra in (["--no-wait"], ["--replica-id", "1"]):
        result = cli(skyctl_home, "serve", "down", "x", "--purge", *extra)
        assert result.returncode == 2 and "--purge waits for the teardown" in result.stderr


REPLICAS = [{"id": 3, "status": "SHUTTING_DOWN"}, {"id": 4, "status": "READY"}]


def test_on_a_terminal_the_progress_is_one_table_redrawn_in_place() -> None:
    out = io.StringIO()
    term = Console(file=out, force_terminal=True, width=100, color_system=None)
    with DownProgress(["a", "b"], console=term) as progress:
        for _ in range(5):
            progress.show("a", REPLICAS)
            progress.show("b", REPLICAS[:1])
        progress.done("b", ok=True)
    text = out.getvalue()
    assert "\x1b[2K" in text and "\x1b[1A" in text  # lines erased and rewritten, not appended
    last = text[text.rindex("SERVICE") :].splitlines()
    assert [line.split()[:2] for line in last[1:3]] == [["a", "terminating"], ["b", "down"]]
    assert "replica 3 SHUTTING_DOWN, 4 READY" in last[1]


def test_without_a_terminal_a_line_only_when_the_replicas_left_change(
    capsys: pytest.CaptureFixture[str],
) -> None:
    pipe = Console(file=io.StringIO(), force_terminal=False)
    with DownProgress(["a"], console=pipe) as progress:
        for _ in range(5):
            progress.show("a", REPLICAS)
        progress.show("a", REPLICAS[:1])
        progress.done("a", ok=True)
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "  a: 2 replica(s) still terminating (replica 3 SHUTTING_DOWN, 4 READY)",
        "  a: 1 replica(s) still terminating (replica 3 SHUTTING_DOWN)",
    ]
