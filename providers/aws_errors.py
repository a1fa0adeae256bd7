"""The boundary between botocore's errors and ``skyctl.errors``, and the retry loop.

Every EC2 call of the AWS provider goes through :class:`Caller`: the blocking
boto3 call runs in ``asyncio.to_thread``; throttling, 5xx and network errors
are retried with exponential backoff and full jitter (sleeping on the injected
clock), then raised as TransientError; every other SDK error is translated by
:func:`translate` and raised ``from`` the original:

=====================================================  ==============
EC2 error code                                         skyctl error
=====================================================  ==============
InsufficientInstanceCapacity, InsufficientCapacity,    CapacityError
InsufficientHostCapacity, SpotMaxPriceTooLow,
Unsupported (type not offered in that zone)
InstanceLimitExceeded, VcpuLimitExceeded,              QuotaError
MaxSpotInstanceCountExceeded, PendingVerification, ...
InvalidInstanceID.NotFound / .Malformed                NotFoundError
RequestLimitExceeded, Throttling, InternalError,       TransientError (after retries)
Unavailable, other throttling codes, any 429 or 5xx,
network errors (endpoint unreachable, connect/read
timeouts, proxy, TLS handshake, connection closed)
the same network errors when the TLS certificate       ConfigError (after retries)
does not verify (it never will: CA bundle, proxy)
AuthFailure, UnauthorizedOperation, missing            ConfigError
credentials, any other 4xx (bad AMI, bad parameter)
=====================================================  ==============

Each retry is logged (what failed, attempt k of n); the error raised once the
attempts are spent names what kept failing and how many times it was tried.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any, TypeVar, cast

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
    import botocore.exceptions as bx
    from botocore.parsers import ResponseParserError
except ImportError:  # pragma: no cover - exercised only without the extra
    raise ConfigError("the AWS provider needs boto3: pip install 'skyctl[aws]'") from None

T = TypeVar("T")
log = logging.getLogger("skyctl.providers.aws")

CAPACITY_CODES = frozenset(
    {
        "InsufficientInstanceCapacity",
        "InsufficientCapacity",
        "InsufficientHostCapacity",
        "InsufficientReservedInstanceCapacity",
        "SpotMaxPriceTooLow",
        "Unsupported",
    }
)
QUOTA_CODES = frozenset(
    {
        "InstanceLimitExceeded",
        "VcpuLimitExceeded",
        "MaxSpotInstanceCountExceeded",
        "PendingVerification",
        "SecurityGroupLimitExceeded",
        "RulesPerSecurityGroupLimitExceeded",
        "AddressLimitExceeded",
    }
)
TRANSIENT_CODES = frozenset(
    {
        "RequestLimitExceeded",
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "RequestThrottledException",
        "ThrottledException",
        "EC2ThrottledException",
        "TooManyRequestsException",
        "SlowDown",
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "Unavailable",
        "RequestTimeout",
    }
)
NOT_FOUND_CODES = frozenset({"InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"})
AUTH_CODES = frozenset(
    {
        "AuthFailure",
        "UnauthorizedOperation",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "OptInRequired",
        "Blocked",
        "ExpiredToken",
        "RequestExpired",
    }
)
#: botocore's connection errors (EndpointConnectionError, ConnectTimeoutError, SSLError,
#: ProxyConnectionError) and HTTP client errors (ReadTimeoutError, ConnectionClosedError)
NETWORK_ERRORS: tuple[type[Exception], ...] = (
    bx.ConnectionError,
    bx.HTTPClientError,
    ResponseParserError,
)
CERT_HINT = (
    "the TLS certificate did not verify; check aws.endpoint_url, the proxy "
    "(HTTPS_PROXY) and the CA bundle (AWS_CA_BUNDLE)"
)


def error_code(e: Exception) -> str:
    if isinstance(e, bx.ClientError):
        return str(e.response.get("Error", {}).get("Code", ""))
    return ""


def _status(e: bx.ClientError) -> int:
    return int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def is_transient(e: Exception) -> bool:
    """Worth retrying: throttling (a 429 whatever its code), a 5xx that is not a capacity
    error, a network error."""
    if isinstance(e, NETWORK_ERRORS):
        return True
    if isinstance(e, bx.ClientError):
        code = error_code(e)
        if code in CAPACITY_CODES:
            return False
        return code in TRANSIENT_CODES or _status(e) == 429 or _status(e) >= 500
    return False


def translate(
    e: Exception, *, what: str, location: str | None = None
) -> ProviderError | ConfigError:
    """The skyctl error for botocore error ``e`` raised while doing ``what``."""
    if isinstance(e, bx.NoCredentialsError | bx.PartialCredentialsError | bx.ProfileNotFound):
        return ConfigError(f"AWS credentials: {e}; run `aws configure` or set AWS_PROFILE")
    if isinstance(e, bx.ClientError):
        code = error_code(e)
        message = str(e.response.get("Error", {}).get("Message", "")).splitlines()[0:1]
        text = f"AWS {what}: {code}: {message[0] if message else ''}".rstrip(": ")
        if code in CAPACITY_CODES:
            return CapacityError(text, location=location)
        if code in QUOTA_CODES:
            return QuotaError(text, location=location)
        if code in NOT_FOUND_CODES:
            return NotFoundError(text, location=location)
        if is_transient(e):
            return TransientError(text, location=location)
        if code in AUTH_CODES:
            return ConfigError(f"{text} (check the AWS credentials and IAM permissions)")
        return ConfigError(text)
    if is_transient(e):
        return TransientError(f"AWS {what}: {type(e).__name__}: {e}", location=location)
    # a request botocore refuses to send (bad parameter, unknown region, ...)
    return ConfigError(f"AWS {what}: {type(e).__name__}: {e}")


class Caller:
    """Runs blocking boto3 calls off the loop, retrying transient failures."""

    def __init__(
        self,
        clock: Clock,
        *,
        max_attempts: int = 5,
        base_delay: float = 0.5,
        max_delay: float = 20.0,
        rng: random.Random | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ConfigError(f"aws.max_attempts must be >= 1, got {max_attempts}")
        self.clock = clock
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._rng = rng or random.Random()

    def backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
        return full_jitter(attempt, base=self.base_delay, cap=self.max_delay, rng=self._rng)

    async def __call__(
        self, fn: Callable[..., T], /, *, what: str, location: str | None = None, **kwargs: Any
    ) -> T:
        """``fn(**kwargs)`` in a thread; transient errors retried, others translated."""
        result = await self.tolerant(fn, frozenset(), what=what, location=location, **kwargs)
        return cast("T", result)  # None only for a tolerated code, and there are none

    async def tolerant(
        self,
        fn: Callable[..., T],
        codes: frozenset[str],
        /,
        *,
        what: str,
        location: str | None = None,
        **kwargs: Any,
    ) -> T | None:
        """Like calling the Caller, but an error whose code is in ``codes`` returns None."""
        for attempt in range(self.max_attempts):
            try:
                return await asyncio.to_thread(fn, **kwargs)
            except (bx.BotoCoreError, bx.ClientError, ResponseParserError) as e:
                if error_code(e) in codes:
                    return None
                if not is_transient(e) or attempt == self.max_attempts - 1:
                    if is_transient(e):
                        why = str(translate(e, what=what, location=location))
                        tries = f"still failing after {self.max_attempts} attempts"
                        if certificate_problem(e):
                            raise ConfigError(f"{why} ({tries}): {CERT_HINT}") from e
                        raise TransientError(f"{why} ({tries})", location=location) from e
                    raise translate(e, what=what, location=location) from e
                log.info(
                    "AWS %s: %s (attempt %d/%d); retrying",
                    what,
                    type(e).__name__,
                    attempt + 1,
                    self.max_attempts,
                )
                await self.clock.sleep(self.backoff(attempt))
        raise AssertionError("unreachable")  # pragma: no cover
