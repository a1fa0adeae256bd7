"""Passive health: outlier ejection as Envoy does it, as pure decisions.

A replica that fails ``CONSECUTIVE_FAILURES`` requests in a row (a timeout,
a reset or refused connection, a 5xx, a stream broken mid-body) leaves the
router's rotation for a while, even when its readiness probe passes (a probe
covers one path; a replica can hang on another). Envoy's defaults:
5 consecutive failures, 30 s times the number of ejections so far, at most
300 s; never more than a share of the replicas at once (Envoy: 10%, and at
least one), here at most half and never the last one.

Racing policies (fan_out, hedge) need one more rule, or a replica hung on a
path its probe does not cover is never told from a slower one: its copy
loses to another replica's answer and is cancelled before it could time
out, so it never fails and keeps getting copies. So a copy that loses a race
before its response head makes its replica *suspect*: when a check of that
replica is due (:func:`check_due`) the copy is not cancelled but runs on as
a *check*, up to the request timeout, its answer discarded. While it runs,
the replica gets no new racing copies (the others serve). A check that times
out, is reset or answers a 5xx is a failure like any other (so a hung
replica is ejected after :data:`CONSECUTIVE_FAILURES` checks, and the next
check is due at once, :func:`next_check`); one that answers is a success, and
the replica is not checked again for :data:`CHECK_INTERVAL_SECONDS` (Envoy's
outlier-detection interval): a merely slower replica costs at most one copy
run to its end per interval. A replica joining routing counts as just
checked (its readiness probe passed): checks start one interval later, and
until then its losing copies are cancelled as before.
"""

from __future__ import annotations

CONSECUTIVE_FAILURES = 5
BASE_EJECTION_SECONDS = 30.0
MAX_EJECTION_SECONDS = 300.0
CHECK_INTERVAL_SECONDS = 10.0


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


def check_due(checking: bool, now: float, next_check: float) -> bool:
    """Whether a replica whose copy lost a race before its response head (a
    suspect) gets that copy run on as a check: none of its checks in flight, and
    its next check due (``next_check``: from :func:`next_check`; a replica joining
    routing counts as answering a check then, as its readiness probe just passed)."""
    return not checking and now >= next_check


def next_check(now: float, answered: bool, interval: float = CHECK_INTERVAL_SECONDS) -> float:
    """When a replica may be checked again, after a check that ended at ``now``:
    ``interval`` later after an answer, at once after a failure (it stays suspect
    until it answers or is ejected)."""
    return now + interval if answered else now
