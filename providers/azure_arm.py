"""The Azure SDK boundary: ARM calls with retries, and errors translated to ours.

Every call of the Azure provider to Azure Resource Manager goes through
:class:`ArmClient`, which uses the SDK's async clients (``azure-mgmt-compute``,
``azure-mgmt-network``; no threads) and:

- sleeps only through the injected clock: SDK retries are off, our own retry
  uses exponential backoff with full jitter, and long-running operation polling
  waits through a transport whose ``sleep`` is ``clock.sleep``;
- translates SDK errors at the boundary (``raise ... from e``): allocation
  failures -> CapacityError (with the location), quota -> QuotaError, 404 ->
  NotFoundError, 401/403 or missing credentials -> ConfigError, 429/5xx and
  connection errors (refused, reset, timeouts, proxy, TLS handshake) -> retried
  (each retry logged), then TransientError; a TLS certificate that does not
  verify -> retried the same, then ConfigError naming it (it never heals);
- speaks plain ARM JSON (dict bodies in, ``as_dict()`` out), so request bodies
  are the ones in ``providers.azure_resources``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from providers.backoff import certificate_problem, full_jitter
from skyctl.clock import Clock
from skyctl.errors import (
    CapacityError,
    ConfigError,
    NotFoundError,
    ProviderError,
    QuotaError,
    SkyctlError,
    TransientError,
)

try:
    from azure.core import AzureClouds
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ServiceRequestError,
        ServiceResponseError,
    )
    from azure.core.pipeline.transport import AioHttpTransport
    from azure.mgmt.compute.aio import ComputeManagementClient
    from azure.mgmt.network.aio import NetworkManagementClient
except ImportError as e:  # pragma: no cover - depends on the installed extras
    raise ConfigError(
        f"the Azure SDK is not installed ({e.name}): pip install 'skyctl[azure]'"
    ) from None

T = TypeVar("T")
log = logging.getLogger("skyctl.providers.azure")
CERT_HINT = (
    "the TLS certificate did not verify; check azure.base_url, azure.ca_bundle "
    "and the proxy (HTTPS_PROXY)"
)

CAPACITY_CODES = frozenset(
    {
        "AllocationFailed",
        "ZonalAllocationFailed",
        "OverconstrainedAllocationRequest",
        "OverconstrainedZonalAllocationRequest",
        "SkuNotAvailable",
        "AllocationTimedOut",
        "SpotVMEvictionAtCreation",
    }
)
QUOTA_CODES = frozenset({"QuotaExceeded", "OperationNotAllowed", "LowPriorityQuotaExceeded"})
AUTH_CODES = frozenset(
    {
        "AuthenticationFailed",
        "AuthorizationFailed",
        "InvalidAuthenticationToken",
        "InvalidAuthenticationTokenTenant",
        "ExpiredAuthenticationToken",
        "SubscriptionNotFound",
        "ResourceGroupNotFound",
        "MissingSubscriptionRegistration",
    }
)
NOT_FOUND_CODES = frozenset({"ResourceNotFound", "NotFound", "NicNotFound"})
BACKOFF_BASE = 1.0
BACKOFF_CAP = 30.0

#: kind -> (client, operations attribute)
KINDS = {
    "vm": ("compute", "virtual_machines"),
    "ip": ("network", "public_ip_addresses"),
    "nic": ("network", "network_interfaces"),
    "nsg": ("network", "network_security_groups"),
    "vnet": ("network", "virtual_networks"),
}

CREDENTIAL_HINT = (
    "run `az login`, or set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET "
    "(a service principal), or use a managed identity"
)


class _ClockTransport(AioHttpTransport):
    """aiohttp transport whose waits (LRO polling) go through our clock."""

    def __init__(self, clock: Clock, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._clock = clock

    async def sleep(self, duration: float) -> None:
        await self._clock.sleep(duration)


def _code(e: HttpResponseError) -> str:
    error = getattr(e, "error", None)
    code = getattr(error, "code", None) if error is not None else None
    if not code and e.response is not None:
        code = getattr(e.response, "headers", {}).get("x-ms-error-code")
    return str(code or "")


def _message(e: HttpResponseError) -> str:
    error = getattr(e, "error", None)
    text = getattr(error, "message", None) if error is not None else None
    return " ".join(str(text or e.reason or e.message or "").split())[:300]


def _retry_after(e: HttpResponseError) -> float:
    if e.response is None:
        return 0.0
    try:
        return max(0.0, float(getattr(e.response, "headers", {}).get("Retry-After", "0")))
    except ValueError:
        return 0.0


def translate(e: Exception, what: str, location: str | None) -> SkyctlError:
    """One of our errors for an SDK exception raised while doing ``what``."""
    if isinstance(e, ClientAuthenticationError) and e.status_code not in (404, 409):
        return ConfigError(f"azure: {what}: credentials missing or rejected; {CREDENTIAL_HINT}")
    if isinstance(e, ServiceRequestError | ServiceResponseError):
        return TransientError(f"azure: {what}: connection failed: {e}", location=location)
    if not isinstance(e, HttpResponseError):
        return ProviderError(f"azure: {what}: {type(e).__name__}: {e}", location=location)
    code, message, status = _code(e), _message(e), e.status_code or 0
    detail = f"azure: {what}: {code or status}: {message}"
    if code in CAPACITY_CODES:
        return CapacityError(detail, location=location)
    if code in QUOTA_CODES and (code != "OperationNotAllowed" or "quota" in message.lower()):
        return QuotaError(detail, location=location)
    if code in AUTH_CODES or status in (401, 403):
        return ConfigError(
            f"{detail} (check azure.subscription_id, azure.resource_group and the role)"
        )
    if code in NOT_FOUND_CODES or status == 404:
        return NotFoundError(detail, location=location)
    if status == 429 or status >= 500 or code in ("TooManyRequests", "RetryableError"):
        return TransientError(detail, location=location)
    return ProviderError(detail, location=location)


class ArmClient:
    """The provider's only door to ARM (see the module docstring)."""

    def __init__(
        self,
        *,
        subscription_id: str,
        resource_group: str,
        clock: Clock,
        credential: Any | None = None,
        base_url: str | None = None,
        cloud: str | None = None,
        credential_scope: str | None = None,
        ca_bundle: str | None = None,
        poll_interval: float = 5.0,
        max_attempts: int = 5,
        rng: random.Random | None = None,
    ) -> None:
        self.subscription_id = subscription_id
        self.resource_group = resource_group
        self._clock = clock
        self._credential = credential
        self._own_credential = credential is None
        self._base_url = base_url
        self._cloud = cloud
        self._scope = credential_scope
        self._ca_bundle = ca_bundle
        self._poll_interval = poll_interval
        self.max_attempts = max_attempts
        self._rng = rng or random.Random()
        self._clients: dict[str, Any] = {}

    def _client(self, which: str) -> Any:
        if which in self._clients:
            return self._clients[which]
        if self._credential is None:
            from azure.identity.aio import DefaultAzureCredential

            self._credential = DefaultAzureCredential()
        kwargs: dict[str, Any] = {
            "retry_total": 0,  # we retry, with the injected clock
            "polling_interval": self._poll_interval,
            "transport": _ClockTransport(
                self._clock,
                connection_verify=self._ca_bundle or True,
                connection_timeout=10,
                read_timeout=60,
            ),
        }
        if self._base_url:
            kwargs["base_url"] = self._base_url
        if self._cloud:
            kwargs["cloud_setting"] = AzureClouds[self._cloud]
        if self._scope:
            kwargs["credential_scopes"] = [self._scope]
        cls = ComputeManagementClient if which == "compute" else NetworkManagementClient
        client = cls(self._credential, self.subscription_id, **kwargs)
        self._clients[which] = client
        return client

    def _ops(self, kind: str) -> Any:
        which, attr = KINDS[kind]
        return getattr(self._client(which), attr)

    def backoff(self, attempt: int, retry_after: float) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**attempt)], at least Retry-After."""
        jitter = full_jitter(attempt, base=BACKOFF_BASE, cap=BACKOFF_CAP, rng=self._rng)
        return min(BACKOFF_CAP, max(retry_after, jitter))

    async def call(
        self,
        what: str,
        make: Callable[[], Awaitable[T]],
        *,
        location: str | None = None,
        ignore: frozenset[str] = frozenset(),
    ) -> T | None:
        """``await make()`` with retries; None when the ARM error code is in ``ignore``."""
        for attempt in range(self.max_attempts):
            try:
                return await make()
            except (HttpResponseError, ServiceRequestError, ServiceResponseError) as e:
                if isinstance(e, HttpResponseError) and _code(e) in ignore:
                    return None
                error = translate(e, what, location)
                if not isinstance(error, TransientError) or attempt + 1 == self.max_attempts:
                    if isinstance(error, TransientError) and certificate_problem(e):
                        error = ConfigError(
                            f"{error} (after {self.max_attempts} attempts): {CERT_HINT}"
                        )
                    elif isinstance(error, TransientError):
                        error = TransientError(
                            f"{error} (after {self.max_attempts} attempts)", location=location
                        )
                    raise error from e
                log.info("%s (attempt %d/%d); retrying", error, attempt + 1, self.max_attempts)
                wait = self.backoff(
                    attempt, _retry_after(e) if isinstance(e, HttpResponseError) else 0.0
                )
            await self._clock.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    # ---- resources (kind: vm | ip | nic | nsg | vnet) ---------------------------------------

    async def get(
        self, kind: str, name: str, *, location: str | None = None
    ) -> dict[str, Any] | None:
        """The resource as ARM JSON (VMs with their instance view), or None when absent."""
        ops = self._ops(kind)
        extra = {"expand": "instanceView"} if kind == "vm" else {}

        async def run() -> dict[str, Any]:
            return dict((await ops.get(self.resource_group, name, **extra)).as_dict())

        try:
            return await self.call(f"get {kind} {name}", run, location=location)
        except NotFoundError:
            return None

    async def put(
        self, kind: str, name: str, body: dict[str, Any], *, location: str | None = None
    ) -> dict[str, Any]:
        """Create or update and wait for the long-running operation; the final resource."""
        ops = self._ops(kind)

        async def run() -> dict[str, Any]:
            poller = await ops.begin_create_or_update(self.resource_group, name, body)
            return dict((await poller.result()).as_dict())

        result = await self.call(f"create {kind} {name}", run, location=location)
        assert result is not None
        return result

    async def delete(self, kind: str, name: str, *, ignore: frozenset[str] = frozenset()) -> None:
        """Delete and wait until gone; absent counts as done."""
        ops = self._ops(kind)

        async def run() -> None:
            poller = await ops.begin_delete(self.resource_group, name)
            await poller.result()

        try:
            await self.call(f"delete {kind} {name}", run, ignore=ignore)
        except NotFoundError:
            return

    async def list(self, kind: str) -> list[dict[str, Any]]:
        """Every resource of ``kind`` in the resource group (VMs with instance views)."""
        ops = self._ops(kind)
        extra = {"expand": "instanceView"} if kind == "vm" else {}

        async def run() -> list[dict[str, Any]]:
            pages: AsyncIterator[Any] = ops.list(self.resource_group, **extra)
            return [dict(item.as_dict()) async for item in pages]

        result = await self.call(f"list {kind}", run)
        return result or []

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()
        if self._own_credential and self._credential is not None:
            await self._credential.close()
            self._credential = None
