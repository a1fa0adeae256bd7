"""Which provider serves which cloud; providers are created lazily.

Cloud SDKs are optional extras: a provider module is imported only when a
service names that cloud, so ``skyctl`` works with none of them installed.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from providers.base import Provider
from providers.feasibility import local_accelerators
from providers.local_logs import LogLimits, ReplicaLogs
from skyctl.clock import Clock
from skyctl.errors import ConfigError

#: cloud name -> (module, class). ``k8s`` is SkyServe's spelling of kubernetes.
PROVIDERS: dict[str, tuple[str, str]] = {
    "local": ("providers.local", "LocalProvider"),
    "aws": ("providers.aws", "AWSProvider"),
    "gcp": ("providers.gcp", "GCPProvider"),
    "azure": ("providers.azure", "AzureProvider"),
    "kubernetes": ("providers.kubernetes", "KubernetesProvider"),
    "simulated": ("providers.simulated", "SimulatedProvider"),  # cheap endpoints, for scale
}
ALIASES = {"k8s": "kubernetes"}


def canonical(cloud: str | None) -> str:
    name = (cloud or "local").lower()
    name = ALIASES.get(name, name)
    if name not in PROVIDERS:
        raise ConfigError(f"unknown cloud {cloud!r}; allowed: {', '.join(sorted(PROVIDERS))}")
    return name


class ProviderSet:
    """The providers one controller uses, created on first use and closed together.

    ``observer``: another process's view while a controller may run (the CLI's
    checks): a provider that keeps its instances on this machine's disk (local,
    simulated) reads them and never writes them, the controller's provider being their writer."""

    def __init__(
        self,
        *,
        config: Mapping[str, Mapping[str, Any]],
        clock: Clock,
        local_state: Path,
        observer: bool = False,
    ) -> None:
        self._observer = observer
        self._config = config
        self._clock = clock
        self._local_state = local_state
        self._providers: dict[str, Provider] = {}

    def get(self, cloud: str | None) -> Provider:
        name = canonical(cloud)
        if name not in self._providers:
            self._providers[name] = self._make(name)
        return self._providers[name]

    def add(self, provider: Provider) -> None:
        """Use an already built provider (tests, the simulator)."""
        self._providers[canonical(provider.name)] = provider

    def active(self) -> list[Provider]:
        return list(self._providers.values())

    def _make(self, name: str) -> Provider:
        module_name, class_name = PROVIDERS[name]
        module = importlib.import_module(module_name)
        cls = getattr(module, class_name)
        if name == "local":
            section = self._config.get("local")
            provider: Provider = cls(
                None,
                clock=self._clock,
                state_dir=self._local_state,
                accelerators=local_accelerators(section),
                logs=ReplicaLogs(LogLimits.from_section(section)),  # local.log_max_mb, ...
                observer=self._observer,
            )
        elif name == "simulated":  # its instances are kept across restarts there
            state = self._local_state.parent / "simulated"
            provider = cls(
                self._config.get(name, {}),
                clock=self._clock,
                state_dir=state,
                observer=self._observer,
            )
        else:
            provider = cls(self._config.get(name, {}), clock=self._clock)
        return provider

    async def close(self) -> None:
        for provider in self._providers.values():
            await provider.close()
        self._providers.clear()
