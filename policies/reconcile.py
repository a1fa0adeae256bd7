"""The one decision function: ``plan(observation, now) -> Plan``.

Pure and deterministic; the live controller and the simulator both call it.
It composes, in this order:

1. ``shutting_down``: terminate every live replica (``USER``), launch nothing.
0. Breaker gating: offerings in ``closed_locations`` are not used; nor are
   spot offerings at a location that refused spot capacity lately
   (:mod:`policies.capacity`: 30 s doubling to 1 h, cleared by a granted
   launch there; doubling on to 8 h while the replicas the service has
   cover the autoscaler target, so that the ask is only for a spare or to
   replace an on-demand fallback), whatever the placement policy.
2. Health: a replica STARTING for longer than the probe's
   ``initial_delay_seconds`` (since it became STARTING: its own start, never
   the batch's decision time) ends FAILED_INITIAL_DELAY;
   a READY/NOT_READY one with ``probe_failures >= failure_threshold`` ends
   FAILED_PROBING. They stop counting at once, so their replacements are
   launched by the same plan.
3. The autoscaler (:mod:`policies.autoscale`): the target replica count.
4. Update (:mod:`policies.update`, by the version's ``update_mode``): replicas
   of older versions that are not READY go at once (``UPDATED``); READY old
   ones go, when rolling, only as new ones are READY, so that old READY + new
   READY stays at least the target throughout; when blue-green, all at once
   when the new version has the target READY (until then the plan's
   ``cutover`` keeps traffic on the old version).
5. The placement policy chosen by :func:`policies.registry.policy_for`: how many
   spot and on-demand replicas of the current version, where new spot ones
   go, which surplus ones drain.

Replicas already SHUTTING_DOWN are not counted and never terminated again;
no replica is terminated twice in one plan; launches of each kind (spot,
on-demand) are capped at ``max_replicas + num_overprovision`` per plan (a
policy's own spares, such as SkyHedge's, count as over-provisioning).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from policies import capacity, failures, registry
from policies.autoscale import STATE_KEY as AUTOSCALE_KEY
from policies.autoscale import autoscale, overprovision, replica_bounds
from policies.model import Launch, Plan, ReplicaView, ServiceObservation, Terminate
from policies.placement import (
    PlacementContext,
    PlacementResult,
    cheapest_spot_offers,
    covers_shortfalls,
    ondemand_offer,
)
from policies.routable import routable
from policies.update import UpdateMode, cutover, update_terminations
from skyctl.lifecycle import FAILURES, UP, EndReason, ReplicaStatus
from skyctl.types import Offering

S = ReplicaStatus


def shutdown_terminations(replicas: Iterable[ReplicaView]) -> tuple[Terminate, ...]:
    """``serve down``: every live replica not already going, USER."""
    return tuple(
        Terminate(r.replica_id, EndReason.USER, "service shutting down")
        for r in replicas
        if r.status is not S.SHUTTING_DOWN
    )


def _shutdown(obs: ServiceObservation) -> Plan:
    terms = shutdown_terminations(obs.replicas)
    return Plan(
        terminations=terms,
        location_states=dict(obs.location_states),
        policy_state=dict(obs.policy_state),
        notes=("shutting down: terminating every replica",) if terms else (),
        failure=failures.failure(obs.policy_state.get(failures.STATE_KEY), obs.version),
    )


def health_terminations(obs: ServiceObservation, now: float) -> list[Terminate]:
    """Replicas that failed their readiness probes, as terminations."""
    probe = obs.spec.service.readiness_probe
    out: list[Terminate] = []
    for r in obs.replicas:
        # status_since of a STARTING replica is when its instance came up
        if r.status is S.STARTING and now - r.status_since > probe.initial_delay_seconds:
            out.append(
                Terminate(
                    r.replica_id,
                    EndReason.FAILED_INITIAL_DELAY,
                    f"not ready {probe.initial_delay_seconds:g}s after it started",
                )
            )
        elif r.status in (S.READY, S.NOT_READY) and r.probe_failures >= probe.failure_threshold:
            out.append(
                Terminate(
                    r.replica_id,
                    EndReason.FAILED_PROBING,
                    f"{r.probe_failures} consecutive failed probes",
                )
            )
    return out


def _covers(
    current: Iterable[ReplicaView], terminations: Mapping[int, Terminate], result: PlacementResult
) -> int:
    """Replicas left after ``result`` (kept + launched), for the target."""
    gone = set(terminations) | {t.replica_id for t in result.terminations}
    kept = sum(1 for r in current if r.replica_id not in gone)
    return kept + len(result.spot_launches) + len(result.ondemand_launches)


def plan(obs: ServiceObservation, now: float) -> Plan:
    """Decide launches and terminations for one service at ``now``."""
    if obs.shutting_down:
        return _shutdown(obs)
    if obs.closed_locations:
        obs = replace(
            obs,
            offerings=tuple(o for o in obs.offerings if o.location not in obs.closed_locations),
        )
    state: dict[str, Any] = dict(obs.policy_state)
    notes: list[str] = []
    name = registry.policy_for(obs.spec)
    policy = registry.get(name)
    # on-demand covers spot shortfalls: a needed ask may wait out a location's outage too
    covered = obs.spec.service.replica_policy.dynamic_ondemand_fallback or covers_shortfalls(policy)
    cstate, cnotes = capacity.record(state.get(capacity.STATE_KEY), obs.events, covered)
    state[capacity.STATE_KEY] = cstate
    sstate, snotes = capacity.record_search(state.get(capacity.SEARCH_KEY), obs.events)
    state[capacity.SEARCH_KEY] = sstate
    notes += cnotes + snotes
    spec = obs.spec
    rp = spec.service.replica_policy

    terminations: dict[int, Terminate] = {}
    for t in health_terminations(obs, now):
        terminations.setdefault(t.replica_id, t)

    auto = autoscale(obs, now, state.get(AUTOSCALE_KEY))
    state[AUTOSCALE_KEY] = auto.state
    if auto.note:
        notes.append(auto.note)
    extra = overprovision(rp)
    final_target = auto.target + extra

    live = [r for r in obs.replicas if r.status in UP and r.replica_id not in terminations]
    current = tuple(r for r in live if r.version >= obs.version)
    old = [r for r in live if r.version < obs.version]
    # the replicas there already cover the target: a spot ask now is only for a spare or to
    # replace an on-demand fallback, and waits for the longer holds (policies.capacity)
    target_covered = len(current) >= auto.target
    obs = replace(obs, offerings=capacity.available(obs.offerings, cstate, now, target_covered))
    mode = UpdateMode(obs.update_mode)
    if old:
        new_ready = sum(1 for r in current if r.status is S.READY)
        for t in update_terminations(mode, old, new_ready, final_target):
            terminations.setdefault(t.replica_id, t)
    staying = [r for r in old if r.replica_id not in terminations]
    gate = cutover(mode, obs.version, staying, final_target)

    _, high = replica_bounds(rp)
    in_use = tuple(r.location for r in live if r.spot and r.replica_id not in terminations)

    def place(offers: tuple[Offering, ...]) -> tuple[PlacementContext, PlacementResult]:
        seen = replace(obs, offerings=offers)
        ctx = PlacementContext(
            obs=seen,
            now=now,
            target=auto.target,
            overprovision=extra,
            base_ondemand=max(0, rp.base_ondemand_fallback_replicas),
            dynamic_ondemand=rp.dynamic_ondemand_fallback,
            replicas=current,
            spot_in_use=in_use,
            spot_offers=cheapest_spot_offers(seen.offerings),
            ondemand_offer=ondemand_offer(seen),
            state=state.get(name) or {},
            max_launches=high + extra,
        )
        return ctx, policy(ctx)

    # the spot search backing off as a whole (policies.capacity) holds spot launches
    # only where on-demand covers spot shortfalls (the spec's dynamic_ondemand_fallback,
    # or a policy whose fallback is always on, as skyhedge_online's) and while the rest
    # covers the target: a service is never left short for it, and otherwise asks as
    # the location holds allow
    search = sstate if covered else None
    if capacity.searching(search, now):
        ctx, result = place(obs.offerings)
    else:
        ctx, result = place(tuple(o for o in obs.offerings if not o.spot))
    if capacity.backing_off(search) and _covers(current, terminations, result) < auto.target:
        search = None
        ctx, result = place(obs.offerings)
    state[name] = result.state
    for t in result.terminations:
        terminations.setdefault(t.replica_id, t)
    notes += result.notes

    spot_cap = ctx.max_launches - extra + max(extra, result.spare)
    launches = [
        Launch(offering, obs.version, why) for offering, why in result.spot_launches[:spot_cap]
    ]
    launches += [
        Launch(offering, obs.version, why)
        for offering, why in result.ondemand_launches[: ctx.max_launches]
    ]

    launches = capacity.one_probe_each(launches, cstate, search)
    own = [t for t in terminations.values() if t.reason in FAILURES]
    fstate, fnotes = failures.record(state.get(failures.STATE_KEY), obs, own, now, auto.target)
    launches, fstate, gnotes, after = failures.gate(
        fstate, launches, obs, now, failures.hourly_cap(high + extra), high + extra
    )
    state[failures.STATE_KEY] = fstate
    notes += fnotes + gnotes
    spot_after = sum(1 for r in current if r.spot) + sum(1 for la in launches if la.offering.spot)
    probe = capacity.next_probe(cstate, now, search, target_covered)
    if (
        probe is not None
        and spot_after < result.spot_target
        and not failures.failure(fstate, obs.version)
    ):
        after = probe if after is None else min(after, probe)  # spot short: probe when a hold ends
    return Plan(
        launches=tuple(launches),
        terminations=tuple(terminations.values()),
        location_states=result.location_states,
        policy_state=state,
        target=final_target,
        spot_target=result.spot_target,
        ondemand_target=result.ondemand_target,
        notes=tuple(notes),
        routable=routable(obs.replicas, terminations, gate),
        cutover=gate,
        failure=failures.failure(fstate, obs.version),
        launch_after=after,
    )
