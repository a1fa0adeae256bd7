"""A local replica's log is kept under a size cap: copy-truncate rotation, read across it.

The replica writes its output through an ``O_APPEND`` descriptor it inherited
(``providers/local_process.py``); before, nothing bounded that file: a replica
printing in a loop filled the disk. ``providers/local_logs.rotate`` copies a log
over its cap to ``<log>.1`` (older copies shift) and truncates it; the replica's
next write lands at the file's start. ``skyctl.logtail.LogReader`` (``serve logs``,
``--tail``, ``-f``) and ``tail_bytes`` (a failure's last lines) read the copies and
the log as one stream. All in-process, on files: no daemon, no sleep.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

import providers.local_logs as local_logs
import skyctl.logtail as logtail
from providers.local_logs import LogLimits, LogRotator, rotate
from providers.local_records import end_files, prune_logs
from providers.registry import ProviderSet
from skyctl.clock import FakeClock
from skyctl.config import load_user_config, paths
from skyctl.controller.failure_facts import read_tail
from skyctl.logtail import LogReader, tail_bytes
from tests.helpers.waiting import wait_until

CAP = LogLimits(max_bytes=1000, backups=1)


@pytest.fixture
def truncating(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rotations copy and truncate, as on a file system that cannot collapse a range
    (tmpfs, overlayfs): the layout these tests spell out."""
    monkeypatch.setattr(local_logs, "_collapse", lambda fd, length: False)


def can_collapse(folder: Path) -> bool:
    probe = folder / "probe"
    probe.write_bytes(b"x" * 3 * 65536)
    fd = os.open(probe, os.O_RDWR)
    try:
        return local_logs._collapse(fd, local_logs._whole_blocks(fd))
    finally:
        os.close(fd)
        probe.unlink()


def replica_fd(log: Path) -> int:
    """The descriptor a replica's processes write through (as local_process opens it)."""
    return os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)


def lines(start: int, count: int) -> bytes:
    return b"".join(b"line %05d\n" % i for i in range(start, start + count))


def read_all(reader: LogReader, size: int = 64 * 1024) -> bytes:
    out = b""
    while chunk := reader.read(size):
        out += chunk
    return out


# ---------------------------------------------------------------- rotation


def test_a_log_over_its_cap_is_copied_to_dot_1_and_truncated_and_the_replica_writes_on_at_0(
    tmp_path: Path,
    truncating: None,
) -> None:
    log = tmp_path / "replica-1.log"
    fd = replica_fd(log)
    try:
        os.write(fd, lines(0, 100))  # 1,100 bytes
        assert not rotate(str(log), LogLimits(max_bytes=2000, backups=1))  # under its cap
        assert rotate(str(log), CAP)
        os.write(fd, b"after\n")  # the replica's stream goes on, into the same file
    finally:
        os.close(fd)
    assert Path(f"{log}.1").read_bytes() == lines(0, 100)
    assert log.read_bytes() == b"after\n"  # at offset 0: no hole of 1,100 bytes
    assert oct(Path(f"{log}.1").stat().st_mode & 0o777) == "0o600"  # may echo secrets
    assert not Path(f"{log}.rotating").exists()


def test_older_copies_shift_and_those_past_the_kept_count_go(
    tmp_path: Path, truncating: None
) -> None:
    log = tmp_path / "replica-1.log"
    for gen in range(4):
        log.write_bytes(b"%d\n" % gen * 600)
        assert rotate(str(log), LogLimits(max_bytes=1000, backups=2))
    assert Path(f"{log}.1").read_bytes() == b"3\n" * 600
    assert Path(f"{log}.2").read_bytes() == b"2\n" * 600
    assert not Path(f"{log}.3").exists()
    log.write_bytes(b"4\n" * 600)
    assert rotate(str(log), CAP)  # log_backups lowered to 1: .2 goes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["replica-1.log", "replica-1.log.1"]


def test_with_no_copies_kept_a_log_over_its_cap_is_only_truncated(tmp_path: Path) -> None:
    log = tmp_path / "replica-1.log"
    log.write_bytes(lines(0, 200))
    assert rotate(str(log), LogLimits(max_bytes=1000, backups=0))
    assert log.read_bytes() == b""
    assert [p.name for p in tmp_path.iterdir()] == ["replica-1.log"]


