"""Specs the parser rejects: what SkyServe rejects, plus our own rules. Every
error is one line ``file:LINE: key.path: message`` pointing at the culprit."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from skyctl.errors import SpecError
from skyctl.spec_yaml import load_spec_file, parse_spec


def rejection(text: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        parse_spec(textwrap.dedent(text).lstrip("\n"), source="svc.yaml")
    return info.value


# (id, yaml, line, key path, message fragment)
REJECTED = [
    # -- SkyServe's rules -----------------------------------------------------
    (
        "replicas together with replica_policy",
        """
        service:
          replicas: 2
          replica_policy:
            min_replicas: 1
        run: serve
        """,
        3,
        "service.replica_policy",
        "give `replicas` or `replica_policy`, not both",
    ),
    (
        "max_replicas below min_replicas",
        """
        service:
          replica_policy:
            min_replicas: 3
            max_replicas: 2
            target_qps_per_replica: 1
        run: serve
        """,
        4,
        "service.replica_policy.max_replicas",
        "must be >= min_replicas (3)",
    ),
    (
        "target_qps_per_replica without max_replicas",
        """
        service:
          replica_policy:
            min_replicas: 1
            target_qps_per_replica: 5
        run: serve
        """,
        4,
        "service.replica_policy.target_qps_per_replica",
        "needs max_replicas",
    ),
    (
        "min != max without target_qps_per_replica",
        """
        service:
          replica_policy:
            min_replicas: 1
            max_replicas: 3
        run: serve
        """,
        4,
        "service.replica_policy.max_replicas",
        "needs target_qps_per_replica",
    ),
    (
        "replica_policy without min_replicas",
        """
        service:
          replica_policy:
            max_replicas: 3
        run: serve
        """,
        2,
        "service.replica_policy",
        "missing required key 'min_replicas'",
    ),
    (
        "per-accelerator QPS map without instance_aware_least_load",
        """
        service:
          replica_policy:
            min_replicas: 1
            max_replicas: 3
            target_qps_per_replica: {A100: 5, L4: 1}
        run: serve
        """,
        5,
        "service.replica_policy.target_qps_per_replica",
        "needs `load_balancing_policy: instance_aware_least_load`",
    ),
    (
        "instance_aware_least_load without a per-accelerator map",
        """
        service:
          replicas: 2
          load_balancing_policy: instance_aware_least_load
        run: serve
        """,
        3,
        "service.load_balancing_policy",
        "per-accelerator map",
    ),
    (
        "a QPS map key that is not an accelerator",
        """
        service:
          replica_policy:
            min_replicas: 1
            max_replicas: 3
            target_qps_per_replica:
              a100: 5
          load_balancing_policy: instance_aware_least_load
        run: serve
        """,
        6,
        "service.replica_policy.target_qps_per_replica.a100",
        "expected an accelerator such as A100",
    ),
    (
        "dynamic_ondemand_fallback without use_spot",
        """
        service:
          replica_policy:
            min_replicas: 1
            dynamic_ondemand_fallback: true
        run: serve
        """,
        4,
        "service.replica_policy.dynamic_ondemand_fallback",
        "needs `resources.use_spot: true`",
    ),
    (
        "base_ondemand_fallback_replicas without use_spot",
        """
        resources:
          use_spot: false
        service:
          replica_policy:
            min_replicas: 2
            base_ondemand_fallback_replicas: 1
        run: serve
        """,
        6,
        "service.replica_policy.base_ondemand_fallback_replicas",
        "needs `resources.use_spot: true`",
    ),
    (
        "spot_placer without use_spot",
        """
        service:
          replica_policy:
            min_replicas: 1
            spot_placer: dynamic_fallback
        run: serve
        """,
        4,
        "service.replica_policy.spot_placer",
        "needs `resources.use_spot: true`",
    ),
    (
        "unknown spot_placer",
        """
        resources: {use_spot: true}
        service:
          replica_policy:
            min_replicas: 1
            spot_placer: fastest
        run: serve
        """,
        5,
        "service.replica_policy.spot_placer",
        "unknown spot placer",
    ),
    (
        "mixing spot and on-demand candidates",
        """
        resources:
          any_of:
            - cloud: aws
              use_spot: true
            - cloud: gcp
              use_spot: false
        service: {}
        run: serve
        """,
        6,
        "resources.any_of[1].use_spot",
        "resources must all use spot or none use spot (as in SkyServe)",
    ),
    (
        "mixing spot (inherited) and on-demand candidates",
        """
        resources:
          use_spot: true
          ordered:
            - cloud: aws
            - cloud: gcp
              use_spot: false
        service: {}
        run: serve
        """,
        6,
        "resources.ordered[1].use_spot",
        "must all use spot or none use spot",
    ),
    (
        "unknown load_balancing_policy",
        """
        service:
          load_balancing_policy: least_loaded
        run: serve
        """,
        2,
        "service.load_balancing_policy",
        "unknown policy 'least_loaded'",
    ),
    (
        "num_nodes above the cap",
        """
        num_nodes: 100
        service: {}
        run: serve
        """,
        1,
        "num_nodes",
        "must be at most 64 nodes per replica, got 100",
    ),
    (
        "readiness path without a leading slash",
        """
        service:
          readiness_probe: health
        run: serve
        """,
        2,
        "service.readiness_probe",
        "must start with '/'",
    ),
    (
        "readiness probe object without a path",
        """
        service:
          readiness_probe:
            initial_delay_seconds: 10
        run: serve
        """,
        2,
        "service.readiness_probe",
        "missing required key 'path'",
    ),
    (
        "post_data that is not JSON",
        """
        service:
          readiness_probe:
            path: /
            post_data: "{not json"
        run: serve
        """,
        4,
        "service.readiness_probe.post_data",
        "not valid JSON",
    ),
    (
        "service port out of range",
        """
        service:
          ports: 70000
        run: serve
        """,
        2,
        "service.ports",
        "must be <= 65535",
    ),
    (
        "several resource ports and no service port",
        """
        resources:
          ports: [8080, 8081]
        service:
          replicas: 1
        run: serve
        """,
        3,
        "service",
        "set service.ports",
    ),
    (
        "tls without a certfile",
        """
        service:
          tls:
            keyfile: k.pem
        run: serve
        """,
        2,
        "service.tls",
        "missing required key 'certfile'",
    ),
    (
        "both any_of and ordered",
        """
        resources:
          any_of: [{cloud: aws}]
          ordered: [{cloud: gcp}]
        service: {}
        run: serve
        """,
        3,
        "resources.ordered",
        "not both",
    ),
    (
        "any_of not a list (found by the fuzz test: an internal TypeError)",
        """
        resources:
          any_of: true
        service: {}
        run: serve
        """,
        2,
        "resources.any_of",
        "expected a list, got boolean",
    ),
    (
        "an api_keys_env name that is no variable name says what one is",
        """
        service:
          auth:
            api_keys_env: lower-case bad
        run: serve
        """,
        3,
        "service.auth.api_keys_env",
        "expected a variable name (a letter or _, then letters, digits or _), got 'lower-case",
    ),
    (
        "ordered not a list",
        """
        resources:
          ordered: 3
        service: {}
        run: serve
        """,
        2,
        "resources.ordered",
        "expected a list, got integer",
    ),
    (
        "several accelerators with ordered",
        """
        resources:
          accelerators: [A100, L4]
          ordered: [{cloud: aws}]
        service: {}
        run: serve
        """,
        2,
        "resources.accelerators",
        "cannot be combined with `ordered`",
    ),
    (
        "infra together with cloud",
        """
        resources:
          cloud: aws
          infra: gcp/us-central1
        service: {}
        run: serve
        """,
        2,
        "resources.cloud",
        "give `infra` or cloud/region/zone, not both",
    ),
    (
        "unknown cloud",
        """
        resources:
          cloud: aws2
        service: {}
        run: serve
        """,
        2,
        "resources.cloud",
        "unknown cloud 'aws2'; did you mean 'aws'?",
    ),
    (
        "infra with too many parts",
        """
        resources:
          infra: aws/us-east-1/us-east-1a/x
        service: {}
        run: serve
        """,
        2,
        "resources.infra",
        "expected cloud[/region[/zone]]",
    ),
    (
        "bad accelerator count",
        """
        resources:
          accelerators: "A100:many"
        service: {}
        run: serve
        """,
        2,
        "resources.accelerators",
        "invalid accelerator count",
    ),
    (
        "bad cpus",
        """
        resources:
          cpus: lots
        service: {}
        run: serve
        """,
        2,
        "resources.cpus",
        "invalid cpus 'lots'",
    ),
    (
        "bad port range in a list (the item's line)",
        """
        resources:
          ports:
            - 8080
            - 9000-8000
        service: {ports: 8080}
        run: serve
        """,
        4,
        "resources.ports[1]",
        "low <= high",
    ),
    (
        "of several problems the first in the document is reported",
        """
        resources:
          memory: lots
          cpus: many
        service: {}
        run: serve
        """,
        2,
        "resources.memory",
        "invalid memory 'lots'",
    ),
    # -- keys and types ---------------------------------------------------------
    (
        "unknown top-level key with did-you-mean",
        """
        service: {}
        run: serve
        envz: {A: b}
        """,
        3,
        "envz",
        "unknown key; did you mean 'envs'?",
    ),
    (
        "unknown nested key with did-you-mean",
        """
        service:
          readiness_probe:
            path: /
            initial_delay: 10
        run: serve
        """,
        4,
        "service.readiness_probe.initial_delay",
        "did you mean 'initial_delay_seconds'?",
    ),
    (
        "unknown resources key inside any_of",
        """
        resources:
          any_of:
            - cloud: aws
            - cloud: gcp
              regoin: us-central1
        service: {}
        run: serve
        """,
        5,
        "resources.any_of[1].regoin",
        "did you mean 'region'?",
    ),
    (
        "a string where an integer is expected",
        """
        service:
          replicas: two
        run: serve
        """,
        2,
        "service.replicas",
        "expected an integer, got string",
    ),
    (
        "a boolean is not a number",
        """
        service:
          replicas: true
        run: serve
        """,
        2,
        "service.replicas",
        "expected an integer, got boolean",
    ),
    (
        "negative replicas",
        """
        service:
          replicas: -1
        run: serve
        """,
        2,
        "service.replicas",
        "must be >= 0",
    ),
    (
        "negative initial delay",
        """
        service:
          readiness_probe: {path: /, initial_delay_seconds: -5}
        run: serve
        """,
        2,
        "service.readiness_probe.initial_delay_seconds",
        "must be >= 0",
    ),
    (
        "use_spot must be a boolean",
        """
        resources:
          use_spot: "yes please"
        service: {}
        run: serve
        """,
        2,
        "resources.use_spot",
        "expected true or false",
    ),
    (
        "service must be a mapping",
        """
        service: /health
        run: serve
        """,
        1,
        "service",
        "expected a mapping, got string",
    ),
    (
        "an accepted SkyServe key with the wrong type",
        """
        service: {}
        run: serve
        file_mounts: [a, b]
        """,
        3,
        "file_mounts",
        "expected a mapping, got list",
    ),
    (
        "env variable without a value",
        """
        service: {}
        run: serve
        envs:
          HF_TOKEN:
        """,
        4,
        "envs.HF_TOKEN",
        "no value",
    ),
    (
        "invalid env variable name",
        """
        service: {}
        run: serve
        envs:
          1ABC: x
        """,
        4,
        "envs.1ABC",
        "invalid variable name",
    ),
    (
        "invalid service name",
        """
        name: my service!
        service: {}
        run: serve
        """,
        1,
        "name",
        "invalid service name",
    ),
    # -- our own keys -------------------------------------------------------------
    (
        "unknown spot_policy with did-you-mean",
        """
        resources: {use_spot: true}
        service:
          replica_policy:
            min_replicas: 1
            spot_policy: spothedg
        run: serve
        """,
        5,
        "service.replica_policy.spot_policy",
        "did you mean 'spothedge'?",
    ),
    (
        "spot_policy other than ondemand_only without use_spot",
        """
        service:
          replica_policy:
            min_replicas: 1
            spot_policy: spothedge
        run: serve
        """,
        4,
        "service.replica_policy.spot_policy",
        "spothedge needs `resources.use_spot: true`",
    ),
    (
        "fan_out without a fan-out policy",
        """
        service:
          fan_out: 2
        run: serve
        """,
        2,
        "service.fan_out",
        "only used with load_balancing_policy fan_out or hedge",
    ),
    (
        "fan_out below 1",
        """
        service:
          load_balancing_policy: hedge
          fan_out: 0
        run: serve
        """,
        3,
        "service.fan_out",
        "must be >= 1",
    ),
    (
        "router hedge_budget above 1",
        """
        service:
          router:
            hedge_budget: 1.5
        run: serve
        """,
        3,
        "service.router.hedge_budget",
        "must be <= 1",
    ),
    (
        "unknown fan-out method",
        """
        service:
          router:
            fan_out_methods:
              - GET
              - FETCH
        run: serve
        """,
        5,
        "service.router.fan_out_methods[1]",
        "unknown HTTP method 'FETCH'",
    ),
    (
        "metrics path that is not a path",
        """
        service:
          router:
            metrics_path: metrics
        run: serve
        """,
        3,
        "service.router.metrics_path",
        "expected a path such as /metrics",
    ),
    (
        "metrics path under the router's own prefix",
        """
        service:
          router:
            metrics_path: /-/skyctl/x
        run: serve
        """,
        3,
        "service.router.metrics_path",
        "not under /-/skyctl/",
    ),
    (
        "unknown trace with did-you-mean",
        """
        local:
          trace: aws-v100-2023-20
        service: {}
        run: serve
        """,
        2,
        "local.trace",
        "did you mean 'aws-v100-2023-02'?",
    ),
    (
        "zones together with a trace",
        """
        local:
          trace: aws-v100-2023-02
          zones: []
        service: {}
        run: serve
        """,
        3,
        "local.zones",
        "give `zones` or `trace`, not both",
    ),
    (
        "trace options without a trace",
        """
        local:
          trace_tick_seconds: 1
        service: {}
        run: serve
        """,
        2,
        "local.trace_tick_seconds",
        "only used with `trace`",
    ),
    (
        "local zone without a price",
        """
        local:
          zones:
            - region: r1
              zone: r1-a
        service: {}
        run: serve
        """,
        3,
        "local.zones[0]",
        "missing required key 'spot_price'",
    ),
    (
        "negative trace tick",
        """
        local:
          trace: aws-v100-2023-02
          trace_tick_seconds: -1
        service: {}
        run: serve
        """,
        3,
        "local.trace_tick_seconds",
        "must be > 0",
    ),
    (
        "a container image on a VM cloud",
        """
        resources:
          infra: aws
          image_id: docker:vllm/vllm-openai
        service: {readiness_probe: /}
        run: serve
        """,
        3,
        "resources.image_id",
        "a container image: skyctl runs those on kubernetes only; on aws give an AMI id",
    ),
    (
        "a container image in an any_of entry on a VM cloud",
        """
        resources:
          any_of:
            - infra: gcp
              image_id: docker:x
            - infra: k8s
              image_id: docker:x
        service: {readiness_probe: /}
        run: serve
        """,
        4,
        "resources.any_of[0].image_id",
        "on gcp give an image such as projects/",
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "key", "fragment"),
    [c[1:] for c in REJECTED],
    ids=[c[0] for c in REJECTED],
)
def test_rejected_with_file_line_key_and_reason(
    text: str, line: int, key: str, fragment: str
) -> None:
    error = rejection(text)
    assert str(error).startswith(f"svc.yaml:{line}: {key}: "), str(error)
    assert fragment in error.message
    assert (error.line, error.key, error.source) == (line, key, "svc.yaml")
    assert len(str(error).splitlines()) == 1


# -- the document itself ------------------------------------------------------------

DOCUMENT_ERRORS = [
    ("empty file", "", 1, "empty spec"),
    ("only a comment", "# nothing here\n", 1, "empty spec"),
    ("a list at the root", "- service\n- run\n", 1, "expected a mapping, got list"),
    ("a string at the root", "hello\n", 1, "expected a mapping, got string"),
    ("YAML syntax error", "service:\n  replicas: [1, 2\nrun: x\n", 3, "invalid YAML"),
    ("bad indentation", "service:\n  replicas: 1\n run: x\n", 3, "invalid YAML"),
    ("duplicate key", "service: {}\nrun: a\nrun: b\n", 3, "duplicate key 'run' (first on line 2)"),
    ("two documents", "service: {}\n---\nrun: x\n", 2, "expected a single document"),
    ("unsafe tag", "service: !!python/object:os.system {}\nrun: x\n", 1, "invalid YAML"),
    ("a control character", "service: {}\nrun: a\x07b\n", 2, "invalid YAML"),
    ("missing service", "name: x\nrun: serve\n", 1, "missing required key 'service'"),
    ("empty run", "service: {}\nrun: '  '\n", 2, "must not be empty"),
    ("a non-string key", "service: {}\nrun: x\n3: y\n", 3, "keys must be strings"),
    (
        "a pool instead of a service",
        "pool: {workers: 2}\nservice: {}\nrun: x\n",
        1,
        "not a service",
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [c[1:] for c in DOCUMENT_ERRORS],
    ids=[c[0] for c in DOCUMENT_ERRORS],
)
def test_document_problems_are_one_line_errors_with_a_line(
    text: str, line: int, fragment: str
) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(text, source="svc.yaml")
    assert str(info.value).startswith(f"svc.yaml:{line}: "), str(info.value)
    assert fragment in str(info.value)
    assert len(str(info.value).splitlines()) == 1


def test_error_without_a_source_names_the_spec() -> None:
    with pytest.raises(SpecError, match=r"^<spec>:1: "):
        parse_spec("")


@pytest.mark.parametrize(
    "key",
    ['"a\\nb"', '"a\\u2028b"', '"a\\rb"'],
    ids=["newline", "line separator", "carriage return"],
)
def test_line_breaks_in_user_text_never_split_the_error(key: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(f"service: {{}}\nrun: x\n{key}: 1\n", source="svc.yaml")
    assert len(str(info.value).splitlines()) == 1


@pytest.mark.parametrize(
    "text",
    [
        # alias bomb: 10**9 values if expanded
        "service: {}\nrun: x\nfile_mounts:\n  a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 9)),
        # a structure containing itself
        "service: {}\nrun: x\nfile_mounts: &a {x: *a}\n",
        # deep nesting
        "service: {}\nrun: x\nfile_mounts: " + "[" * 1000 + "]" * 1000 + "\n",
        # a number too large for a float
        "service:\n  readiness_probe: {path: /, timeout_seconds: " + "9" * 400 + "}\nrun: x\n",
        "service:\n  readiness_probe: {path: /, timeout_seconds: .inf}\nrun: x\n",
    ],
    ids=["alias bomb", "recursive", "deep nesting", "huge integer", "infinity"],
)
def test_hostile_yaml_gives_a_spec_error(text: str) -> None:
    with pytest.raises(SpecError):
        parse_spec(text, source="svc.yaml")


def test_unreadable_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read"):
        load_spec_file(tmp_path / "missing.yaml")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(SpecError, match="not UTF-8"):
        load_spec_file(binary)
