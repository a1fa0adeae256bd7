"""A service whose endpoint would refuse every request: ``service.auth`` with no key.

The router fails closed: with no key to compare against, every request gets 401
(docs/router.md, "Authentication"). Keys come from the spec's secrets and from the
variables ``api_keys_env`` names, as sent by the command that submitted the spec
or else from the controller's own environment; when none of them gives a value,
``serve up`` and ``serve update`` say so (before: the service came up READY, its
endpoint answered 401 to everyone, and only the controller log said why).
"""

from __future__ import annotations

from skyctl.router.auth import ApiKeys
from skyctl.router.security import router_secrets
from skyctl.spec import ServiceSpec


def keyless_warning(name: str, spec: ServiceSpec) -> str:
    """One line when ``spec`` has ``service.auth`` but no key resolves, else ""."""
    auth = spec.service.auth
    if auth is None:
        return ""
    keys = ApiKeys.from_spec(auth, router_secrets(spec))
    if keys:
        return ""
    where = (
        " (in the shell that ran skyctl and in the controller's environment)"
        if auth.api_keys_env
        else ""
    )
    return (
        f"service.auth: no API key: {'; '.join(keys.problems)}{where}: every request to "
        f"{name} gets 401; give a key and run `skyctl serve update {name} FILE`"
    )
