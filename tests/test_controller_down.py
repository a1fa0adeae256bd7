"""Creating and removing services without races: one router per service, always,
and a service whose endpoint cannot open can still be taken down.

Specified against the in-process provider and a fake clock (tests.test_controller).
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest

from skyctl.controller import controller as controller_module
from skyctl.controller.runtime import ServiceRuntime
from skyctl.errors import ConfigError, ServiceExists
from tests.test_controller import FIXED, Harness


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list[ServiceRuntime]:
    """Every runtime (hence every router) the controller makes."""
    runtimes: list[ServiceRuntime] = []
    real = controller_module.make_runtime

    def spy(*args: Any, **kwargs: Any) -> ServiceRuntime:
        rt = real(*args, **kwargs)
        runtimes.append(rt)
        return rt

    monkeypatch.setattr(controller_module, "make_runtime", spy)
    return runtimes


async def test_concurrent_creates_and_ticks_leave_one_router_per_service(
    h: Harness, made: list[ServiceRuntime]
) -> None:
    for name in ("a", "b", "c"):
        spec = FIXED.format(name=name, replicas=1)
        results = await asyncio.gather(
            h.controller.create_service(spec, None),
            h.controller.tick_all(),
            h.controller.create_service(spec, None),
            h.controller.tick_all(),
            return_exceptions=True,
        )
        created = [r for r in results if isinstance(r, dict)]
        refused = [r for r in results if isinstance(r, ServiceExists)]
        assert len(created) == 1 and len(refused) == 1, results
        listening = [rt for rt in made if rt.name == name and rt.router.listening]
        assert len(listening) == 1, f"{len(listening)} routers listen for {name}"
        assert h.controller.runtimes[name] is listening[0]

    for name in ("a", "b", "c"):
        await h.controller.delete_service(name)
    # every router made stops with its service's `down` (an orphan never would)
    await h.until(
        lambda: not h.store.list_services() and not any(rt.router.listening for rt in made),
        seconds=30,
    )


async def test_an_endpoint_that_cannot_open_refuses_the_create_and_keeps_nothing(
    h: Harness, tmp_path: Path
) -> None:
    spec = FIXED.format(name="tls", replicas=1).replace(
        "service:\n",
        f"service:\n  tls:\n    keyfile: {tmp_path}/nope.key\n    certfile: {tmp_path}/nope.crt\n",
    )
    with pytest.raises(ConfigError, match="nope"):
        await h.controller.create_service(spec, None)
    assert h.store.get_service("tls") is None
    await h.controller.tick_all()
    assert h.provider.running("tls") == []


async def test_a_service_whose_endpoint_cannot_reopen_can_still_be_taken_down(
    h: Harness,
) -> None:
    await h.controller.create_service(FIXED.format(name="web", replicas=2), None)
    await h.until(lambda: h.ready("web") == 2)
    port = h.store.get_service("web").router_port  # type: ignore[union-attr]
    await h.stop_controller()
    with socket.socket() as squatter:  # someone else took the endpoint's port meanwhile
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        h.controller = h._controller()
        await h.start()
        assert "web" not in h.controller.runtimes  # not restored: its port is taken
        await h.controller.tick_all()
        assert "endpoint not open" in h.controller.describe("web")["last_error"]
        await h.controller.delete_service("web")
        await h.until(lambda: h.store.get_service("web") is None, seconds=30)
    assert h.provider.running("web") == []
