"""The GCP provider's configuration: the ``gcp:`` section of ~/.skyctl/config.yaml.

Keys (see docs/clouds/gcp.md): ``project``, ``api_endpoint`` (private or
sovereign endpoints, emulators, tests), ``regions``, ``catalog`` (override
file), ``credentials`` (``default``: Application Default Credentials;
``anonymous``: only for an emulator or test endpoint), ``network``,
``subnetwork``, ``image``, ``gpu_image``, ``disk_size``, ``service_account``,
``source_ranges``. Also :func:`check` for ``skyctl check``. Credentials are
found through google-auth's standard chain; nothing here prints or stores them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from skyctl.errors import ConfigError

__all__ = ["CONFIG_KEYS", "check", "project_of", "validate_config"]

CONFIG_KEYS = (
    "project",
    "api_endpoint",
    "regions",
    "catalog",
    "credentials",
    "network",
    "subnetwork",
    "image",
    "gpu_image",
    "disk_size",
    "service_account",
    "source_ranges",
)


def validate_config(config: Mapping[str, Any]) -> None:
    for key in config:
        if key not in CONFIG_KEYS:
            raise ConfigError(f"gcp.{key}: unknown key; allowed: {', '.join(CONFIG_KEYS)}")
    regions = config.get("regions")
    if regions is not None and (
        not isinstance(regions, list) or not all(isinstance(r, str) for r in regions)
    ):
        raise ConfigError("gcp.regions: expected a list of region names such as [us-central1]")
    creds = config.get("credentials")
    if creds not in (None, "default", "anonymous"):
        raise ConfigError(f"gcp.credentials: expected default or anonymous, got {creds!r}")


def project_of(config: Mapping[str, Any]) -> str:
    if config.get("project"):
        return str(config["project"])
    if config.get("credentials") != "anonymous":
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError

        try:
            _, project = google.auth.default()
        except DefaultCredentialsError:
            project = None
        if project:
            return str(project)
    raise ConfigError("gcp.project: not set and no default project found; set gcp.project")


def check(config: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether GCP is usable with this config section, and if not what to configure."""
    try:
        validate_config(config)
    except ConfigError as e:
        return False, str(e)
    if config.get("credentials") == "anonymous":
        return True, "anonymous credentials (only for an emulator or test endpoint)"
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        _, default_project = google.auth.default()
    except DefaultCredentialsError:
        return False, (
            "no Google credentials found: run `gcloud auth application-default login`, "
            "or set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file"
        )
    project = config.get("project") or default_project
    if not project:
        return False, (
            "credentials found but no project: set gcp.project in config.yaml in skyctl's "
            "home ($SKYCTL_HOME, default ~/.skyctl), or export GOOGLE_CLOUD_PROJECT"
        )
    return True, f"credentials found (project {project})"
