"""A spec path that names no plain file is one line, at once: a named pipe no process
writes to (``open`` waited for a writer for ever, so ``serve up``/``validate`` hung),
a directory, a symlink loop; a pipe with a writer (``serve up <(envsubst < svc.yaml)``)
is still read. A key that looks like a known one but holds a character beyond
ASCII (a Cyrillic lookalike, a no-break space pasted from a web page) says which.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from skyctl.errors import SpecError
from skyctl.spec_yaml import load_spec_file, parse_spec

SPEC = "name: web\nservice:\n  replicas: 1\nrun: sleep 1000\n"


def test_a_named_pipe_no_one_writes_to_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "svc.yaml"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def load() -> None:
        try:
            load_spec_file(fifo)
        except BaseException as e:  # handed to the test's thread
            outcome.append(e)

    reader = threading.Thread(target=load, daemon=True)
    reader.start()
    reader.join(timeout=10)  # a deadline for a hang, not a timed assertion
    hung = reader.is_alive()
    if hung:  # let the stuck open() go: a writer comes and leaves
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(timeout=20)
    assert not hung, "load_spec_file waited for a writer on a named pipe"
    assert len(outcome) == 1 and isinstance(outcome[0], SpecError), outcome
    assert str(outcome[0]) == (f"{fifo}: a named pipe (FIFO) no process writes to: nothing to read")


def test_a_pipe_with_a_writer_is_read_as_process_substitution_gives_it() -> None:
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, SPEC.encode())
        os.close(write_end)
        write_end = -1
        assert load_spec_file(f"/dev/fd/{read_end}").name == "web"
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda p: p.mkdir(), "cannot read: Is a directory"),
        (lambda p: p.symlink_to(p), "cannot read: Too many levels of symbolic links"),
    ],
    ids=["directory", "symlink loop"],
)
def test_a_path_that_is_no_file_is_one_line(tmp_path: Path, make: object, says: str) -> None:
    path = tmp_path / "svc.yaml"
    make(path)  # type: ignore[operator]
    with pytest.raises(SpecError) as info:
        load_spec_file(path)
    assert str(info.value) == f"{path}: {says}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\u0455ervice:\n  replicas: 1\nrun: x\n", "s.yaml:1: \u0455ervice: unknown key; did "
         "you mean 'service'? (it holds U+0455 CYRILLIC SMALL LETTER DZE: keys are ASCII)"),
        ("service\u00a0:\n  replicas: 1\nrun: x\n", "s.yaml:1: service\u00a0: unknown key; did "
         "you mean 'service'? (it holds U+00A0 NO-BREAK SPACE: keys are ASCII)"),
    ],
    ids=["cyrillic lookalike", "no-break space from a web page"],
)  # fmt: skip
def test_a_key_that_looks_known_names_what_it_holds_beyond_ascii(text: str, expected: str) -> None:
    # was "\\u0455ervice: unknown key; did you mean 'service'?": the two look the same
    with pytest.raises(SpecError) as info:
        parse_spec(text, source="s.yaml")
    assert str(info.value) == expected
