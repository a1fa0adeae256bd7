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
