"""``serve update``: the controller's side (the API's ``PUT /v1/services/NAME``).

- An identical spec (overrides and secrets included) is a no-op: no version, no relaunch.
- Otherwise a new version is stored with its ``update_mode`` (``rolling`` or
  ``blue_green``, :class:`policies.update.UpdateMode`); the plan replaces the
  older replicas by that mode.
- Replicas whose spec differs from the new one only where :func:`policies.update.in_place`
  allows (``service:`` keys the controller and router apply) move to the new
  version in the same transaction, unrelaunched (SkyServe's fast update); the
  router and prober take the new ``service:`` section at once.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from policies.update import DEFAULT_MODE, UpdateMode, in_place
from skyctl.controller.runtime import load_spec
from skyctl.errors import ServiceError, SkyctlError
from skyctl.lifecycle import UP
from skyctl.router.security import router_secrets
from skyctl.spec import ServiceSpec
from skyctl.store import ServiceRecord, ServiceStatus

if TYPE_CHECKING:
    from skyctl.controller.controller import Controller


def parse_mode(mode: str | None) -> UpdateMode:
    """``--mode`` as sent to the API; a one-line error naming the allowed values."""
    try:
        return UpdateMode(mode or DEFAULT_MODE.value)
    except ValueError:
        allowed = ", ".join(m.value for m in UpdateMode)
        raise ServiceError(f"mode: {mode!r} is not an update mode; allowed: {allowed}") from None


async def update_service(
    ctl: Controller,
    name: str,
    yaml_text: str,
    source: str | None,
    *,
    mode: str | None = None,
    envs: dict[str, str] | None = None,
    secrets: dict[str, str] | None = None,
    api_keys: dict[str, str] | None = None,
) -> dict[str, Any]:
    update_mode = parse_mode(mode)
    svc = ctl._get(name)
    if svc.status is ServiceStatus.SHUTTING_DOWN:
        raise ServiceError(f"service {name!r} is shutting down")
    api_keys = await _carried_api_keys(ctl, svc, api_keys)
    sealed = await asyncio.to_thread(  # a thread: a huge spec parses for seconds
        ctl.secrets.seal, yaml_text, source, envs=envs, secrets=secrets, api_keys=api_keys
    )
    # the NAME given wins over the spec's `name:` (as `serve up -n`, and sky serve update)
    # (a FAILED service starts afresh with a new version even from the same spec)
    failed = svc.status is ServiceStatus.FAILED
    now = ctl.clock.now()
    if not failed and await _unchanged(ctl, svc, sealed.yaml_text, sealed.spec):
        ctl.store.add_event(
            name,
            "updated",
            f"identical spec: version {svc.current_version} kept, no relaunch",
            now=now,
        )
        return {**ctl.describe(name), "unchanged": True}
    _endpoint_stays(svc, sealed.spec)
    ctl._check_placeable(sealed.spec)
    kept = await _kept_replicas(ctl, name, sealed.spec)
    if ctl._get(name).status is ServiceStatus.SHUTTING_DOWN:  # a `serve down` meanwhile
        raise ServiceError(f"service {name!r} is shutting down")
    version = ctl.store.add_version(
        name,
        sealed.yaml_text,
        now=now,
        source=source,
        secrets_ciphertext=sealed.ciphertext,
        update_mode=update_mode.value,
        keep_replicas=kept,
    )
    rt = ctl.runtimes.get(name)
    if rt is not None:
        record = ctl.store.get_version(name, version)
        spec = rt.specs[version] = await asyncio.to_thread(load_spec, record, ctl.secrets)
        rt.router.reconfigure(spec.service, router_secrets(spec))
        rt.prober.probe = spec.service.readiness_probe
    how = (
        f"replicas {', '.join(map(str, kept))} kept in place (only service: changed)"
        if kept
        else f"{update_mode} update"
    )
    ctl.store.add_event(name, "updated", f"version {version}: {how}", now=now)
    ctl.wake(name)
    answer = {**ctl.describe(name), "mode": update_mode.value, "in_place": kept}
    return ctl._warned(name, sealed.spec, answer)


def _endpoint_stays(svc: ServiceRecord, spec: ServiceSpec) -> None:
    """An update keeps the service's endpoint: a new ``service.router.port`` or ``host``
    is refused in one line (before, it was stored and ignored: the update said the
    new version runs while the endpoint stayed where it was, or stayed closed)."""
    router = spec.service.router
    name = svc.name
    if router.port is not None and svc.router_port is not None and router.port != svc.router_port:
        raise ServiceError(
            f"service.router.port: {name}'s endpoint is on port {svc.router_port} and an "
            f"update cannot move it to {router.port}: `skyctl serve down {name}`, then "
            f"`skyctl serve up` the spec (or drop router.port to keep {svc.router_port})"
        )
    if router.host != svc.router_host:
        raise ServiceError(
            f"service.router.host: {name}'s endpoint listens on {svc.router_host} and an "
            f"update cannot move it to {router.host}: `skyctl serve down {name}`, then "
            "`skyctl serve up` the spec"
        )


async def _carried_api_keys(
    ctl: Controller, svc: ServiceRecord, sent: dict[str, str] | None
) -> dict[str, str]:
    """The ``api_keys_env`` values for the new version: those the command sent, and
    for a variable its shell lacks, the value sealed with the current version (an
    update from a shell without the variable keeps the key instead of leaving the
    endpoint with none: every request 401). ``seal`` keeps only the names the new
    spec still gives."""
    try:
        record = ctl.store.get_version(svc.name, svc.current_version)
        before = await asyncio.to_thread(load_spec, record, ctl.secrets)
    except SkyctlError:  # unreadable: only what was sent
        return dict(sent or {})
    return {**before.api_keys, **(sent or {})}


async def _unchanged(
    ctl: Controller, svc: ServiceRecord, yaml_text: str, spec: ServiceSpec
) -> bool:
    """The submitted spec (overrides and secrets included) is the current version's."""
    current = ctl.store.get_version(svc.name, svc.current_version)
    if current.yaml_text != yaml_text:
        return False
    try:
        before = await asyncio.to_thread(
            ctl.secrets.open, current.yaml_text, spec.source, current.secrets_ciphertext
        )
    except SkyctlError:  # unreadable: not the same, a new version it is
        return False
    return before == spec


async def _kept_replicas(ctl: Controller, name: str, new: ServiceSpec) -> list[int]:
    """Live replicas whose own version's spec allows moving them to ``new`` in place."""
    specs: dict[int, ServiceSpec | None] = {}
    kept: list[int] = []
    for r in ctl.store.list_replicas(name):
        if r.status not in UP:
            continue
        if r.version not in specs:
            try:
                record = ctl.store.get_version(name, r.version)
                specs[r.version] = await asyncio.to_thread(load_spec, record, ctl.secrets)
            except SkyctlError:  # unreadable: relaunch it
                specs[r.version] = None
        old = specs[r.version]
        if old is not None and in_place(old, new):
            kept.append(r.replica_id)
    return kept
