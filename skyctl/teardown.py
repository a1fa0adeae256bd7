"""What skyctl launched, as the providers see it (not as the store remembers it).

Two uses, both from the CLI process (each in its own short event loop):

- :func:`leftovers`: after ``serve down``, ask each provider whether a removed
  service still has instances, so "nothing left" is said only once verified;
- :func:`sweep`: ``serve down --all --force`` lists every instance skyctl
  tagged on each provider it can reach, terminates them and lists again,
  without the controller or the state database (e.g. a damaged one).

A provider that cannot be asked (no SDK, no credentials, an API error) is
reported as unchecked: never counted as empty.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from providers.base import Provider
from providers.registry import PROVIDERS, ProviderSet, canonical
from skyctl.clock import SystemClock
from skyctl.config import Paths, read_user_config
from skyctl.errors import SkyctlError
from skyctl.types import Instance, InstanceState


@dataclass
class Sweep:
    """What a provider-side sweep found, per cloud."""

    #: cloud -> service -> instance ids terminated
    terminated: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    #: cloud -> service -> instance ids still listed afterwards
    left: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    #: cloud -> why it could not be listed
    unchecked: dict[str, str] = field(default_factory=dict)
    checked: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.unchecked and not any(self.left.values())


def configured_clouds(p: Paths, extra: Iterable[str] = ()) -> list[str]:
    """``local``, every cloud with a section in the user's config, and ``extra``."""
    clouds = {"local", *(canonical(c) for c in extra)}
    clouds |= {c for c in read_user_config(p)[0] if c in PROVIDERS}
    return sorted(clouds)


def leftovers(
    p: Paths, services: Mapping[str, Iterable[str]]
) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Instances the providers still list for each service (service -> ids), and the
    clouds that could not be asked (cloud -> why)."""
    return asyncio.run(_leftovers(p, services))


def sweep(p: Paths, clouds: Iterable[str]) -> Sweep:
    """Terminate every instance skyctl tagged on ``clouds``, then list again."""
    return asyncio.run(_sweep(p, sorted(set(clouds))))


def _providers(p: Paths, *, observer: bool = False) -> ProviderSet:
    """Each cloud as config.yaml sets it up: a bad section fails that cloud alone, named
    as a cloud that could not be asked, and the others are still asked. ``observer``:
    the controller may be running, the writer of what its providers keep on disk."""
    config = read_user_config(p)[0]
    return ProviderSet(
        config=config, clock=SystemClock(), local_state=p.local_state, observer=observer
    )


def _live(instances: Iterable[Instance]) -> list[str]:
    return [i.instance_id for i in instances if i.state is not InstanceState.TERMINATED]


async def _listing(provider: Provider) -> dict[str, list[str]]:
    """Service -> ids of its instances not yet terminated, as the provider lists them."""
    out: dict[str, list[str]] = {}
    for service in await provider.list_services():
        ids = _live(await provider.list_instances(service))
        if ids:
            out[service] = ids
    return out


async def _strays(provider: Provider, kill: bool = False) -> dict[str, list[str]]:
    """Service -> what is left of it besides the provider's records (the local cloud's
    replica processes no record knows: ``pid N (no record)``); {} elsewhere."""
    find = getattr(provider, "strays", None)
    if find is None:
        return {}
    found: dict[str, list[int]] = await find(kill=kill)
    return {svc: [f"pid {pid} (no record)" for pid in pids] for svc, pids in found.items()}


async def _leftovers(
    p: Paths, services: Mapping[str, Iterable[str]]
) -> tuple[dict[str, list[str]], dict[str, str]]:
    # read only: a controller may still be terminating another service's replicas (a
    # record it removes meanwhile, written back from here, would outlive its service)
    providers = _providers(p, observer=True)
    left: dict[str, list[str]] = {}
    unchecked: dict[str, str] = {}
    try:
        for service, clouds in services.items():
            for cloud in sorted({canonical(c) for c in clouds}):
                if cloud in unchecked:
                    continue
                try:
                    listed = await providers.get(cloud).list_instances(service)
                except (SkyctlError, ImportError, OSError) as e:
                    unchecked[cloud] = _one_line(e)
                    continue
                ids = _live(listed) + (await _strays(providers.get(cloud))).get(service, [])
                if ids:
                    left.setdefault(service, []).extend(f"{cloud}:{i}" for i in ids)
    finally:
        await providers.close()
    return left, unchecked


async def _sweep(p: Paths, clouds: list[str]) -> Sweep:
    providers = _providers(p)
    out = Sweep()
    try:
        for cloud in clouds:
            try:
                provider = providers.get(cloud)
                found = await _listing(provider)
            except (SkyctlError, ImportError, OSError) as e:
                out.unchecked[cloud] = _one_line(e)
                continue
            done: dict[str, list[str]] = {}
            for service, ids in found.items():
                for instance_id in ids:
                    try:
                        await provider.terminate(instance_id)
                    except SkyctlError:
                        continue  # listed again below, so reported as left
                    done.setdefault(service, []).append(instance_id)
                with contextlib.suppress(SkyctlError):
                    await provider.release_service(service)
            for service, ids in (await _strays(provider, kill=True)).items():
                done.setdefault(service, []).extend(ids)
            try:
                left = await _listing(provider)
                for service, ids in (await _strays(provider)).items():
                    left.setdefault(service, []).extend(ids)
                out.left[cloud] = left
            except (SkyctlError, OSError) as e:
                out.unchecked[cloud] = f"terminated, but listing again failed: {_one_line(e)}"
            out.checked.append(cloud)
            out.terminated[cloud] = done
    finally:
        await providers.close()
    return out


def _one_line(e: BaseException) -> str:
    if isinstance(e, ImportError):
        return f"{e.name or 'its SDK'} is not installed"
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
