"""Passive health: outlier ejection as Envoy does it, as pure decisions.

A replica that fails ``CONSECUTIVE_FAILURES`` requests in a row (a timeout,
a reset or refused connection, a 5xx, a stream broken mid-body) leaves the
router's rotation for a while, even when its readiness probe passes (a probe
covers one path; a replica can hang on another). Envoy's defaults:
5 consecutive failures, 30 s times the number of ejections so far, at most
300 s; never more than a share of the replicas at once (Envoy: 10%, and at
least one), here at most half and never the last one.
"""

from __future__ import annotations

CONSECUTIVE_FAILURES = 5
BASE_EJECTION_SECONDS = 30.0
MAX_EJECTION_SECONDS = 300.0


def ejection_seconds(
    ejections: int, base: float = BASE_EJECTION_SECONDS, cap: float = MAX_EJECTION_SECONDS
) -> float:
    """How long the ``ejections``-th ejection (1, 2, ...) of a replica lasts: grows
    linearly with the count, capped (Envoy's ``base_ejection_time`` rule)."""
    return min(cap, base * max(1, ejections))


def may_eject(ejected: int, routable: int) -> bool:
    """Whether one more replica may leave rotation when ``ejected`` of ``routable``
    already have: at most half of them, never the last."""
    return routable >= 2 and ejected + 1 <= routable // 2


def forgiven(healthy_seconds: float, ejections: int) -> bool:
    """Whether a replica back in rotation for ``healthy_seconds`` without another
    ejection has earned a fresh count (it stayed healthy twice its last ejection)."""
    return healthy_seconds >= 2 * ejection_seconds(ejections)
