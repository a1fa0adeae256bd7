"""What a tick sees of the clouds: each cloud's instances and offerings.

Every call goes through the actuator (its deadline, its per-cloud
concurrency). A cloud that fails is absent from the answer, unknown this
tick: a transient or provider error is logged; a cloud the controller cannot
use at all (no credentials, a bad configuration: ``ConfigError``) becomes the
service's last error, which ``serve status`` shows, logged once per message;
it goes when that cloud's offerings are answered again.
"""

from __future__ import annotations

import logging
from functools import partial

from providers.registry import ProviderSet, canonical
from skyctl.controller.actuator import Actuator
from skyctl.controller.runtime import ServiceRuntime
from skyctl.errors import ConfigError, ProviderError, TransientError
from skyctl.spec import ServiceSpec
from skyctl.types import Instance, Offering

log = logging.getLogger(__name__)


async def instances(
    actuator: Actuator,
    providers: ProviderSet,
    name: str,
    clouds: set[str],
    rt: ServiceRuntime | None = None,
) -> dict[str, dict[int, Instance]]:
    """The service's instances per cloud, by replica id."""
    out: dict[str, dict[int, Instance]] = {}
    for cloud in sorted(clouds):
        provider = providers.get(cloud)
        try:
            listed = await actuator.call(
                cloud, "observe", f"list {cloud} instances", partial(provider.list_instances, name)
            )
        except (TransientError, ProviderError) as e:
            log.warning("%s: listing %s instances failed: %s", name, cloud, e)
            continue
        except ConfigError as e:
            unusable(rt, name, cloud, e)
            continue
        out[cloud] = {i.replica_id: i for i in listed}
    return out


async def offerings(
    actuator: Actuator, providers: ProviderSet, spec: ServiceSpec, rt: ServiceRuntime
) -> list[Offering]:
    """What the spec's clouds offer now (locations, spot or not, prices)."""
    out: list[Offering] = []
    for cloud in sorted({canonical(c.cloud) for c in spec.resources.candidates}):
        provider = providers.get(cloud)
        try:
            out.extend(
                await actuator.call(
                    cloud, "observe", f"{cloud} offerings", partial(provider.offerings, spec)
                )
            )
        except (TransientError, ProviderError) as e:
            log.warning("offerings from %s failed: %s", cloud, e)
        except ConfigError as e:
            unusable(rt, rt.name, cloud, e)
        else:
            usable(rt, cloud)
    return out


def unusable(rt: ServiceRuntime | None, name: str, cloud: str, e: ConfigError) -> None:
    """A cloud the controller cannot use: the service's last error, logged once."""
    msg = f"{cloud}: {e}"
    if rt is None or rt.unusable.get(cloud) != msg:
        log.warning("%s: %s", name, msg)
    if rt is not None:
        rt.unusable[cloud] = msg
        rt.last_error = msg


def usable(rt: ServiceRuntime, cloud: str) -> None:
    """A cloud that answered its offerings (credentials given since): its error goes."""
    msg = rt.unusable.pop(cloud, None)
    if msg is None:
        return
    log.info("%s: %s answers again", rt.name, cloud)
    if rt.last_error == msg:  # another cloud still unusable stays the last error
        rt.last_error = next(iter(rt.unusable.values()), "")
