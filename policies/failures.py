"""Failure discipline: which failures count, how relaunches back off, when to give up.

Pure, like every policy: :func:`record` folds what happened since the previous
plan (replicas that ended on their own, the plan's own health terminations,
replicas that became READY) into the ``"failures"`` part of the plan's
``policy_state``; :func:`gate` then holds back the plan's launches. The state is
JSON and persisted by the controller (and kept by the simulator), so a restart
does not reset a backoff nor revive a FAILED service.

The rules, per service and version:

- A failure is an end reason in :data:`skyctl.lifecycle.FAILURES` (the run or
  setup command exited, never ready within the initial delay, failed probes, a
  launch refused for a reason other than capacity). PREEMPTED and capacity
  errors are the cloud's doing: placement moves away from the location
  (``location_states``), they do not count here.
- ``streak``: failures since a replica of the version was last READY for
  :data:`STABLE_SECONDS` (a replica that crashes sooner after its first good
  probe is a crash loop, not a recovery: the waits keep growing). Relaunches
  wait ``backoff(rounds)`` after the last failure, where a round is one replica
  target's worth of failures: the first round relaunches at once (one crash is
  not a pattern), then 10 s, 20 s, 40 s ... up to 10 minutes.
- A version none of whose replicas was ever READY is given up: at once when
  a replica's setup or run command exits (a user bug, as SkyServe treats it:
  one FAILED row, nothing relaunched), else after ``GIVE_UP_ROUNDS`` rounds of
  failures (a server too slow for its initial delay, a launch the provider
  refuses). The plan's ``failure`` is then a one-line reason (the service
  shows FAILED) and no replica of it is launched again. A new version
  (``serve update``) starts clean, and :func:`retry` clears it.
- Whatever the reasons, a service launches at most :func:`hourly_cap` replicas
  per rolling hour (counted per minute), plus ``LOSS_CREDIT`` for every spot
  replica the cloud announced or took away in that hour (a NOTICE or
  PREEMPTED event): the last guard against a cost leak. A loop of failures
  makes no preemptions, so the credit does not feed one; without it, a
  service whose whole fleet was preempted twice in an hour could be left
  with nothing and no launch allowed for the rest of the hour (the default
  policy at N = 16 with notices on the AWS trace: 43 minutes with no replica).
  Likewise every new version (``serve update``) in that hour allows a whole
  fleet's launches more: the user asked for them, and a day of frequent
  rolling updates (4 to 6 launches each) was held back for up to an hour
  before (a failing version is given up on its own, above).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from policies.model import (
    Launch,
    LocationEventKind,
    ReplicaEnded,
    ServiceObservation,
    Terminate,
)
from skyctl.lifecycle import FAILURES, EndReason, ReplicaStatus

STATE_KEY = "failures"
GIVE_UP_ROUNDS = 3  # rounds of failures, with none ever READY, before a version is given up
BASE_BACKOFF = 10.0  # seconds: the wait after the second round of failures
MAX_BACKOFF = 600.0
STABLE_SECONDS = 60.0  # READY this long resets a version's streak (one crashing sooner: a loop)
HOUR = 3600.0
LOSS_CREDIT = 2  # launches allowed per spot loss: its replacement and an on-demand cover
_LOSSES = frozenset({LocationEventKind.NOTICE, LocationEventKind.PREEMPTED})
_EXITS = frozenset({EndReason.FAILED, EndReason.FAILED_SETUP})  # with an exit code: a user bug


def backoff(rounds: int) -> float:
    """Seconds to wait before relaunching after ``rounds`` rounds of failures."""
    if rounds <= 1:
        return 0.0
    return min(BASE_BACKOFF * 2.0 ** (rounds - 2), MAX_BACKOFF)


def hourly_cap(max_replicas: int) -> int:
    """Launches allowed per rolling hour for a service of ``max_replicas`` (incl. spares)."""
    return max(60, 10 * max_replicas)


# the signals a replica's command most often dies of (a negative exit code is one)
_SIGNALS = {1: "SIGHUP", 2: "SIGINT", 6: "SIGABRT", 9: "SIGKILL", 11: "SIGSEGV", 15: "SIGTERM"}


def ended_with(step: str, code: int) -> str:
    """How ``step`` (``run``, ``setup``) ended, in words: ``run failed with exit code 3``;
    code 0 is a server started in the background, or one that quit; a negative code
    is a signal, ``run killed by signal 9 (SIGKILL)``."""
    if code < 0:
        name = _SIGNALS.get(-code)
        return f"{step} killed by signal {-code}" + (f" ({name})" if name else "")
    if code == 0:
        return f"{step} exited with code 0 (it must keep the server in the foreground)"
    return f"{step} failed with exit code {code}"


def describe(end: ReplicaEnded) -> str:
    """One line on how a replica ended: ``replica 4: run failed with exit code 3 (log P)``."""
    if end.reason is EndReason.FAILED_SETUP and end.exit_code is not None:
        what = ended_with("setup", end.exit_code)
    elif end.reason is EndReason.FAILED and end.exit_code is not None:
        what = ended_with("run", end.exit_code)
    else:
        what = str(end.reason)
    if end.detail:  # for a failed setup or run: the replica's log file
        what += f" ({end.detail})"
    return f"replica {end.replica_id}: {what}"


def _versions(state: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: dict(v) for k, v in (state.get("versions") or {}).items()}


def record(
    state: Mapping[str, Any] | None,
    obs: ServiceObservation,
    own: Sequence[Terminate],
    now: float,
    target: int,
) -> tuple[dict[str, Any], list[str]]:
    """Fold the new facts into the failure state; returns it and notes for the event log."""
    out: dict[str, Any] = dict(state or {})
    versions = _versions(out)
    failed = dict(out["failed"]) if out.get("failed") else None
    notes: list[str] = []

    def entry(version: int) -> dict[str, Any]:
        return versions.setdefault(
            str(version),
            {"streak": 0, "ever_ready": False, "last_ready_at": None, "hold_until": 0.0},
        )

    for r in obs.replicas:  # readiness first: a replica that made it may reset the streak
        if r.ready_at is None:
            continue
        e = entry(r.version)
        if e["last_ready_at"] is None or r.ready_at > e["last_ready_at"]:
            e.update(ever_ready=True, last_ready_at=r.ready_at)
            if failed is not None and failed.get("version") == r.version:
                notes.append(f"version {r.version}: a replica became READY; launching again")
                failed = None
        stable = e.get("stable_ready_at")
        if (
            r.status is ReplicaStatus.READY
            and now - r.ready_at >= STABLE_SECONDS
            and (stable is None or r.ready_at > stable)
        ):  # READY for a while: the version works, its failures so far are forgiven
            e.update(streak=0, hold_until=0.0, stable_ready_at=r.ready_at)

    ends = list(obs.ended) + [
        ReplicaEnded(t.replica_id, _version_of(obs, t.replica_id), t.reason, now, detail=t.detail)
        for t in own
    ]
    per_round = max(1, target)
    holds: dict[int, str] = {}  # one backoff note per version and plan
    for end in ends:
        if end.reason not in FAILURES or end.capacity or end.version < 0:
            continue
        e = entry(end.version)
        e["streak"] += 1
        e["last"] = describe(end)
        wait = backoff(math.ceil(e["streak"] / per_round))
        e["hold_until"] = max(float(e["hold_until"]), end.at + wait)
        if wait > 0 and end.at + wait > now:
            holds[end.version] = f"{e['last']}; relaunching version {end.version} in {wait:g}s"
        exited = end.exit_code is not None and end.reason in _EXITS
        give_up = 1 if exited else GIVE_UP_ROUNDS * per_round
        n = e["streak"]
        reason = (
            f"version {end.version}: {n} replica{'s' if n > 1 else ''} failed, "
            f"none ever READY; last {e['last']}"
        )
        if failed is not None and failed.get("version") == end.version:
            failed["reason"] = reason  # a replica of the given-up batch ended since: count it
        elif not e["ever_ready"] and n >= give_up and failed is None:
            failed = {"version": end.version, "reason": reason, "at": end.at}
            notes.append(f"FAILED: {reason}; launches stopped until an update or retry")

    if failed is not None:
        holds.pop(int(failed["version"]), None)
    notes[:0] = holds.values()
    keep = {str(obs.version)} | {str(r.version) for r in obs.replicas}
    out["versions"] = {k: v for k, v in versions.items() if k in keep}
    if failed is not None and str(failed.get("version")) in keep:
        out["failed"] = failed
    else:
        out.pop("failed", None)
    return out, notes


def _version_of(obs: ServiceObservation, replica_id: int) -> int:
    for r in obs.replicas:
        if r.replica_id == replica_id:
            return r.version
    return -1


def failure(state: Mapping[str, Any] | None, version: int) -> str:
    """The one-line reason ``version`` was given up, or "" while it is not."""
    failed = (state or {}).get("failed") or {}
    return str(failed.get("reason", "")) if failed.get("version") == version else ""


def _recent(buckets: Mapping[str, int], now: float) -> dict[str, int]:
    first = math.floor((now - HOUR) / 60.0) + 1
    return {k: int(n) for k, n in buckets.items() if int(k) >= first}


def gate(
    state: Mapping[str, Any],
    launches: Iterable[Launch],
    obs: ServiceObservation,
    now: float,
    cap: int,
    update_credit: int = 0,
) -> tuple[list[Launch], dict[str, Any], list[str], float | None]:
    """Hold back launches of a failed or backing-off version and beyond the hourly cap
    (``update_credit`` more per new version seen in the last hour).

    Returns the launches to make, the state (with them counted), notes, and when
    held-back launches may go (None: nothing held, or held until an update).
    """
    out = dict(state)
    wanted = list(launches)
    notes: list[str] = []
    lost = sum(1 for ev in obs.events if ev.spot and ev.kind in _LOSSES)
    losses = _recent(out.get("losses_per_minute") or {}, now)
    if lost:
        minute = str(math.floor(now / 60.0))
        losses[minute] = losses.get(minute, 0) + lost
    if losses or "losses_per_minute" in out:
        out["losses_per_minute"] = losses
    cap += LOSS_CREDIT * sum(losses.values())
    updates = _recent(out.get("updates_per_minute") or {}, now)
    seen = out.get("seen_version")
    if seen is not None and int(seen) != obs.version:
        minute = str(math.floor(now / 60.0))
        updates[minute] = updates.get(minute, 0) + 1
    out["seen_version"] = obs.version
    if updates or "updates_per_minute" in out:
        out["updates_per_minute"] = updates
    cap += update_credit * sum(updates.values())
    if not wanted:
        return wanted, out, notes, None
    if failure(out, obs.version):
        return [], out, notes, None
    hold = float(_versions(out).get(str(obs.version), {}).get("hold_until", 0.0))
    if now < hold:
        return [], out, notes, hold
    buckets = _recent(out.get("launches_per_minute") or {}, now)
    used = sum(buckets.values())
    allowed = wanted[: max(0, cap - used)]
    after: float | None = None
    if len(allowed) < len(wanted):
        oldest = min((int(k) for k in buckets), default=math.floor(now / 60.0))
        after = (oldest + 1) * 60.0 + HOUR
        if not out.get("capped"):
            notes.append(
                f"launch cap reached: {used} launches in the last hour (at most {cap}); "
                f"{len(wanted) - len(allowed)} held back"
            )
        out["capped"] = True
    else:
        out.pop("capped", None)
    if allowed:
        minute = str(math.floor(now / 60.0))
        buckets[minute] = buckets.get(minute, 0) + len(allowed)
    out["launches_per_minute"] = buckets
    return allowed, out, notes, after


def retry(state: Mapping[str, Any], version: int) -> dict[str, Any]:
    """An explicit retry: forget ``version``'s failures and resume launching it."""
    out = dict(state)
    versions = _versions(out)
    versions.pop(str(version), None)
    out["versions"] = versions
    if (out.get("failed") or {}).get("version") == version:
        out.pop("failed", None)
    return out
