"""The ``azure:`` section of ``~/.skyctl/config.yaml``, checked into a frozen value.

Keys (all optional except the subscription, which may also come from
``AZURE_SUBSCRIPTION_ID``); see ``docs/clouds/azure.md``::

    azure:
      subscription_id: 00000000-0000-0000-0000-000000000000
      resource_group: skyctl          # must exist (az group create -n skyctl -l eastus)
      regions: [eastus, westus2]      # default: every region of the catalog
      zones: ["1", "2", "3"]          # availability zones tried per region; [] = regional
      cloud: AZURE_PUBLIC_CLOUD       # or AZURE_CHINA_CLOUD, AZURE_US_GOVERNMENT
      base_url: https://management.azure.com   # ARM endpoint override (private link, tests)
      credential_scope: https://management.azure.com/.default
      ca_bundle: /path/ca.pem         # extra CA for the endpoint (TLS inspection, tests)
      catalog: ~/my-azure.csv         # rows replacing/adding to the bundled catalog
      image_id: publisher:offer:sku:version     # default image (resources.image_id wins)
      ssh_public_key: ~/.ssh/id_rsa.pub          # default: a throwaway key (no SSH access)
      poll_interval_seconds: 5        # LRO polling when ARM sends no Retry-After
      max_attempts: 5                 # tries of one call on throttling/5xx/timeouts
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skyctl.errors import ConfigError

CLOUDS = ("AZURE_PUBLIC_CLOUD", "AZURE_CHINA_CLOUD", "AZURE_US_GOVERNMENT")
KEYS = (
    "subscription_id",
    "resource_group",
    "regions",
    "zones",
    "cloud",
    "base_url",
    "credential_scope",
    "ca_bundle",
    "catalog",
    "image_id",
    "ssh_public_key",
    "poll_interval_seconds",
    "max_attempts",
)


@dataclass(frozen=True)
class AzureConfig:
    subscription_id: str
    resource_group: str = "skyctl"
    regions: tuple[str, ...] = ()
    zones: tuple[str, ...] = ("1", "2", "3")
    cloud: str | None = None
    base_url: str | None = None
    credential_scope: str | None = None
    ca_bundle: str | None = None
    catalog: str | None = None
    image_id: str | None = None
    ssh_public_key: str | None = None
    poll_interval_seconds: float = 5.0
    max_attempts: int = 5


def _str(section: Mapping[str, Any], key: str) -> str | None:
    value = section.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"azure.{key}: expected a non-empty string, got {value!r}")
    return value.strip()


def _strings(section: Mapping[str, Any], key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    value = section.get(key)
    if value is None:
        return default
    if isinstance(value, str | int):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
        raise ConfigError(f"azure.{key}: expected a list of names, got {value!r}")
    return tuple(str(v) for v in value)


def _number(section: Mapping[str, Any], key: str, default: float, minimum: float) -> float:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise ConfigError(f"azure.{key}: expected a number >= {minimum}, got {value!r}")
    return float(value)


def parse_config(
    section: Mapping[str, Any] | None, env: Mapping[str, str] | None = None
) -> AzureConfig:
    """Check the ``azure:`` section; one-line ConfigError naming the key on bad input."""
    section = dict(section or {})
    env = os.environ if env is None else env
    unknown = sorted(set(section) - set(KEYS))
    if unknown:
        raise ConfigError(f"azure.{unknown[0]}: unknown key; allowed: {', '.join(KEYS)}")
    subscription = _str(section, "subscription_id") or env.get("AZURE_SUBSCRIPTION_ID", "").strip()
    if not subscription:
        raise ConfigError(
            "azure.subscription_id: not set; put it in config.yaml in skyctl's home "
            "($SKYCTL_HOME, default ~/.skyctl) or export "
            "AZURE_SUBSCRIPTION_ID (see `az account show --query id`)"
        )
    cloud = _str(section, "cloud")
    if cloud is not None and cloud.upper() not in CLOUDS:
        raise ConfigError(f"azure.cloud: {cloud!r} is not one of {', '.join(CLOUDS)}")
    base_url = _str(section, "base_url")
    if base_url is not None and not base_url.startswith("https://"):
        raise ConfigError(
            f"azure.base_url: must start with https:// (ARM requires TLS), got {base_url!r}"
        )
    ca_bundle = _str(section, "ca_bundle")
    if ca_bundle is not None:
        ca_bundle = str(Path(ca_bundle).expanduser())
        if not Path(ca_bundle).is_file():
            raise ConfigError(f"azure.ca_bundle: no such file {ca_bundle}")
    max_attempts = _number(section, "max_attempts", 5, 1)
    if max_attempts != int(max_attempts):
        raise ConfigError(
            f"azure.max_attempts: expected an integer >= 1, got {section['max_attempts']!r}"
        )
    return AzureConfig(
        subscription_id=subscription,
        resource_group=_str(section, "resource_group") or "skyctl",
        regions=_strings(section, "regions", ()),
        zones=_strings(section, "zones", ("1", "2", "3")),
        cloud=cloud.upper() if cloud else None,
        base_url=base_url.rstrip("/") if base_url else None,
        credential_scope=_str(section, "credential_scope"),
        ca_bundle=ca_bundle,
        catalog=_str(section, "catalog"),
        image_id=_str(section, "image_id"),
        ssh_public_key=_str(section, "ssh_public_key"),
        poll_interval_seconds=_number(section, "poll_interval_seconds", 5.0, 0.0),
        max_attempts=int(max_attempts),
    )


def read_public_key(value: str) -> str:
    """``ssh_public_key`` is a path to a ``.pub`` file or the key text itself."""
    if value.startswith(("ssh-", "ecdsa-")):
        return value
    path = Path(value).expanduser()
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as e:
        raise ConfigError(f"azure.ssh_public_key: cannot read {path}: {e.strerror or e}") from None


def check_token(cfg: AzureConfig) -> tuple[bool, str]:
    """For ``skyctl check``: whether azure-identity's default chain yields a token
    (never printed); imports only azure-identity, not the management SDKs."""
    from azure.identity import DefaultAzureCredential

    hint = (
        "run `az login`, or set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET "
        "(a service principal), or use a managed identity"
    )
    try:
        DefaultAzureCredential().get_token(
            cfg.credential_scope or "https://management.azure.com/.default"
        )
    except Exception:  # any failure of the chain means: not configured
        return False, f"azure: no usable credentials; {hint}"
    return True, f"azure: subscription {cfg.subscription_id}, resource group {cfg.resource_group}"
