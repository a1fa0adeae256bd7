"""The router's endpoint guards: TLS contexts, the API-key gate, client limits.

- :func:`server_context` builds the endpoint's TLS context from
  ``service.tls`` (TLS 1.2 or later); :func:`reload_certificate` loads new
  files into it (``serve update``: new handshakes use them);
  :func:`replica_context` verifies https replicas against
  ``service.router.replica_ca_file``. Unreadable files are one-line
  :class:`~skyctl.errors.ConfigError` naming the key.
- :func:`load_api_keys` turns ``service.auth`` into an
  :class:`~skyctl.router.auth.ApiKeys` (logging the names, never the values,
  of keys that could not be found); :func:`unauthorized` answers 401.
- :func:`apply_limits` copies ``service.router``'s limits and timeouts onto
  the front server.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
from collections.abc import Callable, Mapping

from skyctl.errors import ConfigError
from skyctl.router.auth import CHALLENGE, CHALLENGE_INVALID, SEALED_ENV, ApiKeys
from skyctl.router.front import Connection
from skyctl.router.listener import FrontServer
from skyctl.spec import TLS, Auth, RouterOptions, ServiceSpec

log = logging.getLogger(__name__)


def _path(path: str) -> str:
    return os.path.expanduser(path)


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


def _context(key: str, make: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    try:
        return make()
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise ConfigError(f"{key}: {_one_line(exc)}") from None


def server_context(tls: TLS) -> ssl.SSLContext:
    """The endpoint's TLS context: TLS 1.2 or later, the spec's certificate and key."""

    def make() -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(_path(tls.certfile), _path(tls.keyfile))
        return context

    return _context(f"service.tls (certfile {tls.certfile}, keyfile {tls.keyfile})", make)


def reload_certificate(context: ssl.SSLContext, tls: TLS) -> str | None:
    """Load ``tls``'s files into ``context`` for the next handshakes; the error, if any."""
    try:
        context.load_cert_chain(_path(tls.certfile), _path(tls.keyfile))
    except (OSError, ssl.SSLError) as exc:
        return _one_line(exc)
    return None


def replica_context(ca_file: str | None) -> ssl.SSLContext | None:
    """How https replicas are verified: ``ca_file``'s CAs, or None for the system's."""
    if ca_file is None:
        return None
    return _context(
        "service.router.replica_ca_file",
        lambda: ssl.create_default_context(cafile=_path(ca_file)),
    )


def router_secrets(spec: ServiceSpec) -> dict[str, str]:
    """What a router's ``secrets`` are: the spec's ``secrets:`` values, and the sealed
    ``api_keys_env`` values under :data:`~skyctl.router.auth.SEALED_ENV` + name."""
    return {**spec.secrets, **{SEALED_ENV + k: v for k, v in spec.api_keys.items()}}


def load_api_keys(service: str, auth: Auth | None, secrets: Mapping[str, str]) -> ApiKeys | None:
    """The keys ``auth`` names (None: no auth); problems logged by name, never value."""
    if auth is None:
        return None
    keys = ApiKeys.from_spec(auth, secrets)
    for problem in keys.problems:
        log.error("router %s: service.auth: %s", service, problem)
    if not keys:
        log.error("router %s: service.auth gives no key: every request gets 401", service)
    return keys


def unauthorized(out: Connection, rid: bytes, service: str, given: bool) -> None:
    """401 with a Bearer challenge (``given``: a key was sent, and it was wrong)."""
    lines = b"%bContent-Type: application/json\r\nX-Request-Id: %b\r\n" % (
        CHALLENGE_INVALID if given else CHALLENGE,
        rid,
    )
    error = "invalid" if given else "missing"
    body = {"error": f"{error} API key: send Authorization: Bearer KEY", "service": service}
    out.send(401, b"Unauthorized", lines, json.dumps(body).encode())


def reload_tls(service: str, current: ssl.SSLContext | None, tls: TLS | None) -> None:
    """``serve update``'s ``service.tls``: new files for the next handshakes; adding or
    removing TLS needs the router restarted (logged)."""
    if (tls is None) != (current is None):
        change = "added" if tls is not None else "removed"
        log.warning("router %s: service.tls %s: takes effect when it restarts", service, change)
    elif tls is not None and current is not None:  # rotated or moved files
        error = reload_certificate(current, tls)
        if error is not None:
            log.error("router %s: service.tls kept the old files: %s", service, error)


def apply_limits(front: FrontServer, opts: RouterOptions, stream_timeout: float) -> None:
    """``service.router``'s limits and timeouts, for the next bytes each connection reads;
    ``stream_timeout`` (``load_balancer.stream_timeout_seconds``) also bounds how long a
    client may accept no byte of its response."""
    front.max_body_bytes = opts.max_body_bytes
    front.max_head_bytes = opts.max_header_bytes
    front.max_headers = opts.max_headers
    front.max_connections = opts.max_connections
    front.max_connections_per_client = opts.max_connections_per_client
    front.head_timeout = opts.client_header_timeout_seconds
    front.body_timeout = opts.client_body_timeout_seconds
    front.body_min_rate = opts.client_body_min_bytes_per_second
    front.keepalive_timeout = opts.client_keepalive_timeout_seconds
    front.send_timeout = stream_timeout
    front.rearm()
