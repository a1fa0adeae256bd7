"""Hostile input to the spec loader and to `serve up`/`update`/`validate`, table-driven.

What a fuzzer or an adversary tries: a wrong type at every key of SkyServe's
service schema (sky/utils/schemas.py, get_service_schema), counts and timeouts
that are negative, zero, huge or not numbers, min_replicas > max_replicas,
probe paths a request line cannot carry, ports out of range, invalid variable
names, unicode and over-long service names, and the command line's flags. Each
is refused in one line naming the key (or flag) and what is allowed, or taken
as SkyServe takes it; never a traceback, never nonsense accepted silently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from skyctl.errors import SpecError
from skyctl.spec_env import MAX_ENV_BYTES
from skyctl.spec_probe import MAX_PROBE_PATH
from skyctl.spec_yaml import load_spec_file, parse_spec
from tests.helpers.cli import run_in_process

# A spec using every key of SkyServe's service schema (pool and workers aside).
BASE: dict[str, Any] = {
    "service": {
        "readiness_probe": {
            "path": "/health",
            "initial_delay_seconds": 30,
            "timeout_seconds": 5,
            "post_data": {"model": "m"},
            "headers": {"X-Probe": "1"},
        },
        "replica_policy": {
            "min_replicas": 1,
            "max_replicas": 3,
            "target_qps_per_replica": 2.5,
            "num_overprovision": 1,
            "base_ondemand_fallback_replicas": 1,
            "dynamic_ondemand_fallback": True,
            "spot_placer": "dynamic_fallback",
            "upscale_delay_seconds": 10,
            "downscale_delay_seconds": 20,
        },
        "ports": 8080,
        "load_balancing_policy": "least_load",
        "tls": {"keyfile": "key.pem", "certfile": "cert.pem"},
    },
    "resources": {"use_spot": True, "ports": 8080},
    "run": "python -m http.server 8080",
}

# the schema's type of each key (service.replicas goes with no replica_policy: below)
SCHEMA: dict[str, str] = {
    "service.readiness_probe": "probe",
    "service.readiness_probe.path": "string",
    "service.readiness_probe.initial_delay_seconds": "number",
    "service.readiness_probe.timeout_seconds": "number",
    "service.readiness_probe.post_data": "string_or_object",
    "service.readiness_probe.headers": "object",
    "service.readiness_probe.headers.X-Probe": "string",
    "service.replica_policy": "object",
    "service.replica_policy.min_replicas": "integer",
    "service.replica_policy.max_replicas": "integer",
    "service.replica_policy.target_qps_per_replica": "number",
    "service.replica_policy.num_overprovision": "integer",
    "service.replica_policy.base_ondemand_fallback_replicas": "integer",
    "service.replica_policy.dynamic_ondemand_fallback": "boolean",
    "service.replica_policy.spot_placer": "string",
    "service.replica_policy.upscale_delay_seconds": "number",
    "service.replica_policy.downscale_delay_seconds": "number",
    "service.ports": "integer",
    "service.load_balancing_policy": "string",
    "service.tls": "object",
    "service.tls.keyfile": "string",
    "service.tls.certfile": "string",
}
WRONG: dict[str, list[Any]] = {
    "integer": [True, "2", 1.5, [1], {"a": 1}, "ünï"],
    "number": [True, "ten", [1], {"a": 1}, float("nan"), float("inf")],
    "string": [1, True, [1], {"a": 1}],
    "boolean": ["yes", 1, [True], {"a": 1}],
    "object": ["text", 1, [1], True],
    "probe": [1, True, [1]],
    "string_or_object": [1, True, [1]],
}


def with_value(path: str, value: Any, base: dict[str, Any] | None = None) -> str:
    spec: Any = yaml.safe_load(yaml.safe_dump(base or BASE))
    *parents, last = path.split(".")
    node = spec
    for part in parents:
        node = node[part]
    node[last] = value
    return yaml.safe_dump(spec, allow_unicode=True, sort_keys=False)


def refusal(text: str) -> str:
    with pytest.raises(SpecError) as e:
        parse_spec(text, "svc.yaml")
    message = str(e.value)
    assert message.startswith("svc.yaml:") and "\n" not in message and "Traceback" not in message
    return message


WRONG_TYPES = [(path, value) for path, kind in SCHEMA.items() for value in WRONG[kind]]


@pytest.mark.parametrize(("path", "value"), WRONG_TYPES, ids=[f"{p}={v!r}" for p, v in WRONG_TYPES])
def test_a_wrong_type_at_any_key_of_the_schema_is_one_line_naming_it(path: str, value: Any) -> None:
    assert parse_spec(with_value(path, BASE_VALUE[path]), "svc.yaml")  # the base is valid
    message = refusal(with_value(path, value))
    assert f": {path}" in message or f": {path.rsplit('.', 1)[0]}" in message, message


def _base_values() -> dict[str, Any]:
    out = {}
    for path in SCHEMA:
        node: Any = BASE
        for part in path.split("."):
            node = node[part]
        out[path] = node
    return out


BASE_VALUE = _base_values()

# (spec text, the key path in the error, what the error also says)
SVC = "service:\n  readiness_probe: {probe}\n  replicas: 1\nrun: echo\n"
RP = "service:\n  readiness_probe: /\n  replica_policy: {rp}\nrun: echo\n"
REFUSED: list[tuple[str, str, str]] = [
    # counts
    (SVC.format(probe="/").replace("replicas: 1", "replicas: -1"), "service.replicas", ">= 0"),
    (SVC.format(probe="/").replace("replicas: 1", "replicas: 10001"), "service.replicas", "10000"),
    (
        SVC.format(probe="/").replace("replicas: 1", "replicas: 1e400"),
        "service.replicas",
        "integer",
    ),
    (
        RP.format(rp="{min_replicas: 3, max_replicas: 1, target_qps_per_replica: 1}"),
        "service.replica_policy.max_replicas",
        "must be >= min_replicas (3), got 1",
    ),
    (
        RP.format(
            rp="{min_replicas: 1, max_replicas: 99999999999999999999, target_qps_per_replica: 1}"
        ),
        "service.replica_policy.max_replicas",
        "10000",
    ),
    (
        RP.format(rp="{min_replicas: 1, max_replicas: 2, target_qps_per_replica: 0}"),
        "service.replica_policy.target_qps_per_replica",
        "must be > 0",
    ),
    (
        RP.format(rp="{min_replicas: 1, num_overprovision: -1}"),
        "service.replica_policy.num_overprovision",
        ">= 0",
    ),
    # timeouts and delays
    (
        SVC.format(probe="{path: /, timeout_seconds: 0}"),
        "service.readiness_probe.timeout_seconds",
        "must be > 0",
    ),
    (
        SVC.format(probe="{path: /, timeout_seconds: -1}"),
        "service.readiness_probe.timeout_seconds",
        "must be > 0",
    ),
    (
        SVC.format(probe="{path: /, timeout_seconds: 1.0e+12}"),
        "service.readiness_probe.timeout_seconds",
        "at most 1e+09",
    ),
    (
        SVC.format(probe="{path: /, initial_delay_seconds: -5}"),
        "service.readiness_probe.initial_delay_seconds",
        ">= 0",
    ),
    (
        SVC.format(probe="{path: /, initial_delay_seconds: .inf}"),
        "service.readiness_probe.initial_delay_seconds",
        "finite",
    ),
    (
        RP.format(
            rp="{min_replicas: 1, max_replicas: 2, target_qps_per_replica: 1, "
            "upscale_delay_seconds: -1}"
        ),
        "service.replica_policy.upscale_delay_seconds",
        ">= 0",
    ),
    # probe paths a request line cannot carry
    (SVC.format(probe="health"), "service.readiness_probe", "must start with '/'"),
    (SVC.format(probe="''"), "service.readiness_probe", "must start with '/'"),
    (SVC.format(probe="http://elsewhere/x"), "service.readiness_probe", "must start with '/'"),
    (SVC.format(probe="/health check"), "service.readiness_probe", "write a space as %20"),
    (SVC.format(probe='"/a\\tb"'), "service.readiness_probe", "control characters"),
    (SVC.format(probe="{path: '/ready '}"), "service.readiness_probe.path", "spaces"),
    (SVC.format(probe="//evil.example/x"), "service.readiness_probe", "a single '/'"),
    (SVC.format(probe="'/a#b'"), "service.readiness_probe", "a fragment is never sent"),
    (SVC.format(probe="/a%zz"), "service.readiness_probe", "write '%' as %25"),
    (SVC.format(probe="/" + "a" * MAX_PROBE_PATH), "service.readiness_probe", "longer than 4096"),
    (
        SVC.format(probe="{path: /, post_data: '{\"n\": NaN}'}"),
        "service.readiness_probe.post_data",
        "not valid JSON text (NaN is not JSON)",
    ),
    # ports
    (SVC.format(probe="/").replace("replicas: 1", "ports: 0"), "service.ports", ">= 1"),
    (SVC.format(probe="/").replace("replicas: 1", "ports: 65536"), "service.ports", "<= 65535"),
    (
        SVC.format(probe="/") + "resources:\n  ports: [8000, 70000]\n",
        "resources.ports[1]",
        "ports are 1-65535",
    ),
    (
        SVC.format(probe="/") + "resources:\n  ports: '9000-8000'\n",
        "resources.ports",
        "low <= high",
    ),
    (
        SVC.format(probe="/").replace("replicas: 1", "router: {port: -1}"),
        "service.router.port",
        ">= 1",
    ),
    # variable names
    ("envs:\n  1A: x\n" + SVC.format(probe="/"), "envs.1A", "invalid variable name"),
    ("envs:\n  A-B: x\n" + SVC.format(probe="/"), "envs.A-B", "invalid variable name"),
    ("envs:\n  ÉTAT: x\n" + SVC.format(probe="/"), "envs.ÉTAT", "invalid variable name"),
    ("secrets:\n  'A B': x\n" + SVC.format(probe="/"), "secrets.A B", "invalid variable name"),
    ("envs: [A]\n" + SVC.format(probe="/"), "envs", "expected a mapping"),
    # service names
    ("name: sérvice\n" + SVC.format(probe="/"), "name", "invalid service name"),
    ("name: a/b\n" + SVC.format(probe="/"), "name", "invalid service name"),
    ("name: ../etc\n" + SVC.format(probe="/"), "name", "invalid service name"),
    ("name: " + "a" * 64 + "\n" + SVC.format(probe="/"), "name", "at most 63 characters"),
    ("name: 12\n" + SVC.format(probe="/"), "name", "expected a string"),
    # sizes written as text are sizes too
    (SVC.format(probe="/") + "resources:\n  cpus: '0+'\n", "resources.cpus", "must be > 0"),
    (SVC.format(probe="/") + "resources:\n  memory: '0GB'\n", "resources.memory", "must be > 0"),
    (SVC.format(probe="/") + "resources:\n  cpus: '-4'\n", "resources.cpus", "expected e.g."),
    (
        SVC.format(probe="/") + "resources:\n  accelerators: 'A100:-1'\n",
        "resources.accelerators",
        "positive",
    ),
    # what the router binds, what SkyPilot cannot mount, a cost SkyServe's schema refuses
    (
        SVC.format(probe="/").replace("replicas: 1", "router: {host: 'ünï.example'}"),
        "service.router.host",
        "expected an IP address or a host name",
    ),
    (
        SVC.format(probe="/").replace("replicas: 1", "router: {host: '127.0.0.1 evil'}"),
        "service.router.host",
        "host name",
    ),
    ("file_mounts:\n  /data: 5\n" + SVC.format(probe="/"), "file_mounts./data", "got integer"),
    ("file_mounts:\n  /data: [a]\n" + SVC.format(probe="/"), "file_mounts./data", "got list"),
    (
        SVC.format(probe="/") + "resources:\n  max_hourly_cost: 0\n",
        "resources.max_hourly_cost",
        "must be a number > 0",
    ),
    (
        SVC.format(probe="/") + "resources:\n  max_hourly_cost: -2.5\n",
        "resources.max_hourly_cost",
        "must be a number > 0",
    ),
    # SkyServe's pool keys: a pool is no service; workers is replicas, not both
    (
        SVC.format(probe="/").replace("replicas: 1", "pool: true"),
        "service.pool",
        "a pool (of workers for managed jobs) is not a service",
    ),
    (
        SVC.format(probe="/").replace("replicas: 1", "replicas: 1\n  workers: 2"),
        "service.workers",
        "give `replicas` or `workers`, not both",
    ),
    (
        SVC.format(probe="/").replace("replicas: 1", "workers: -2"),
        "service.workers",
        ">= 0",
    ),
    # the local provider's options
    (
        SVC.format(probe="/") + "local:\n  ondemand_price: 0\n",
        "local.ondemand_price",
        "must be > 0",
    ),
    (
        SVC.format(probe="/") + "local:\n  trace: aws-v100-2023-02\n"
        "  trace_zones: [us-east-1a, us-east-1a]\n",
        "local.trace_zones[1]",
        "zone us-east-1a is listed twice",
    ),
    # policies
    (
        SVC.format(probe="/").replace("replicas: 1", "load_balancing_policy: most_load"),
        "service.load_balancing_policy",
        "allowed: round_robin, least_load",
    ),
]


@pytest.mark.parametrize(("text", "key", "says"), REFUSED, ids=[f"{k}:{s}" for _, k, s in REFUSED])
def test_hostile_values_are_refused_in_one_line(text: str, key: str, says: str) -> None:
    message = refusal(text)
    assert f": {key}: " in message and says in message, message


# taken as SkyServe takes them
ACCEPTED: list[tuple[str, Any]] = [
    (
        SVC.format(probe="/").replace("replicas: 1", "load_balancing_policy: LEAST_LOAD"),
        lambda s: s.service.load_balancing_policy == "least_load",
    ),  # a case-insensitive enum
    (
        SVC.format(probe="/héalth?x=1&y=%20"),
        lambda s: s.service.readiness_probe.path == "/héalth?x=1&y=%20",
    ),  # sent %-encoded as UTF-8, as requests does
    (
        SVC.format(probe="/").replace("replicas: 1", "replicas: 0"),
        lambda s: s.service.replica_policy.min_replicas == 0,
    ),  # a paused service
    (
        SVC.format(probe="/").replace("replicas: 1", "workers: 3"),  # as SkyServe
        lambda s: s.service.replica_policy.min_replicas == 3,
    ),
    (
        SVC.format(probe="/").replace("replicas: 1", "router: {host: '::1'}"),
        lambda s: s.service.router.host == "::1",
    ),
    (
        "file_mounts:\n  /data: s3://bucket/x\n  /ckpt: {name: ckpt, store: s3}\n"
        + SVC.format(probe="/"),
        lambda s: s.extra["file_mounts"]["/data"] == "s3://bucket/x",
    ),
    (
        SVC.format(probe="/") + "resources:\n  cpus: '0.5+'\n",
        lambda s: s.resources.candidates[0].cpus == "0.5+",
    ),
]


@pytest.mark.parametrize(("text", "check"), ACCEPTED)
def test_odd_but_meaningful_values_are_taken(text: str, check: Any) -> None:
    assert check(parse_spec(text, "svc.yaml"))


def test_a_spec_path_holding_a_nul_is_a_one_line_error() -> None:
    with pytest.raises(SpecError, match=r"^svc\x00\.yaml: cannot read: a path cannot hold a NUL"):
        load_spec_file("svc\x00.yaml")


# -- the command line ------------------------------------------------------------


def invoke(
    tmp_path: Path,
    args: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[int, str]:
    """``skyctl ARGS`` in this process, with a home of its own: exit status, stderr."""
    code, _, err = run_in_process(tmp_path / "home", args, capsys, monkeypatch)
    return code, err


GOOD = "service:\n  readiness_probe: /\n  replicas: 1\nrun: echo\n"
# (arguments, with {spec}, {garbage}, {big} for files made below; what the line says)
CLI_REFUSED: list[tuple[list[str], str]] = [
    (
        ["serve", "up", "{spec}", "--timeout", "nan"],
        "'--timeout': 'nan' is not a number of seconds",
    ),
    (["serve", "up", "{spec}", "--timeout", "-1"], "'--timeout': -1.0 is not in the range x>=0"),
    (["serve", "update", "svc", "{spec}", "--timeout", "nan"], "'nan' is not a number of seconds"),
    (["serve", "down", "svc", "--timeout", "nan"], "'nan' is not a number of seconds"),
    (["serve", "up", "{spec}", "-n", "sérvice"], "invalid service name 'sérvice'"),
    (["serve", "up", "{spec}", "-n", "a" * 64], "at most 63 characters"),
    (["serve", "update", "a/b", "{spec}"], "Invalid value for NAME: invalid service name 'a/b'"),
    (
        ["serve", "update", "-n", "x" * 100, "{spec}"],
        "Invalid value for NAME: invalid service name",
    ),
    (["serve", "validate", "{spec}", "--env", "1A=b"], "--env '1A=b': '1A' is not a variable name"),
    (["serve", "validate", "{spec}", "--secret", "É=b"], "'É' is not a variable name"),
    (
        ["serve", "validate", "{spec}", "--env", "BIG={big}"],
        f"Linux starts no process with a variable of {MAX_ENV_BYTES} bytes or more",
    ),
    (
        ["serve", "validate", "{spec}", "--env-file", "{garbage}"],
        "garbage.env:2: expected KEY=VALUE (dotenv), a comment or a blank line",
    ),
    (
        ["serve", "validate", "{spec}", "--secret-file", "/dev/zero"],
        "--secret-file /dev/zero: not a regular file",
    ),
    (["serve", "validate", "{spec}", "--env-file", "{home}"], "is a directory"),
    (["serve", "validate", "/dev/zero"], "/dev/zero: too large"),
    (["serve", "up", "{spec}", "--zone", "us-east-1a"], "set resources.zone in FILE"),
]


@pytest.mark.parametrize(
    ("args", "says"), CLI_REFUSED, ids=[" ".join(a[:2] + a[3:4]) for a, _ in CLI_REFUSED]
)
def test_hostile_arguments_are_one_line_with_exit_status_2(
    args: list[str],
    says: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = tmp_path / "svc.yaml"
    spec.write_text(GOOD)
    garbage = tmp_path / "garbage.env"
    garbage.write_text("A=1\nthis is not dotenv\nB=2\n")
    (tmp_path / "home").mkdir()
    files = {
        "spec": str(spec),
        "garbage": str(garbage),
        "big": "x" * MAX_ENV_BYTES,
        "home": str(tmp_path / "home"),
    }
    code, err = invoke(tmp_path, [a.format(**files) for a in args], capsys, monkeypatch)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert says in lines[0], lines[0]
    assert not (tmp_path / "home" / "controller.json").exists()  # nothing was started
