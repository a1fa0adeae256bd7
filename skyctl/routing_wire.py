"""The routing watch's wire format, shared by the controller and the router process.

The controller serves its routing state at :data:`WATCH_PATH` (a long poll on its
loopback API, bearer token as every API call) and takes the router process's
reports at :data:`REPORT_PATH`. One watch answer::

    {"epoch": "<this controller's run>", "version": 12, "full": true,
     "services": {"<name>": ENTRY, ...}, "removed": ["<name>", ...],
     "kept": ["<name>", ...]}   # full only: stored, not restored yet (keep yours)

``GET WATCH_PATH?epoch=E&since=V&wait=S``: with another epoch (or none: a
router that just started, a controller that restarted) the answer is the full
state (``full``: every service, nothing removed); with this epoch it holds the
services whose entry changed after version ``V`` and the names removed after
it, and waits up to ``S`` seconds for a change when there is none yet (then
answers with no change). ENTRY::

    {"version": 11,              # the feed version of its last change
     "spec_version": 3,          # the stored spec: settings, TLS, auth, drain
     "yaml": "...", "source": "...", "secrets": "<ciphertext>",
     "host": "0.0.0.0", "port": 8080,
     "backends": [BACKEND, ...] or null}   # null: not yet known, keep your last

The spec travels as the store keeps it (secrets encrypted): the router opens
it with the home's key like the controller does. A report (``POST``)::

    {"router": "<id>", "services": {"<name>": {"rate_60": 1.5,
       "replica_stats": {"<rid>": {...}}, "ejected": {"<rid>": until},
       "histograms": [FAMILY, ...],   # request duration, time to first byte
       "error": "" or why the endpoint is not open}},
     "backend_errors": [["<name>", rid, "reason"], ...]}

FAMILY is a Prometheus family as :func:`skyctl.metric_samples.snapshot` writes
it, in :func:`~skyctl.metric_samples.pack`'s compact form (this process's
counts since it started); the controller sums them over every router process.
"""

from __future__ import annotations

import math
from typing import Any

from skyctl.types import Backend, Location

WATCH_PATH = "/v1/routing/watch"
REPORT_PATH = "/v1/routing/report"
WAIT_SECONDS = 25.0  # how long a watch waits for a change before answering "none"


def backend_to_json(b: Backend) -> dict[str, Any]:
    return {
        "replica_id": b.replica_id,
        "url": b.url,
        "location": str(b.location),
        "spot": b.spot,
        "accelerators": b.accelerators,
        "version": b.version,
        "extra": dict(b.extra),
    }


def backend_from_json(d: dict[str, Any]) -> Backend:
    return Backend(
        replica_id=int(d["replica_id"]),
        url=str(d["url"]),
        location=Location.parse(str(d["location"])),
        spot=bool(d.get("spot", True)),
        accelerators=str(d.get("accelerators", "")),
        version=int(d.get("version", 1)),
        extra={str(k): str(v) for k, v in (d.get("extra") or {}).items()},
    )


def router_info_name(worker: int) -> str:
    """The file a router worker names itself and its ports in (under the home; the
    supervisor reads it to adopt a router process a previous supervisor left)."""
    return "router.json" if worker == 0 else f"router-{worker}.json"


MAX_REPLICA_ID = (1 << 31) - 1  # as the API bounds ids (SQLite, the store)


def _figure(value: object, where: str) -> float:
    """A finite number (JSON lets NaN and Infinity through; a float cannot hold 1e400)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}: expected a number, got {type(value).__name__}")
    if (isinstance(value, int) and abs(value) > 1 << 63) or not math.isfinite(value):
        raise ValueError(f"{where}: {value!r:.40} is not a finite number")
    return float(value)


def _replica_key(key: str, where: str) -> None:
    if not (key.isascii() and key.isdigit() and int(key) <= MAX_REPLICA_ID):
        raise ValueError(f"{where}: {key[:40]!r} is not a replica id")


def _mapping(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def check_report(body: object) -> dict[str, Any]:
    """A router process's report (the module docstring), checked whole before any of it
    is taken: a forged or corrupt one is a ValueError naming the first bad key (it was
    stored, and broke ``serve status``, ``/metrics`` and the ticks until it aged out)."""
    report = _mapping(body, "report")
    for key in ("router", "epoch"):
        if not isinstance(report.get(key) or "", str):
            raise ValueError(f"{key}: expected a string")
    version = report.get("version") or 0
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ValueError(f"version: expected a whole number, got {version!r:.40}")
    for name, entry in _mapping(report.get("services") or {}, "services").items():
        where = f"services.{name[:63]}"
        entry = _mapping(entry, where)
        if "rate_60" in entry and _figure(entry["rate_60"], f"{where}.rate_60") < 0:
            raise ValueError(f"{where}.rate_60: a rate cannot be negative")
        for rid, stats in _mapping(
            entry.get("replica_stats") or {}, f"{where}.replica_stats"
        ).items():
            _replica_key(rid, f"{where}.replica_stats")
            for key, value in _mapping(stats, f"{where}.replica_stats.{rid}").items():
                _figure(value, f"{where}.replica_stats.{rid}.{key[:40]}")
        for rid, until in _mapping(entry.get("ejected") or {}, f"{where}.ejected").items():
            _replica_key(rid, f"{where}.ejected")
            _figure(until, f"{where}.ejected.{rid}")
        if not isinstance(entry.get("histograms") or [], list):
            raise ValueError(f"{where}.histograms: expected a list")
        if not isinstance(entry.get("error") or "", str):
            raise ValueError(f"{where}.error: expected a string")
    errors = report.get("backend_errors") or []
    if not isinstance(errors, list):
        raise ValueError("backend_errors: expected a list")
    for item in errors:
        if not (
            isinstance(item, list)
            and len(item) == 3
            and isinstance(item[0], str)
            and isinstance(item[1], int)
            and not isinstance(item[1], bool)
            and 0 <= item[1] <= MAX_REPLICA_ID
            and isinstance(item[2], str)
        ):
            raise ValueError(f"backend_errors: {item!r:.60} is not [service, replica id, reason]")
    return report
