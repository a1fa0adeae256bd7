"""The one interface every provider implements, and its contract.

The controller decides; a provider only reports and carries out. Every method
may raise only the typed errors of ``skyctl.errors``:

- :class:`~skyctl.errors.CapacityError`: no capacity for that offering now. The
  controller marks the location and places elsewhere.
- :class:`~skyctl.errors.QuotaError`: the account's limits forbid it.
- :class:`~skyctl.errors.NotFoundError`: the instance does not exist.
- :class:`~skyctl.errors.TransientError`: throttling, 5xx, timeouts. The
  provider has already retried with backoff; the controller tries again on a
  later tick.
- :class:`~skyctl.errors.ConfigError`: credentials or configuration missing.

Anything else escaping a provider is a bug in that provider.

Multi-node replicas (``spec.num_nodes`` N > 1, SkyServe's ``num_nodes``): a
replica is still ONE :class:`~skyctl.types.Instance` to the controller. The
provider starts its N nodes in the offering's one location (same zone), gives
node k ``SKYPILOT_NODE_RANK=k`` (0 is the head), ``SKYPILOT_NUM_NODES=N`` and
``SKYPILOT_NODE_IPS`` (newline-separated, the head first; see
``providers.replica_env``), and reports the replica's endpoint as the head's.
When any node is gone the replica is gone: listed PREEMPTED when a spot node
was preempted, FAILED otherwise (with which node in ``detail``), and
``terminate`` releases every node. Prices (offerings and instances) are per
replica: one node's hourly price times N (:func:`per_replica`), so cost
accounting and placement need not know about nodes. Every provider runs them;
what the clouds share (grouping nodes, rolling back a partial launch, the node
variables) is :mod:`providers.nodes`.

Blocking SDK calls run in ``asyncio.to_thread``; nothing else starts threads.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from skyctl.errors import ConfigError
from skyctl.spec import ResourceCandidate, ServiceSpec
from skyctl.spec_resources import labels_problem
from skyctl.types import Instance, InstanceEvent, Offering

EventSink = Callable[[InstanceEvent], None]
"""Called (in the event loop, never blocking) when the provider learns of a
preemption, an interruption notice or an exit, as soon as it learns of it."""


@dataclass(frozen=True)
class LaunchRequest:
    """Everything a provider needs to start one replica.

    ``client_token`` is unique per replica launch attempt and stable across
    controller restarts: launching twice with the same token must yield the
    same single instance (AWS ClientToken, GCP requestId, Azure deterministic
    names, local: a token file).
    """

    service: str
    replica_id: int
    version: int
    offering: Offering
    client_token: str
    spec: ServiceSpec
    port: int = 8080  # the port the replica's server listens on ($PORT)
    envs: Mapping[str, str] = field(default_factory=dict)  # already merged with secrets


def user_labels(candidate: ResourceCandidate | None, cloud: str) -> dict[str, str]:
    """The spec's ``resources.labels`` for an instance on ``cloud`` (AWS tags, GCP labels,
    Azure tags, Kubernetes pod labels), set beside skyctl's own, never over them.

    ConfigError naming the label when it cannot be one there: the spec parser refuses
    those already (see ``skyctl.spec_resources.label_problem``); this guards a
    candidate made some other way."""
    labels = dict(candidate.labels) if candidate is not None else {}
    found = labels_problem(cloud, labels)
    if found is not None:
        raise ConfigError(f"resources.labels.{found[0]}: {found[1]}")
    return labels


def per_replica(offerings: Iterable[Offering], spec: ServiceSpec) -> list[Offering]:
    """``offerings`` priced per replica: each node's hourly price times ``num_nodes``."""
    n = spec.num_nodes
    return [o if n == 1 else replace(o, price=o.price * n) for o in offerings]


class Provider(abc.ABC):
    """A place replicas run: the local machine, a cloud, a Kubernetes cluster."""

    #: the ``cloud`` part of this provider's locations ("local", "aws", ...)
    name: str = ""
    #: how many calls (launch, terminate, list) the controller runs at once here
    max_concurrent_calls: int = 16

    def set_event_sink(self, sink: EventSink | None) -> None:
        """Register where push signals go (preemptions, notices, exits).

        Providers without a push channel report the same facts through
        :meth:`list_instances` (state PREEMPTED, ``interruption_at``).
        """
        self._sink = sink

    def _emit(self, event: InstanceEvent) -> None:
        sink = getattr(self, "_sink", None)
        if sink is not None:
            sink(event)

    @abc.abstractmethod
    async def offerings(self, spec: ServiceSpec) -> Sequence[Offering]:
        """The offerings that satisfy ``spec.resources``: every allowed location,
        spot and on-demand, with hourly prices. Cheap to call every tick
        (cache inside the provider)."""

    @abc.abstractmethod
    async def launch(self, request: LaunchRequest) -> Instance:
        """Start one replica and return it (state PENDING or RUNNING).

        Idempotent on ``request.client_token``. Raises CapacityError when the
        offering has no capacity (a spot zone that is out), QuotaError,
        TransientError. The returned ``endpoint`` may be None until known;
        :meth:`list_instances` fills it in later.
        """

    @abc.abstractmethod
    async def terminate(self, instance_id: str) -> None:
        """Stop and delete an instance, releasing everything it holds.

        Not found counts as done: never raises NotFoundError. Returns once the
        provider has accepted the deletion; :meth:`list_instances` shows when
        it is gone.
        """

    @abc.abstractmethod
    async def list_instances(self, service: str) -> Sequence[Instance]:
        """Every instance of ``service`` this provider holds (found by tag or
        label, not by the controller's memory), including ones preempted
        since the last call (state PREEMPTED) while the provider still knows
        them. Instances fully gone are not listed."""

    async def list_services(self) -> Sequence[str]:
        """Names of services that have instances here (for garbage collection)."""
        return []

    async def release_service(self, service: str) -> None:  # noqa: B027 - optional hook
        """The service is gone and none of its instances are left: drop any
        per-service resource the provider made for it (network rules, replay
        state). Called by the controller after ``serve down`` verified, by
        listing, that nothing is left. Must be idempotent."""

    async def recover(self) -> None:  # noqa: B027 - optional hook
        """Called once by a controller as it starts, before any launch: make what a
        controller killed mid-launch left running and unrecorded known to
        :meth:`list_instances` (the controller then adopts it or terminates it), or stop
        it. A cloud that tags its instances as it creates them has nothing to do."""

    def check_spec(self, spec: ServiceSpec) -> None:  # noqa: B027 - optional hook
        """Raise a one-line SpecError when every replica the spec asks for would be
        placed here and this provider can never run them as asked (the local
        provider and a fixed port for several replicas). Called at ``serve up`` and
        ``serve update`` when the spec names this cloud only."""

    def log_path(self, instance_id: str) -> str | None:
        """A local file with the replica's output, when the provider has one."""
        return None

    async def close(self) -> None:  # noqa: B027 - optional hook with a documented no-op default
        """Release the provider's own resources (clients, background tasks).

        Does not terminate instances."""
