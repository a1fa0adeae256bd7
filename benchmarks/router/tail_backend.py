"""Replicas for the tail benchmark: several ports in one process (uvloop).

Every replica answers after ``--base-ms``; the slow one (``--slow-index``)
takes ``--slow-ms`` for ``--slow-share`` of its requests (seeded). ``GET
/__count`` answers how many requests a replica received, for the extra-load
figure. Prints ``PORTS p1,p2,..`` once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal

import uvloop
from aiohttp import web


async def main(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    runners: list[web.ServerRunner] = []
    ports: list[int] = []
    counts = [0] * args.replicas
    for index in range(args.replicas):

        async def handle(request: web.BaseRequest, index: int = index) -> web.Response:
            if request.path == "/__count":
                return web.Response(text=str(counts[index]))
            counts[index] += 1
            slow = index == args.slow_index
            delay = args.base_ms
            if slow and rng.random() < args.slow_share:
                delay = args.slow_ms
            await asyncio.sleep(delay / 1000.0)
            return web.Response(text="ok\n")

        runner = web.ServerRunner(web.Server(handle, access_log=None), shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        ports.append(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        runners.append(runner)
    print("PORTS " + ",".join(map(str, ports)), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for runner in runners:
        await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--replicas", type=int, default=4)
    parser.add_argument("--slow-index", type=int, default=0)
    parser.add_argument("--slow-share", type=float, default=0.1)
    parser.add_argument("--slow-ms", type=float, default=500.0)
    parser.add_argument("--base-ms", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=1)
    uvloop.run(main(parser.parse_args()))
