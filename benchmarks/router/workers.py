"""Multi-worker throughput: ``python -m benchmarks.router.run --workers 1 2``.

For each worker count N, in the same run and in alternating rounds:

- **the router as the product runs it**: N processes of ``python -m
  skyctl.router.process --home H --worker I --reuse-port`` (``router.workers:
  N``; for N = 1 one process without ``--reuse-port``, as the supervisor starts
  it), every one opening the endpoint's port with ``SO_REUSEPORT``, serving
  from the table the controller last gave (``routes.cache``: no controller is
  needed to serve), ``least_load`` in front of one replica;
- **nginx with N worker processes** (``worker_processes N``), listening with
  ``reuseport`` so the kernel spreads connections over its workers exactly as
  over the router's, keep-alive to the same replica.

Pinning (fair on any core count, made for the 2-core machine): worker I of
either proxy is pinned to core ``(cores - 1 - I) % cores`` (nginx by
``worker_cpu_affinity``, the router by ``taskset``), so both proxies' workers
sit on the same cores; wrk (one thread, 64 connections) and the backend stay
on core 0 as in the single-worker part. On 2 cores, worker 0 has core 1 to
itself and worker 1 shares core 0 with wrk and the backend: 2 workers measure
what a second, contended core adds, not a doubling, and the same for both
proxies, so compare the router / nginx ratio at each N and each proxy's own
scaling. CPU per request sums the N workers' user + system time (/proc).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from benchmarks.router.run import (
    BACKEND_PORT,
    ROOT,
    cpu_seconds,
    nginx_conf,
    pinned,
    process,
    wrk,
)

NGINX_PORT = 18182
CONNECTIONS = 64
PROXIES = ("nginx", "router")
SPEC = "service:\n  readiness_probe: /\n  replicas: 1\n  load_balancing_policy: least_load\n"


def core_of(worker: int, cores: int) -> int:
    """The core worker ``worker`` of either proxy is pinned to."""
    return (cores - 1 - worker) % cores


def nginx_affinity(workers: int, cores: int) -> str:
    """``worker_cpu_affinity`` masks (the rightmost bit is core 0) matching :func:`core_of`."""
    masks = []
    for i in range(workers):
        core = core_of(i, cores)
        masks.append("".join("1" if c == core else "0" for c in reversed(range(cores))))
    return " ".join(masks)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(home: Path, workers: int, port: int) -> bool:
    for i in range(workers):
        name = "router.json" if i == 0 else f"router-{i}.json"
        try:
            if json.loads((home / name).read_text())["ports"].get("bench") != port:
                return False
        except (OSError, ValueError, KeyError):
            return False
    return True


@contextmanager
def router_workers(tmp: Path, workers: int, backend: str) -> Iterator[tuple[str, list[int]]]:
    """N router processes of a fresh home sharing one port: (URL, their pids)."""
    home = Path(tmp) / f"home-{workers}-{time.monotonic_ns()}"
    home.mkdir(mode=0o700)
    port = free_port()
    entry = {
        "version": 1,
        "spec_version": 1,
        "yaml": SPEC,
        "source": "bench.yaml",
        "secrets": None,
        "host": "127.0.0.1",
        "port": port,
        "backends": [{"replica_id": 1, "url": backend, "location": "local/region-1/zone-1"}],
    }
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SKYCTL_HOME": str(home)}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(workers):
            (home / ("routes.cache" if i == 0 else f"routes-{i}.cache")).write_text(
                json.dumps({"bench": entry})
            )
            argv = [sys.executable, "-m", "skyctl.router.process", "--home", str(home)]
            if workers > 1:
                argv += ["--worker", str(i), "--reuse-port"]
            core = core_of(i, os.cpu_count() or 1)
            procs.append(
                subprocess.Popen(
                    pinned(core, argv),
                    env=env,
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        deadline = time.monotonic() + 60
        while not _listening(home, workers, port):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"{workers} router workers did not open port {port}")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/", [p.pid for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _measure(url: str, seconds: int, pids: list[int]) -> dict[str, float]:
    wrk(url, 1, CONNECTIONS)  # warm up: connections to the replica, every worker's
    before = sum(cpu_seconds(p) for p in pids)
    loaded = wrk(url, seconds, CONNECTIONS)
    used = sum(cpu_seconds(p) for p in pids) - before
    loaded["cpu_us"] = used / max(1.0, loaded["requests"]) * 1e6
    return loaded


def workers_throughput(tmp: Path, seconds: int, counts: list[int], rounds: int) -> None:
    cores = os.cpu_count() or 1
    backend = nginx_conf(
        tmp,
        f"server {{ listen 127.0.0.1:{BACKEND_PORT}; "
        f'location / {{ return 200 "hello world\\n"; }} }}',
    )
    target = f"http://127.0.0.1:{BACKEND_PORT}"
    runs: dict[tuple[str, int], list[dict[str, float]]] = {}
    with process(pinned(0, ["nginx", "-c", str(backend), "-p", str(tmp)])):
        for _ in range(rounds):
            for n in counts:
                proxy = nginx_conf(
                    tmp,
                    f"""upstream replicas {{ server 127.0.0.1:{BACKEND_PORT}; keepalive 64; }}
  server {{ listen 127.0.0.1:{NGINX_PORT} reuseport;
    location / {{ proxy_pass http://replicas; proxy_http_version 1.1;
                 proxy_set_header Connection ""; proxy_buffering off; }} }}""",
                    workers=n,
                    affinity=nginx_affinity(n, cores),
                )
                with process(["nginx", "-c", str(proxy), "-p", str(tmp)]) as (ngx, _):
                    url = f"http://127.0.0.1:{NGINX_PORT}/"
                    runs.setdefault(("nginx", n), []).append(_measure(url, seconds, [ngx.pid]))
                with ExitStack() as stack:
                    url, pids = stack.enter_context(router_workers(tmp, n, target))
                    runs.setdefault(("router", n), []).append(_measure(url, seconds, pids))
    print(
        f"\nWorkers (wrk -t1 -c{CONNECTIONS} -d{seconds}s on core 0 with the backend; worker I "
        f"of each proxy pinned to core (cores-1-I) % cores, {cores} cores; medians of "
        f"{rounds} alternating rounds)"
    )
    print(
        f"{'workers':>7} {'nginx req/s':>12} {'router req/s':>13} {'router/nginx':>13} "
        f"{'nginx us/req':>13} {'router us/req':>14}"
    )
    med: dict[tuple[str, int], dict[str, float]] = {}
    for key, results in runs.items():
        med[key] = {k: statistics.median(r[k] for r in results) for k in results[0]}
        med[key]["non2xx"] = sum(r["non2xx"] for r in results)
    for n in counts:
        ngx, ours = med[("nginx", n)], med[("router", n)]
        ratios = [
            r["rps"] / (g["rps"] or 1.0)
            for g, r in zip(runs[("nginx", n)], runs[("router", n)], strict=True)
        ]
        print(
            f"{n:7d} {ngx['rps']:12.0f} {ours['rps']:13.0f} "
            f"{ours['rps'] / (ngx['rps'] or 1.0):13.1%} {ngx['cpu_us']:13.1f} "
            f"{ours['cpu_us']:14.1f}"
        )
        print(f"        router/nginx by round: {', '.join(f'{x:.1%}' for x in ratios)}")
        for name, r in (("nginx", ngx), ("router", ours)):
            if r["non2xx"]:
                print(f"  ! {name}: {r['non2xx']:.0f} non-2xx responses")
    first = counts[0]
    for n in counts[1:]:
        gain = {k: med[(k, n)]["rps"] / (med[(k, first)]["rps"] or 1.0) for k in PROXIES}
        print(f"{first} -> {n} workers: nginx x{gain['nginx']:.2f}, router x{gain['router']:.2f}")
