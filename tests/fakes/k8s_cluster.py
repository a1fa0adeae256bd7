"""The cluster side of the fake Kubernetes API server: nodes, a scheduler and a
kubelet that the test drives (a mixin of :class:`tests.fakes.k8s_server.FakeKubernetes`).

- :meth:`NodesAndPods.add_node` / :meth:`remove_node`: a removed node's pods get
  a ``DisruptionTarget`` condition (as a spot reclaim or a drain sets) and are
  deleted, then the node goes;
- the scheduler binds a new pod to a fitting node (selector, affinity, taints,
  GPUs; the least loaded) or marks it ``PodScheduled=False, Unschedulable``;
  pending pods are retried when a node is added;
- :meth:`run` (Running, podIP, Ready: automatic with ``auto_run``),
  :meth:`exit`, :meth:`evict` (the Eviction API);
- with ``serve_pods``, a running pod answers HTTP on its loopback pod IP and
  container port (``GET`` anything: 200 and the pod's name) until it goes, so a
  controller's probes and router reach it.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.fakes.k8s_objects import fits, timestamp


class NodesAndPods:
    """Test-driven node and pod behaviour; storage and events come from the server."""

    auto_run: bool
    serve_pods: bool
    _servers: dict[str, web.AppRunner]  # pod uid -> its HTTP server
    _server_tasks: set[asyncio.Task[None]]
    _ip_block: int
    _ips: itertools.count[int]
    _now: Callable[[], float]
    _store: dict[str, dict[tuple[str, str], dict[str, Any]]]

    if TYPE_CHECKING:  # storage and events, defined by the server class

        def create(
            self, plural: str, body: Mapping[str, Any], namespace: str = ""
        ) -> dict[str, Any]: ...

        def get(self, plural: str, name: str, namespace: str = "") -> dict[str, Any]: ...

        def delete(self, plural: str, name: str, namespace: str = "") -> dict[str, Any]: ...

        def _bump(self, plural: str, event: str, obj: dict[str, Any]) -> None: ...

    # ----------------------------------------------------- test-driven state
    def add_node(
        self,
        name: str,
        labels: Mapping[str, str] | None = None,
        *,
        taints: list[dict[str, str]] | None = None,
        gpus: int = 0,
    ) -> None:
        capacity = {"cpu": "8", "memory": "32Gi", "pods": "110"}
        if gpus:
            capacity["nvidia.com/gpu"] = str(gpus)
        self.create(
            "nodes",
            {
                "metadata": {"name": name, "labels": dict(labels or {})},
                "spec": {"taints": list(taints or [])},
                "status": {
                    "capacity": capacity,
                    "allocatable": dict(capacity),
                    "addresses": [
                        {
                            "type": "InternalIP",
                            "address": f"127.{self._ip_block}.3.{next(self._ips)}",
                        },
                        {"type": "Hostname", "address": name},
                    ],
                },
            },
        )
        self._reschedule()

    def remove_node(self, name: str, reason: str = "DeletionByTaintManager") -> None:
        """A reclaimed spot node: its pods get DisruptionTarget, then all go."""
        for pod in [p for p in self._store["pods"].values() if p["spec"].get("nodeName") == name]:
            self._disrupt(pod, reason, f"node {name} is being removed")
        for pod in [p for p in self._store["pods"].values() if p["spec"].get("nodeName") == name]:
            self.delete("pods", pod["metadata"]["name"], pod["metadata"]["namespace"])
        self.delete("nodes", name)

    def evict(self, namespace: str, name: str) -> None:
        """The Eviction API: DisruptionTarget, then the pod is deleted."""
        pod = self.get("pods", name, namespace)
        self._disrupt(pod, "EvictionByEvictionAPI", "Eviction API: evicting")
        self.delete("pods", name, namespace)

    def _disrupt(self, pod: dict[str, Any], reason: str, message: str) -> None:
        conds = [c for c in pod["status"].get("conditions", []) if c["type"] != "DisruptionTarget"]
        conds.append(
            {
                "type": "DisruptionTarget",
                "status": "True",
                "reason": reason,
                "message": message,
                "lastTransitionTime": timestamp(self._now()),
            }
        )
        pod["status"]["conditions"] = conds
        self._bump("pods", "MODIFIED", pod)

    def _schedule(self, pod: dict[str, Any]) -> None:
        nodes = sorted(self._store["nodes"].values(), key=lambda n: n["metadata"]["name"])
        fitting = [n for n in nodes if fits(pod, n)]
        now = timestamp(self._now())
        if not fitting:
            pod["status"]["conditions"] = [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "lastTransitionTime": now,
                    "message": f"0/{len(nodes)} nodes are available: {len(nodes)} node(s) didn't "
                    "match Pod's node affinity/selector or had untolerated taints.",
                }
            ]
            self._bump("pods", "MODIFIED", pod)
            return
        load = {n["metadata"]["name"]: 0 for n in fitting}
        for p in self._store["pods"].values():
            if p["spec"].get("nodeName") in load:
                load[p["spec"]["nodeName"]] += 1
        node = min(fitting, key=lambda n: (load[n["metadata"]["name"]], n["metadata"]["name"]))
        pod["spec"]["nodeName"] = node["metadata"]["name"]
        pod["status"]["conditions"] = [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now}
        ]
        self._bump("pods", "MODIFIED", pod)
        if self.auto_run:
            self.run(pod["metadata"]["namespace"], pod["metadata"]["name"])

    def _reschedule(self) -> None:
        for pod in list(self._store["pods"].values()):
            if not pod["spec"].get("nodeName") and pod["status"].get("phase") == "Pending":
                self._schedule(pod)

    def run(self, namespace: str, name: str) -> None:
        """The kubelet started the container: Running, a pod IP, Ready."""
        pod = self.get("pods", name, namespace)
        if not pod["spec"].get("nodeName"):
            raise AssertionError(f"pod {name} is not scheduled")
        node = self.get("nodes", pod["spec"]["nodeName"])
        now = timestamp(self._now())
        container = pod["spec"]["containers"][0]
        pod["status"].update(
            phase="Running",
            podIP=f"127.{self._ip_block}.0.{next(self._ips)}",
            hostIP=node["status"]["addresses"][0]["address"],
            startTime=now,
            conditions=[
                {"type": t, "status": "True", "lastTransitionTime": now}
                for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
            ],
            containerStatuses=[
                {
                    "name": container["name"],
                    "ready": True,
                    "restartCount": 0,
                    "started": True,
                    "image": container["image"],
                    "imageID": f"docker.io/{container['image']}@sha256:0",
                    "state": {"running": {"startedAt": now}},
                }
            ],
        )
        pod["status"]["podIPs"] = [{"ip": pod["status"]["podIP"]}]
        self._bump("pods", "MODIFIED", pod)
        if self.serve_pods:
            port = int(container.get("ports", [{}])[0].get("containerPort", 8080))
            self._spawn(self._serve(pod["metadata"]["uid"], name, pod["status"]["podIP"], port))

    def exit(self, namespace: str, name: str, code: int = 1) -> None:
        """The container ended: Failed (or Succeeded for code 0)."""
        pod = self.get("pods", name, namespace)
        self._unserve(pod["metadata"]["uid"])
        now = timestamp(self._now())
        pod["status"]["phase"] = "Succeeded" if code == 0 else "Failed"
        pod["status"]["containerStatuses"][0].update(
            ready=False,
            state={
                "terminated": {
                    "exitCode": code,
                    "reason": "Completed" if code == 0 else "Error",
                    "startedAt": now,
                    "finishedAt": now,
                }
            },
        )
        self._bump("pods", "MODIFIED", pod)

    # ------------------------------------------------------------ pod servers
    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._server_tasks.add(task)
        task.add_done_callback(self._server_tasks.discard)

    async def _serve(self, uid: str, name: str, ip: str, port: int) -> None:
        async def answer(_: web.Request) -> web.Response:
            return web.Response(text=name)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", answer)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        await web.TCPSite(runner, ip, port).start()
        self._servers[uid] = runner

    def _unserve(self, uid: str) -> None:
        """The pod's container stopped: its server goes."""
        runner = self._servers.pop(uid, None)
        if runner is not None:
            self._spawn(runner.cleanup())

    async def stop_pod_servers(self) -> None:
        while self._server_tasks:
            await asyncio.gather(*list(self._server_tasks), return_exceptions=True)
        for uid in list(self._servers):
            await self._servers.pop(uid).cleanup()
