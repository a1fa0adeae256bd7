"""Messages for keys a SkyServe user writes that the spec does not take where written.

Keys SkyServe used to take (``replica_policy.auto_restart``,
``qps_upper_threshold``: their YAMLs are still about) say what replaced them;
keys one level off (``service.initial_delay_seconds``, found in an old SkyPilot
DeepSeek-R1 YAML; ``accelerators`` at the top) say where they belong. Used by
``skyctl.spec_yaml`` through ``Section.check_keys(hints=...)``.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["PROBE_KEYS", "RESOURCE_KEYS", "RETIRED_POLICY", "RETIRED_RESOURCES", "belongs"]

PROBE_KEYS = ("path", "initial_delay_seconds", "timeout_seconds", "post_data", "headers")
RESOURCE_KEYS = """accelerators gpus cpus memory cloud infra region zone use_spot instance_type
    disk_size image_id any_of ordered""".split()


def belongs(keys: Iterable[str], where: str, example: str = "") -> dict[str, str]:
    """A hint for each of ``keys`` written in the wrong section; ``{key}`` in
    ``example`` is the key itself."""
    return {
        key: f"belongs under {where}" + (f" ({example.format(key=key)})" if example else "")
        for key in keys
    }


# Keys SkyServe used to take, and what replaced them (their YAMLs are still about).
RETIRED_POLICY = {
    "auto_restart": "SkyServe no longer takes auto_restart: failed replicas are always "
    "replaced; remove the key",
    **dict.fromkeys(
        ("qps_upper_threshold", "qps_lower_threshold"),
        "SkyServe replaced qps_upper_threshold and qps_lower_threshold by "
        "target_qps_per_replica (the queries per second each replica should take): "
        "remove them and set that",
    ),
}
RETIRED_RESOURCES = {
    "spot_recovery": "spot_recovery (now job_recovery) is for managed jobs, not services: "
    "remove it (the service itself replaces preempted spot replicas)"
}
