"""The controller's HTTP API (aiohttp, inside the controller's event loop).

Loopback only unless configured; every request needs ``Authorization: Bearer
<token>`` with the token from a file only the user can read, compared in
constant time. Errors are JSON ``{"error": one line, "exit_code": n}``.
``/metrics`` serves the controller's Prometheus metrics (same token). The web
console (:mod:`skyctl.console`) shares this origin: its login exchanges a
token derived from the API token for a cookie that allows reads (GET) only.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from skyctl import console
from skyctl.clock import Clock
from skyctl.console.web import CLOSING
from skyctl.controller import routing_feed
from skyctl.controller.controller import Controller
from skyctl.controller.metrics import CONTENT_TYPE
from skyctl.errors import ServiceError, ServiceNotFound, SkyctlError
from skyctl.http_guard import BODY_SECONDS, read_body, started
from skyctl.lifecycle import ReplicaStatus
from skyctl.logtail import LogReader

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
LOG_POLL_SECONDS = 0.5
MAX_BODY = 1 << 20
MAX_COUNT = (1 << 31) - 1  # bounds ids, limits and tails from the query string
_WHOLE = re.compile(r"-?[0-9]{1,12}").fullmatch


def _overrides(body: dict[str, Any]) -> dict[str, dict[str, str] | None]:
    """The command line's ``--env``/``--secret`` values sent with a spec, and the values
    of the variables ``service.auth.api_keys_env`` names, from its environment."""
    out: dict[str, dict[str, str] | None] = {}
    for key in ("envs", "secrets", "api_keys"):
        values = body.get(key)
        if values is not None and not (
            isinstance(values, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in values.items())
        ):
            raise ServiceError(f"{key}: expected a mapping of names to strings")
        out[key] = values or None
    return out


async def _spec_body(request: web.Request) -> dict[str, Any]:
    """A create/update body: a JSON object with the spec text under ``yaml`` (one-line
    400s for anything else, where a traceback and a 500 were)."""
    try:
        body = await request.json()
    except (ValueError, RecursionError) as e:  # malformed, or nested past the parser's depth
        reason = "nested too deeply" if isinstance(e, RecursionError) else "not valid JSON"
        raise ServiceError(f"request body: {reason}; expected a JSON object") from None
    if not isinstance(body, dict):
        raise ServiceError(f"request body: expected a JSON object, got {type(body).__name__}")
    if "yaml" not in body:
        raise ServiceError("request body: missing key 'yaml' (the spec's text)")
    for key in ("name", "source", "mode"):
        if not isinstance(body.get(key, ""), str | None):
            raise ServiceError(f"request body: {key}: expected a string")
    return body


def _int_query(request: web.Request, key: str, default: int, least: int) -> int:
    """A whole-number query parameter from ``least`` up, or a one-line 400 naming it."""
    raw = request.query.get(key)
    if raw is None:
        return default
    # ASCII digits only: int() also reads " 1", "1_000" and other scripts' digits
    value = int(raw) if _WHOLE(raw) else None
    if value is None or not least <= value <= MAX_COUNT:
        raise ServiceError(f"{key}: {raw[:40]!r} is not a whole number from {least} to {MAX_COUNT}")
    return value


def _replica_id(request: web.Request) -> int:
    """The replica id from the path (ASCII digits only, by the route), bounded so it fits
    SQLite (and before int() meets more than 4,300 digits: a ValueError, a 500)."""
    digits = request.match_info["replica"].lstrip("0") or "0"
    if len(digits) > 10 or int(digits) > MAX_COUNT:
        name = request.match_info["name"]
        shown = digits if len(digits) <= 40 else f"{digits[:20]}... ({len(digits)} digits)"
        raise ServiceNotFound(f"service {name!r} has no replica {shown}")
    return int(digits)


def _ended(controller: Controller, name: str, rid: int) -> bool:
    """``logs --replica N -f`` ends with the replica: removed, or TERMINATED (its row
    stays for ``serve status -a``; following it went on for ever)."""
    r = controller.store.get_replica(name, rid)
    return r is None or r.status is ReplicaStatus.TERMINATED


async def _closed_after_pause(clock: Clock, closing: asyncio.Event) -> bool:
    """Wait one log poll; True once the API is closing (a followed log then ends: aiohttp
    would wait its shutdown timeout for it, and `controller stop` gave up after 30 s)."""
    if closing.is_set():
        return True
    pause = asyncio.ensure_future(clock.sleep(LOG_POLL_SECONDS))
    ended = asyncio.ensure_future(closing.wait())
    try:
        await asyncio.wait({pause, ended}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for fut in (pause, ended):
            fut.cancel()
    return closing.is_set()


def make_app(
    controller: Controller,
    token: str,
    on_shutdown: Callable[[], None],
    *,
    body_seconds: float = BODY_SECONDS,
) -> web.Application:
    """The API's app; a request's body must arrive within ``body_seconds`` of its head
    (:func:`skyctl.http_guard.read_body`)."""

    @web.middleware
    async def auth_and_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.headers.get("Authorization", "")
        expected = f"Bearer {token}"
        # a header's bytes that are not UTF-8 arrive as surrogates: compare them, not fail
        bearer = hmac.compare_digest(given.encode(errors="surrogateescape"), expected.encode())
        if not bearer and not console.allows(request, token):
            if console.is_console(request):
                return console.login_page(request)
            return web.json_response(
                {"error": "missing or wrong API token", "exit_code": 1}, status=401
            )
        try:
            await read_body(request, MAX_BODY, body_seconds)  # only once the token is checked
            return await handler(request)
        except ServiceNotFound as e:
            return web.json_response({"error": str(e), "exit_code": e.exit_code}, status=404)
        except SkyctlError as e:
            return web.json_response({"error": str(e), "exit_code": e.exit_code}, status=400)
        except web.HTTPException as e:  # 404, 405, 413 from aiohttp: JSON too, one line
            if e.status < 400 or console.is_console(request):
                raise
            reason = f"request body over {MAX_BODY} bytes" if e.status == 413 else e.reason
            resp = web.json_response({"error": reason, "exit_code": 1}, status=e.status)
            if e.keep_alive is False:  # (read_body's 408 and 413)
                resp.force_close()
            return resp

    app = web.Application(middlewares=[started, auth_and_errors], client_max_size=MAX_BODY)

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"ok": True, "pid": os.getpid(), "ticks": controller.ticks})

    async def list_services(request: web.Request) -> web.Response:
        return web.json_response(controller.status(request.query.get("name")))

    async def create(request: web.Request) -> web.Response:
        body = await _spec_body(request)
        result = await controller.create_service(
            body["yaml"], body.get("source"), body.get("name"), **_overrides(body)
        )
        return web.json_response(result, status=201)

    async def update(request: web.Request) -> web.Response:
        body = await _spec_body(request)
        result = await controller.update_service(
            request.match_info["name"],
            body["yaml"],
            body.get("source"),
            mode=body.get("mode"),
            **_overrides(body),
        )
        return web.json_response(result)

    async def delete(request: web.Request) -> web.Response:
        return web.json_response(
            await controller.delete_service(request.match_info["name"]), status=202
        )

    async def delete_replica(request: web.Request) -> web.Response:
        name, rid = request.match_info["name"], _replica_id(request)
        return web.json_response(await controller.terminate_replica(name, rid), status=202)

    async def retry(request: web.Request) -> web.Response:
        return web.json_response(await controller.retry_service(request.match_info["name"]))

    async def events(request: web.Request) -> web.Response:
        limit = _int_query(request, "limit", 50, 0)
        return web.json_response(controller.events(request.match_info["name"], limit))

    async def replica_log(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        rid = _replica_id(request)
        follow = request.query.get("follow") == "1"
        path = controller.log_path(name, rid)
        if path is None or not path.exists():
            raise ServiceNotFound(f"replica {rid} of {name!r} has no log here")
        tail = _int_query(request, "tail", -1, -1)  # the last N lines, then on (`logs --tail`)
        resp = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
        await resp.prepare(request)
        # across its rotations; its tail found in a thread (a scan of up to every copy)
        tail_lines = tail if tail >= 0 else None
        log = await asyncio.to_thread(LogReader, path, tail_lines, follow)
        with log:
            while True:
                chunk = log.read(64 * 1024)
                if chunk:
                    await resp.write(chunk)
                    continue
                if log.pending:  # rotating this instant (microseconds): read on
                    await asyncio.sleep(0.001)
                    continue
                if not follow:
                    break
                if _ended(controller, name, rid):  # read what came since, then end
                    follow = False
                    continue
                if await _closed_after_pause(controller.clock, request.app[CLOSING]):
                    break
        await resp.write_eof()
        return resp

    async def shutdown(_: web.Request) -> web.Response:
        asyncio.get_running_loop().call_soon(on_shutdown)
        return web.json_response({"ok": True}, status=202)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=controller.metrics.render(), headers={"Content-Type": CONTENT_TYPE}
        )

    async def watch_lag(_: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(controller.metrics.watch_loop_lag())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(watch_lag)
    app.router.add_get("/metrics", metrics)
    console.add_routes(app, controller, token)
    app.router.add_get("/v1/health", health)
    app.router.add_get("/v1/services", list_services)
    app.router.add_post("/v1/services", create)
    app.router.add_put("/v1/services/{name}", update)
    app.router.add_delete("/v1/services/{name}", delete)
    app.router.add_get("/v1/services/{name}/events", events)
    app.router.add_post("/v1/services/{name}/retry", retry)
    app.router.add_get("/v1/services/{name}/replicas/{replica:[0-9]+}/log", replica_log)
    app.router.add_delete("/v1/services/{name}/replicas/{replica:[0-9]+}", delete_replica)
    app.router.add_post("/v1/shutdown", shutdown)
    routing_feed.add_routes(app, lambda: controller.routing_feed, token)
    return app
