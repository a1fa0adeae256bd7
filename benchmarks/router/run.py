"""Router benchmarks in one command: ``python -m benchmarks.router.run [--quick]``.

Throughput (wrk, 1 thread, 32 connections, tiny responses; proxies pinned to
core 1, wrk and the backend to core 0): the backend directly, nginx as a
reverse proxy (one worker, keep-alive upstream), a 25-line aiohttp + uvloop
proxy that buffers whole responses (calibration peer), optionally the router
of another source tree in the same rounds as ours (``--baseline DIR``, e.g. an
older commit unpacked with ``git archive``), and our router with ``least_load`` and with
``fan_out`` k=2, all in front of the same nginx backend. Prints requests/s,
P50/P99, ratios to nginx, P50 at one connection (the latency a proxy adds
without queueing), each proxy's CPU time per request (user + system, from
/proc) and, for our router, the upstream connections it opened per 1,000
requests (from its metrics). On a shared machine one run's figures move by
10 to 20% with the neighbours' load, so our routers run in ``--rounds``
alternating rounds (default 3) and the table shows medians; the
``fan_out`` / ``least_load`` ratio is also printed per round (each from two
runs side by side).

Tail: 4 replicas of which one answers 10% of ITS requests after 500 ms (else
5 ms, like the others); an open-loop client sends a fixed rate whatever the
answers and counts latency from each request's due time, at 20 and at 300
requests/s (``--tail-rates``): at 20 the replicas are mostly idle, so
``least_load`` cannot tell the slow one from the others before it is stuck;
at 300 its in-flight counts already steer most requests away from it.
P50/P99/P99.9, the extra backend requests and the share of copies the slow
replica received, for ``round_robin`` (the slow replica keeps its share),
``least_load``, ``fan_out`` k=2 and ``hedge``.

Heads (``--heads``, default both; :mod:`benchmarks.router.workloads`): each
throughput row is measured on byte-identical ``GET /`` requests (``same``,
every head a hit of the router's head cache) and on LLM API requests
(``varied``: ``POST /v1/chat/completions`` with JSON bodies of varying length
and a unique ``X-Request-Id`` each, every reply head unique too), nginx and
our routers with the same wrk script in the same run. The goals are read
against ``varied``; the paced P50 stays on the identical-head ``GET``.

Workers (``--workers 1 2``): the router's own process layout with N workers
sharing the port (``router.workers``, ``SO_REUSEPORT``) against nginx with N
worker processes, pinned alike (:mod:`benchmarks.router.workers`).

Needs the Debian packages wrk and nginx, and uvloop.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp

from benchmarks.router import workloads
from tests.helpers.compiled import compiled_copy

ROOT = Path(__file__).resolve().parents[2]
BACKEND_PORT = 18180
NGINX_PROXY_PORT = 18181

MINI_PROXY = """
import asyncio, sys, aiohttp, uvloop
from aiohttp import web
async def main():
    session = aiohttp.ClientSession()
    async def handle(req):
        async with session.get("http://127.0.0.1:%d" + req.raw_path) as r:
            return web.Response(body=await r.read(), status=r.status)
    runner = web.ServerRunner(web.Server(handle, access_log=None))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print("PORT", site._server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()
uvloop.run(main())
"""


def nginx_conf(tmp: Path, body: str, workers: int = 1, affinity: str = "") -> Path:
    """An nginx configuration (``affinity``: a ``worker_cpu_affinity`` value)."""
    temp = f"{tmp}/ngx"
    os.makedirs(temp, exist_ok=True)
    conf = tmp / f"nginx-{abs(hash((body, workers, affinity)))}.conf"
    pinning = f"worker_cpu_affinity {affinity};\n" if affinity else ""
    conf.write_text(
        f"""worker_processes {workers};
{pinning}daemon off;
pid {conf}.pid;
error_log {conf}.err;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {temp}; proxy_temp_path {temp}; fastcgi_temp_path {temp};
  uwsgi_temp_path {temp}; scgi_temp_path {temp};
  keepalive_requests 10000000;
  {body}
}}
"""
    )
    return conf


def pinned(core: int, argv: list[str]) -> list[str]:
    return ["taskset", "-c", str(core), *argv] if shutil.which("taskset") else argv


@contextmanager
def process(
    argv: list[str], wait_for: str | None = None, cwd: Path = ROOT
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Start a process; with ``wait_for``, wait for its first stdout line starting so."""
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=cwd
    )
    line = ""
    try:
        if wait_for is not None:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if not line.startswith(wait_for):
                raise RuntimeError(f"{argv[0:4]} did not start: {line!r}")
        else:
            time.sleep(0.5)
        yield proc, line
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wrk(
    url: str, seconds: int, connections: int = 32, script: Path | None = None
) -> dict[str, float]:
    extra = ["-s", str(script)] if script is not None else []
    out = subprocess.run(
        pinned(0, ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", *extra, url]),
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def ms(label: str) -> float:
        m = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            return float("nan")
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    done = re.search(r"(\d+) requests in", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(rps.group(1)) if rps else 0.0,
        "p50": ms("50%"),
        "p99": ms("99%"),
        "non2xx": float(errors.group(1)) if errors else 0.0,
        "requests": float(done.group(1)) if done else 0.0,
    }


def router_argv(policy: str, backends: list[str], extra: list[str] | None = None) -> list[str]:
    return pinned(
        1,
        [
            sys.executable,
            "-m",
            "benchmarks.router.serve",
            "--policy",
            policy,
            "--backends",
            ",".join(backends),
            *(extra or []),
        ],
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children so far (nginx: its worker)."""
    total = 0.0
    for p in [pid, *_children(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(c) for c in text.split()]


def measured(
    url: str, seconds: int, pid: int | None, script: Path | None = None
) -> tuple[dict[str, float], dict[str, float]]:
    """wrk at 32 connections (with the proxy's CPU per request), then at 1 connection;
    ``script``: a wrk Lua script making the requests (:mod:`benchmarks.router.workloads`)."""
    wrk(url, 1, script=script)  # warm up connection pools
    before = cpu_seconds(pid) if pid else 0.0
    loaded = wrk(url, seconds, script=script)
    if pid:
        loaded["cpu_us"] = (cpu_seconds(pid) - before) / max(1.0, loaded["requests"]) * 1e6
    return loaded, wrk(url, 2, 1, script)


def connections_per_k(router_url: str) -> float:
    """Upstream connections our router opened per 1,000 client requests, from its metrics."""
    with urllib.request.urlopen(router_url + "-/skyctl/metrics", timeout=10) as resp:
        text = resp.read().decode()

    def total(name: str) -> float:  # NaN for a router without it (an older baseline)
        found = re.search(rf"^{name}_total{{[^}}]*}} (\S+)$", text, re.M)
        return float(found.group(1)) if found else math.nan

    requests = total("skyctl_router_requests")
    return total("skyctl_router_upstream_connections") / max(1.0, requests) * 1000


PACED_DELAY_MS = 2


def paced_connections(peak: float) -> int:
    """wrk connections pacing PACED_DELAY_MS apart that make about half ``peak``:
    each sends one request per (delay + about 0.3 ms of latency)."""
    return max(1, round(peak / 2 * (PACED_DELAY_MS + 0.3) / 1000))


def half_load(
    tmp: Path, router_url: str, backend_url: str, peak: float, seconds: int
) -> list[tuple[str, dict[str, float]]]:
    """P50 at about half the router's peak: wrk connections that each wait
    PACED_DELAY_MS between requests, as many as make half the peak rate; the
    backend directly with the same pacing, for the latency the router adds."""
    connections, script = paced_connections(peak), paced_script(tmp)
    routed = {**wrk(router_url, seconds, connections, script), "connections": connections}
    direct = wrk(backend_url, seconds, connections, script)
    return [("backend directly, paced", direct), ("router least_load, paced", routed)]


def paced_script(tmp: Path) -> Path:
    script = tmp / "paced.lua"
    script.write_text(f"function delay()\n  return {PACED_DELAY_MS}\nend\n")
    return script


Row = tuple[str, dict[str, float], dict[str, float]]


def median_of(results: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's median over rounds (``non2xx`` summed)."""
    out = {key: statistics.median(r[key] for r in results) for key in results[0]}
    if "non2xx" in out:
        out["non2xx"] = sum(r["non2xx"] for r in results)
    return out


def _tag(heads: str) -> str:
    """A row's name suffix for a workload (none for identical heads, as before)."""
    return "" if heads == "same" else " [varied]"


def throughput(
    tmp: Path,
    seconds: int,
    baseline: Path | None,
    compiled: Path | None,
    rounds: int,
    heads: tuple[str, ...] = workloads.HEADS,
) -> None:
    backend = nginx_conf(tmp, workloads.backend_server(BACKEND_PORT))
    scripts = {h: workloads.script(tmp, h) for h in heads}
    proxy = nginx_conf(
        tmp,
        f"""upstream replicas {{ server 127.0.0.1:{BACKEND_PORT}; keepalive 64; }}
  server {{ listen 127.0.0.1:{NGINX_PROXY_PORT};
    location / {{ proxy_pass http://replicas; proxy_http_version 1.1;
                 proxy_set_header Connection ""; proxy_buffering off; }} }}""",
    )
    target = f"http://127.0.0.1:{BACKEND_PORT}"
    rows: list[Row] = []
    builds = [("", ROOT)]
    if baseline is not None:  # another tree's router, in the same rounds
        builds.append((" (baseline)", baseline))
    if compiled is not None:
        builds.append((" (compiled)", compiled))
    ours: list[tuple[str, list[str], Path]] = []
    for suffix, tree in builds:
        ours += [
            (f"skyctl router least_load{suffix}", router_argv("least_load", [target]), tree),
            (f"skyctl router fan_out k=2{suffix}", router_argv("fan_out", [target] * 2), tree),
        ]
    with process(pinned(0, ["nginx", "-c", str(backend), "-p", str(tmp)])):
        for h in heads:
            rows.append(
                ("backend directly" + _tag(h), *measured(target + "/", seconds, None, scripts[h]))
            )
        with process(pinned(1, ["nginx", "-c", str(proxy), "-p", str(tmp)])) as (ngx, _):
            url = f"http://127.0.0.1:{NGINX_PROXY_PORT}/"
            for h in heads:
                rows.append(
                    ("nginx reverse proxy" + _tag(h), *measured(url, seconds, ngx.pid, scripts[h]))
                )
        if "same" in heads:  # it GETs whatever it is sent: no varied row
            mini = pinned(1, [sys.executable, "-c", MINI_PROXY % BACKEND_PORT])
            with process(mini, wait_for="PORT") as (proc, line):
                url = f"http://127.0.0.1:{line.split()[1]}/"
                rows.append(("aiohttp 25-line proxy (buffers)", *measured(url, seconds, proc.pid)))
        # our routers in alternating rounds: on a shared machine one run's figure moves
        # by 10 to 20% with the neighbours, a median of side-by-side rounds much less
        runs: dict[str, list[tuple[dict[str, float], dict[str, float]]]] = {
            n + _tag(h): [] for n, _, _ in ours for h in heads
        }
        for _ in range(rounds):
            for name, argv, cwd in ours:
                for h in heads:  # a fresh router each: its metrics count one workload
                    with process(argv, wait_for="PORT", cwd=cwd) as (proc, line):
                        url = f"http://127.0.0.1:{line.split()[1]}/"
                        loaded, light = measured(url, seconds, proc.pid, scripts[h])
                        loaded["conns_per_k"] = connections_per_k(url)
                        runs[name + _tag(h)].append((loaded, light))
        for name in runs:
            rows.append(
                (name, median_of([r for r, _ in runs[name]]), median_of([c for _, c in runs[name]]))
            )
        paced: dict[str, list[tuple[str, dict[str, float]]]] = {}
        by_name = {name: r for name, r, _ in rows}
        for name, argv, cwd in ours:
            if "least_load" in name and "baseline" not in name and "same" in heads:
                # at half its median peak, on identical-head GETs
                with process(argv, wait_for="PORT", cwd=cwd) as (proc, line):
                    url = f"http://127.0.0.1:{line.split()[1]}/"
                    paced[name] = half_load(tmp, url, target + "/", by_name[name]["rps"], seconds)
        # the same method for nginx: at the pacing of our router's half peak, and at half
        # its own peak; the backend directly at the same pacing each time
        nginx_paced: list[tuple[str, dict[str, float], dict[str, float]]] = []
        ours_peak = by_name.get("skyctl router least_load")
        pacings = [("our router's", ours_peak)] if ours_peak is not None else []
        if "nginx reverse proxy" in by_name:
            pacings.append(("its own", by_name["nginx reverse proxy"]))
        with process(pinned(1, ["nginx", "-c", str(proxy), "-p", str(tmp)])):
            url = f"http://127.0.0.1:{NGINX_PROXY_PORT}/"
            for label, peak in pacings:
                c, script = paced_connections(peak["rps"]), paced_script(tmp)
                through = {**wrk(url, seconds, c, script), "connections": c}
                nginx_paced.append((label, through, wrk(target + "/", seconds, c, script)))
    print(
        f"\nThroughput (wrk -t1 -c32 -d{seconds}s; tiny responses; our routers: median of "
        f"{rounds} alternating rounds; [varied]: LLM API requests, every request and reply "
        "head unique; the others: byte-identical GET heads)"
    )
    print(
        f"{'target':38} {'req/s':>9} {'P50 ms':>8} {'P99 ms':>8} {'vs nginx':>9} "
        f"{'P50@c1 ms':>10} {'CPU us/req':>11}"
    )
    for name, r, light in rows:
        ngx_row = by_name["nginx reverse proxy" + (" [varied]" if "[varied]" in name else "")]
        ratio = r["rps"] / (ngx_row["rps"] or 1.0)
        cpu = f"{r['cpu_us']:11.1f}" if "cpu_us" in r else f"{'':11}"
        print(
            f"{name:38} {r['rps']:9.0f} {r['p50']:8.2f} {r['p99']:8.2f} {ratio:9.1%} "
            f"{light['p50']:10.3f} {cpu}"
        )
        if not math.isnan(r.get("conns_per_k", math.nan)):
            print(f"  upstream connections opened: {r['conns_per_k']:.1f} per 1,000 requests")
        if r["non2xx"]:
            print(f"  ! {r['non2xx']:.0f} non-2xx responses")
    for suffix, h in [(b, h) for b, _ in builds for h in heads]:
        ngx_row = by_name["nginx reverse proxy" + _tag(h)]
        suffix += _tag(h)
        least_runs = runs[f"skyctl router least_load{suffix}"]
        fan_runs = runs[f"skyctl router fan_out k=2{suffix}"]
        ratios = [
            f["rps"] / (ll["rps"] or 1.0)
            for (ll, _), (f, _) in zip(least_runs, fan_runs, strict=True)
        ]
        least = by_name[f"skyctl router least_load{suffix}"]
        fan = by_name[f"skyctl router fan_out k=2{suffix}"]
        build = suffix.replace(_tag(h), "").strip(" ()") or "pure Python"
        print(
            f"{build}, {h} heads: least_load / nginx {least['rps'] / (ngx_row['rps'] or 1.0):.1%}; "
            f"fan_out k=2 / least_load by round {', '.join(f'{x:.1%}' for x in ratios)}, "
            f"median {statistics.median(ratios):.1%}; CPU per request: least_load / nginx "
            f"{least['cpu_us'] / ngx_row['cpu_us']:.1f}x, fan_out / least_load "
            f"{fan['cpu_us'] / least['cpu_us']:.2f}x"
        )
    for name, ((_, direct), (_, routed)) in paced.items():
        print(
            f"At half the peak of {name} ({routed['rps']:.0f} req/s, wrk paced: "
            f"{routed['connections']:.0f} connections, {PACED_DELAY_MS} ms between requests): P50 "
            f"{routed['p50']:.3f} ms through the router, {direct['p50']:.3f} ms to the backend "
            f"directly at the same pacing ({direct['rps']:.0f} req/s): the router adds "
            f"{routed['p50'] - direct['p50']:.3f} ms"
        )
    for label, routed, direct in nginx_paced:
        print(
            f"nginx reverse proxy, paced as at half {label} peak ({routed['rps']:.0f} req/s, "
            f"{routed['connections']:.0f} connections): P50 {routed['p50']:.3f} ms, "
            f"{direct['p50']:.3f} ms to the backend directly: nginx adds "
            f"{routed['p50'] - direct['p50']:.3f} ms"
        )


async def open_loop(url: str, rate: float, seconds: float) -> tuple[list[float], int]:
    """Requests at a fixed rate whatever the answers (no coordinated omission).

    Latency counts from the moment a request was due, so a stalled client or
    router shows in the figures. Returns latencies (ms) and the failed count.
    """
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(due: float) -> None:
            nonlocal errors
            try:
                async with session.get(url) as resp:
                    await resp.read()
                    if resp.status != 200:
                        errors += 1
                        return
            except aiohttp.ClientError:
                errors += 1
                return
            latencies.append((time.perf_counter() - due) * 1000)

        tasks: set[asyncio.Task[None]] = set()
        start = time.perf_counter()
        for i in range(int(rate * seconds)):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
    return latencies, errors


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(len(ordered) * q) - 1))]


async def counts(ports: list[int]) -> list[int]:
    async with aiohttp.ClientSession() as session:
        out = []
        for port in ports:
            async with session.get(f"http://127.0.0.1:{port}/__count") as resp:
                out.append(int(await resp.text()))
        return out


TAIL_POLICIES = ("round_robin", "least_load", "fan_out", "hedge")


def tail(seconds: float, rate: float) -> None:
    print(
        "\nTail: 4 replicas; replica 1 answers 10% of ITS requests after 500 ms, the rest "
        "after 5 ms\n(the others: always 5 ms). Open-loop client at "
        f"{rate:.0f} requests/s for {seconds:.0f} s, latency from the due time."
    )
    print(
        f"{'policy':24} {'requests':>9} {'P50 ms':>8} {'P99 ms':>8} {'P99.9 ms':>9} "
        f"{'extra':>7} {'to slow':>8}"
    )
    results: dict[str, tuple[float, float]] = {}
    for policy in TAIL_POLICIES:
        backend = pinned(0, [sys.executable, "-m", "benchmarks.router.tail_backend"])
        with process(backend, wait_for="PORTS") as (_, line):
            ports = [int(p) for p in line.split()[1].split(",")]
            urls = [f"http://127.0.0.1:{p}" for p in ports]
            with process(router_argv(policy, urls), wait_for="PORT") as (_, rline):
                url = f"http://127.0.0.1:{rline.split()[1]}/"
                lat, errors = asyncio.run(open_loop(url, rate, seconds))
                sent = asyncio.run(counts(ports))
        extra = sum(sent) / max(1, len(lat) + errors) - 1
        p99, p999 = quantile(lat, 0.99), quantile(lat, 0.999)
        results[policy] = (p99, p999)
        label = {"fan_out": "fan_out k=2", "hedge": "hedge (P95, 10% budget)"}.get(policy, policy)
        print(
            f"{label:24} {len(lat):9d} {quantile(lat, 0.5):8.2f} {p99:8.2f} {p999:9.2f} "
            f"{extra:7.1%} {sent[0] / max(1, sum(sent)):8.1%}"
        )
        if errors:
            print(f"  ! {errors} failed requests")
    for base in ("least_load", "round_robin"):
        b99, b999 = results[base]
        print(
            f"cut vs {base}: fan_out P99 {b99 / results['fan_out'][0]:.1f}x, "
            f"P99.9 {b999 / results['fan_out'][1]:.1f}x; hedge P99 "
            f"{b99 / results['hedge'][0]:.1f}x, P99.9 {b999 / results['hedge'][1]:.1f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="shorter runs (figures noisier)")
    parser.add_argument("--skip-tail", action="store_true")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="alternating rounds of our routers in the throughput part (medians; default 3)",
    )
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument(
        "--heads",
        nargs="+",
        choices=workloads.HEADS,
        default=list(workloads.HEADS),
        help="throughput workloads: byte-identical GETs (same), LLM API requests with "
        "unique heads (varied); default both, side by side",
    )
    parser.add_argument(
        "--pure-only",
        action="store_true",
        help="measure only the pure-Python router, not also the compiled build",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="also run the router of another source tree (e.g. `git archive` of an older "
        "commit unpacked there), least_load and fan_out, in the same rounds as ours",
    )
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[],
        metavar="N",
        help="also compare the router's own process layout with N workers sharing the port "
        "(router.workers, SO_REUSEPORT) against nginx with N worker processes, for each N "
        "(e.g. --workers 1 2); see benchmarks/router/workers.py",
    )
    parser.add_argument(
        "--tail-rates",
        type=float,
        nargs="+",
        default=[20.0, 300.0],
        help="tail client requests/s, one run per rate (default: 20 and 300)",
    )
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be 1 or more, got {args.rounds}")
    for n in args.workers:
        if not 1 <= n <= 64:  # router.workers' own bounds (skyctl.config)
            parser.error(f"--workers: each count must be from 1 to 64, got {n}")
    serve = Path("benchmarks/router/serve.py")
    if args.baseline is not None and not (args.baseline / serve).is_file():
        parser.error(
            f"--baseline {args.baseline}: expected a source tree with {serve} "
            "(e.g. `git archive COMMIT | tar -x -C DIR`)"
        )
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: apt-get install -y wrk nginx")
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="skyctl-router-bench-") as tmp:
        if not args.skip_throughput:
            compiled = None
            if not args.pure_only:
                print("compiling the router (mypyc, as SKYCTL_COMPILE=1 builds it)...", flush=True)
                compiled = compiled_copy(Path(tmp) / "compiled")
            seconds = 3 if args.quick else 8
            heads = tuple(args.heads)
            throughput(Path(tmp), seconds, args.baseline, compiled, args.rounds, heads)
        if args.workers:
            from benchmarks.router.workers import workers_throughput

            workers_throughput(Path(tmp), 3 if args.quick else 8, args.workers, args.rounds)
    if not args.skip_tail:
        for rate in args.tail_rates:
            # at least 1,200 requests per policy (P99 from a dozen samples), 20 s at least
            seconds = max(20.0, 1200.0 / rate)
            tail(seconds / 3 if args.quick else seconds, rate)


if __name__ == "__main__":
    main()
