"""The on-demand price a replica is measured against, looked up when it is launched.

Savings (see :mod:`skyctl.store.costs`) compare what a replica costs with what
the same location and instance type costs on demand. The price comes from the
provider's offerings (cached by the provider, cheap to ask each launch); when
it cannot be had (no on-demand offering there, the listing failed) it is
``None`` and the replica is counted as saving nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from providers.registry import ProviderSet
from skyctl.errors import SkyctlError
from skyctl.spec import ServiceSpec
from skyctl.types import Offering

log = logging.getLogger(__name__)


async def ondemand_price(providers: ProviderSet, spec: ServiceSpec, off: Offering) -> float | None:
    """USD/h on demand for ``off``'s location and instance type (its own price if on demand)."""
    if not off.spot:
        return off.price
    try:
        offerings = await providers.get(off.location.cloud).offerings(spec)
    except SkyctlError as e:
        log.info("no on-demand price for %s: %s", off.location, e)
        return None
    return ondemand_price_in(offerings, off)


def ondemand_price_in(offerings: Sequence[Offering], off: Offering) -> float | None:
    """USD/h on demand for ``off``'s location and instance type among ``offerings``."""
    if not off.spot:
        return off.price
    same = [
        o.price
        for o in offerings
        if not o.spot and o.instance_type == off.instance_type and o.location == off.location
    ]
    if not same:  # some clouds price on demand per region, not per zone
        same = [
            o.price
            for o in offerings
            if not o.spot
            and o.instance_type == off.instance_type
            and (o.location.cloud, o.location.region) == (off.location.cloud, off.location.region)
        ]
    return min(same) if same else None
