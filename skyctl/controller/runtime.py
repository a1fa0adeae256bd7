"""What the controller keeps in memory for one service between ticks.

Everything here can be rebuilt from the store after a restart: the parsed
specs (from the stored YAML), the router (on the stored port), the probe
results (by probing again) and the pending location events (lost events only
delay a placement decision by a tick).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from policies.model import LocationEvent
from skyctl.clock import Clock
from skyctl.controller.prober import Prober
from skyctl.router import Router
from skyctl.spec import ServiceSpec
from skyctl.spec_yaml import parse_spec
from skyctl.types import Backend


@dataclass
class ServiceRuntime:
    name: str
    router: Router
    prober: Prober
    specs: dict[int, ServiceSpec] = field(default_factory=dict)
    events: list[LocationEvent] = field(default_factory=list)
    noticed: set[int] = field(default_factory=set)  # replicas whose notice became an event
    gone: set[int] = field(default_factory=set)  # replicas the provider said are gone (push)
    plan_summary: dict[str, object] = field(default_factory=dict)
    last_error: str = ""
    backends: list[Backend] = field(default_factory=list)  # what the router has now

    def set_backends(self, backends: list[Backend]) -> None:
        """Change the routing table; the router uses it from the next request on."""
        self.backends = backends
        self.router.set_backends(backends)

    def spec(self, version: int, yaml_text: str, source: str | None) -> ServiceSpec:
        spec = self.specs.get(version)
        if spec is None:
            spec = parse_spec(yaml_text, source)
            self.specs[version] = spec
        return spec


def make_runtime(
    name: str, spec: ServiceSpec, *, clock: Clock, wake: Callable[[], None]
) -> ServiceRuntime:
    prober = Prober(spec.service.readiness_probe, clock=clock, on_change=wake)

    def on_backend_error(replica_id: int) -> None:
        prober.probe_soon(replica_id)
        wake()

    router = Router(name, spec.service, clock=clock, on_backend_error=on_backend_error)
    return ServiceRuntime(name=name, router=router, prober=prober)
