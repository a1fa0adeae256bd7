"""The GCP provider's one door to the Compute Engine API (google-cloud-compute).

Every call goes through :meth:`ComputeApi.call`: it runs the blocking SDK call
in ``asyncio.to_thread``, retries throttling, 5xx and timeouts with
exponential backoff and full jitter (sleeping on the injected clock), and
translates what the SDK raises into ``skyctl.errors`` at this boundary:

=========================================  ==================================
SDK / API                                   skyctl
=========================================  ==================================
429, 500, 502, 503, 504, rateLimitExceeded  TransientError (after retries)
connection errors, timeouts, proxy, TLS     TransientError (after retries)
a TLS certificate that does not verify      ConfigError (after retries)
403 quotaExceeded, op QUOTA_EXCEEDED        QuotaError
op ZONE_RESOURCE_POOL_EXHAUSTED[...]        CapacityError(location=...)
404                                         NotFoundError
409 (insert of an existing name)            AlreadyExists (handled by the provider)
401, other 403, 400                         ConfigError
=========================================  ==================================

All clients share one set of client options (``api_endpoint``) and
credentials: an operations client built without them would poll the real
Google endpoint while the instances client talks to a private one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from providers.backoff import certificate_problem, full_jitter
from skyctl.clock import Clock
from skyctl.errors import (
    CapacityError,
    ConfigError,
    NotFoundError,
    ProviderError,
    QuotaError,
    TransientError,
)

try:
    import requests
    import urllib3
    from google.api_core import exceptions as gexc
    from google.auth.credentials import AnonymousCredentials
    from google.auth.exceptions import GoogleAuthError, TransportError
    from google.cloud import compute_v1
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ConfigError(
        f"the GCP provider needs google-cloud-compute ({e.name} is missing): "
        "pip install 'skyctl[gcp]'"
    ) from None

__all__ = ["AlreadyExists", "ComputeApi", "compute_v1", "operation_error", "translate"]

T = TypeVar("T")
log = logging.getLogger("skyctl.providers.gcp")

_CAPACITY_CODES = frozenset(
    {
        "ZONE_RESOURCE_POOL_EXHAUSTED",
        "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS",
        "RESOURCE_POOL_EXHAUSTED",
        "STOCKOUT",
        "UNSUPPORTED_OPERATION",  # e.g. the type is not sold as spot in that zone
    }
)
_QUOTA_CODES = frozenset({"QUOTA_EXCEEDED", "QUOTA_LIMIT"})
_TRANSIENT_CODES = frozenset(
    {"RESOURCE_OPERATION_RATE_EXCEEDED", "RATE_LIMIT_EXCEEDED", "INTERNAL_ERROR", "TIMEOUT"}
)
_TRANSIENT_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded", "backendError"})
_TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

_DONE = compute_v1.Operation.Status.DONE
#: what a connection, proxy or TLS failure may reach us as, whichever layer raised it
_NETWORK_ERRORS = (
    TransportError,
    requests.exceptions.RequestException,
    urllib3.exceptions.HTTPError,
    ConnectionError,
    TimeoutError,
)
CERT_HINT = (
    "the TLS certificate did not verify; check gcp.api_endpoint, the proxy (HTTPS_PROXY) "
    "and the CA bundle (REQUESTS_CA_BUNDLE)"
)


class AlreadyExists(ProviderError):
    """409 from an insert: the resource exists. The GCP provider handles it; it never
    leaves the provider."""


def _reason(e: gexc.GoogleAPICallError) -> str:
    for err in e.errors or ():
        if isinstance(err, Mapping) and err.get("reason"):
            return str(err["reason"])
    return e.reason or ""


def translate(
    e: BaseException, what: str, location: str | None
) -> ProviderError | ConfigError | None:
    """The skyctl error for an exception raised by an SDK call."""
    if isinstance(e, gexc.GoogleAPICallError):
        status = int(e.code or 0)
        reason = _reason(e)
        text = f"GCP {what}: {e.message or e}"
        if status in _TRANSIENT_STATUSES or reason in _TRANSIENT_REASONS:
            return TransientError(text, location=location)
        if reason in ("quotaExceeded", "QUOTA_EXCEEDED"):
            return QuotaError(text, location=location)
        if status == 404:
            return NotFoundError(text, location=location)
        if status == 409:
            return AlreadyExists(text, location=location)
        if status == 401 or status == 403:
            return ConfigError(f"{text} (check the credentials and the project's permissions)")
        return ConfigError(text)
    if isinstance(e, _NETWORK_ERRORS):
        return TransientError(f"GCP {what}: {type(e).__name__}: {e}", location=location)
    if isinstance(e, GoogleAuthError):
        return ConfigError(f"GCP {what}: credentials: {e}")
    if isinstance(e, gexc.GoogleAPIError):  # e.g. RetryError: the library gave up
        return TransientError(f"GCP {what}: {type(e).__name__}: {e}", location=location)
    return None  # not the API's doing: a bug, let it surface unchanged


def operation_error(op: Any, what: str, location: str | None) -> ProviderError | None:
    """The skyctl error a finished operation reports, or None when it succeeded."""
    errors = list(op.error.errors) if op.error else []
    if not errors:
        return None
    first = errors[0]
    code = first.code or ""
    text = f"GCP {what} in {location or 'global'}: {code}: {first.message}"
    if code in _QUOTA_CODES:
        return QuotaError(text, location=location)
    if code in _TRANSIENT_CODES:
        return TransientError(text, location=location)
    if code == "RESOURCE_NOT_FOUND":
        return NotFoundError(text, location=location)
    # capacity codes and anything unknown: placement marks the zone and moves on
    return CapacityError(text, location=location)


class ComputeApi:
    """The SDK clients of one project and the retrying, translating call wrapper."""

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        clock: Clock,
        max_attempts: int = 5,
        base_delay: float = 0.5,
        max_delay: float = 20.0,
        timeout: float = 60.0,
        op_timeout: float = 900.0,
        max_polls: int = 20,
        rng: random.Random | None = None,
    ) -> None:
        self._clock = clock
        self.max_attempts = max_attempts
        self._base = base_delay
        self._cap = max_delay
        self._timeout = timeout
        self.op_timeout = op_timeout  # give up waiting for an operation after this long
        self.max_polls = max_polls
        self._rng = rng or random.Random()
        options: dict[str, Any] = {}
        if config.get("api_endpoint"):
            options["api_endpoint"] = str(config["api_endpoint"]).rstrip("/")
        credentials = AnonymousCredentials() if config.get("credentials") == "anonymous" else None
        kwargs: dict[str, Any] = {
            "credentials": credentials,
            "client_options": options,
            "transport": "rest",
        }
        try:
            self.instances = compute_v1.InstancesClient(**kwargs)
            self.zone_ops = compute_v1.ZoneOperationsClient(**kwargs)
            self.global_ops = compute_v1.GlobalOperationsClient(**kwargs)
            self.firewalls = compute_v1.FirewallsClient(**kwargs)
            self.machine_types = compute_v1.MachineTypesClient(**kwargs)
            self.accelerator_types = compute_v1.AcceleratorTypesClient(**kwargs)
        except GoogleAuthError as e:
            raise ConfigError(
                f"GCP credentials not found ({e}): run `gcloud auth application-default login` "
                "or set GOOGLE_APPLICATION_CREDENTIALS"
            ) from None
        self._clients = (
            self.instances,
            self.zone_ops,
            self.global_ops,
            self.firewalls,
            self.machine_types,
            self.accelerator_types,
        )

    async def call(
        self, fn: Callable[..., T], *args: Any, what: str, location: str | None = None, **kw: Any
    ) -> T:
        """``fn(*args, **kw)`` in a thread, retried and translated (see the module doc).

        Listing pagers are materialized in the thread: pass a function that
        returns a list, never a lazy pager.
        """
        for attempt in range(1, self.max_attempts + 1):
            try:
                return await asyncio.to_thread(fn, *args, **kw)
            except Exception as e:
                err = translate(e, what, location)
                if err is None:
                    raise
                if isinstance(err, TransientError) and attempt < self.max_attempts:
                    log.info("%s (attempt %d/%d); retrying", err, attempt, self.max_attempts)
                    delay = full_jitter(attempt - 1, base=self._base, cap=self._cap, rng=self._rng)
                    await self._clock.sleep(delay)
                    continue
                if isinstance(err, TransientError) and certificate_problem(e):
                    err = ConfigError(f"{err} (after {attempt} attempts): {CERT_HINT}")
                elif isinstance(err, TransientError):
                    err = TransientError(f"{err} (after {attempt} attempts)", location=location)
                raise err from e
        raise AssertionError("unreachable")

    def options(self) -> dict[str, Any]:
        """Keyword arguments every SDK call takes: our retries, not the library's."""
        return {"retry": None, "timeout": self._timeout}

    async def wait_zone_op(
        self, project: str, zone: str, op: Any, *, what: str, location: str | None
    ) -> Any:
        """Poll a zone operation until DONE (``wait`` long-polls up to 2 minutes server-side)."""
        return await self._wait_op(
            self.zone_ops.wait, op, what=what, location=location, project=project, zone=zone
        )

    async def wait_global_op(self, project: str, op: Any, *, what: str) -> Any:
        """Poll a global operation (firewalls) until DONE."""
        return await self._wait_op(self.global_ops.wait, op, what=what, project=project)

    async def _wait_op(
        self,
        wait: Callable[..., Any],
        op: Any,
        *,
        what: str,
        location: str | None = None,
        **scope: str,
    ) -> Any:
        deadline = self._clock.now() + self.op_timeout
        for _ in range(self.max_polls):
            if op.status == _DONE:
                return op
            if self._clock.now() > deadline:
                break
            op = await self.call(
                wait,
                operation=op.name,
                what=f"{what} (waiting)",
                location=location,
                **scope,
                **self.options(),
            )
            if op.status != _DONE:
                await self._clock.sleep(1.0)
        raise TransientError(f"GCP {what}: operation {op.name} not done in time", location=location)

    @staticmethod
    def message(cls: type[T], body: Mapping[str, Any]) -> T:
        """An SDK message from API JSON (camelCase keys, as the REST reference writes them)."""
        return cls.from_json(json.dumps(body))  # type: ignore[attr-defined]

    def close(self) -> None:
        for client in self._clients:
            client.transport.close()
