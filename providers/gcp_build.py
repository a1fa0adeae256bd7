"""Pure helpers of the GCP provider: names, labels, the instance body, states.

Nothing here talks to the API or imports the SDK, so every rule GCP imposes
on names (``[a-z]([-a-z0-9]*[a-z0-9])?``, at most 63 characters) and labels
(lowercase ``[a-z0-9_-]`` values, at most 63) is checked in one place and
tested as plain functions. :mod:`providers.gcp` turns the JSON bodies built
here into SDK messages.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from providers import base
from skyctl.spec import ResourceCandidate
from skyctl.types import InstanceState

LABEL_SERVICE = "skyctl-service"
LABEL_REPLICA = "skyctl-replica"
LABEL_VERSION = "skyctl-version"
LABEL_TOKEN = "skyctl-token"
LABEL_PORT = "skyctl-port"
META_SERVICE = "skyctl-service"  # metadata item with the exact (unmangled) service name

DEFAULT_IMAGE = "projects/debian-cloud/global/images/family/debian-12"
DEFAULT_GPU_IMAGE = (
    "projects/deeplearning-platform-release/global/images/family/common-cu124-debian-11"
)
DEFAULT_DISK_GB = 100
PREEMPTION_NOTICE_SECONDS = 30.0  # GCP gives a spot VM about 30 s between notice and stop

#: accelerators attached to N1 machines (other GPU families have them built in)
GUEST_ACCELERATORS = {
    "T4": "nvidia-tesla-t4",
    "V100": "nvidia-tesla-v100",
    "P100": "nvidia-tesla-p100",
    "P4": "nvidia-tesla-p4",
}

#: a bash snippet for providers.bootstrap: wait for GCP's preemption or a
#: terminating host maintenance, then write the announced kill time.
NOTICE_WATCH = r"""
md="http://metadata.google.internal/computeMetadata/v1/instance"
while true; do
  pre=$(curl -sf -H 'Metadata-Flavor: Google' "$md/preempted?wait_for_change=true&timeout_sec=60")
  if [ "$pre" = "TRUE" ]; then
    echo $(( $(date +%s) + 30 )) > "$SKYCTL_NOTICE_FILE"; exit 0
  fi
  ev=$(curl -sf -H 'Metadata-Flavor: Google' "$md/maintenance-event")
  if [ "$ev" = "TERMINATE_ON_HOST_MAINTENANCE" ]; then
    echo $(( $(date +%s) + 60 )) > "$SKYCTL_NOTICE_FILE"; exit 0
  fi
  [ -z "$pre" ] && sleep 5
done
"""

_NOT_NAME = re.compile(r"[^a-z0-9]+")
_NOT_LABEL = re.compile(r"[^a-z0-9_-]+")


def _digest(text: str, n: int) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:n]


def slug(text: str, limit: int) -> str:
    """``text`` as lowercase letters, digits and single dashes, at most ``limit`` long."""
    out = _NOT_NAME.sub("-", text.lower()).strip("-")[:limit].strip("-")
    return out or "svc"


def label_value(text: str) -> str:
    """A GCP label value for ``text`` (lowercase ``[a-z0-9_-]``, at most 63)."""
    return _NOT_LABEL.sub("-", text.lower())[:63]


def service_tag(service: str) -> str:
    """The network tag of a service's instances (target of its firewall rules).

    A digest of the exact name keeps ``My.Svc`` and ``my-svc`` apart."""
    return f"skyctl-{slug(service, 40)}-{_digest(service, 6)}"


def firewall_name(service: str, port: int) -> str:
    return f"{service_tag(service)}-{port}"


def instance_name(service: str, replica_id: int, client_token: str) -> str:
    """A deterministic, valid instance name: the same token names the same instance."""
    return f"skyctl-{slug(service, 30)}-{replica_id}-{_digest(client_token, 8)}"


def request_id(client_token: str, purpose: str = "insert") -> str:
    """GCP's ``requestId`` (a UUID) derived deterministically from the client token."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"skyctl:{purpose}:{client_token}"))


def token_label(client_token: str) -> str:
    return _digest(client_token, 16)


def instance_id(zone: str, name: str) -> str:
    return f"{zone}/{name}"


def split_instance_id(value: str) -> tuple[str, str]:
    zone, sep, name = value.partition("/")
    if not sep or not zone or not name or "/" in name:
        raise ValueError(f"not a GCP instance id (zone/name): {value!r}")
    return zone, name


def region_of(zone: str) -> str:
    return zone.rsplit("-", 1)[0]


