"""``skyctl check``: which clouds are usable, fast.

Importing every cloud SDK takes seconds (google-cloud-compute and azure-mgmt
alone take ~2 s each). So each cloud is first checked cheaply: is its SDK
installed (:func:`importlib.util.find_spec`, no import), is its ``config.yaml``
section valid, is there any credential source at all (environment variables,
credentials files). Only a cloud that passes all three imports what its real
check needs, and that check asks the SDK's own credential chain.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import click

from skyctl.errors import SkyctlError

Check = tuple[bool, str]


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing
        return False


def _home() -> Path:
    return Path(os.environ.get("HOME") or Path.home())


def _any_env(*names: str) -> bool:
    return any(os.environ.get(n) for n in names)


def _aws_missing(config: Mapping[str, Any]) -> str | None:
    if config:  # a misspelt key first (it was "no AWS credentials found" with none set)
        from providers.aws_config import parse_config  # imports boto3: only with a section

        try:
            parse_config(config)
        except SkyctlError as e:
            return str(e)
    files = [
        Path(os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or _home() / ".aws" / "credentials"),
        Path(os.environ.get("AWS_CONFIG_FILE") or _home() / ".aws" / "config"),
    ]
    sources = config.get("profile") or _any_env(
        "AWS_ACCESS_KEY_ID",
        "AWS_PROFILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    )
    if not sources and not any(f.is_file() for f in files):
        return (
            "no AWS credentials found: run `aws configure`, or set AWS_PROFILE, "
            "or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    return None


def _aws(config: Mapping[str, Any]) -> Check:
    from providers import aws_config

    return aws_config.check(config)


def _gcp_missing(config: Mapping[str, Any]) -> str | None:
    from providers import gcp_config  # no SDK import at module level

    try:
        gcp_config.validate_config(config)
    except SkyctlError as e:
        return str(e)
    adc = Path(os.environ.get("CLOUDSDK_CONFIG") or _home() / ".config" / "gcloud")
    adc = adc / "application_default_credentials.json"
    if (
        config.get("credentials") != "anonymous"
        and not _any_env("GOOGLE_APPLICATION_CREDENTIALS")
        and not adc.is_file()
    ):
        return (
            "no Google credentials found: run `gcloud auth application-default login`, "
            "or set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file"
        )
    return None


def _gcp(config: Mapping[str, Any]) -> Check:
    from providers import gcp_config

    return gcp_config.check(config)


AZURE_HINT = (
    "run `az login`, or set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET "
    "(a service principal), or use a managed identity"
)


def _azure_missing(config: Mapping[str, Any]) -> str | None:
    from providers.azure_config import parse_config

    try:
        parse_config(config)
    except SkyctlError as e:
        return str(e)
    if (
        not _any_env(
            "AZURE_CLIENT_SECRET",
            "AZURE_CLIENT_CERTIFICATE_PATH",
            "AZURE_FEDERATED_TOKEN_FILE",
            "IDENTITY_ENDPOINT",
            "MSI_ENDPOINT",
        )
        and not (_home() / ".azure").is_dir()
    ):
        return f"azure: no credentials found; {AZURE_HINT}"
    return None


def _azure(config: Mapping[str, Any]) -> Check:
    from providers.azure_config import check_token, parse_config

    return check_token(parse_config(config))


def _kubernetes_missing(config: Mapping[str, Any]) -> str | None:
    from providers.kubernetes_config import parse_config

    try:
        cfg = parse_config(config)
    except SkyctlError as e:
        return str(e)
    kubeconfigs = [cfg.kubeconfig] if cfg.kubeconfig else []
    kubeconfigs += (os.environ.get("KUBECONFIG") or "").split(os.pathsep)
    found = [p for p in kubeconfigs if p and Path(p).expanduser().is_file()]
    if (
        not found
        and not (_home() / ".kube" / "config").is_file()
        and not _any_env("KUBERNETES_SERVICE_HOST")
    ):
        return (
            "kubernetes: no kubeconfig found (kubernetes.kubeconfig, $KUBECONFIG or "
            "~/.kube/config) and not running inside a cluster"
        )
    return None


def _kubernetes(config: Mapping[str, Any]) -> Check:
    from providers import kubernetes

    return kubernetes.check(config)


Missing = Callable[[Mapping[str, Any]], "str | None"]

#: cloud -> (the SDK modules it needs, what it lacks found cheaply, its real check)
CLOUDS: dict[str, tuple[tuple[str, ...], Missing, Callable[[Mapping[str, Any]], Check]]] = {
    "aws": (("boto3",), _aws_missing, _aws),
    "gcp": (("google.auth", "google.cloud.compute_v1"), _gcp_missing, _gcp),
    "azure": (("azure.identity", "azure.mgmt.compute"), _azure_missing, _azure),
    "kubernetes": (("kubernetes",), _kubernetes_missing, _kubernetes),
}


def missing(cloud: str, config: Mapping[str, Any]) -> str | None:
    """What makes ``cloud`` unusable here, found without importing its SDK or asking
    the network (the SDK not installed, no credential source at all, a bad config
    section); None when it may be usable."""
    modules, lacks, _ = CLOUDS[cloud]
    absent = [m for m in modules if not _installed(m)]
    if absent:
        return f"pip install 'skyctl[{cloud}]' ({absent[0]} missing)"
    try:
        return lacks(config or {})
    except SkyctlError as e:
        return str(e)


def check_cloud(cloud: str, config: Mapping[str, Any]) -> Check:
    """(usable, what to do) for one cloud; imports its SDK only when it can be usable."""
    lacks = missing(cloud, config)
    if lacks is not None:
        return False, lacks
    try:
        return CLOUDS[cloud][2](config or {})
    except SkyctlError as e:
        return False, str(e)
    except ImportError as e:
        return False, f"pip install 'skyctl[{cloud}]' ({e.name} missing)"


def run_check(config: Mapping[str, Any], problems: Mapping[str, str] | None = None) -> None:
    """One line per cloud; ``problems``: a cloud's bad config.yaml section (its line)."""
    click.echo("local: ok (replicas run as local processes)")
    for cloud in CLOUDS:
        if cloud in (problems or {}):
            ok, message = False, (problems or {})[cloud]
        else:
            ok, message = check_cloud(cloud, config.get(cloud, {}))
        click.echo(f"{cloud}: {'ok' if ok else 'not usable'}: {message}")


def unusable_clouds(clouds: Iterable[str], config: Mapping[str, Any]) -> str | None:
    """One line when none of ``clouds`` (a spec's) can be used here, found cheaply
    (``missing``), naming each cloud and what it lacks; None when one may be (or the
    local provider is among them)."""
    names = sorted({"kubernetes" if c == "k8s" else c for c in clouds})
    if not names or any(c not in CLOUDS for c in names):
        return None  # local (or a cloud this check does not know): the controller decides
    lacks = {c: missing(c, config.get(c) or {}) for c in names}
    if any(reason is None for reason in lacks.values()):
        return None
    why = "; ".join(f"{c}: {reason}" for c, reason in lacks.items())
    what = "cloud is" if len(names) == 1 else "clouds are"
    return f"the spec's {what} not usable here: {why} (see `skyctl check`)"
