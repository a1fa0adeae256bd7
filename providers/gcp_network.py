"""The GCP provider's firewall rules: open only the service port, remove them with the service.

One rule per service and port, named ``skyctl-<service slug>-<digest>-<port>``,
allows ``tcp:<port>`` from ``source_ranges`` (default ``0.0.0.0/0``) to the
instances carrying the service's network tag; a service with multi-node
replicas also gets ``...-nodes``, which lets its instances reach each other on
any port. Firewall rules take no labels,
so the name prefix (and the description) marks them as the service's. Created
idempotently (an existing rule, or 409 on a concurrent create, is success) and
deleted by :meth:`Firewalls.remove_all` when the service's last instance goes.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from providers.gcp_api import AlreadyExists, ComputeApi, compute_v1, operation_error
from providers.gcp_build import firewall_name, service_tag
from skyctl.errors import NotFoundError


class Firewalls:
    """Firewall rules of one project, with a memory of the rules known to exist."""

    def __init__(self, api: ComputeApi, project: str, config: Mapping[str, Any]) -> None:
        self._api = api
        self._project = project
        network = str(config.get("network", "default"))
        self._network = (
            network if "/" in network else f"projects/{project}/global/networks/{network}"
        )
        self._sources = [str(s) for s in config.get("source_ranges") or ["0.0.0.0/0"]]
        self._ready: set[str] = set()

    async def ensure(self, service: str, port: int, *, peers: bool = False) -> None:
        """Make sure the rule opening ``port`` to ``service``'s instances exists (and,
        with ``peers``, the rule letting them reach each other on any port)."""
        if peers:
            await self._ensure(f"{service_tag(service)}-nodes", service, None)
        await self._ensure(firewall_name(service, port), service, port)

    async def _ensure(self, fw: str, service: str, port: int | None) -> None:
        if fw in self._ready:
            return
        try:
            await self._api.call(
                self._api.firewalls.get,
                project=self._project,
                firewall=fw,
                what=f"get firewall {fw}",
                **self._api.options(),
            )
        except NotFoundError:
            await self._create(fw, service, port)
        self._ready.add(fw)

    async def _create(self, fw: str, service: str, port: int | None) -> None:
        tag = service_tag(service)
        body: dict[str, Any] = {
            "name": fw,
            "description": f"skyctl: service {service!r}, port {port}",
            "network": self._network,
            "direction": "INGRESS",
            "priority": 1000,
            "allowed": [{"IPProtocol": "tcp", "ports": [str(port)]}],
            "sourceRanges": self._sources,
            "targetTags": [tag],
        }
        if port is None:  # the nodes of a replica reach each other on any port
            body.update(
                description=f"skyctl: service {service!r}, between its nodes",
                allowed=[{"IPProtocol": "all"}],
                sourceTags=[tag],
            )
            del body["sourceRanges"]
        try:
            op = await self._api.call(
                self._api.firewalls.insert_unary,
                request=compute_v1.InsertFirewallRequest(
                    project=self._project,
                    firewall_resource=ComputeApi.message(compute_v1.Firewall, body),
                    # a fresh id: a rule deleted and created again must really be created
                    request_id=str(uuid.uuid4()),
                ),
                what=f"create firewall {fw}",
                **self._api.options(),
            )
            op = await self._api.wait_global_op(self._project, op, what=f"create firewall {fw}")
        except AlreadyExists:
            return
        err = operation_error(op, f"create firewall {fw}", None)
        if err is not None:
            raise err

    async def remove_all(self, service: str) -> None:
        """Delete every rule of ``service`` (not found counts as done)."""
        prefix = service_tag(service) + "-"

        def fetch() -> list[str]:
            pager = self._api.firewalls.list(
                request={"project": self._project, "filter": f'name eq "{prefix}.*"'},
                **self._api.options(),
            )
            return [r.name for r in pager if r.name.startswith(prefix)]

        for fw in await self._api.call(fetch, what=f"list firewalls of {service}"):
            self._ready.discard(fw)
            try:
                await self._api.call(
                    self._api.firewalls.delete_unary,
                    project=self._project,
                    firewall=fw,
                    what=f"delete firewall {fw}",
                    **self._api.options(),
                )
            except NotFoundError:
                pass