def last_segment(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def parse_time(text: str) -> float:
    """An RFC 3339 timestamp from the API as epoch seconds (0.0 when absent)."""
    if not text:
        return 0.0
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def user_labels(candidate: ResourceCandidate | None) -> dict[str, str]:
    """The spec's ``resources.labels`` as GCP labels: lowercased (GCP allows no capitals).

    Anything else GCP refuses, and names of skyctl's own labels, are a ConfigError
    naming the label (the spec parser refuses them already)."""
    return {k.lower(): v.lower() for k, v in base.user_labels(candidate, "gcp").items()}


def instance_body(
    *,
    name: str,
    zone: str,
    project: str,
    service: str,
    replica_id: int,
    version: int,
    client_token: str,
    port: int,
    spot: bool,
    machine_type: str,
    accelerator_name: str,
    accelerator_count: int,
    startup_script: str,
    candidate: ResourceCandidate | None,
    config: Mapping[str, Any],
) -> dict[str, Any]:
    """The ``Instance`` resource (API JSON) for one replica."""
    gpu = bool(accelerator_name)
    image = (candidate.image_id if candidate else None) or (
        config.get("gpu_image", DEFAULT_GPU_IMAGE) if gpu else config.get("image", DEFAULT_IMAGE)
    )
    disk = (candidate.disk_size if candidate else None) or int(
        config.get("disk_size", DEFAULT_DISK_GB)
    )
    network = str(config.get("network", "default"))
    nic: dict[str, Any] = {
        "network": network if "/" in network else f"projects/{project}/global/networks/{network}",
        "accessConfigs": [{"name": "External NAT", "type": "ONE_TO_ONE_NAT"}],
    }
    if config.get("subnetwork"):
        nic["subnetwork"] = str(config["subnetwork"])
    if spot:
        scheduling: dict[str, Any] = {
            "provisioningModel": "SPOT",
            "instanceTerminationAction": "DELETE",
            "automaticRestart": False,
            "onHostMaintenance": "TERMINATE",
        }
    else:
        scheduling = {"provisioningModel": "STANDARD", "automaticRestart": True}
        if gpu:
            scheduling["onHostMaintenance"] = "TERMINATE"  # GPUs cannot live-migrate
    metadata = [
        {"key": "startup-script", "value": startup_script},
        {"key": META_SERVICE, "value": service},
    ]
    if gpu:
        metadata.append({"key": "install-nvidia-driver", "value": "True"})
    body: dict[str, Any] = {
        "name": name,
        "machineType": f"zones/{zone}/machineTypes/{machine_type}",
        "labels": {
            **user_labels(candidate),
            LABEL_SERVICE: label_value(service),
            LABEL_REPLICA: str(replica_id),
            LABEL_VERSION: str(version),
            LABEL_TOKEN: token_label(client_token),
            LABEL_PORT: str(port),
        },
        "tags": {"items": [service_tag(service)]},
        "metadata": {"items": metadata},
        "scheduling": scheduling,
        "disks": [
            {
                "boot": True,
                "autoDelete": True,
                "initializeParams": {
                    "sourceImage": image,
                    "diskSizeGb": str(disk),
                    "diskType": f"zones/{zone}/diskTypes/pd-balanced",
                },
            }
        ],
        "networkInterfaces": [nic],
    }
    guest = GUEST_ACCELERATORS.get(accelerator_name.upper()) if gpu else None
    if guest and machine_type.startswith("n1-"):
        body["guestAccelerators"] = [
            {
                "acceleratorType": f"zones/{zone}/acceleratorTypes/{guest}",
                "acceleratorCount": accelerator_count,
            }
        ]
    if config.get("service_account"):
        body["serviceAccounts"] = [
            {
                "email": str(config["service_account"]),
                "scopes": ["https://www.googleapis.com/auth/cloud-platform"],
            }
        ]
    return body


def state_of(status: str, *, spot: bool, preempted: bool, deleting: bool) -> InstanceState:
    """Our state for a GCP instance ``status`` (PROVISIONING, STAGING, RUNNING, ...)."""
    if status in ("PROVISIONING", "STAGING"):
        return InstanceState.PENDING
    if status in ("RUNNING", "REPAIRING"):
        return InstanceState.RUNNING
    if deleting:
        return InstanceState.TERMINATED
    if preempted:
        return InstanceState.PREEMPTED
    if status == "TERMINATED" and spot:
        return InstanceState.PREEMPTED  # a spot VM stops only when preempted (we delete ours)
    # stopped or suspended by someone else (or by host maintenance): not serving, yet it
    # stays (and its disks cost) until deleted, so teardown must still delete it
    return InstanceState.FAILED
