"""Run one skyctl Router in its own process (uvloop) for the benchmarks.

``python -m benchmarks.router.serve --policy least_load --backend URL[,URL..]``
prints ``PORT <n>`` once listening and serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
from dataclasses import replace

import uvloop

from skyctl.clock import SystemClock
from skyctl.router import Router
from skyctl.spec import RouterOptions, ServiceSection
from skyctl.types import Backend, Location


async def main(args: argparse.Namespace) -> None:
    urls = [u for u in args.backends.split(",") if u]
    options = replace(RouterOptions(), fan_out=args.fan_out, hedge_budget=args.hedge_budget)
    section = ServiceSection(load_balancing_policy=args.policy, router=options)
    router = Router("bench", section, clock=SystemClock())
    router.set_backends(
        [
            Backend(i, url, Location("local", f"region-{i}", f"zone-{i}"))
            for i, url in enumerate(urls, start=1)
        ]
    )
    port = await router.start("127.0.0.1", args.port)
    gc.collect()  # as the controller does once started (skyctl/controller/daemon.py)
    gc.freeze()
    print(f"PORT {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await router.stop(grace_seconds=1.0)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--policy", default="least_load")
    parser.add_argument("--backends", required=True, help="comma-separated replica URLs")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--fan-out", type=int, default=2)
    parser.add_argument("--hedge-budget", type=float, default=0.1)
    parser.add_argument("--profile", default="", help="write a pyinstrument HTML profile here")
    ns = parser.parse_args()
    if ns.profile:
        from pyinstrument import Profiler

        profiler = Profiler(async_mode="disabled")
        profiler.start()
        try:
            uvloop.run(main(ns))
        finally:
            profiler.stop()
            with open(ns.profile, "w") as out:
                out.write(profiler.output_text(unicode=False, color=False))
    else:
        uvloop.run(main(ns))
