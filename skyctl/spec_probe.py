"""``service.readiness_probe`` of a spec -> :class:`skyctl.spec.ReadinessProbe`.

SkyServe's keys (``path``, ``initial_delay_seconds``, ``timeout_seconds``,
``post_data``, ``headers``) and ours (``period_seconds``, ``failure_threshold``).
What the prober will send is checked here: a path a request line can carry,
JSON a strict server reads, header names and values that cannot forge framing.
Part of the spec parser (``skyctl.spec_yaml``); errors are one-line SpecErrors.
"""

from __future__ import annotations

import json
import re
from typing import Any

from skyctl.spec import ReadinessProbe
from skyctl.spec_checks import Section, shorten, type_name

__all__ = ["MAX_PROBE_PATH", "TOKEN_RE", "parse_probe"]

_PROBE = {
    "initial_delay_seconds": "num>=0",
    "timeout_seconds": "num>0",
    "period_seconds": "num>0",
    "failure_threshold": "int>=1",
}
TOKEN_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP field name (RFC 9110)
_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # HTAB is allowed in a value
_PROBE_FRAMING = ("content-length", "transfer-encoding", "connection")
#: a probe path's length: servers refuse longer request lines (8 KiB in most)
MAX_PROBE_PATH = 4096
_PATH_SPACE_RE = re.compile(r"[\s\x00-\x1f\x7f]")
_BAD_ESCAPE_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def parse_probe(sec: Section) -> ReadinessProbe:
    """``service.readiness_probe``: a path, or a mapping (SkyServe's keys and ours)."""
    if not sec.has("readiness_probe"):
        return ReadinessProbe()
    if isinstance(sec.raw("readiness_probe"), str):
        return ReadinessProbe(path=_probe_path(sec, "readiness_probe"))
    if sec.raw("readiness_probe") is None:
        raise sec.error("readiness_probe", "expected a path such as /health, or a mapping")
    probe = sec.mapping("readiness_probe")
    assert probe is not None  # null is not a mapping: mapping() raised
    probe.check_keys(_PROBE.keys() | {"path", "post_data", "headers"})
    probe.require("path", "the HTTP path probed, e.g. /health")
    return ReadinessProbe(
        path=_probe_path(probe, "path"),
        post_data=_post_data(probe),
        headers=_headers(probe),
        **probe.read_all(_PROBE),
    )


def _probe_path(sec: Section, key: str) -> str:
    """A URL path as sent on the request line: ``/``, then no whitespace or control
    characters, no fragment, ``%`` only in escapes (non-ASCII letters are
    %-encoded as UTF-8 when sent, as SkyServe's requests does)."""
    path = sec.string(key) or ""
    problem = ""
    if not path.startswith("/"):
        problem = "must start with '/'"
    elif path.startswith("//"):
        problem = "must start with a single '/' ('//host/...' names a host, not a path)"
    elif len(path) > MAX_PROBE_PATH:
        problem = f"is longer than {MAX_PROBE_PATH} characters"
    elif _PATH_SPACE_RE.search(path):
        problem = "cannot hold spaces or control characters (write a space as %20)"
    elif "#" in path:
        problem = "cannot hold '#': a fragment is never sent to the server (write it as %23)"
    elif _BAD_ESCAPE_RE.search(path):
        problem = "has a '%' that starts no escape such as %20 (write '%' as %25)"
    if problem:
        raise sec.error(key, f"the probe path {problem}, got {shorten(path)}")
    return path


class _NotJson(ValueError):
    pass


def _not_json(name: str) -> Any:
    """Python's json reads NaN and Infinity; a strict server (and RFC 8259) does not."""
    raise _NotJson(f"{name} is not JSON")


def _post_data(probe: Section) -> str | None:
    value = probe.raw("post_data")
    if value is None:
        return None
    if isinstance(value, str):
        try:
            json.loads(value, parse_constant=_not_json)
        except (ValueError, RecursionError) as e:
            why = f" ({e})" if isinstance(e, _NotJson) else ""
            raise probe.error("post_data", f"not valid JSON text{why}") from None
        return value
    if not isinstance(value, dict):
        raise probe.error("post_data", f"expected a mapping or JSON text, got {type_name(value)}")
    return json.dumps(probe.plain("post_data"))


def _headers(probe: Section) -> dict[str, str]:
    sec = probe.mapping("headers", null_ok=True)
    out: dict[str, str] = {}
    if sec is None:
        return out
    for key, value in sec.data.items():
        if not isinstance(key, str) or not TOKEN_RE.fullmatch(key):
            message = "expected a header name such as Authorization (letters, digits, -)"
            raise sec.error(str(key), f"{message}, got {shorten(key)}", at_key=True)
        if key.lower() in _PROBE_FRAMING:
            raise sec.error(key, "set by the probe itself from post_data", at_key=True)
        if not isinstance(value, str):
            raise sec.error(key, f"expected a string, got {type_name(value)}")
        if _CONTROL_RE.search(value):  # CR/LF would forge headers of their own
            raise sec.error(key, "a header value cannot hold line breaks or control characters")
        out[key] = value
    return out
