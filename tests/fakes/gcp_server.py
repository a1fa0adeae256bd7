"""A small stateful fake of the Compute Engine v1 REST API, for tests.

It speaks the real protocol (paths, JSON field names, the ``Operation``
resource, the ``{"error": {"code", "message", "errors": [{"reason", ...}]}}``
error format, ``requestId`` de-duplication, ``filter``/``maxResults``/
``pageToken`` on lists) so that the real ``google-cloud-compute`` client,
pointed at it with ``client_options={"api_endpoint": server.endpoint}`` and
anonymous credentials, works unchanged. It runs on aiohttp inside the test's
event loop on 127.0.0.1 and a free port; the client's blocking calls run in
``asyncio.to_thread``, so the loop stays free to answer.

What it models (from the API reference):

- ``instances``: insert (PROVISIONING until its operation is polled, then
  RUNNING with a natIP), get, list, aggregatedList, delete (STOPPING, gone
  after one more read), setMetadata (the current ``fingerprint`` required,
  412 ``conditionNotMet`` otherwise);
- zone and global ``operations``: get, wait (completes a pending operation),
  list, aggregatedList; operation errors carry ``error.errors[].code``;
- ``firewalls``: insert, get, list, delete; ``machineTypes`` and
  ``acceleratorTypes``: aggregatedList;
- injection: :meth:`exhaust` (a zone answers every insert with an operation
  error, ``ZONE_RESOURCE_POOL_EXHAUSTED`` unless told otherwise), :meth:`refuse`
  (the same for one instance name),
  :meth:`fail_next` (the next requests answer 503, 429 ...),
  :meth:`preempt` (a ``compute.instances.preempted`` operation, the instance
  STOPPING during its notice, then TERMINATED, then deleted as
  ``instanceTerminationAction: DELETE`` does), :meth:`schedule_maintenance`.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import itertools
import json
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tests.fakes.gcp_filter import FilterError, parse_filter

BASE = "https://www.googleapis.com/compute/v1"

DEFAULT_ZONES: dict[str, tuple[str, ...]] = {
    "us-central1": ("us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"),
    "us-east1": ("us-east1-b", "us-east1-c", "us-east1-d"),
    "us-west1": ("us-west1-a", "us-west1-b"),
    "europe-west4": ("europe-west4-a", "europe-west4-b"),
    "asia-southeast1": ("asia-southeast1-a", "asia-southeast1-b"),
}

DEFAULT_ACCELERATORS = (
    "nvidia-tesla-t4",
    "nvidia-tesla-v100",
    "nvidia-l4",
    "nvidia-tesla-a100",
    "nvidia-a100-80gb",
    "nvidia-h100-80gb",
)

#: Compute Engine's label rules (keys and values; at most 64 labels)
_LABEL_KEY, _LABEL_VALUE = re.compile(r"[a-z][-_a-z0-9]{0,62}"), re.compile(r"[-_a-z0-9]{0,63}")

_REASONS = {
    400: "invalid",
    401: "required",
    403: "forbidden",
    404: "notFound",
    409: "alreadyExists",
    429: "rateLimitExceeded",
}
_CAPACITY_MESSAGES = {
    "ZONE_RESOURCE_POOL_EXHAUSTED": (
        "The zone '{zone}' does not have enough resources available to fulfill the request. "
        "Try a different zone, or try again later."
    ),
    "QUOTA_EXCEEDED": "Quota 'PREEMPTIBLE_CPUS' exceeded. Limit: 0.0 in region {region}.",
}


class ApiError(Exception):
    def __init__(self, status: int, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason or _REASONS.get(status, "backendError")


def _rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat(timespec="milliseconds")


def _fingerprint(meta: Mapping[str, Any]) -> str:
    """The metadata's fingerprint: a digest of its items (base64, as the API's)."""
    digest = hashlib.sha256(json.dumps(meta.get("items") or [], sort_keys=True).encode())
    return base64.b64encode(digest.digest()[:8]).decode()


def _catalog_types() -> dict[str, set[str]]:
    """region -> machine types, from the bundled GCP catalog."""
    from providers.catalog import load_catalog

    out: dict[str, set[str]] = {}
    for entry in load_catalog("gcp"):
        out.setdefault(entry.region, set()).add(entry.instance_type)
    return out


class FakeComputeEngine:
    """The fake API's state, its HTTP server and its failure injection."""

    def __init__(
        self,
        *,
        zones: Mapping[str, Sequence[str]] | None = None,
        machine_types: Mapping[str, Iterable[str]] | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.zones = {r: tuple(z) for r, z in (zones or DEFAULT_ZONES).items()}
        self._now = now
        by_region = _catalog_types()
        self.machine_types: dict[str, set[str]] = {
            zone: set(by_region.get(region, ())) for region, zs in self.zones.items() for zone in zs
        }
        for zone, types in (machine_types or {}).items():
            self.machine_types[zone] = set(types)
        self.accelerator_types = {z: set(DEFAULT_ACCELERATORS) for z in self.machine_types}
        self.endpoint = ""
        self._runner: web.AppRunner | None = None
        self.reset()

    # ---------------------------------------------------------------- state

    def reset(self) -> None:
        """Forget every resource, operation and injected failure."""
        self.instances: dict[tuple[str, str], dict[str, Any]] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        self.firewalls: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request
        self.request_ids: dict[tuple[str, str], str] = {}
        self._exhausted: dict[str, tuple[str, bool]] = {}
        self._refused: dict[str, str] = {}
        self._failures: list[tuple[int, str, str]] = []
        self._pending_delete: set[tuple[str, str]] = set()
        self._ids = itertools.count(1000)
        self._ips = itertools.count(10)

    def instance(self, zone: str, name: str) -> dict[str, Any]:
        return self.instances[(zone, name)]

    def region_of(self, zone: str) -> str:
        return zone.rsplit("-", 1)[0]

    # ------------------------------------------------------------ injection

    def exhaust(
        self, zone: str, *, code: str = "ZONE_RESOURCE_POOL_EXHAUSTED", spot_only: bool = False
    ) -> None:
        """Every insert in ``zone`` (or only SPOT ones) fails its operation with ``code``."""
        self._exhausted[zone] = (code, spot_only)

    def refuse(self, name: str, *, code: str = "ZONE_RESOURCE_POOL_EXHAUSTED") -> None:
        """The next insert of the instance ``name`` fails its operation with ``code``."""
        self._refused[name] = code

    def restore(self, zone: str) -> None:
        self._exhausted.pop(zone, None)

    def fail_next(
        self, count: int = 1, *, status: int = 503, path_contains: str = "", reason: str = ""
    ) -> None:
        """The next ``count`` requests whose path contains ``path_contains`` answer ``status``
        (with ``errors[0].reason`` = ``reason``, or the usual one for the status)."""
        self._failures += [(status, path_contains, reason)] * count

    def preempt(self, zone: str, name: str, *, stage: str = "deleted") -> dict[str, Any]:
        """Preempt an instance: record ``compute.instances.preempted`` and move it to
        ``stage``: "notice" (STOPPING, the ~30 s the guest gets), "terminated" or
        "deleted" (what ``instanceTerminationAction: DELETE`` ends with)."""
        inst = self.instances[(zone, name)]
        op = self._operation(
            "compute.instances.preempted", zone=zone, target=inst, user="system", done=True
        )
        if stage == "notice":
            inst["status"] = "STOPPING"
        elif stage == "terminated":
            inst["status"] = "TERMINATED"
        elif stage == "deleted":
            del self.instances[(zone, name)]
        else:
            raise ValueError(f"stage must be notice, terminated or deleted, not {stage!r}")
        return op

    def schedule_maintenance(self, zone: str, name: str, start: float) -> None:
        """Announce host maintenance for the instance, starting at epoch ``start``."""
        inst = self.instances[(zone, name)]
        inst.setdefault("resourceStatus", {})["upcomingMaintenance"] = {
            "type": "SCHEDULED",
            "canReschedule": False,
            "windowStartTime": _rfc3339(start),
            "windowEndTime": _rfc3339(start + 3600),
        }

    # ---------------------------------------------------------------- server

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/compute/v1/projects/{project}/{rest:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        port = self._runner.addresses[0][1]
        self.endpoint = f"http://127.0.0.1:{port}"
        return self.endpoint

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        project = request.match_info["project"]
        parts = request.match_info["rest"].strip("/").split("/")
        self.requests.append((request.method, request.path))
        for i, (status, needle, reason) in enumerate(self._failures):
            if needle in request.path:
                del self._failures[i]
                return self._error(ApiError(status, "injected failure", reason or None))
        try:
            body = await request.json() if request.can_read_body else {}
            result = self._route(request.method, project, parts, request.query, body)
        except ApiError as e:
            return self._error(e)
        except FilterError as e:
            return self._error(ApiError(400, str(e)))
        return web.json_response(result)

    def _error(self, e: ApiError) -> web.Response:
        payload = {
            "error": {
                "code": e.status,
                "message": e.message,
                "errors": [{"message": e.message, "domain": "global", "reason": e.reason}],
            }
        }
        return web.json_response(payload, status=e.status)

    def _route(
        self, method: str, project: str, p: list[str], q: Mapping[str, str], body: Any
    ) -> Any:
        m = (method, len(p))
        if p[0] == "aggregated" and m == ("GET", 2):
            return self._aggregated(project, p[1], q)
        if p[0] == "zones" and len(p) >= 3:
            zone, kind = p[1], p[2]
            if zone not in self.machine_types:
                raise ApiError(404, f"The resource 'projects/{project}/zones/{zone}' was not found")
            if kind == "instances":
                return self._instances(method, project, zone, p[3:], q, body)
            if kind == "operations":
                return self._op_call(method, p[3:], q, zone=zone)
        if p[0] == "global" and len(p) >= 2:
            if p[1] == "firewalls":
                return self._firewalls(method, project, p[2:], q, body)
            if p[1] == "operations":
                return self._op_call(method, p[2:], q, zone=None)
        raise ApiError(404, f"fake Compute Engine: no route for {method} {'/'.join(p)}")

    # ------------------------------------------------------------- listings

    def _page(self, items: list[Any], q: Mapping[str, str]) -> tuple[list[Any], str | None]:
        size = int(q.get("maxResults", "500"))
        start = int(q.get("pageToken") or 0)
        nxt = str(start + size) if start + size < len(items) else None
        return items[start : start + size], nxt

    def _listing(self, kind: str, items: list[dict[str, Any]], q: Mapping[str, str]) -> Any:
        keep = parse_filter(q.get("filter"))
        page, nxt = self._page([i for i in items if keep(i)], q)
        out: dict[str, Any] = {"kind": f"compute#{kind}List", "items": page}
        if nxt:
            out["nextPageToken"] = nxt
        return out

    def _aggregated(self, project: str, what: str, q: Mapping[str, str]) -> Any:
        keep = parse_filter(q.get("filter"))
        rows: list[tuple[str, dict[str, Any]]] = []
        if what == "instances":
            rows = [(f"zones/{z}", i) for (z, _), i in sorted(self.instances.items())]
            self._finish_deletes()
        elif what == "operations":
            rows = [
                (f"zones/{o['zone'].rsplit('/', 1)[1]}" if "zone" in o else "global", o)
                for o in self.operations.values()
            ]
        elif what == "machineTypes":
            rows = [
                (f"zones/{z}", {"kind": "compute#machineType", "name": t, "zone": z})
                for z, types in sorted(self.machine_types.items())
                for t in sorted(types)
            ]
        elif what == "acceleratorTypes":
            rows = [
                (f"zones/{z}", {"kind": "compute#acceleratorType", "name": t, "zone": z})
                for z, types in sorted(self.accelerator_types.items())
                for t in sorted(types)
            ]
        else:
            raise ApiError(404, f"fake Compute Engine: no aggregated list of {what}")
        page, nxt = self._page([(scope, r) for scope, r in rows if keep(r)], q)
        items: dict[str, Any] = {}
        for scope, r in page:
            items.setdefault(scope, {}).setdefault(what, []).append(r)
        out: dict[str, Any] = {"kind": f"compute#{what}AggregatedList", "items": items}
        if nxt:
            out["nextPageToken"] = nxt
        return out

    # ------------------------------------------------------------ instances

    def _instances(
        self, method: str, project: str, zone: str, p: list[str], q: Mapping[str, str], body: Any
    ) -> Any:
        if method == "GET" and not p:
            listing = self._listing(
                "instance", [i for (z, _), i in sorted(self.instances.items()) if z == zone], q
            )
            self._finish_deletes()
            return listing
        if method == "POST" and not p:
            return self._insert(project, zone, q.get("requestId"), body)
        if method == "POST" and len(p) == 2 and p[1] == "setMetadata":
            return self._set_metadata(project, zone, p[0], q.get("requestId"), body)
        if len(p) != 1:
            raise ApiError(404, "fake Compute Engine: unsupported instances call")
        key = (zone, p[0])
        link = f"projects/{project}/zones/{zone}/instances/{p[0]}"
        if key not in self.instances:
            raise ApiError(404, f"The resource '{link}' was not found")
        if method == "GET":
            inst = copy.deepcopy(self.instances[key])
            self._finish_deletes()
            return inst
        if method == "DELETE":
            dup = self.request_ids.get((zone, q.get("requestId", "")))
            if dup:
                return self.operations[dup]
            inst = self.instances[key]
            inst["status"] = "STOPPING"
            self._pending_delete.add(key)
            op = self._operation("delete", zone=zone, target=inst, done=False)
            self._remember(zone, q.get("requestId"), op)
            return op
        raise ApiError(405, f"method {method} not allowed")

    def _set_metadata(
        self, project: str, zone: str, name: str, request_id: str | None, body: Any
    ) -> Any:
        """``instances.setMetadata``: replaces every item; the body's ``fingerprint``
        must be the instance's current one (412 conditionNotMet otherwise)."""
        dup = self.request_ids.get((zone, request_id or ""))
        if dup:
            return self.operations[dup]
        inst = self.instances.get((zone, name))
        if inst is None:
            raise ApiError(
                404,
                f"The resource 'projects/{project}/zones/{zone}/instances/{name}' was not found",
            )
        meta = inst.setdefault("metadata", {})
        if body.get("fingerprint") != _fingerprint(meta):
            raise ApiError(
                412,
                "Supplied fingerprint does not match current metadata fingerprint.",
                "conditionNotMet",
            )
        meta["items"] = copy.deepcopy(body.get("items") or [])
        meta["fingerprint"] = _fingerprint(meta)
        op = self._operation("setMetadata", zone=zone, target=inst, done=True)
        self._remember(zone, request_id, op)
        return op

    def _finish_deletes(self) -> None:
        """Deletions complete one read after they were accepted."""
        for key in list(self._pending_delete):
            self.instances.pop(key, None)
        self._pending_delete.clear()

    def _remember(self, scope: str, request_id: str | None, op: dict[str, Any]) -> None:
        if request_id:
            try:
                uuid.UUID(request_id)
            except ValueError:
                raise ApiError(400, "Invalid value for field 'requestId'", "invalid") from None
            self.request_ids[(scope, request_id)] = op["name"]

    def _insert(self, project: str, zone: str, request_id: str | None, body: Any) -> Any:
        dup = self.request_ids.get((zone, request_id or ""))
        if dup:
            return self.operations[dup]
        name = body.get("name", "")
        link = f"projects/{project}/zones/{zone}/instances/{name}"
        if (zone, name) in self.instances:
            raise ApiError(409, f"The resource '{link}' already exists")
        machine = str(body.get("machineType", "")).rsplit("/", 1)[-1]
        if machine not in self.machine_types[zone]:
            raise ApiError(
                400, f"Invalid value for field 'resource.machineType': '{machine}'.", "invalid"
            )
        labels = body.get("labels") or {}
        bad = [
            k
            for k, v in labels.items()
            if not (_LABEL_KEY.fullmatch(k) and _LABEL_VALUE.fullmatch(v))
        ]
        if bad or len(labels) > 64:
            raise ApiError(
                400, f"Invalid value for field 'resource.labels': {bad or len(labels)}", "invalid"
            )
        spot = body.get("scheduling", {}).get("provisioningModel") == "SPOT"
        inst = copy.deepcopy(body)
        inst.update(
            kind="compute#instance",
            id=str(next(self._ids)),
            zone=f"{BASE}/projects/{project}/zones/{zone}",
            selfLink=f"{BASE}/{link}",
            status="PROVISIONING",
            creationTimestamp=_rfc3339(self._now()),
            machineType=f"{BASE}/projects/{project}/zones/{zone}/machineTypes/{machine}",
        )
        for nic in inst.get("networkInterfaces", []):
            nic["networkIP"] = f"10.128.0.{next(self._ips)}"
        meta = inst.setdefault("metadata", {})
        meta["fingerprint"] = _fingerprint(meta)
        exhausted = self._exhausted.get(zone)
        if name in self._refused:
            exhausted = (self._refused.pop(name), False)
        op = self._operation("insert", zone=zone, target=inst, done=False)
        if exhausted and (spot or not exhausted[1]):
            code = exhausted[0]
            template = _CAPACITY_MESSAGES.get(code, "{zone}: " + code)
            message = template.format(zone=f"projects/{project}/zones/{zone}", region=zone[:-2])
            op.update(
                status="DONE",
                error={"errors": [{"code": code, "message": message}]},
                httpErrorStatusCode=503 if code != "QUOTA_EXCEEDED" else 403,
                httpErrorMessage="SERVICE UNAVAILABLE" if code != "QUOTA_EXCEEDED" else "FORBIDDEN",
                endTime=_rfc3339(self._now()),
            )
        else:
            self.instances[(zone, name)] = inst
        self._remember(zone, request_id, op)
        return op

    def _complete(self, op: dict[str, Any]) -> None:
        if op["status"] == "DONE":
            return
        op.update(status="DONE", progress=100, endTime=_rfc3339(self._now()))
        zone = op.get("zone", "").rsplit("/", 1)[-1]
        name = op.get("targetLink", "").rsplit("/", 1)[-1]
        inst = self.instances.get((zone, name))
        if op["operationType"] == "insert" and inst is not None:
            inst["status"] = "RUNNING"
            for nic in inst.get("networkInterfaces", []):
                for ac in nic.get("accessConfigs", []):
                    ac["natIP"] = f"203.0.113.{next(self._ips) % 250 + 1}"
        elif op["operationType"] == "delete" and inst is not None:
            self.instances.pop((zone, name), None)
            self._pending_delete.discard((zone, name))

    # ------------------------------------------------------------ operations

    def _operation(
        self,
        op_type: str,
        *,
        zone: str | None,
        target: Mapping[str, Any],
        done: bool,
        user: str = "skyctl-test@example.com",
    ) -> dict[str, Any]:
        now = self._now()
        name = f"operation-{int(now * 1000)}-{uuid.uuid4().hex[:12]}"
        scope = f"zones/{zone}" if zone else "global"
        project = str(target.get("selfLink", "")).split("/projects/", 1)[-1].split("/", 1)[0]
        op: dict[str, Any] = {
            "kind": "compute#operation",
            "id": str(next(self._ids)),
            "name": name,
            "operationType": op_type,
            "targetLink": target.get("selfLink", ""),
            "targetId": target.get("id", ""),
            "status": "DONE" if done else "RUNNING",
            "user": user,
            "progress": 100 if done else 0,
            "insertTime": _rfc3339(now),
            "startTime": _rfc3339(now),
            "selfLink": f"{BASE}/projects/{project}/{scope}/operations/{name}",
        }
        if done:
            op["endTime"] = _rfc3339(now)
        if zone:
            op["zone"] = f"{BASE}/projects/{project}/zones/{zone}"
        self.operations[name] = op
        return op

    def _op_call(self, method: str, p: list[str], q: Mapping[str, str], zone: str | None) -> Any:
        if method == "GET" and not p:
            ops = [
                o
                for o in self.operations.values()
                if (zone and o.get("zone", "").endswith(f"/zones/{zone}"))
                or (not zone and "zone" not in o)
            ]
            return self._listing("operation", ops, q)
        op = self.operations.get(p[0])
        if op is None:
            raise ApiError(404, f"The resource 'operations/{p[0]}' was not found")
        if (method == "GET" and len(p) == 1) or (method == "POST" and p[1:] == ["wait"]):
            self._complete(op)
            return op
        raise ApiError(404, "fake Compute Engine: unsupported operations call")

    # ------------------------------------------------------------- firewalls

    def _firewalls(
        self, method: str, project: str, p: list[str], q: Mapping[str, str], body: Any
    ) -> Any:
        if method == "GET" and not p:
            return self._listing("firewall", list(self.firewalls.values()), q)
        if method == "POST" and not p:
            dup = self.request_ids.get(("global", q.get("requestId", "")))
            if dup:
                return self.operations[dup]
            name = body.get("name", "")
            link = f"projects/{project}/global/firewalls/{name}"
            if name in self.firewalls:
                raise ApiError(409, f"The resource '{link}' already exists")
            rule = copy.deepcopy(body)
            rule.update(
                kind="compute#firewall",
                id=str(next(self._ids)),
                selfLink=f"{BASE}/{link}",
                creationTimestamp=_rfc3339(self._now()),
                direction=body.get("direction", "INGRESS"),
            )
            self.firewalls[name] = rule
            op = self._operation("insert", zone=None, target=rule, done=True)
            self._remember("global", q.get("requestId"), op)
            return op
        if len(p) == 1:
            rule = self.firewalls.get(p[0])
            if rule is None:
                raise ApiError(
                    404, f"The resource 'projects/{project}/global/firewalls/{p[0]}' was not found"
                )
            if method == "GET":
                return rule
            if method == "DELETE":
                del self.firewalls[p[0]]
                return self._operation("delete", zone=None, target=rule, done=True)
        raise ApiError(404, "fake Compute Engine: unsupported firewalls call")
