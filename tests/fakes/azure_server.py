"""A fake Azure Resource Manager endpoint over HTTPS, for the real Azure SDK.

Serves :class:`tests.fakes.azure_state.ArmState` on ``https://127.0.0.1:<port>``
with a certificate from a throwaway CA made by ``trustme`` (the SDK refuses to
send a bearer token over plain http). Point the SDK at it with
``base_url=fake.base_url`` and ``connection_verify=fake.ca_path`` (our provider:
``azure: {base_url: ..., ca_bundle: ...}``) and authenticate with
:class:`FakeCredential`.

The protocol, as the ARM reference describes it:

- every request needs ``api-version`` and ``Authorization: Bearer <token>``;
- ``PUT`` answers 201 (created) or 200 (updated) with the resource and an
  ``Azure-AsyncOperation`` header; ``DELETE`` answers 202 with
  ``Azure-AsyncOperation`` and ``Location`` headers, or 204 when there is
  nothing to delete; the operation URL answers ``{"status": "InProgress"}``
  until ``{"status": "Succeeded"}`` (or ``Failed`` with an ``error``); the
  ``Location`` URL answers 202 until done, then 204;
- lists answer ``{"value": [...], "nextLink": ...}`` pages;
- errors are ``{"error": {"code": ..., "message": ...}}``.

Injection: :meth:`FakeAzure.throttle` (429/503 answers), :meth:`FakeAzure.hold`
(the next matching request waits, unanswered: a test cancels the client there to
cut a launch at that step), and the state's
``fail_allocation``, ``exceed_quota`` and ``evict``. Runs in the test's own
event loop; ``async with FakeAzure(tmp_path) as fake:`` starts and stops it, and
``AzureProvider(fake.provider_config(), clock=..., credential=FakeCredential())``
talks to it.
"""

from __future__ import annotations

import asyncio
import copy
import ssl
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import trustme
from aiohttp import web
from azure.core.credentials import AccessToken

from tests.fakes.azure_state import ArmError, ArmState

__all__ = ["FakeAzure", "FakeCredential"]

TOKEN = "fake-arm-token"


class FakeCredential:
    """An async TokenCredential handing out a fixed token (and counting requests)."""

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.calls = 0

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.calls += 1
        return AccessToken(self.token, 4_102_444_800)  # year 2100

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> FakeCredential:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


@dataclass
class _Throttle:
    remaining: int
    status: int
    method: str | None
    path_contains: str | None
    retry_after: int


@dataclass
class Hold:
    """The next request matching ``method`` and ``path_contains`` waits unanswered
    (``reached`` is set when it arrives) until ``release`` is set."""

    method: str
    path_contains: str
    reached: asyncio.Event
    release: asyncio.Event
    skip: int = 0  # let this many matching requests through first
    used: bool = False


