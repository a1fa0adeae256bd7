"""Retry delays shared by every cloud provider.

Exponential backoff with full jitter: the n-th retry (n from 0) waits a time
drawn uniformly from ``[0, min(cap, base * 2**n)]``, so clients that failed
together do not retry together. Providers sleep it on the injected clock.
"""

from __future__ import annotations

import random


def full_jitter(attempt: int, *, base: float, cap: float, rng: random.Random) -> float:
    """The wait before retry number ``attempt`` (0 for the first retry)."""
    return rng.uniform(0.0, min(cap, base * (2**attempt)))