@pytest.mark.parametrize("full_at", [1, 2], ids=["first copy", "last copy, at the truncate"])
def test_with_no_space_for_the_copy_the_log_is_truncated_without_one(
    tmp_path: Path, truncating: None, monkeypatch: pytest.MonkeyPatch, full_at: int
) -> None:
    real_copy = local_logs._copy
    calls: list[int] = []

    def disk_full(src: int, dst: int, start: int, end: int | None) -> int:
        calls.append(1)
        if len(calls) >= full_at:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_copy(src, dst, start, end)

    monkeypatch.setattr(local_logs, "_copy", disk_full)
    log = tmp_path / "replica-1.log"
    log.write_bytes(lines(0, 200))
    assert rotate(str(log), CAP)  # the cap first: the disk is what is full
    assert len(calls) == full_at
    assert [p.name for p in tmp_path.iterdir()] == ["replica-1.log"]  # no half copy left
    assert log.read_bytes() == b""


def test_where_the_file_system_can_a_rotation_takes_whole_blocks_off_and_loses_nothing(
    tmp_path: Path,
) -> None:
    """ext4 and XFS collapse a range atomically with the replica's appends: no instant
    between a last copy and a truncate where its writes are lost."""
    if not can_collapse(tmp_path):
        pytest.skip("this file system cannot collapse a range (tmpfs, overlayfs)")
    log = tmp_path / "replica-1.log"
    fd = replica_fd(log)
    try:
        os.write(fd, lines(0, 1000))  # 11,000 bytes
        assert rotate(str(log), LogLimits(max_bytes=5000, backups=1))
        os.write(fd, b"after\n")
    finally:
        os.close(fd)
    copy = Path(f"{log}.1").read_bytes()
    assert len(copy) % os.statvfs(tmp_path).f_bsize == 0 and len(copy) > 5000
    assert copy + log.read_bytes() == lines(0, 1000) + b"after\n"  # nothing lost, no twice
    with LogReader(log, tail=2) as reader:  # a line the cut split is whole again
        assert read_all(reader) == b"line 00999\nafter\n"


def test_following_a_collapsed_log_goes_on_where_it_was_in_the_copy_or_the_log(
    tmp_path: Path,
) -> None:
    if not can_collapse(tmp_path):
        pytest.skip("this file system cannot collapse a range (tmpfs, overlayfs)")
    log = tmp_path / "replica-1.log"
    fd = replica_fd(log)
    limits = LogLimits(max_bytes=5000, backups=2)
    got = b""
    try:
        with LogReader(log) as behind, LogReader(log) as ahead:
            os.write(fd, lines(0, 1000))
            got = behind.read(3000)  # still in what goes to the copy
            ahead_got = read_all(ahead)  # past the cut: it stays in the log
            assert rotate(str(log), limits)
            os.write(fd, lines(1000, 10))
            got += read_all(behind)
            ahead_got += read_all(ahead)
    finally:
        os.close(fd)
    assert got == ahead_got == lines(0, 1010)


# ---------------------------------------------------------------- reading across it


def test_a_whole_read_is_the_copies_oldest_first_then_the_log(
    tmp_path: Path, truncating: None
) -> None:
    log = tmp_path / "replica-1.log"
    fd = replica_fd(log)
    try:
        for gen in range(3):
            os.write(fd, lines(gen * 150, 150))
            rotate(str(log), LogLimits(max_bytes=1000, backups=2))
        os.write(fd, lines(450, 10))
    finally:
        os.close(fd)
    with LogReader(log) as reader:
        assert read_all(reader, 100) == lines(150, 310)  # the first copy is gone (2 kept)
    with LogReader(log, tail=2, follow=False) as reader:
        with log.open("ab") as replica:
            replica.write(lines(460, 1000))  # a fast replica: not chased by a --no-follow
        assert read_all(reader) == lines(458, 2)


def test_tail_counts_lines_across_the_rotation_and_joins_a_line_it_split(tmp_path: Path) -> None:
    log = tmp_path / "replica-1.log"
    Path(f"{log}.1").write_bytes(b"a\nb\nsplit-")  # rotated in the middle of a line
    log.write_bytes(b"line\nc\n")
    with LogReader(log, tail=3) as reader:
        assert read_all(reader) == b"b\nsplit-line\nc\n"
    with LogReader(log, tail=1) as reader:
        assert read_all(reader) == b"c\n"
    with LogReader(log, tail=0) as reader:
        assert read_all(reader) == b""
    with LogReader(log, tail=50) as reader:
        assert read_all(reader) == b"a\nb\nsplit-line\nc\n"