class FakeAzure:
    """The fake ARM server plus its state and request log."""

    def __init__(self, workdir: Path, *, page_size: int = 50, lro_polls: int = 1) -> None:
        self.state = ArmState(lro_polls=lro_polls)
        self.page_size = page_size
        self.requests: list[tuple[str, str]] = []  # (method, path)
        self.throttled = 0
        self._throttles: list[_Throttle] = []
        self._holds: list[Hold] = []
        self._ca = trustme.CA()
        self.ca_path = str(workdir / "fake-azure-ca.pem")
        self._ca.cert_pem.write_to_path(self.ca_path)
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    @property
    def subscription(self) -> str:
        return self.state.subscription

    def throttle(
        self,
        count: int,
        *,
        status: int = 429,
        method: str | None = None,
        path_contains: str | None = None,
        retry_after: int = 1,
    ) -> None:
        """Answer the next ``count`` matching requests with ``status`` (429 or 5xx)."""
        self._throttles.append(_Throttle(count, status, method, path_contains, retry_after))

    def hold(self, method: str, path_contains: str, *, skip: int = 0) -> Hold:
        """Keep the next matching request unanswered and tell the test it arrived: a
        launch cut at that step. It never reaches the state (released: a 503)."""
        hold = Hold(method, path_contains.lower(), asyncio.Event(), asyncio.Event(), skip)
        self._holds.append(hold)
        return hold

    def provider_config(self, **extra: Any) -> dict[str, Any]:
        """An ``azure:`` config section pointing our provider here.

        ``poll_interval_seconds`` is 0 so a provider on a real clock does not wait
        between operation polls; pass ``credential=FakeCredential()`` to the provider.
        """
        return {
            "subscription_id": self.subscription,
            "resource_group": "skyctl",
            "base_url": self.base_url,
            "ca_bundle": self.ca_path,
            "ssh_public_key": "ssh-rsa AAAAB3NzaC1yc2E fake@skyctl",
            "poll_interval_seconds": 0,
            **extra,
        }

    def calls(self, method: str, path_contains: str = "") -> int:
        return sum(
            1 for m, p in self.requests if m == method and path_contains.lower() in p.lower()
        )

    # ---- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ctx)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"https://127.0.0.1:{port}"

    async def stop(self) -> None:
        for hold in self._holds:
            hold.release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeAzure:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # ---- HTTP ----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        for hold in self._holds:
            if (
                not hold.used
                and hold.method == request.method
                and hold.path_contains in request.path.lower()
            ):
                hold.skip -= 1
                if hold.skip >= 0:
                    continue
                hold.used = True
                hold.reached.set()
                await hold.release.wait()
                return web.Response(status=503)  # cut: never reaches the state
        try:
            self._check_throttle(request)
            if "api-version" not in request.query:
                raise ArmError(
                    400,
                    "MissingApiVersionParameter",
                    "The api-version query parameter is required.",
                )
            if request.headers.get("Authorization") != f"Bearer {TOKEN}":
                raise ArmError(
                    401,
                    "AuthenticationFailed",
                    "Authentication failed. The token is missing or invalid.",
                )
            return await self._route(request)
        except ArmError as e:
            headers = {"x-ms-error-code": e.code}
            if e.retry_after is not None:
                headers["Retry-After"] = str(e.retry_after)
            return web.json_response(e.body(), status=e.status, headers=headers)

    def _check_throttle(self, request: web.Request) -> None:
        for t in self._throttles:
            if t.remaining <= 0:
                continue
            if t.method and t.method != request.method:
                continue
            if t.path_contains and t.path_contains.lower() not in request.path.lower():
                continue
            t.remaining -= 1
            self.throttled += 1
            if t.status == 429:
                code, message = "TooManyRequests", "The request is being throttled."
            else:
                code, message = "ServiceUnavailable", "The service is temporarily unavailable."
            raise ArmError(t.status, code, message, retry_after=t.retry_after)

    async def _route(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        low = [p.lower() for p in parts]
        if len(parts) < 2 or low[0] != "subscriptions" or parts[1] != self.subscription:
            raise ArmError(
                404, "SubscriptionNotFound", f"The subscription '{parts[1:2]}' could not be found."
            )
        # /subscriptions/{s}/providers/{ns}/locations/{loc}/operations|operationResults/{id}
        if len(parts) == 8 and low[2] == "providers" and low[4] == "locations":
            return self._operation(request, low[6], parts[7])
        if len(parts) < 7 or low[2] != "resourcegroups" or low[4] != "providers":
            raise ArmError(400, "InvalidRequestUri", f"Unsupported path {request.path}")
        rg, ns, type_ = parts[3], parts[5], parts[6]
        rest = parts[7:]
        if not rest:
            if request.method != "GET":
                raise ArmError(405, "MethodNotAllowed", f"{request.method} on a collection")
            items = self.state.list(rg, ns, type_)
            return self._page(request, [self._view(r, request) for r in items])
        name = rest[0]
        rid = self.state.resource_id(rg, ns, type_, name)
        if len(rest) == 3:  # child resource, e.g. virtualNetworks/{v}/subnets/{s}
            return web.json_response(self._child(rid, rest[1], rest[2]))
        if len(rest) == 2 and rest[1].lower() == "instanceview":
            return web.json_response(self.state.get(rid)["properties"].get("instanceView") or {})
        if len(rest) != 1:
            raise ArmError(400, "InvalidRequestUri", f"Unsupported path {request.path}")
        if request.method == "GET":
            return web.json_response(self._view(self.state.get(rid), request))
        if request.method == "PUT":
            try:
                body = await request.json()
            except ValueError:
                raise ArmError(
                    400, "InvalidRequestContent", "The request content was invalid."
                ) from None
            status, op = self.state.put(rg, ns, type_, name, body)
            headers = {
                "Azure-AsyncOperation": self._op_url(request, op.namespace, op.location, op.op_id)
            }
            return web.json_response(
                self._view(self.state.get(rid), request), status=status, headers=headers
            )
        if request.method == "DELETE":
            deleting = self.state.delete(rg, ns, type_, name)
            if deleting is None:
                return web.Response(status=204)
            op = deleting
            headers = {
                "Azure-AsyncOperation": self._op_url(request, op.namespace, op.location, op.op_id),
                "Location": self._op_url(
                    request, op.namespace, op.location, op.op_id, results=True
                ),
            }
            return web.Response(status=202, headers=headers)
        raise ArmError(405, "MethodNotAllowed", f"{request.method} is not supported")

    def _operation(self, request: web.Request, kind: str, op_id: str) -> web.StreamResponse:
        op = self.state.poll(op_id)
        if kind == "operationresults":
            if op.status == "InProgress":
                return web.Response(status=202, headers={"Location": str(request.url)})
            if op.status == "Failed" and op.failure is not None:
                raise op.failure
            if op.method == "PUT":
                return web.json_response(self._view(self.state.get(op.resource_id), request))
            return web.Response(status=204)
        body: dict[str, Any] = {"name": op.op_id, "status": op.status}
        if op.failure is not None and op.status == "Failed":
            body["error"] = op.failure.body()["error"]
        return web.json_response(body)

    def _op_url(
        self, request: web.Request, ns: str, location: str, op_id: str, *, results: bool = False
    ) -> str:
        kind = "operationResults" if results else "operations"
        version = request.query.get("api-version", "")
        return (
            f"{self.base_url}/subscriptions/{self.subscription}/providers/{ns}/locations/{location}/"
            f"{kind}/{op_id}?api-version={version}"
        )

    def _page(self, request: web.Request, items: list[dict[str, Any]]) -> web.StreamResponse:
        start = int(request.query.get("$skiptoken", "0"))
        body: dict[str, Any] = {"value": items[start : start + self.page_size]}
        if start + self.page_size < len(items):
            query = dict(request.query)
            query["$skiptoken"] = str(start + self.page_size)
            body["nextLink"] = str(request.url.with_query(query))
        return web.json_response(body)

    def _child(self, rid: str, child_type: str, child_name: str) -> dict[str, Any]:
        parent = self.state.get(rid)
        for child in parent["properties"].get(child_type, []):
            if child["name"] == child_name:
                return dict(child)
        raise ArmError(404, "NotFound", f"Resource {rid}/{child_type}/{child_name} not found.")

    def _view(self, res: dict[str, Any], request: web.Request) -> dict[str, Any]:
        """A resource as ARM returns it (instance view only when expanded)."""
        out = copy.deepcopy(res)
        if (
            out["type"].endswith("virtualMachines")
            and request.query.get("$expand") != "instanceView"
        ):
            out["properties"].pop("instanceView", None)
        return out
