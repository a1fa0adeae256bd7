"""Console login: a token in the URL, exchanged for a read-only cookie (as Jupyter does).

``skyctl console`` prints ``/console/login?token=LOGIN``. The login token and
the cookie value are both derived from the API token with HMAC-SHA256 under
their own labels, so neither reveals the API token, and neither is good for
anything but reading: the cookie is accepted for GET and HEAD of the
console's own paths only, is HttpOnly, SameSite=Strict and scoped to
``/console`` (a browser sends a 127.0.0.1 cookie to every port of that host:
with ``Path=/`` it went to each service's endpoint, which forwards it to the
replicas, and to any other local server visited), and the login answers with
a redirect that drops the token from the address bar.
"""

from __future__ import annotations

import hashlib
import hmac

from aiohttp import web

COOKIE = "skyctl_console"
PREFIX = "/console"
READS = frozenset({"GET", "HEAD"})


def _derive(api_token: str, label: str) -> str:
    return hmac.new(api_token.encode(), label.encode(), hashlib.sha256).hexdigest()


def login_token(api_token: str) -> str:
    return _derive(api_token, "skyctl console login")


def cookie_value(api_token: str) -> str:
    return _derive(api_token, "skyctl console cookie")


def login_url(base: str, api_token: str) -> str:
    """The URL ``skyctl console`` prints (``base`` is the API's http://host:port)."""
    return f"{base}{PREFIX}/login?token={login_token(api_token)}"


def is_console(request: web.Request) -> bool:
    return request.path == PREFIX or request.path.startswith(PREFIX + "/")


def allows(request: web.Request, api_token: str) -> bool:
    """Whether the console may serve this request without a bearer token."""
    if request.path == f"{PREFIX}/login":
        return True  # it checks its own token
    if request.method not in READS or not is_console(request):
        return False  # not /v1/... or /metrics: the API token reads those
    given = request.cookies.get(COOKIE, "")
    if not given:
        return False  # whether a cookie was sent at all is no secret
    return hmac.compare_digest(
        given.encode(errors="surrogateescape"), cookie_value(api_token).encode()
    )


def login_page(request: web.Request) -> web.Response:
    """What an unauthenticated visit to the console sees."""
    return web.Response(
        status=401,
        content_type="text/html",
        text="<!doctype html><title>skyctl console</title><p>Open the address "
        "<code>skyctl console</code> prints (it carries a login token).</p>",
    )


async def login(request: web.Request, api_token: str) -> web.StreamResponse:
    given = request.query.get("token", "")
    if not hmac.compare_digest(
        given.encode(errors="surrogateescape"), login_token(api_token).encode()
    ):
        return login_page(request)
    resp = web.HTTPFound(f"{PREFIX}/")
    resp.set_cookie(COOKIE, cookie_value(api_token), httponly=True, samesite="Strict", path=PREFIX)
    resp.headers["Referrer-Policy"] = "no-referrer"
    raise resp
