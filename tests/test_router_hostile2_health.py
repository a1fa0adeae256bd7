"""The router process's probe port (``--health-port``, on every interface for a
kubelet) is a guarded listener, as the controller's API is
(tests/test_hostile2_api_connections.py): aiohttp's plain site let any pod hold
connections to it that sent nothing, for an hour (before aiohttp 3.14.x, for
ever), until the router process had no file descriptor left for its clients.
"""

from __future__ import annotations

import aiohttp

from skyctl.http_guard import HEAD_SECONDS, MAX_CONNECTIONS, GuardedSite
from skyctl.router.process import start_health


async def test_the_health_port_caps_connections_and_answers_probes() -> None:
    runner = await start_health(0, lambda: {"ready": True})
    try:
        (site,) = runner.sites
        assert isinstance(site, GuardedSite)
        assert (site.limit, site.head_seconds, site.host) == (
            MAX_CONNECTIONS,
            HEAD_SECONDS,
            "0.0.0.0",
        )
        port = runner.addresses[0][1]
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/readyz") as r:
                assert r.status == 200 and (await r.json()) == {"ready": True}
    finally:
        await runner.cleanup()
