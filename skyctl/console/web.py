"""The console's routes on the controller API's origin: page, live updates, static files.

``/console/`` is a server-rendered page (Jinja2 templates, so it reads
without JavaScript); ``/console/events`` streams server-sent events, one a
second, each carrying the re-rendered service fragments and the chart series;
``console.js`` swaps the fragments in and feeds uPlot (vendored under
``static/`` with its licence; no build step). Everything is same-origin under
a strict Content-Security-Policy.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
from importlib import resources
from typing import TYPE_CHECKING, Any

from aiohttp import web

from skyctl.console import auth
from skyctl.console.snapshot import Rates, build

if TYPE_CHECKING:
    import jinja2

    from skyctl.controller.controller import Controller

PREFIX = auth.PREFIX
UPDATE_SECONDS = 1.0
STATIC = {
    "console.js": "text/javascript",
    "console.css": "text/css",
    "uPlot.iife.min.js": "text/javascript",
    "uPlot.min.css": "text/css",
    "uPlot.LICENSE": "text/plain",
    "simpage.js": "text/javascript",
}
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
CLOSING: web.AppKey[asyncio.Event] = web.AppKey("console_closing", asyncio.Event)


def _clock(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%H:%M:%S")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


@functools.cache
def environment() -> jinja2.Environment:
    """The templates (jinja2 imported on the first page, not at the controller's start)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("skyctl.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(clock=_clock, duration=_duration, ms=_ms)
    return env


def script_json(value: Any) -> str:
    """JSON to embed in a ``<script type="application/json">``: its ``<``, ``>`` and ``&``
    as ``\\u`` escapes (JSON.parse reads them back), so no text the data carries (an
    event's ``<!--<script>``, a ``</script>``) changes how the page around it parses."""
    text = json.dumps(value)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def charts(snap: dict[str, Any]) -> dict[str, Any]:
    return {
        s["name"]: {
            "cost": s["cost_series"],
            "rates": {str(r["id"]): r["rps"] for r in s["rows"] if r["status"] != "TERMINATED"},
        }
        for s in snap["services"]
    }


def update(env: jinja2.Environment, snap: dict[str, Any]) -> dict[str, Any]:
    """One live update: the fragments to swap in and the chart data."""
    return {
        "at": snap["at"],
        "clock": _clock(snap["at"]),
        "names": [s["name"] for s in snap["services"]],
        "main": env.get_template("services.html").render(services=snap["services"]),
        "parts": {
            f"{kind}-{s['name']}": env.get_template(f"{template}.html").render(svc=s)
            for s in snap["services"]
            for kind, template in (("svc", "service"), ("ev", "events"))
        },
        "charts": charts(snap),
    }


def add_routes(app: web.Application, controller: Controller, api_token: str) -> None:
    app[CLOSING] = asyncio.Event()

    async def closing(app: web.Application) -> None:
        app[CLOSING].set()  # end the event streams, or shutdown would wait for them

    app.on_shutdown.append(closing)

    async def login(request: web.Request) -> web.StreamResponse:
        return await auth.login(request, api_token)

    async def page(_: web.Request) -> web.Response:
        snap = build(controller, Rates())
        env = environment()
        initial = script_json(update(env, snap))
        html = env.get_template("page.html").render(
            prefix=PREFIX, at=snap["at"], services=snap["services"], initial=initial
        )
        return web.Response(text=html, content_type="text/html", headers=HEADERS)

    async def events(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={**HEADERS, "Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
        )
        await resp.prepare(request)
        rates = Rates()
        stop = request.app[CLOSING]
        try:
            while not stop.is_set():
                data = json.dumps(update(environment(), build(controller, rates)))
                await resp.write(f"data: {data}\n\n".encode())
                pause = asyncio.ensure_future(controller.clock.sleep(UPDATE_SECONDS))
                ended = asyncio.ensure_future(stop.wait())
                try:
                    await asyncio.wait({pause, ended}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for fut in (pause, ended):
                        fut.cancel()
        except (ConnectionResetError, ConnectionError):
            pass  # the viewer left
        return resp

    async def static(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        kind = STATIC.get(name)
        if kind is None:
            raise web.HTTPNotFound()
        body = resources.files("skyctl.console").joinpath("static", name).read_bytes()
        headers = {**HEADERS, "Cache-Control": "max-age=3600", "Content-Type": kind}
        return web.Response(body=body, headers=headers)

    async def root(_: web.Request) -> web.Response:
        raise web.HTTPFound(f"{PREFIX}/")

    app.router.add_get(f"{PREFIX}/login", login)
    app.router.add_get(PREFIX, root)
    app.router.add_get(f"{PREFIX}/", page)
    app.router.add_get(f"{PREFIX}/events", events)
    app.router.add_get(PREFIX + "/static/{name}", static)
