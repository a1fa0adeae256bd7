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


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--port", "99999"], "--port must be 0 to 65535"),
        (["--time-scale", "nan"], "--time-scale must be a finite number >= 0"),
        (["--time-scale", "-1"], "--time-scale must be a finite number >= 0"),
    ],
)
def test_the_simulated_server_refuses_bad_arguments_in_one_line(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """(A bad port was a traceback; a NaN or negative time scale served, then hung.)"""
    from benchmarks.llm_routing.server import main

    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if "error:" in line]
    assert named in line and "Traceback" not in err


async def test_the_simulated_server_answers_400_to_requests_it_cannot_serve() -> None:
    """(max_tokens of 10**12 made it build an answer of that many tokens; Infinity, a 500.)"""
    import aiohttp

    from benchmarks.llm_routing.server import SimServer

    server = SimServer(time_scale=0.0)
    await server.start()
    url = f"http://127.0.0.1:{server.port}/v1/completions"
    try:
        async with aiohttp.ClientSession() as session:
            for body in (
                b'{"prompt": "1 2 3", "max_tokens": Infinity}',
                b'{"prompt": "1 2 3", "max_tokens": 1000000000000}',
                b'{"prompt": "1 2 3", "max_tokens": -4}',
                b'{"messages": 7}',
                b"[1, 2]",
            ):
                async with session.post(url, data=body) as resp:
                    assert resp.status == 400, body
                    assert "error" in await resp.json()
            async with session.post(url, data=b'{"prompt": "1 2 3", "max_tokens": 3}') as resp:
                assert resp.status == 200
                assert (await resp.json())["usage"]["completion_tokens"] == 3
    finally:
        await server.stop()
