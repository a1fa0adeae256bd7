"""The service spec parser: SkyServe YAML accepted unchanged, bad specs rejected
with one-line errors that name the file, line and key path."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from skyctl.errors import SpecError
from skyctl.spec import ResourceCandidate, ServiceSpec
from skyctl.spec_yaml import SPOT_POLICIES, load_spec_file, parse_spec


def parse(text: str) -> ServiceSpec:
    return parse_spec(textwrap.dedent(text).lstrip("\n"), source="svc.yaml")


def rejection(text: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        parse(text)
    return info.value


def get(spec: ServiceSpec, dotted: str) -> Any:
    value: Any = spec
    for part in dotted.split("."):
        value = value[int(part)] if part.isdigit() else getattr(value, part)
    return value


# -- accepted: (id, yaml, {attribute path: expected value}) ----------------------

ACCEPTED = [
    (
        "defaults",
        """
        service: {}
        run: python3 -m http.server $PORT
        """,
        {
            "name": None,
            "service.readiness_probe.path": "/",
            "service.readiness_probe.initial_delay_seconds": 1200.0,
            "service.readiness_probe.timeout_seconds": 15.0,
            "service.readiness_probe.period_seconds": 10.0,
            "service.readiness_probe.failure_threshold": 3,
            "service.replica_policy.min_replicas": 1,
            "service.replica_policy.max_replicas": None,
            "service.replica_policy.upscale_delay_seconds": 300.0,
            "service.replica_policy.downscale_delay_seconds": 1200.0,
            "service.load_balancing_policy": "least_load",
            "service.stream_timeout_seconds": 120.0,
            "service.drain_timeout_seconds": 600.0,
            "service.router.fan_out": 2,
            "resources.candidates": (ResourceCandidate(),),
            "resources.use_spot": False,
            "clouds": frozenset({"local"}),
            "local": None,
        },
    ),
    (
        "readiness probe as a string, fixed replicas",
        """
        name: my-svc
        service:
          readiness_probe: /health
          replicas: 3
        run: serve
        """,
        {
            "name": "my-svc",
            "service.readiness_probe.path": "/health",
            "service.replica_policy.min_replicas": 3,
            "service.replica_policy.fixed": True,
        },
    ),
    (
        "readiness probe object with post_data as a mapping and headers",
        """
        service:
          readiness_probe:
            path: /v1/completions
            initial_delay_seconds: 30
            timeout_seconds: 5
            post_data: {model: m, max_tokens: 1}
            headers: {Authorization: Bearer x}
            period_seconds: 2.5
            failure_threshold: 5
        run: serve
        """,
        {
            "service.readiness_probe.path": "/v1/completions",
            "service.readiness_probe.initial_delay_seconds": 30.0,
            "service.readiness_probe.timeout_seconds": 5.0,
            "service.readiness_probe.post_data": '{"model": "m", "max_tokens": 1}',
            "service.readiness_probe.headers": {"Authorization": "Bearer x"},
            "service.readiness_probe.period_seconds": 2.5,
            "service.readiness_probe.failure_threshold": 5,
        },
    ),
    (
        "post_data as JSON text",
        """
        service:
          readiness_probe:
            path: /
            post_data: '{"prompt": "hi"}'
        run: serve
        """,
        {"service.readiness_probe.post_data": '{"prompt": "hi"}'},
    ),
    (
        "autoscaling replica policy with spot fallback (SpotHedge)",
        """
        resources:
          use_spot: true
        service:
          replica_policy:
            min_replicas: 1
            max_replicas: 5
            target_qps_per_replica: 2.5
            upscale_delay_seconds: 10
            downscale_delay_seconds: 60
            num_overprovision: 1
            base_ondemand_fallback_replicas: 1
            dynamic_ondemand_fallback: true
            spot_placer: dynamic_fallback
        run: serve
        """,
        {
            "service.replica_policy.max_replicas": 5,
            "service.replica_policy.target_qps_per_replica": 2.5,
            "service.replica_policy.upscale_delay_seconds": 10.0,
            "service.replica_policy.downscale_delay_seconds": 60.0,
            "service.replica_policy.num_overprovision": 1,
            "service.replica_policy.base_ondemand_fallback_replicas": 1,
            "service.replica_policy.dynamic_ondemand_fallback": True,
            "service.replica_policy.spot_placer": "dynamic_fallback",
            "service.replica_policy.fixed": False,
            "resources.use_spot": True,
        },
    ),
    (
        "per-accelerator QPS map with instance_aware_least_load",
        """
        resources:
          accelerators: {A100: 1, L4: 1}
        service:
          replica_policy:
            min_replicas: 1
            max_replicas: 4
            target_qps_per_replica: {A100: 5, "L4:1": 1}
          load_balancing_policy: instance_aware_least_load
        run: serve
        """,
        {
            "service.replica_policy.target_qps_per_replica": {"A100": 5.0, "L4:1": 1.0},
            "service.load_balancing_policy": "instance_aware_least_load",
        },
    ),
    (
        "infra with cloud, region and zone",
        """
        resources:
          infra: aws/us-east-1/us-east-1a
        service: {}
        run: serve
        """,
        {"resources.candidates.0.cloud": "aws", "resources.candidates.0.zone": "us-east-1a"},
    ),
    (
        "infra wildcards",
        """
        resources:
          infra: "*/us-west-2"
        service: {}
        run: serve
        """,
        {"resources.candidates.0.cloud": None, "resources.candidates.0.region": "us-west-2"},
    ),
    (
        "infra naming a Kubernetes context (which may contain slashes)",
        """
        resources:
          infra: k8s/arn:aws:eks:us-east-1:1234:cluster/my-cluster
        service: {}
        run: serve
        """,
        {
            "resources.candidates.0.cloud": "kubernetes",
            "resources.candidates.0.region": "arn:aws:eks:us-east-1:1234:cluster/my-cluster",
        },
    ),
    (
        "cloud, region and zone keys; cloud names are case-insensitive",
        """
        resources:
          cloud: GCP
          region: us-central1
          zone: us-central1-a
          instance_type: n2-standard-8
          cpus: 8+
          memory: 32+
          disk_size: 1TB
          image_id: projects/deeplearning-platform-release/global/images/x
          ports: [8080, "9000-9002"]
          labels: {team: ml}
        service:
          ports: 8080
        run: serve
        """,
        {
            "resources.candidates.0": ResourceCandidate(
                cloud="gcp",
                region="us-central1",
                zone="us-central1-a",
                instance_type="n2-standard-8",
                cpus="8+",
                memory="32+",
                disk_size=1024,
                image_id="projects/deeplearning-platform-release/global/images/x",
                ports=(8080, 9000, 9001, 9002),
                labels={"team": "ml"},
            ),
            "service.ports": 8080,
        },
    ),
    (
        "numeric cpus and memory become strings",
        """
        resources: {cpus: 4, memory: 16.5}
        service: {}
        run: serve
        """,
        {"resources.candidates.0.cpus": "4", "resources.candidates.0.memory": "16.5"},
    ),
    (
        "accelerators as 'A100:8'",
        """
        resources: {accelerators: "A100:8"}
        service: {}
        run: serve
        """,
        {"resources.candidates.0.accelerators": {"A100": 8}, "resources.ordered": False},
    ),
    (
        "accelerators as a list: ordered alternatives",
        """
        resources:
          accelerators: [H100, "A100:2"]
        service: {}
        run: serve
        """,
        {
            "resources.candidates.0.accelerators": {"H100": 1},
            "resources.candidates.1.accelerators": {"A100": 2},
            "resources.ordered": True,
        },
    ),
    (
        "accelerators as a map: unordered alternatives",
        """
        resources:
          accelerators: {L4: 1, A10G: 2, "V100:4": null}
        service: {}
        run: serve
        """,
        {
            "resources.candidates.0.accelerators": {"L4": 1},
            "resources.candidates.1.accelerators": {"A10G": 2},
            "resources.candidates.2.accelerators": {"V100": 4},
            "resources.ordered": False,
        },
    ),
    (
        "any_of entries inherit and override the base resources",
        """
        resources:
          use_spot: true
          cpus: 4+
          any_of:
            - infra: aws/us-east-1
            - cloud: gcp
              cpus: 8
        service: {}
        run: serve
        """,
        {
            "resources.candidates.0": ResourceCandidate(
                cloud="aws", region="us-east-1", cpus="4+", use_spot=True
            ),
            "resources.candidates.1": ResourceCandidate(cloud="gcp", cpus="8", use_spot=True),
            "resources.ordered": False,
            "clouds": frozenset({"aws", "gcp"}),
        },
    ),
    (
        "any_of entries override the base location key by key",
        """
        resources:
          infra: aws/us-east-1
          any_of:
            - zone: us-east-1b
            - infra: gcp
            - accelerators: A100:2
            - accelerators: A100:2
        service: {}
        run: serve
        """,
        {
            "resources.candidates.0": ResourceCandidate(
                cloud="aws", region="us-east-1", zone="us-east-1b"
            ),
            "resources.candidates.1": ResourceCandidate(cloud="gcp"),
            "resources.candidates.2.accelerators": {"A100": 2},
            "resources.candidates.2.region": "us-east-1",
        },
    ),
    (
        "duplicate accelerators collapse into one alternative",
        """
        resources:
          accelerators: [L4, "L4:1", A100]
        service: {}
        run: serve
        """,
        {
            "resources.candidates": (
                ResourceCandidate(accelerators={"L4": 1}),
                ResourceCandidate(accelerators={"A100": 1}),
            )
        },
    ),
    (
        "ordered preferences",
        """
        resources:
          ordered:
            - {cloud: local, zone: us-east-a}
            - {cloud: local, zone: us-west-a}
        service: {}
        run: serve
        """,
        {"resources.ordered": True, "resources.candidates.1.zone": "us-west-a"},
    ),
    (
        "top-level keys: envs (numbers become text), secrets, workdir, setup, num_nodes",
        """
        name: svc
        envs:
          MODEL: llama
          BATCH: 8
        secrets:
          HF_TOKEN: hf_abc
        workdir: ./app
        num_nodes: 1
        setup: pip install -r requirements.txt
        run: python server.py
        service: {}
        """,
        {
            "envs": {"MODEL": "llama", "BATCH": "8"},
            "secrets": {"HF_TOKEN": "hf_abc"},
            "workdir": "./app",
            "setup": "pip install -r requirements.txt",
            "run": "python server.py",
        },
    ),
    (
        "accepted SkyServe keys we do not act on are kept in extra",
        """
        file_mounts:
          /data: s3://bucket
        resources:
          disk_tier: best
        service:
          tls: {keyfile: k.pem, certfile: c.pem}
          load_balancer: {stream_timeout_seconds: 30, drain_timeout_seconds: 900}
        workdir: {url: "https://github.com/org/repo", ref: main}
        run: serve
        """,
        {
            "extra": {
                "file_mounts": {"/data": "s3://bucket"},
                "resources.disk_tier": "best",
                "workdir": {"url": "https://github.com/org/repo", "ref": "main"},
            },
            "service.tls.certfile": "c.pem",
            "service.stream_timeout_seconds": 30.0,
            "service.drain_timeout_seconds": 900.0,
            "workdir": None,
        },
    ),
    (
        "our router keys and fan_out",
        """
        service:
          load_balancing_policy: fan_out
          fan_out: 3
          router:
            host: 0.0.0.0
            port: 8000
            retries: 1
            max_buffer_bytes: 65536
            request_timeout_seconds: 30
            connect_timeout_seconds: 1.5
            hedge_delay_seconds: 0.05
            hedge_budget: 0.2
            fan_out_methods: [get, POST]
        run: serve
        """,
        {
            "service.load_balancing_policy": "fan_out",
            "service.router.fan_out": 3,
            "service.router.host": "0.0.0.0",
            "service.router.port": 8000,
            "service.router.retries": 1,
            "service.router.max_buffer_bytes": 65536,
            "service.router.request_timeout_seconds": 30.0,
            "service.router.connect_timeout_seconds": 1.5,
            "service.router.hedge_delay_seconds": 0.05,
            "service.router.hedge_budget": 0.2,
            "service.router.fan_out_methods": ("GET", "POST"),
        },
    ),
    (
        "the router's metrics path, moved or handed to the replicas",
        """
        service:
          router: {metrics_path: /router/metrics}
        run: serve
        """,
        {"service.router.metrics_path": "/router/metrics"},
    ),
    (
        "metrics_path null passes /metrics on to the model server",
        """
        service:
          router: {metrics_path: null}
        run: serve
        """,
        {"service.router.metrics_path": None},
    ),
    (
        "our spot_policy with use_spot",
        """
        resources: {use_spot: true}
        service:
          replica_policy: {min_replicas: 2, spot_policy: cheapest_spot}
        run: serve
        """,
        {"service.replica_policy.spot_policy": "cheapest_spot"},
    ),
    (
        "spot_policy ondemand_only needs no spot resources",
        """
        service:
          replica_policy: {min_replicas: 2, spot_policy: ondemand_only}
        run: serve
        """,
        {"service.replica_policy.spot_policy": "ondemand_only"},
    ),
    (
        "local provider with zones and random preemptions",
        """
        resources: {cloud: local, use_spot: true}
        local:
          zones:
            - {region: r1, zone: r1-a, spot_price: 0.3, ondemand_price: 1.0}
            - {region: r1, zone: r1-b, spot_price: 0.4}
          ondemand_price: 1.2
          preemption_rate_per_hour: 6
          seed: 7
          notice_seconds: 0
        service: {}
        run: serve
        """,
        {
            "local.zones.0.ondemand_price": 1.0,
            "local.zones.1.ondemand_price": 1.2,
            "local.zones.1.spot_price": 0.4,
            "local.preemption_rate_per_hour": 6.0,
            "local.seed": 7,
            "local.notice_seconds": 0.0,
            "local.trace": None,
        },
    ),
    (
        "local provider replaying a bundled trace",
        """
        resources: {use_spot: true}
        local:
          trace: aws-v100-2023-02
          trace_tick_seconds: 0.5
          trace_start: 100
          trace_zones: [us-east-1a, us-west-2b]
        service: {}
        run: serve
        """,
        {
            "local.trace": "aws-v100-2023-02",
            "local.trace_tick_seconds": 0.5,
            "local.trace_start": 100,
            "local.trace_zones": ("us-east-1a", "us-west-2b"),
        },
    ),
    (
        "YAML anchors and merge keys",
        """
        resources:
          any_of:
            - &aws {cloud: aws, cpus: 4}
            - {<<: *aws, cloud: gcp}
        service: {}
        run: serve
        """,
        {"resources.candidates.1": ResourceCandidate(cloud="gcp", cpus="4")},
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"), [c[1:] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED]
)
def test_skyserve_style_specs_parse_to_these_values(text: str, expected: dict[str, Any]) -> None:
    spec = parse(text)
    for path, value in expected.items():
        assert get(spec, path) == value, path


def test_parsed_spec_keeps_its_text_and_source() -> None:
    text = "service: {}\nrun: serve\n"
    spec = parse_spec(text, source="a/b.yaml")
    assert (spec.yaml_text, spec.source) == (text, "a/b.yaml")


def test_load_spec_file_sets_source_and_text(tmp_path: Any) -> None:
    path = tmp_path / "svc.yaml"
    path.write_text("service: {replicas: 2}\nrun: serve\n")
    spec = load_spec_file(path)
    assert spec.source == str(path)
    assert spec.yaml_text == path.read_text()
    assert spec.service.replica_policy.min_replicas == 2


def test_trace_path_is_relative_to_the_spec_file(tmp_path: Any) -> None:
    (tmp_path / "traces" / "mine").mkdir(parents=True)
    path = tmp_path / "svc.yaml"
    path.write_text("local: {trace: traces/mine}\nservice: {}\nrun: serve\n")
    assert load_spec_file(path).local.trace == "traces/mine"  # type: ignore[union-attr]


def test_spot_policies_are_the_agreed_names() -> None:
    assert SPOT_POLICIES == (
        "spothedge",
        "ondemand_only",
        "cheapest_spot",
        "round_robin_spot",
        "skyhedge",
    )


def test_relative_certificate_paths_are_relative_to_the_spec_file(tmp_path: Path) -> None:
    from skyctl.spec_yaml import parse_spec

    text = (
        "service:\n  replicas: 1\n  tls:\n    keyfile: certs/key.pem\n"
        "    certfile: /abs/cert.pem\nrun: serve\n"
    )
    spec = parse_spec(text, str(tmp_path / "svc.yaml"))
    assert spec.service.tls is not None
    assert spec.service.tls.keyfile == str(tmp_path / "certs" / "key.pem")
    assert spec.service.tls.certfile == "/abs/cert.pem"
