"""How a new service version replaces the old one: the update decisions, pure.

- :func:`in_place`: whether replicas of an older version can simply be moved to
  the new one (SkyServe's fast update): true when the two specs differ only in
  ``service:`` keys that the controller and router apply themselves (readiness
  probe, replica policy and autoscaling, load balancing, router, auth, TLS,
  drain and stream timeouts), never in what a replica runs or where (resources,
  ``envs``, ``secrets``, ``setup``, ``run``, ``num_nodes``, ``local:``) nor in
  ``service.ports``, the port the replica's process listens on. A spec with a
  ``workdir`` or ``file_mounts`` always relaunches, as SkyServe does: their
  content is read at launch and may have changed since.
- :func:`rolling_terminations`: ``--mode rolling`` (the default): old replicas
  that are not READY go at once; READY ones go one by one as new ones are READY,
  so old READY + new READY stays at the target throughout. Both versions serve.
- :func:`blue_green_terminations`: ``--mode blue_green``: old replicas that are
  not READY go at once; the READY ones all stay (and alone get traffic, see
  :func:`cutover`) until the new version has the target READY, then all go at
  once (each drains its in-flight requests first, the controller's job).
- :func:`cutover`: the routing gate a blue-green update in progress sets
  (:class:`policies.routable.Cutover`).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import replace

from policies.model import Cutover, ReplicaView, Terminate
from policies.placement import scale_down_order
from skyctl.lifecycle import EndReason, ReplicaStatus
from skyctl.spec import Resources, ServiceSection, ServiceSpec

S = ReplicaStatus


class UpdateMode(str, enum.Enum):
    """``serve update --mode`` (SkyServe's names)."""

    ROLLING = "rolling"
    BLUE_GREEN = "blue_green"

    def __str__(self) -> str:
        return self.value


DEFAULT_MODE = UpdateMode.ROLLING


def in_place(old: ServiceSpec, new: ServiceSpec) -> bool:
    """True when replicas launched from ``old`` may serve as ``new``'s, unrelaunched."""
    if old.workdir or new.workdir or old.extra.get("file_mounts") or new.extra.get("file_mounts"):
        return False
    if old.service.ports != new.service.ports:
        return False
    return _replica_side(old) == _replica_side(new)


def _replica_side(spec: ServiceSpec) -> ServiceSpec:
    """The spec minus what never reaches a replica: ``service:`` (its port aside, compared
    on its own), the name, the file it came from, the YAML text and the router's keys."""
    res = spec.resources
    candidates = res.candidates if res.ordered else tuple(sorted(res.candidates, key=repr))
    return replace(
        spec,
        name=None,
        service=ServiceSection(),
        api_keys={},
        yaml_text="",
        source=None,
        extra={k: v for k, v in spec.extra.items() if not k.startswith("service.")},
        resources=Resources(candidates=candidates, ordered=res.ordered, use_spot=res.use_spot),
    )


def rolling_terminations(
    old: Sequence[ReplicaView], new_ready: int, final_target: int
) -> list[Terminate]:
    """Old-version replicas to retire: non-ready ones now, ready ones as new ones are ready."""
    out = _unready(old)
    old_ready = [r for r in old if r.status is S.READY]
    keep = max(0, final_target - new_ready)
    surplus = len(old_ready) - keep
    if surplus > 0:
        for r in scale_down_order(old_ready)[:surplus]:
            out.append(Terminate(r.replica_id, EndReason.UPDATED, "replaced by a newer version"))
    return out


def blue_green_terminations(
    old: Sequence[ReplicaView], new_ready: int, final_target: int
) -> list[Terminate]:
    """Old-version replicas to retire: non-ready ones now, every ready one at once when
    the new version has ``final_target`` READY (traffic has switched to it)."""
    out = _unready(old)
    if new_ready >= final_target:
        why = "blue-green: traffic moved to the new version"
        out += [Terminate(r.replica_id, EndReason.UPDATED, why) for r in old if r.status is S.READY]
    return out


def _unready(old: Sequence[ReplicaView]) -> list[Terminate]:
    return [
        Terminate(r.replica_id, EndReason.UPDATED, "older version, not ready")
        for r in old
        if r.status is not S.READY
    ]


def update_terminations(
    mode: UpdateMode, old: Sequence[ReplicaView], new_ready: int, final_target: int
) -> list[Terminate]:
    if mode is UpdateMode.BLUE_GREEN:
        return blue_green_terminations(old, new_ready, final_target)
    return rolling_terminations(old, new_ready, final_target)


def cutover(
    mode: UpdateMode, version: int, old: Sequence[ReplicaView], final_target: int
) -> Cutover | None:
    """The routing gate while a blue-green update has old replicas left; else None."""
    if mode is not UpdateMode.BLUE_GREEN or not old:
        return None
    return Cutover(version=version, target=max(1, final_target))