def test_following_goes_on_into_the_new_file_after_one_or_two_rotations(tmp_path: Path) -> None:
    open_fds = len(os.listdir("/proc/self/fd"))
    log = tmp_path / "replica-1.log"
    fd = replica_fd(log)
    got = b""
    limits = LogLimits(max_bytes=1000, backups=2)
    try:
        with LogReader(log, tail=0) as reader:
            os.write(fd, lines(0, 150))
            got += reader.read(300)  # part way in when it rotates
            rotate(str(log), limits)
            os.write(fd, lines(150, 50))
            got += read_all(reader, 256)
            os.write(fd, lines(200, 120))
            rotate(str(log), limits)  # twice before the next read
            os.write(fd, lines(320, 120))
            rotate(str(log), limits)
            os.write(fd, lines(440, 5))
            got += read_all(reader, 256)
    finally:
        os.close(fd)
    assert got == lines(0, 445)
    assert len(os.listdir("/proc/self/fd")) == open_fds  # every copy it opened, closed


def test_a_rotation_during_a_read_never_passes_off_the_new_files_bytes_as_the_old(
    tmp_path: Path, truncating: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "replica-1.log"
    fd = replica_fd(log)
    real_pread = os.pread
    rotated: list[bool] = []

    def pread_racing_a_rotation(f: int, size: int, offset: int) -> bytes:
        if not rotated:  # the rotator thread truncates while this reads
            rotated.append(rotate(str(log), CAP))
            os.write(fd, lines(500, 200))  # and the log grows past the reader's offset
        return real_pread(f, size, offset)

    try:
        os.write(fd, lines(0, 50))
        with LogReader(log) as reader:
            got = reader.read(200)
            os.write(fd, lines(50, 50))
            monkeypatch.setattr(logtail.os, "pread", pread_racing_a_rotation)
            got += read_all(reader)
    finally:
        os.close(fd)
    assert rotated == [True]
    assert got == lines(0, 100) + lines(500, 200)


def test_following_goes_on_when_the_replica_itself_truncates_its_log(tmp_path: Path) -> None:
    """A shell's ``echo x >/dev/stderr`` reopens the replica's log with O_TRUNC (a regular
    file: nothing can refuse it); following it stayed past the end and printed nothing."""
    log = tmp_path / "replica-1.log"
    log.write_bytes(lines(0, 50))
    with LogReader(log) as reader:
        assert read_all(reader) == lines(0, 50)
        log.write_bytes(b"err\n")  # what the shell's redirection does
        assert read_all(reader) == b"err\n"


def test_a_failures_last_bytes_include_the_copys_end_when_the_log_was_just_rotated(
    tmp_path: Path,
) -> None:
    log = tmp_path / "replica-1.log"
    log.write_bytes(lines(0, 200))
    rotate(str(log), CAP)
    log.write_bytes(b"Traceback: boom\n")
    assert tail_bytes(log, 38) == lines(198, 2) + b"Traceback: boom\n"  # 22 + 16 bytes
    assert tail_bytes(tmp_path / "none.log", 40) == b""
    # the lines `serve status` shows for a replica that failed right after a rotation
    assert read_tail(str(log), lines=3) == "line 00198\nline 00199\nTraceback: boom"


# ---------------------------------------------------------------- kept, pruned, watched


def test_an_ended_replicas_copies_are_stamped_and_pruned_with_its_log(tmp_path: Path) -> None:
    log = tmp_path / "replica-1.log"
    log.write_bytes(lines(0, 200))
    rotate(str(log), CAP)
    end_files(tmp_path / "work", str(log), 1000.0)
    assert Path(f"{log}.1").stat().st_mtime == 1000.0
    assert prune_logs(tmp_path, {"replica-1.log"}, 2000.0) == 0  # live: kept, with its copy
    assert prune_logs(tmp_path, set(), 2000.0) == 2
    assert list(tmp_path.iterdir()) == []


def test_the_rotator_thread_rotates_watched_logs_and_ends_with_the_last_one(
    tmp_path: Path,
) -> None:
    rotator = LogRotator(interval=0.01)
    log = tmp_path / "replica-1.log"
    log.write_bytes(lines(0, 200))
    rotator.watch(str(log), CAP)
    assert rotator.running
    assert wait_until(lambda: Path(f"{log}.1").exists(), seconds=10)
    rotator.unwatch(str(log))
    rotator.join(10)
    assert not rotator.running  # nothing left behind once no log is watched


# ---------------------------------------------------------------- configured


def test_the_cap_defaults_to_32_mib_and_one_copy_and_is_set_in_config_yaml(
    tmp_path: Path,
) -> None:
    assert LogLimits() == LogLimits(32 * 1024 * 1024, 1)
    p = paths(tmp_path)
    p.config.write_text("local:\n  log_max_mb: 0.5\n  log_backups: 3\n")
    config = load_user_config(p)
    provider = ProviderSet(config=config, clock=FakeClock(), local_state=tmp_path / "l").get(
        "local"
    )
    assert provider._log_caps.limits == LogLimits(512 * 1024, 3)  # type: ignore[attr-defined]
