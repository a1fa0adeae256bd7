"""What EC2 offers where, and at what price: zones, type offerings, spot prices, AMIs.

Read-only EC2 calls with caches, used by :mod:`providers.aws` to build
offerings and launch requests. Zones, per-zone type offerings and AMIs are
cached for the life of the provider; live spot prices for ``price_ttl``
seconds of the injected clock.

Default AMI lookup (when neither ``resources.image_id`` nor the config key
``ami`` is set): for GPU types, the newest "Deep Learning Base OSS Nvidia
Driver GPU AMI (Ubuntu 22.04)" owned by Amazon; otherwise (or when none is
found) the newest Ubuntu LTS server image owned by Canonical
(``099720109477``), chosen by release then build date from the image name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from providers.aws_errors import Caller
from skyctl.clock import Clock
from skyctl.errors import ConfigError

CANONICAL = "099720109477"
GPU_AMI_NAME = "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) *"
UBUNTU_AMI_NAME = "ubuntu/images/hvm-ssd*/ubuntu-*-amd64-server-*"
_UBUNTU_RELEASE = re.compile(r"-(\d\d)\.(\d\d)-amd64-server-(\d+)")


@dataclass(frozen=True)
class Image:
    image_id: str
    root_device: str


def _ubuntu_rank(image: Mapping[str, Any]) -> tuple[int, int, str] | None:
    """(year, build, creation) for an LTS release (YY.04, even YY), else None."""
    m = _UBUNTU_RELEASE.search(str(image.get("Name", "")))
    if not m or m.group(2) != "04" or int(m.group(1)) % 2:
        return None
    return int(m.group(1)), int(m.group(3)), str(image.get("CreationDate", ""))


def newest_ubuntu_lts(images: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    ranked = [(r, img) for img in images if (r := _ubuntu_rank(img)) is not None]
    return max(ranked, key=lambda pair: pair[0])[1] if ranked else None


def newest(images: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    items = list(images)
    return max(items, key=lambda img: str(img.get("CreationDate", ""))) if items else None


class Market:
    """Cached, read-only views of EC2 for one provider."""

    def __init__(
        self,
        client: Callable[[str], Any],
        call: Caller,
        clock: Clock,
        *,
        price_ttl: float = 300.0,
        amis: Mapping[str, str] | None = None,
    ) -> None:
        self._client = client
        self._call = call
        self._clock = clock
        self._price_ttl = price_ttl
        self._amis = dict(amis or {})  # region (or "*") -> configured AMI id
        self._zones: dict[str, list[str]] = {}
        self._offered: dict[tuple[str, str], frozenset[str]] = {}  # (region, type) -> zones
        self._prices: dict[tuple[str, str], tuple[float, dict[str, float]]] = {}
        self._images: dict[tuple[str, bool], Image] = {}
        self._roots: dict[tuple[str, str], str] = {}

    async def zones(self, region: str) -> list[str]:
        """Available availability zones of ``region`` (no local/wavelength zones)."""
        if region not in self._zones:
            resp = await self._call(
                self._client(region).describe_availability_zones,
                what=f"describe_availability_zones in {region}",
            )
            self._zones[region] = sorted(
                z["ZoneName"]
                for z in resp.get("AvailabilityZones", [])
                if z.get("State", "available") == "available"
                and z.get("ZoneType", "availability-zone") == "availability-zone"
            )
        return self._zones[region]

    async def offered_zones(
        self, region: str, instance_types: Iterable[str]
    ) -> dict[str, frozenset[str]]:
        """instance type -> the zones of ``region`` that offer it."""
        types = sorted(set(instance_types))
        missing = [t for t in types if (region, t) not in self._offered]
        if missing:
            found: dict[str, set[str]] = {t: set() for t in missing}

            def fetch() -> None:
                pages = (
                    self._client(region)
                    .get_paginator("describe_instance_type_offerings")
                    .paginate(
                        LocationType="availability-zone",
                        Filters=[{"Name": "instance-type", "Values": missing}],
                    )
                )
                for page in pages:
                    for o in page.get("InstanceTypeOfferings", []):
                        found.setdefault(o["InstanceType"], set()).add(o["Location"])

            await self._call(fetch, what=f"describe_instance_type_offerings in {region}")
            for t in missing:
                self._offered[(region, t)] = frozenset(found.get(t, ()))
        return {t: self._offered[(region, t)] for t in types}

    async def spot_prices(self, region: str, instance_types: Iterable[str]) -> dict[str, float]:
        """``"type/zone"`` -> the current spot price (USD/hour); empty when EC2 reports none."""
        types = sorted(set(instance_types))
        if not types:
            return {}
        key = (region, ",".join(types))
        now = self._clock.now()
        cached = self._prices.get(key)
        if cached is not None and now - cached[0] < self._price_ttl:
            return cached[1]
        latest: dict[str, tuple[datetime, float]] = {}

        def fetch() -> None:
            pages = (
                self._client(region)
                .get_paginator("describe_spot_price_history")
                .paginate(
                    InstanceTypes=types,
                    ProductDescriptions=["Linux/UNIX"],
                    StartTime=datetime.fromtimestamp(now, tz=UTC),
                )
            )
            for page in pages:
                for p in page.get("SpotPriceHistory", []):
                    if not str(p.get("ProductDescription", "")).startswith("Linux/UNIX"):
                        continue
                    k = f"{p['InstanceType']}/{p['AvailabilityZone']}"
                    stamp = p.get("Timestamp") or datetime.fromtimestamp(0, tz=UTC)
                    if k not in latest or stamp > latest[k][0]:
                        latest[k] = (stamp, float(p["SpotPrice"]))

        await self._call(fetch, what=f"describe_spot_price_history in {region}")
        prices = {k: v for k, (_, v) in latest.items()}
        self._prices[key] = (now, prices)
        return prices

    async def image(self, region: str, *, gpu: bool, image_id: str | None = None) -> Image:
        """The AMI to launch: ``image_id``, else the configured ``ami``, else the default lookup."""
        chosen = image_id or self._amis.get(region) or self._amis.get("*")
        if chosen:
            return Image(chosen, await self._root_device(region, chosen))
        if (region, gpu) not in self._images:
            self._images[(region, gpu)] = await self._lookup(region, gpu=gpu)
        return self._images[(region, gpu)]

    async def _root_device(self, region: str, image_id: str) -> str:
        if (region, image_id) not in self._roots:
            resp = await self._call(
                self._client(region).describe_images,
                what=f"describe_images {image_id} in {region}",
                ImageIds=[image_id],
            )
            images = resp.get("Images", [])
            if not images:
                raise ConfigError(
                    f"AMI {image_id} not found in {region} (resources.image_id / aws.ami)"
                )
            self._roots[(region, image_id)] = str(images[0].get("RootDeviceName") or "/dev/sda1")
        return self._roots[(region, image_id)]

    async def _lookup(self, region: str, *, gpu: bool) -> Image:
        client = self._client(region)
        found: Mapping[str, Any] | None = None
        if gpu:
            resp = await self._call(
                client.describe_images,
                what=f"describe_images (GPU AMI) in {region}",
                Owners=["amazon"],
                Filters=[
                    {"Name": "name", "Values": [GPU_AMI_NAME]},
                    {"Name": "state", "Values": ["available"]},
                ],
            )
            found = newest(resp.get("Images", []))
        if found is None:
            resp = await self._call(
                client.describe_images,
                what=f"describe_images (Ubuntu AMI) in {region}",
                Owners=[CANONICAL],
                Filters=[{"Name": "name", "Values": [UBUNTU_AMI_NAME]}],
            )
            found = newest_ubuntu_lts(resp.get("Images", []))
        if found is None:
            raise ConfigError(
                f"no default AMI found in {region}; "
                "set resources.image_id or aws.ami in config.yaml"
            )
        image = Image(str(found["ImageId"]), str(found.get("RootDeviceName") or "/dev/sda1"))
        self._roots[(region, image.image_id)] = image.root_device
        return image
