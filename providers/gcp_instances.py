"""How the GCP provider reads a Compute Engine instance as a skyctl :class:`Instance`.

Pure functions over the SDK's ``Instance`` message (duck-typed, so this module
needs no SDK import): labels give the replica, version and port; the access
config's ``natIP`` gives the endpoint; the status, the ``compute.instances.
preempted`` operation time and ``resourceStatus.upcomingMaintenance`` give the
state and ``interruption_at``:

- preempted, VM still RUNNING or STOPPING within GCP's ~30 s notice: RUNNING
  with ``interruption_at`` = preemption start + 30 s;
- preempted and past it, or a TERMINATED spot VM: PREEMPTED;
- an on-demand VM stopped or suspended (status TERMINATED, SUSPENDED, ...) and
  not being deleted by us: FAILED, as it stays until deleted;
- a maintenance window that will stop the VM (spot, or ``onHostMaintenance:
  TERMINATE`` as GPUs have): RUNNING with ``interruption_at`` = window start.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from providers.gcp_build import (
    LABEL_PORT,
    LABEL_REPLICA,
    LABEL_VERSION,
    PREEMPTION_NOTICE_SECONDS,
    instance_id,
    last_segment,
    parse_time,
    region_of,
    state_of,
)
from skyctl.types import Instance, InstanceState, Location

PriceOf = Callable[[str, str, bool], float]  # (machine type, region, spot) -> USD/hour


def label_int(inst: Any, key: str, default: int = 0) -> int:
    try:
        return int(inst.labels.get(key, default))
    except ValueError:
        return default


def metadata_value(inst: Any, key: str) -> str | None:
    for item in inst.metadata.items if inst.metadata else ():
        if item.key == key:
            return str(item.value)
    return None


def maintenance_start(inst: Any) -> float | None:
    """The start (epoch seconds) of an announced maintenance window, if any."""
    status = inst.resource_status if "resource_status" in inst else None
    if status is None or "upcoming_maintenance" not in status:
        return None
    start = status.upcoming_maintenance.window_start_time
    return parse_time(start) if start else None


def endpoint_of(inst: Any, port: int) -> str | None:
    for nic in inst.network_interfaces:
        for ac in nic.access_configs:
            if ac.nat_i_p:
                return f"http://{ac.nat_i_p}:{port}"
    return None


def to_instance(
    inst: Any,
    *,
    service: str,
    zone: str,
    now: float,
    preempted_at: float | None,
    deleting: bool,
    price_of: PriceOf,
) -> Instance:
    """The :class:`Instance` for the API's instance ``inst`` (see the module doc)."""
    region = region_of(zone)
    sched = inst.scheduling
    spot = bool(sched and (sched.provisioning_model == "SPOT" or sched.preemptible))
    status = inst.status
    interruption_at: float | None = None
    detail = status
    state = state_of(status, spot=spot, preempted=preempted_at is not None, deleting=deleting)
    if preempted_at is not None and state is not InstanceState.TERMINATED:
        due = preempted_at + PREEMPTION_NOTICE_SECONDS
        if status in ("RUNNING", "STOPPING") and now < due:
            state, interruption_at, detail = InstanceState.RUNNING, due, "preemption notice"
        else:
            state, detail = InstanceState.PREEMPTED, "preempted"
    if state is InstanceState.FAILED:
        detail = f"stopped (GCP status {status})"
    maintenance = maintenance_start(inst)
    if maintenance and state is InstanceState.RUNNING and interruption_at is None:
        if spot or (sched and sched.on_host_maintenance == "TERMINATE"):
            interruption_at, detail = maintenance, "host maintenance will stop it"
    live = state in (InstanceState.RUNNING, InstanceState.PENDING)
    return Instance(
        instance_id=instance_id(zone, inst.name),
        service=service,
        replica_id=label_int(inst, LABEL_REPLICA),
        version=label_int(inst, LABEL_VERSION, 1),
        location=Location("gcp", region, zone),
        spot=spot,
        state=state,
        endpoint=endpoint_of(inst, label_int(inst, LABEL_PORT, 8080)) if live else None,
        price=price_of(last_segment(inst.machine_type), region, spot),
        created_at=parse_time(inst.creation_timestamp),
        interruption_at=interruption_at,
        detail=detail,
    )
