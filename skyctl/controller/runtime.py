"""What the controller keeps in memory for one service between ticks.

Everything here can be rebuilt from the store after a restart: the parsed
specs (from the stored YAML and encrypted secrets), the router (on the stored port), the probe
results (by probing again) and the pending location events (lost events only
delay a placement decision by a tick).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from policies.model import LocationEvent, ReplicaEnded
from skyctl.clock import Clock
from skyctl.controller.prober import Prober
from skyctl.router import Router
from skyctl.secrets import Secrets
from skyctl.spec import ServiceSpec
from skyctl.store import VersionRecord
from skyctl.types import Backend


@dataclass
class ServiceRuntime:
    name: str
    router: Router
    prober: Prober
    specs: dict[int, ServiceSpec] = field(default_factory=dict)
    events: list[LocationEvent] = field(default_factory=list)
    ended: list[ReplicaEnded] = field(default_factory=list)  # failures for the next plan
    noticed: set[int] = field(default_factory=set)  # replicas whose notice became an event
    gone: set[int] = field(default_factory=set)  # replicas the provider said are gone (push)
    plan_summary: dict[str, object] = field(default_factory=dict)
    last_error: str = ""
    backends: list[Backend] = field(default_factory=list)  # what the router has now

    def set_backends(self, backends: list[Backend]) -> None:
        """Change the routing table; the router uses it from the next request on."""
        self.backends = backends
        self.router.set_backends(backends)

    def spec(self, record: VersionRecord, secrets: Secrets) -> ServiceSpec:
        """The spec of a stored version (parsed once, secrets put back)."""
        spec = self.specs.get(record.version)
        if spec is None:
            spec = load_spec(record, secrets)
            self.specs[record.version] = spec
        return spec


def load_spec(record: VersionRecord, secrets: Secrets) -> ServiceSpec:
    """Parse a stored version with its secrets decrypted: the one way the controller
    reads a stored spec (the store holds the YAML redacted, see skyctl.secrets)."""
    return secrets.open(record.yaml_text, record.source, record.secrets_ciphertext)


def make_runtime(
    name: str, spec: ServiceSpec, *, clock: Clock, wake: Callable[[], None]
) -> ServiceRuntime:
    prober = Prober(spec.service.readiness_probe, clock=clock, on_change=wake)

    def on_backend_error(replica_id: int) -> None:
        prober.probe_soon(replica_id)
        wake()

    router = Router(
        name, spec.service, clock=clock, on_backend_error=on_backend_error, secrets=spec.secrets
    )
    return ServiceRuntime(name=name, router=router, prober=prober)
