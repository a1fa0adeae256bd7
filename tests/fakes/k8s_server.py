"""A small stateful fake of the Kubernetes API server, for tests.

The official ``kubernetes`` client talks to it over real HTTP on 127.0.0.1 (a
free port) through a kubeconfig the test writes (:meth:`FakeKubernetes.kubeconfig`),
so two servers are two clusters and two contexts. It runs on aiohttp inside the
test's event loop; the client's blocking calls run in ``asyncio.to_thread``.

Strict like the real one where the client or the provider could tell:
``uid``, ``resourceVersion``, ``creationTimestamp``, ``kind``/``apiVersion`` on
objects (not on list items), ``Status`` bodies for every error (401 without the
bearer token, 404, 409 AlreadyExists, 410 Expired, 422 Invalid with causes),
label selectors, ``watch=true`` streams of JSON lines from a resourceVersion
(a version older than the kept history answers an ``ERROR`` event with 410),
cascading deletion of objects whose ``ownerReferences`` name a deleted owner,
``PATCH`` as a JSON merge patch (``merge-patch+json``, ``strategic-merge-patch+json``;
a JSON patch body must be a list, else 400, and is otherwise answered 415).

What the test drives: nodes (:meth:`add_node`, :meth:`remove_node`, which
marks the node's pods with a ``DisruptionTarget`` condition and deletes them,
as a spot reclaim or Karpenter's drain does), a scheduler that binds a pod to a
fitting node or marks it ``Unschedulable``, :meth:`run` (Running, podIP,
Ready; automatic with ``auto_run``), :meth:`evict`, :meth:`exit`,
:meth:`fail_next` (429/5xx), :meth:`forbid` (403), :meth:`compact`.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from tests.fakes.k8s_cluster import NodesAndPods
from tests.fakes.k8s_objects import (
    KINDS,
    REASONS,
    ApiError,
    api_version,
    matches,
    merge_patch,
    parse_selector,
    status,
    timestamp,
    validate,
)

Key = tuple[str, str]  # (namespace or "", name)


class _Watcher:
    def __init__(self, plural: str, namespace: str | None, selector: Any) -> None:
        self.plural, self.namespace, self.selector = plural, namespace, selector
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()


class FakeKubernetes(NodesAndPods):
    """One fake cluster (see the module docstring)."""

    def __init__(
        self,
        *,
        name: str = "fake",
        token: str = "fake-token",
        namespaces: tuple[str, ...] = ("default",),
        auto_run: bool = True,
        auto_lb: bool = True,
        serve_pods: bool = False,
        now: Callable[[], float] = time.time,
        history: int = 10_000,
        ip_block: int = 1,
    ) -> None:
        self.name = name
        self.token = token
        self.auto_run = auto_run
        self.auto_lb = auto_lb
        self.serve_pods = serve_pods
        self._servers = {}
        self._server_tasks = set()
        self._now = now
        self._history_limit = history
        self._ip_block = ip_block
        self._rv = 100
        self._oldest = 0  # events with rv <= this are forgotten
        self._history: list[tuple[int, str, str, str, dict[str, Any]]] = []
        self._store: dict[str, dict[Key, dict[str, Any]]] = {p: {} for p in KINDS}
        self._watchers: list[_Watcher] = []
        self._failures: list[tuple[int, str | None, str | None, bool | None]] = []
        self._forbidden: set[tuple[str, str]] = set()
        self._ips = itertools.count(10)
        self._node_ports = itertools.count(30000)
        self.requests: list[tuple[str, str]] = []
        self.verbs: list[tuple[str, str]] = []  # (RBAC verb, resource) of each routed request
        self._runner: web.AppRunner | None = None
        self.port = 0
        for ns in namespaces:
            self.create("namespaces", {"metadata": {"name": ns}})

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        for w in self._watchers:
            w.queue.put_nowait(None)
        await self.stop_pod_servers()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kubeconfig_entry(self, context: str, namespace: str | None = None) -> dict[str, Any]:
        """This cluster's (cluster, user, context) triple for a kubeconfig."""
        ctx: dict[str, Any] = {"cluster": f"{context}-cluster", "user": f"{context}-user"}
        if namespace:
            ctx["namespace"] = namespace
        return {
            "cluster": {"name": f"{context}-cluster", "cluster": {"server": self.url}},
            "user": {"name": f"{context}-user", "user": {"token": self.token}},
            "context": {"name": context, "context": ctx},
        }

    @staticmethod
    def write_kubeconfig(path: Path, entries: list[dict[str, Any]], current: str) -> Path:
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [e["cluster"] for e in entries],
            "users": [e["user"] for e in entries],
            "contexts": [e["context"] for e in entries],
            "current-context": current,
        }
        path.write_text(yaml.safe_dump(doc))
        return path

    # ------------------------------------------------------------- storage
    def _bump(self, plural: str, event: str, obj: dict[str, Any]) -> None:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        ns = obj["metadata"].get("namespace", "")
        snapshot = copy.deepcopy(obj)
        self._history.append((self._rv, plural, ns, event, snapshot))
        if len(self._history) > self._history_limit:
            dropped = self._history.pop(0)
            self._oldest = dropped[0]
        for w in self._watchers:
            if (
                w.plural == plural
                and w.namespace in (None, ns)
                and matches(w.selector, snapshot["metadata"].get("labels") or {})
            ):
                w.queue.put_nowait({"type": event, "object": snapshot})

    def compact(self) -> None:
        """Forget every past event, as etcd compaction does: older watches get 410."""
        if self._history:
            self._oldest = self._history[-1][0]
        self._history.clear()

    def create(self, plural: str, body: Mapping[str, Any], namespace: str = "") -> dict[str, Any]:
        kind, cluster_scoped = KINDS[plural]
        obj = copy.deepcopy(dict(body))
        if obj.get("kind", kind) != kind or obj.get("apiVersion", api_version(plural)) != (
            api_version(plural)
        ):
            raise ApiError(
                400,
                f"the API version in the data ({obj.get('apiVersion')}) and kind "
                f"({obj.get('kind')}) do not match {api_version(plural)} {kind}",
            )
        meta = obj.setdefault("metadata", {})
        if cluster_scoped:
            meta.pop("namespace", None)
        else:
            if meta.get("namespace", namespace) != namespace:
                raise ApiError(
                    400,
                    "the namespace of the provided object does not match the "
                    "namespace sent on the request",
                )
            meta["namespace"] = namespace
            if ("", namespace) not in self._store["namespaces"]:
                raise ApiError(
                    404,
                    f'namespaces "{namespace}" not found',
                    details={"name": namespace, "kind": "namespaces"},
                )
        validate(plural, obj)
        key = (meta.get("namespace", ""), meta["name"])
        if key in self._store[plural]:
            raise ApiError(
                409,
                f'{plural} "{meta["name"]}" already exists',
                details={"name": meta["name"], "kind": plural},
            )
        obj["kind"], obj["apiVersion"] = kind, api_version(plural)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=timestamp(self._now()))
        self._defaults(plural, obj)
        self._store[plural][key] = obj
        self._bump(plural, "ADDED", obj)
        if plural == "pods":
            self._schedule(obj)
        return copy.deepcopy(obj)

    def _defaults(self, plural: str, obj: dict[str, Any]) -> None:
        spec = obj.setdefault("spec", {})
        if plural == "namespaces":
            spec["finalizers"] = ["kubernetes"]
            obj["status"] = {"phase": "Active"}
        elif plural == "pods":
            spec.setdefault("restartPolicy", "Always")
            spec.setdefault("dnsPolicy", "ClusterFirst")
            spec.setdefault("schedulerName", "default-scheduler")
            spec.setdefault("terminationGracePeriodSeconds", 30)
            spec.setdefault("serviceAccountName", "default")
            obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
        elif plural == "services":
            spec.setdefault("type", "ClusterIP")
            spec.setdefault("sessionAffinity", "None")
            spec["clusterIP"] = f"127.{self._ip_block}.1.{next(self._ips)}"
            spec["clusterIPs"] = [spec["clusterIP"]]
            for port in spec.get("ports") or []:
                port.setdefault("protocol", "TCP")
                port.setdefault("targetPort", port.get("port"))
                if spec["type"] in ("NodePort", "LoadBalancer"):
                    port["nodePort"] = next(self._node_ports)
            lb: dict[str, Any] = {}
            if spec["type"] == "LoadBalancer" and self.auto_lb:
                lb = {"ingress": [{"ip": f"127.{self._ip_block}.2.{next(self._ips)}"}]}
            obj["status"] = {"loadBalancer": lb}
        elif plural == "nodes":
            obj.setdefault("status", {}).setdefault(
                "conditions",
                [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "KubeletReady",
                        "lastHeartbeatTime": timestamp(self._now()),
                        "lastTransitionTime": timestamp(self._now()),
                    }
                ],
            )

    def get(self, plural: str, name: str, namespace: str = "") -> dict[str, Any]:
        obj = self._store[plural].get((namespace, name))
        if obj is None:
            raise ApiError(
                404, f'{plural} "{name}" not found', details={"name": name, "kind": plural}
            )
        return obj

    def patch(
        self, plural: str, name: str, body: Any, namespace: str = "", content_type: str = ""
    ) -> dict[str, Any]:
        obj = self.get(plural, name, namespace)
        merge_patch(obj, body, content_type)
        self._bump(plural, "MODIFIED", obj)
        return copy.deepcopy(obj)

    def delete(self, plural: str, name: str, namespace: str = "") -> dict[str, Any]:
        obj = self.get(plural, name, namespace)
        obj["metadata"].setdefault("deletionTimestamp", timestamp(self._now()))
        obj["metadata"]["deletionGracePeriodSeconds"] = 0
        del self._store[plural][(namespace, name)]
        if plural == "pods":
            self._unserve(obj["metadata"]["uid"])
        self._bump(plural, "DELETED", obj)
        uid = obj["metadata"]["uid"]
        for dep_plural, objects in self._store.items():
            for (ns, dep_name), dep in list(objects.items()):
                owners = dep["metadata"].get("ownerReferences") or []
                if any(o.get("uid") == uid for o in owners):
                    self.delete(dep_plural, dep_name, ns)
        if plural == "nodes":
            self._reschedule()
        return copy.deepcopy(obj)

    def objects(
        self, plural: str, namespace: str | None = None, selector: str | None = None
    ) -> list[dict[str, Any]]:
        sel = parse_selector(selector)
        return [
            copy.deepcopy(o)
            for (ns, _), o in sorted(self._store[plural].items())
            if namespace in (None, ns) and matches(sel, o["metadata"].get("labels") or {})
        ]

    def pods(
        self, namespace: str | None = None, selector: str | None = None
    ) -> list[dict[str, Any]]:
        return self.objects("pods", namespace, selector)

    def services(
        self, namespace: str | None = None, selector: str | None = None
    ) -> list[dict[str, Any]]:
        return self.objects("services", namespace, selector)

    # ------------------------------------------------------------ injection
    def end_watches(self) -> None:
        """End every open watch stream, as an API server restart does."""
        for w in self._watchers:
            w.queue.put_nowait(None)

    @property
    def watch_count(self) -> int:
        return len(self._watchers)

    def fail_next(
        self,
        code: int,
        count: int = 1,
        method: str | None = None,
        retry_after: str | None = None,
        *,
        watch: bool | None = None,
    ) -> None:
        """The next ``count`` requests (of ``method``, and watches or not, if given) answer
        ``code``, with a ``Retry-After: <retry_after>`` header when given (as the API
        server's priority and fairness does on 429)."""
        self._failures.extend([(code, method, retry_after, watch)] * count)

    def forbid(self, verb: str, plural: str) -> None:
        """RBAC denies ``verb`` (create, get, list, watch, delete) on ``plural``."""
        self._forbidden.add((verb, plural))

    # ----------------------------------------------------------------- HTTP
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        try:
            if request.headers.get("Authorization") != f"Bearer {self.token}":
                raise ApiError(401, "Unauthorized")
            watching = request.query.get("watch", "").lower() in ("true", "1", "t")
            for i, (code, method, retry_after, watch) in enumerate(self._failures):
                if method in (None, request.method) and watch in (None, watching):
                    del self._failures[i]
                    headers = {"Retry-After": retry_after} if retry_after is not None else None
                    return web.json_response(
                        status(code, "injected failure", REASONS.get(code, "InternalError")),
                        status=code,
                        headers=headers,
                    )
            return await self._route(request)
        except ApiError as e:
            return web.json_response(status(e.code, e.message, e.reason, e.details), status=e.code)

    def _parse_path(self, path: str) -> tuple[str, str | None, str | None]:
        """(plural, namespace, name) of ``/api/v1/...`` or ``/apis/<group>/<version>/...``."""
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["api", "v1"]:
            version, rest = "v1", parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            version, rest = f"{parts[1]}/{parts[2]}", parts[3:]
        else:
            raise ApiError(404, "the server could not find the requested resource")
        namespace = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 2 or rest[0] not in KINDS or api_version(rest[0]) != version:
            raise ApiError(404, "the server could not find the requested resource")
        plural = rest[0]
        if KINDS[plural][1] != (namespace is None) and not (namespace is None and len(rest) == 1):
            raise ApiError(404, "the server could not find the requested resource")
        return plural, namespace, rest[1] if len(rest) == 2 else None

    async def _route(self, request: web.Request) -> web.StreamResponse:
        plural, namespace, name = self._parse_path(request.path)
        q = request.query
        verb = {
            "GET": "get"
            if name
            else ("watch" if q.get("watch", "").lower() in ("true", "1", "t") else "list"),
            "POST": "create",
            "DELETE": "delete",
            "PATCH": "patch",
        }.get(request.method)
        if (
            verb is None
            or (verb == "create" and name)
            or (verb in ("delete", "patch") and not name)
        ):
            raise ApiError(405, f"the server does not allow this method on {plural}")
        self.verbs.append((verb, plural))
        if (verb, plural) in self._forbidden:
            raise ApiError(
                403,
                f'{plural} is forbidden: User "system:serviceaccount:test" '
                f'cannot {verb} resource "{plural}"',
                details={"kind": plural},
            )
        ns = namespace or ""
        if verb == "get":
            assert name is not None
            return web.json_response(self.get(plural, name, ns))
        if verb == "delete":
            assert name is not None
            obj = self.delete(plural, name, ns)
            if plural in ("pods", "services"):
                return web.json_response(obj)
            return web.json_response(status(200, "", "", {"name": name, "kind": plural}))
        if verb == "patch":
            assert name is not None
            try:
                body = await request.json()
            except json.JSONDecodeError:
                raise ApiError(400, "the request body is not JSON") from None
            return web.json_response(
                self.patch(plural, name, body, ns, request.headers.get("Content-Type", ""))
            )
        if verb == "create":
            try:
                body = await request.json()
            except json.JSONDecodeError:
                raise ApiError(400, "the request body is not JSON") from None
            if not isinstance(body, dict):
                raise ApiError(400, "the request body is not an object")
            return web.json_response(self.create(plural, body, ns), status=201)
        selector = parse_selector(q.get("labelSelector"))
        if verb == "watch":
            return await self._watch(request, plural, namespace, selector)
        items = [
            o
            for o in self.objects(plural, namespace)
            if matches(selector, o["metadata"].get("labels") or {})
        ]
        for item in items:
            item.pop("kind", None)
            item.pop("apiVersion", None)
        return web.json_response(
            {
                "kind": KINDS[plural][0] + "List",
                "apiVersion": api_version(plural),
                "metadata": {"resourceVersion": str(self._rv)},
                "items": items,
            }
        )

    async def _watch(
        self, request: web.Request, plural: str, namespace: str | None, selector: Any
    ) -> web.StreamResponse:
        rv_text = request.query.get("resourceVersion", "")
        timeout = float(request.query.get("timeoutSeconds", "1800"))
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        watcher = _Watcher(plural, namespace, selector)
        backlog: list[dict[str, Any]] = []
        if rv_text in ("", "0"):
            backlog = [
                {"type": "ADDED", "object": o}
                for o in self.objects(plural, namespace)
                if matches(selector, o["metadata"].get("labels") or {})
            ]
        elif int(rv_text) < self._oldest:
            gone = status(410, f"too old resource version: {rv_text} ({self._oldest})", "Expired")
            await resp.write(json.dumps({"type": "ERROR", "object": gone}).encode() + b"\n")
            return resp
        else:
            backlog = [
                {"type": ev, "object": copy.deepcopy(o)}
                for rv, p, ns, ev, o in self._history
                if rv > int(rv_text)
                and p == plural
                and namespace in (None, ns)
                and matches(selector, o["metadata"].get("labels") or {})
            ]
        self._watchers.append(watcher)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            for event in backlog:
                await resp.write(json.dumps(event).encode() + b"\n")
            while True:
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    live = await asyncio.wait_for(watcher.queue.get(), left)
                except TimeoutError:
                    break
                if live is None:
                    break
                await resp.write(json.dumps(live).encode() + b"\n")
            await resp.write_eof()
        except ConnectionResetError:
            pass
        finally:
            self._watchers.remove(watcher)
        return resp
