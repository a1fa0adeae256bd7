"""The service spec model: what a parsed YAML service spec means.

Pure data (frozen dataclasses). ``skyctl.spec_yaml`` turns YAML text into a
:class:`ServiceSpec` and is the only place that validates; everything else
trusts these objects. Keys follow SkyServe's schema; keys of our own are
documented in ``docs/spec.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ReadinessProbe:
    path: str = "/"
    initial_delay_seconds: float = 1200.0
    timeout_seconds: float = 15.0
    post_data: str | None = None  # JSON text; a POST probe when set
    headers: dict[str, str] = field(default_factory=dict)
    # our own keys
    period_seconds: float = 10.0  # time between probes of one replica
    failure_threshold: int = 3  # consecutive failures before a ready replica is replaced


@dataclass(frozen=True)
class ReplicaPolicy:
    min_replicas: int = 1
    max_replicas: int | None = None
    # a number, or a map accelerator -> QPS (with instance_aware_least_load)
    target_qps_per_replica: float | dict[str, float] | None = None
    upscale_delay_seconds: float = 300.0
    downscale_delay_seconds: float = 1200.0
    num_overprovision: int | None = None
    base_ondemand_fallback_replicas: int = 0
    dynamic_ondemand_fallback: bool = False
    spot_placer: str | None = None  # SkyServe: "dynamic_fallback"
    # our own key: which spot policy drives placement/fallback (see docs/policies.md);
    # None means the default for the spec (see policies.registry.policy_for)
    spot_policy: str | None = None

    @property
    def fixed(self) -> bool:
        return self.max_replicas is None or self.max_replicas == self.min_replicas


@dataclass(frozen=True)
class TLS:
    keyfile: str
    certfile: str


@dataclass(frozen=True)
class Auth:
    """Our key ``service.auth``: API keys (sent as ``Authorization: Bearer KEY``).

    Only names are kept here, never key values: ``api_key_secrets`` names
    entries of the spec's ``secrets:`` (stored encrypted), ``api_keys_env``
    environment variables of the controller.
    """

    api_key_secrets: tuple[str, ...] = ()
    api_keys_env: tuple[str, ...] = ()
    forward_authorization: bool = False  # pass the client's Authorization on to replicas


@dataclass(frozen=True)
class CacheAware:
    """``service.router.cache_aware``: how ``load_balancing_policy: cache_aware`` finds a
    request's prefix and how far it lets a replica's load run (docs/router.md)."""

    session_header: str = "X-Session-Id"  # the key when the body gives none
    json_path: str | None = None  # where the prompt is for APIs other than OpenAI's
    balance_factor: float = 1.25  # a replica over this x the mean load loses new prefixes
    max_body_bytes: int = 256 << 10  # larger (or chunked) bodies are not read: least load
    max_prefixes: int = 200_000  # (prefix block, replica) pairs remembered
    ttl_seconds: float = 600.0  # a prefix unused this long is forgotten
    race: str | None = None  # "hedge" or "fan_out": copies to the next-best replicas
    replica_metrics_seconds: float | None = None  # poll vLLM's /metrics for load; None: off
    # prompt bytes one replica's prefix cache holds: the index forgets a replica's least
    # recently sent blocks past it, as its server evicts them; None: no bound
    replica_cache_bytes: int | None = None


@dataclass(frozen=True)
class RouterOptions:
    """Our own router keys under ``service.router`` (and ``service.fan_out``)."""

    host: str = "127.0.0.1"
    port: int | None = None  # None: a free port chosen at start, then kept
    fan_out: int = 2
    fan_out_methods: tuple[str, ...] = ("GET", "HEAD", "OPTIONS")  # POST added by opt-in
    hedge_delay_seconds: float | None = None  # None: recent P95
    hedge_budget: float = 0.1  # share of extra requests allowed
    max_buffer_bytes: int = 1 << 20  # replay buffer for retries/fan-out
    retries: int = 2  # extra tries on another replica after a connection error
    request_timeout_seconds: float = 300.0
    connect_timeout_seconds: float = 5.0
    # hostile-input limits (see docs/router.md)
    max_body_bytes: int = 64 << 20  # larger request bodies get 413
    max_header_bytes: int = 64 << 10  # request line + headers; larger gets 431
    max_headers: int = 100  # header lines per request; more gets 431
    max_connections: int = 1024  # open client connections; more get 503 and are closed
    max_connections_per_client: int = 256  # from one client address; more get 503
    client_header_timeout_seconds: float = 30.0  # a request head must arrive within this
    client_body_timeout_seconds: float = 60.0  # longest silence inside a request body
    # and a body's least average rate, after that first allowance (0: none)
    client_body_min_bytes_per_second: float = 1024.0
    client_keepalive_timeout_seconds: float = 75.0  # idle client connections close after
    replica_ca_file: str | None = None  # CA bundle for https replicas (default: system CAs)
    # while no replica is ready, a request waits this long for one before its 503
    wait_for_replica_seconds: float = 10.0
    max_waiting_requests: int = 1024  # more requests waiting than this get their 503 at once
    # the router's Prometheus metrics also here (None: the path goes to replicas)
    metrics_path: str | None = "/metrics"
    cache_aware: CacheAware = field(default_factory=CacheAware)


@dataclass(frozen=True)
class ServiceSection:
    readiness_probe: ReadinessProbe = field(default_factory=ReadinessProbe)
    replica_policy: ReplicaPolicy = field(default_factory=ReplicaPolicy)
    load_balancing_policy: str = "least_load"
    ports: int | None = None
    tls: TLS | None = None
    stream_timeout_seconds: float = 120.0
    # load_balancer.drain_timeout_seconds (ours): how long a replica leaving (scale-down,
    # rolling or blue-green update) keeps its in-flight requests before its instance goes
    drain_timeout_seconds: float = 600.0
    router: RouterOptions = field(default_factory=RouterOptions)
    auth: Auth | None = None  # our key; None: the endpoint is open


@dataclass(frozen=True)
class ResourceCandidate:
    """One concrete alternative from ``resources`` (after expanding any_of/ordered/lists)."""

    cloud: str | None = None
    region: str | None = None
    zone: str | None = None
    accelerators: dict[str, float] | None = None  # {"A100": 8}; a fraction: {"T4": 0.5}
    cpus: str | None = None  # "8", "8+"
    memory: str | None = None  # "32", "32+"
    instance_type: str | None = None
    use_spot: bool = False
    image_id: str | None = None
    disk_size: int | None = None
    ports: tuple[int, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Resources:
    candidates: tuple[ResourceCandidate, ...] = (ResourceCandidate(),)
    ordered: bool = False  # `ordered:` -> preference order matters
    use_spot: bool = False


@dataclass(frozen=True)
class LocalZone:
    region: str
    zone: str
    spot_price: float
    ondemand_price: float


@dataclass(frozen=True)
class LocalOptions:
    """Options for the local provider (our own top-level key ``local:``)."""

    zones: tuple[LocalZone, ...] = ()  # empty: the trace's zones, or three default zones
    trace: str | None = None  # a bundled trace name or a folder/archive path
    trace_tick_seconds: float = 1.0  # wall seconds per trace tick (time compression)
    trace_start: int = 0  # first tick replayed
    trace_zones: tuple[str, ...] = ()  # subset of the trace's zones; empty: all
    preemption_rate_per_hour: float = 0.0  # seeded random preemptions when no trace
    seed: int = 0
    notice_seconds: float = 2.0  # interruption notice before the kill
    ondemand_price: float | None = None  # overrides the trace's on-demand price


@dataclass(frozen=True)
class ServiceSpec:
    name: str | None
    resources: Resources = field(default_factory=Resources)
    service: ServiceSection = field(default_factory=ServiceSection)
    envs: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    # service.auth.api_keys_env values as the submitting command line had them, sealed
    # with the secrets (skyctl.secrets): a restarted controller needs no such variable
    api_keys: dict[str, str] = field(default_factory=dict)
    workdir: str | None = None
    setup: str | None = None
    run: str | None = None
    local: LocalOptions | None = None
    num_nodes: int = 1  # nodes per replica (SkyServe); rank 0, the head, serves
    yaml_text: str = ""
    source: str | None = None  # the file it came from (for relative paths)
    extra: dict[str, Any] = field(default_factory=dict)  # accepted SkyServe keys we do not act on

    @property
    def use_spot(self) -> bool:
        return self.resources.use_spot

    @property
    def serving_port(self) -> int | None:
        """The port replicas serve on: ``service.ports``, else the one port of
        ``resources.ports`` (as SkyServe); None when the spec fixes none (``$PORT``)."""
        if self.service.ports:
            return self.service.ports
        ports = {p for c in self.resources.candidates for p in c.ports}
        return next(iter(ports)) if len(ports) == 1 else None

    @property
    def clouds(self) -> frozenset[str]:
        return frozenset(c.cloud or "local" for c in self.resources.candidates)
