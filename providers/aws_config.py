"""The ``aws:`` section of the user config, boto3 sessions, and ``skyctl check`` for AWS.

Keys (all optional): ``regions`` (list; default: every region of the
catalog), ``endpoint_url`` (EC2 endpoint override: private endpoints, other
partitions, tests), ``profile`` (a named profile of ``~/.aws/config``),
``catalog`` (an override CSV, see :mod:`providers.catalog`), ``ami`` (an AMI
id, or a mapping region -> AMI id), ``max_attempts`` (per EC2 call, default
5), ``price_ttl_seconds`` (live spot price cache, default 300).

Credentials always come from boto3's standard chain (environment, shared
files, SSO, instance/container roles); nothing here reads, logs or stores them.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from skyctl.errors import ConfigError

try:
    import boto3
    import botocore.exceptions
except ImportError:
    raise ConfigError("the AWS provider needs boto3: pip install 'skyctl[aws]'") from None

CONFIG_KEYS = (
    "regions",
    "endpoint_url",
    "profile",
    "catalog",
    "ami",
    "max_attempts",
    "price_ttl_seconds",
)


@functools.lru_cache(maxsize=8)
def session_for(profile: str | None) -> Any:
    """One boto3 session per profile for the process: a new one re-reads the EC2 service
    model (0.2 to 0.7 s); clients are created from it on the event loop thread only."""
    return boto3.session.Session(profile_name=profile)


def parse_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The validated ``aws:`` section; ConfigError naming the key otherwise."""
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    if unknown:
        raise ConfigError(
            f"aws: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(CONFIG_KEYS)}"
        )
    out = dict(config)
    regions_ = out.get("regions")
    if regions_ is not None and (
        not isinstance(regions_, list | tuple)
        or not all(isinstance(r, str) and r for r in regions_)
    ):
        raise ConfigError("aws.regions must be a list of region names, e.g. [us-east-1, us-west-2]")
    for key in ("endpoint_url", "profile", "catalog"):
        if out.get(key) is not None and not isinstance(out[key], str):
            raise ConfigError(f"aws.{key} must be a string, got {out[key]!r}")
    ami = out.get("ami")
    if ami is not None and not isinstance(ami, str | dict):
        raise ConfigError("aws.ami must be an AMI id or a mapping region -> AMI id")
    for key in ("max_attempts", "price_ttl_seconds"):
        value = out.get(key)
        if value is not None and (
            not isinstance(value, int | float) or isinstance(value, bool) or value < 1
        ):
            raise ConfigError(f"aws.{key} must be a number >= 1, got {value!r}")
    return out


def check(config: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether boto3's credential chain finds credentials (never prints them)."""
    profile = (config or {}).get("profile")
    try:
        session = boto3.session.Session(profile_name=profile)
        creds = session.get_credentials()
    except botocore.exceptions.ProfileNotFound:
        return False, f"AWS profile {profile!r} not found: run `aws configure --profile {profile}`"
    except botocore.exceptions.BotoCoreError as e:
        return False, f"AWS credentials could not be read ({type(e).__name__}); run `aws configure`"
    if creds is None:
        return False, (
            "no AWS credentials found: run `aws configure`, or set AWS_PROFILE, "
            "or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    return True, f"AWS credentials found ({creds.method})"
