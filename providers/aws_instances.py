"""How the AWS provider marks and reads its EC2 instances (pure functions, no calls).

Tags on every instance (and its volumes and spot request): ``skyctl-service``,
``skyctl-replica``, ``skyctl-version``, plus ``skyctl-port`` (for the
endpoint), ``skyctl-price`` (the offering's hourly price) and
``skyctl-token`` (the launch's client token, so a retried launch finds the
instance before asking EC2 again).

State mapping: ``pending`` -> PENDING, ``running`` -> RUNNING,
``shutting-down``/``terminated`` with state reason
``Server.SpotInstanceTermination`` -> PREEMPTED, with another ``Server.*``
reason -> FAILED; an instance shutting down for any other reason is
TERMINATED, and once ``terminated`` it is gone (not listed). ``stopping`` and
``stopped`` (stopped by someone, or by an AWS retirement event) -> FAILED: it
is not serving, yet it stays (and its volumes cost) until it is terminated,
so teardown must still terminate it. A spot request
in status ``marked-for-termination`` (AWS's two-minute notice) sets
``interruption_at``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from skyctl.types import Instance, InstanceState, Location

TAG_SERVICE = "skyctl-service"
TAG_REPLICA = "skyctl-replica"
TAG_VERSION = "skyctl-version"
TAG_PORT = "skyctl-port"
TAG_PRICE = "skyctl-price"
TAG_TOKEN = "skyctl-token"
NOTICE_SECONDS = 120.0  # AWS announces a spot interruption two minutes ahead

LIVE_STATES = ("pending", "running", "stopping", "stopped", "shutting-down")

#: polls IMDSv2 for the spot interruption notice; writes the kill time to $SKYCTL_NOTICE_FILE
NOTICE_WATCH = r"""
md=http://169.254.169.254/latest
while true; do
  token=$(curl -s -m 2 -X PUT "$md/api/token" -H 'X-aws-ec2-metadata-token-ttl-seconds: 300')
  action=$(curl -s -f -m 2 -H "X-aws-ec2-metadata-token: $token" \
    "$md/meta-data/spot/instance-action")
  if [ -n "$action" ]; then
    when=$(printf '%s' "$action" | sed -n 's/.*"time" *: *"\([^"]*\)".*/\1/p')
    date -d "$when" +%s > "$SKYCTL_NOTICE_FILE.tmp" \
      && mv "$SKYCTL_NOTICE_FILE.tmp" "$SKYCTL_NOTICE_FILE"
    exit 0
  fi
  sleep 5
done
"""


def tags_of(raw: Mapping[str, Any]) -> dict[str, str]:
    return {str(t["Key"]): str(t["Value"]) for t in raw.get("Tags", []) or []}


def region_of_zone(zone: str) -> str:
    return zone.rstrip("abcdefghijklmnopqrstuvwxyz")


def client_token(token: str) -> str:
    """EC2 ClientToken: at most 64 ASCII characters."""
    if len(token) <= 64 and token.isascii():
        return token
    return "skyctl-" + hashlib.sha256(token.encode("utf-8")).hexdigest()[:56]


def timestamp(value: Any) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def to_instance(
    raw: Mapping[str, Any],
    region: str,
    notices: Mapping[str, float],
    released: Collection[str] = (),
) -> Instance | None:
    """Our view of one EC2 instance, or None when it is not ours or is gone.

    ``notices``: instance id -> announced kill time; ``released``: ids the
    controller terminated (a preempted instance is listed until then).
    """
    tags = tags_of(raw)
    iid = str(raw["InstanceId"])
    try:
        service, replica, version = (
            tags[TAG_SERVICE],
            int(tags[TAG_REPLICA]),
            int(tags[TAG_VERSION]),
        )
    except (KeyError, ValueError):
        return None  # not one of ours
    state_name = raw.get("State", {}).get("Name", "")
    reason = str((raw.get("StateReason") or {}).get("Code", ""))
    if state_name in ("shutting-down", "terminated"):
        if iid in released:
            return None
        if reason == "Server.SpotInstanceTermination":
            state = InstanceState.PREEMPTED
        elif reason.startswith("Server."):
            state = InstanceState.FAILED
        elif state_name == "terminated":
            return None  # gone
        else:
            state = InstanceState.TERMINATED
    else:
        state = {"pending": InstanceState.PENDING, "running": InstanceState.RUNNING}.get(
            state_name,
            InstanceState.FAILED,  # stopping/stopped: it stays until terminated
        )
    ip = raw.get("PublicIpAddress")
    port = tags.get(TAG_PORT, "")
    zone = str((raw.get("Placement") or {}).get("AvailabilityZone", ""))
    try:
        price = float(tags.get(TAG_PRICE, "0"))
    except ValueError:
        price = 0.0
    return Instance(
        instance_id=iid,
        service=service,
        replica_id=replica,
        version=version,
        location=Location("aws", region, zone),
        spot=raw.get("InstanceLifecycle") == "spot",
        state=state,
        endpoint=f"http://{ip}:{port}" if ip and port and state is InstanceState.RUNNING else None,
        price=price,
        created_at=timestamp(raw.get("LaunchTime")) or 0.0,
        interruption_at=notices.get(iid) if state is InstanceState.RUNNING else None,
        detail=" ".join(x for x in (state_name, reason) if x),
    )
