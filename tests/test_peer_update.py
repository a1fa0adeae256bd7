"""`serve update` keeps the service's endpoint, and says so when a spec asks to move it.

The endpoint's port and host are the service's (kept across restarts, docs/router.md).
A new `service.router.port` or `host` in an update was stored and ignored: the update
reported the new version running while the endpoint stayed on the old port, or, for a
service whose port was taken (`endpoint not open`, whose error says to fix the spec and
`serve update`), stayed closed. It is now refused in one line (exit 2) naming the key,
the port the endpoint keeps, and how to move it (down, then up).
"""

from __future__ import annotations

import pytest

from skyctl.errors import ServiceError
from tests.test_controller import FIXED, Harness

SPEC = FIXED.format(name="web", replicas=1)


def with_router(spec: str, line: str) -> str:
    return spec.replace("  replicas: 1", f"  replicas: 1\n  router:\n    {line}")


def port(h: Harness) -> int:
    svc = h.store.get_service("web")
    assert svc is not None and svc.router_port is not None
    return svc.router_port


async def test_an_update_naming_another_router_port_is_refused_and_the_endpoint_stays(
    h: Harness,
) -> None:
    await h.controller.create_service(SPEC, None)
    await h.until(lambda: h.ready("web") == 1)
    kept = port(h)
    other = kept + 1 if kept < 65535 else kept - 1
    with pytest.raises(ServiceError) as refused:
        await h.controller.update_service("web", with_router(SPEC, f"port: {other}"), None)
    assert refused.value.exit_code == 2
    assert str(refused.value).startswith(
        f"service.router.port: web's endpoint is on port {kept} and an update cannot move "
        f"it to {other}: `skyctl serve down web`"
    )
    assert port(h) == kept and h.store.get_service("web").current_version == 1  # type: ignore[union-attr]

    # the port it has, written out, is no move: the update goes through
    await h.controller.update_service("web", with_router(SPEC, f"port: {kept}"), None)
    assert h.store.get_service("web").current_version == 2  # type: ignore[union-attr]


async def test_an_update_naming_another_router_host_is_refused(h: Harness) -> None:
    await h.controller.create_service(SPEC, None)
    with pytest.raises(ServiceError, match=r"^service.router.host: web's endpoint listens on "):
        await h.controller.update_service("web", with_router(SPEC, "host: 0.0.0.0"), None)
