"""``python -m benchmarks.llm_routing``: arguments no run can use are refused before
running, in one line naming the argument (a NaN duration crashed after the whole run
with a traceback; an infinite one never ended)."""

from __future__ import annotations

import pytest

from benchmarks.llm_routing.__main__ import _args


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--duration", "nan"], "--duration must be a finite number"),
        (["--duration", "inf"], "--duration must be a finite number"),
        (["--duration", "60"], "--duration must be a finite number"),
        (["--loads", "nan"], "--loads are shares of capacity"),
        (["--replicas", "1", "4"], "--replicas must be 2 or more"),
    ],
)
def test_bad_arguments_are_one_line_errors_before_any_run(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        _args(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if "error:" in line]
    assert named in line and "Traceback" not in err


def test_the_index_memory_figure_is_measured_at_the_bound() -> None:
    """``python -m benchmarks.llm_routing.index_memory`` (docs/spec.md's bytes per pair):
    the index it fills holds exactly its bound, however much more it was sent."""
    from benchmarks.llm_routing.index_memory import measure

    pairs, used = measure(2, entries=3000)
    assert pairs == 3000 and 3000 * 50 < used < 3000 * 2000
