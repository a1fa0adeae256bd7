"""The benchmarks' command lines: bad arguments stop them at once, with one line."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import tools

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--rounds", "0"], "--rounds must be 1 or more, got 0"),
        (["--baseline", "/nonexistent"], "--baseline /nonexistent: expected a source tree"),
        (["--workers", "1", "0"], "--workers: each count must be from 1 to 64, got 0"),
    ],
)
def test_the_router_benchmark_refuses_bad_arguments_before_running(
    args: list[str], says: str
) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.router.run", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    (error,) = [line for line in out.stderr.splitlines() if "error:" in line]
    assert says in error
    assert "Throughput" not in out.stdout and "Workers" not in out.stdout  # nothing measured


def test_the_llm_routing_benchmark_quick_run_meets_its_chat_and_control_goals() -> None:
    """``--quick``: chat and the no-sharing control, 4 replicas at 70%, one held-out
    seed. Deterministic (virtual time), so the figures it prints are checked."""
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.llm_routing", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    goals = {line.split(":")[0]: line for line in out.stdout.splitlines() if line.startswith("- ")}
    chat = goals["- chat, 4 replicas"]
    for goal in ("cached share", "mean TTFT", "P99 TTFT", "max/mean load", "hit rate back"):
        assert f"{goal}" in chat and chat.split(goal)[1].split(";")[0].endswith("ok"), chat
    control = goals["- control, 4 replicas"]
    assert control.count(" ok") == 2, control
    assert "| 4 | 70% | sglang |" in out.stdout and "| 4 | 70% | chash |" in out.stdout


def test_the_llm_routing_benchmark_refuses_bad_arguments_before_running() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.llm_routing", "--replicas", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    (error,) = [line for line in out.stderr.splitlines() if "error:" in line]
    assert "--replicas must be 2 or more" in error and out.stdout == ""


def test_the_simulated_replica_caches_prefix_blocks_and_evicts_the_oldest() -> None:
    from benchmarks.llm_routing.engine import BLOCK, Job, Model, Replica

    replica = Replica(0, Model(cache_blocks=8))
    now = 0.0

    def serve(tokens: list[int]) -> Job:
        nonlocal now
        job = Job(tokens, [7] * 4, now)
        replica.submit(job, now)
        while job.done is None:
            assert replica.step_end is not None
            now = replica.step_end
            replica.end_step(now)
        return job

    a = list(range(100, 100 + 5 * BLOCK))  # 5 blocks
    assert serve(a).cached == 0
    again = serve([*a, 1, 2, 3])
    assert again.cached == 5 * BLOCK  # the whole prompt, block by block
    b = list(range(900, 900 + 6 * BLOCK))
    assert serve(b).cached == 0  # 7 blocks with its answer: 4 of a's are evicted for them
    # a's blocks were freed last to first (as vLLM frees them): its tail went, its head stays
    assert serve(a).cached == BLOCK
    assert replica.prompt_tokens == 3 * len(a) + 3 + len(b)


def test_running_requests_hold_their_kv_blocks_and_a_request_waits_while_they_fill_the_pool() -> (
    None
):
    from benchmarks.llm_routing.engine import BLOCK, Job, Model, Replica

    replica = Replica(0, Model(cache_blocks=10))
    long = Job(list(range(100, 100 + 6 * BLOCK)), [7] * 40, 0.0)  # 6 + 3 blocks with its answer
    other = Job(list(range(500, 500 + 2 * BLOCK)), [7] * 4, 0.0)  # 3 blocks
    replica.submit(long, 0.0)
    replica.submit(other, 0.0)
    assert replica.running == 1 and list(replica.waiting) == [other]  # 9 + 3 > 10: it waits
    assert replica.kv_usage == 0.9
    now = 0.0
    while long.done is None:
        assert replica.step_end is not None
        now = replica.step_end
        replica.end_step(now)
        assert len(replica.cache) + len(replica.used) + replica.private <= 10
    assert replica.running == 1 and other.cached == 0  # admitted once the blocks were freed
    while other.done is None:
        assert replica.step_end is not None
        now = replica.step_end
        replica.end_step(now)
    assert replica.kv_usage == 0.0 and replica.private == 0 and not replica.used
    again = Job(list(range(100, 100 + 6 * BLOCK)), [7], now)
    replica.submit(again, now)
    assert again.cached == 6 * BLOCK - 1  # long's prompt stayed cached (but its last token)


@pytest.mark.timeout(240)
def test_the_control_plane_benchmark_runs_its_quick_sizes_and_prints_every_figure() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.control_plane", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=230,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    header, *rows = [line.split() for line in out.stdout.splitlines() if line.strip()][:3]
    assert "READY" in header and "p99" in header and "SQL/tick" in header
    assert [row[:3] for row in rows] == [["1", "x", "10"], ["10", "x", "100"]]
    for row in rows:
        assert row[3].endswith("s") and row[4].endswith("s") and row[5].endswith("%")
        assert row[-1] == "0"  # no SQL write at steady state


def test_the_control_plane_benchmark_refuses_bad_sizes_in_one_line() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.control_plane", "--sizes", "10x5"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    (error,) = [line for line in out.stderr.splitlines() if "error:" in line]
    assert "--sizes: expected SERVICESxREPLICAS" in error and "'10x5'" in error


def test_the_workers_benchmark_pins_each_proxys_worker_i_to_the_same_core() -> None:
    from benchmarks.router.workers import core_of, nginx_affinity

    # 2 cores: worker 0 alone on core 1, worker 1 on core 0 (with wrk and the backend)
    assert [core_of(i, 2) for i in range(3)] == [1, 0, 1]
    assert nginx_affinity(2, 2) == "10 01"  # nginx's masks name the same cores
    assert nginx_affinity(1, 4) == "1000"


def test_the_control_plane_stall_sampler_names_the_code_that_held_the_loop() -> None:
    """``--stalls``: a callback that holds the event loop 300 ms is reported as a
    stall of at least that long, with the function that ran in its stack."""
    import asyncio
    import time

    from benchmarks.control_plane import StallSampler

    def hold_the_loop() -> None:
        end = time.perf_counter() + 0.3
        while time.perf_counter() < end:
            pass

    async def main() -> StallSampler:
        sampler = StallSampler(threshold=0.1)
        sampler.start()
        await asyncio.sleep(0.05)
        hold_the_loop()
        await asyncio.sleep(0.05)
        sampler.stop()
        return sampler

    sampler = asyncio.run(main())
    held = [s for s in sampler.stalls if any("hold_the_loop" in k for k in s[3])]
    assert len(held) == 1 and held[0][1] >= 0.29
    assert "hold_the_loop" in sampler.report([])


def test_the_varied_workload_sends_no_head_twice_as_an_llm_client_would(tmp_path: Path) -> None:
    """benchmarks.router.workloads: every request a POST of JSON whose length varies,
    with its own X-Request-Id, so no request head repeats (the head cache never hits)."""
    from benchmarks.router import workloads

    wrk_path = tools.require("wrk", "wrk")

    heads: list[bytes] = []
    bodies: list[bytes] = []

    async def serve() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                length = re.search(rb"\r\nContent-Length: (\d+)\r\n", head)
                assert length is not None, head
                heads.append(head)
                bodies.append(await reader.readexactly(int(length.group(1))))
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        script = workloads.script(tmp_path, "varied")
        assert script is not None and workloads.script(tmp_path, "same") is None
        wrk = await asyncio.create_subprocess_exec(
            wrk_path,
            "-t1",
            "-c2",
            "-d1s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}/",
            stdout=asyncio.subprocess.DEVNULL,
        )
        await wrk.wait()
        server.close()

    asyncio.run(serve())
    assert len(heads) > 200
    assert len(set(heads)) == len(heads)  # no head twice
    assert all(h.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n") for h in heads)
    ids = [re.search(rb"\r\nX-Request-Id: (\S+)\r\n", h) for h in heads]
    assert all(ids) and len({m.group(1) for m in ids if m}) == len(heads)
    assert len({len(b) for b in bodies}) > 100  # Content-Length varies
    assert all(json.loads(b)["messages"][0]["role"] == "user" for b in bodies)
