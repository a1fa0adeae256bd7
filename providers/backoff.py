"""Retry delays and network-error facts shared by every cloud provider.

Exponential backoff with full jitter: the n-th retry (n from 0) waits a time
drawn uniformly from ``[0, min(cap, base * 2**n)]``, so clients that failed
together do not retry together. Providers sleep it on the injected clock.

Network errors (refused or reset connections, timeouts, proxies, TLS
handshakes) are retried by every provider like throttling. One kind never
heals by retrying: a TLS certificate that does not verify (a private endpoint
with its own CA, an intercepting proxy). :func:`certificate_problem` spots it
so that, once the retries are spent, the provider ends with a ConfigError
that says so instead of a TransientError retried on every tick.
"""

from __future__ import annotations

import random
import ssl

#: what OpenSSL, urllib3, requests and aiohttp write when a certificate does not verify
_CERT_MARKERS = (
    "certificate_verify_failed",
    "certificate verify failed",
    "hostname mismatch",
    "hostname doesn't match",
    "clientconnectorcertificateerror",
)


def full_jitter(attempt: int, *, base: float, cap: float, rng: random.Random) -> float:
    """The wait before retry number ``attempt`` (0 for the first retry)."""
    return rng.uniform(0.0, min(cap, base * (2**attempt)))


def certificate_problem(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it, however the SDK wrapped it) is a TLS
    certificate that failed verification."""
    todo: list[BaseException] = [error]
    seen: set[int] = set()
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, ssl.SSLCertVerificationError):
            return True
        text = f"{type(e).__name__} {e}".lower()
        if any(marker in text for marker in _CERT_MARKERS):
            return True
        linked = [e.__cause__, e.__context__, getattr(e, "reason", None), *e.args]
        linked += list(getattr(e, "kwargs", {}).values())  # botocore keeps its cause there
        todo.extend(x for x in linked if isinstance(x, BaseException))
    return False
