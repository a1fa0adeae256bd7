"""Hostile spec inputs: each is refused with one line naming the key, its line and
what is allowed, in bounded time and memory (never a traceback, a hang, or a
document expanded in memory).

Each case here was accepted, hung or leaked an internal message before the
loader's guards (alias expansion budget, text size cap, NUL and surrogate
checks, number bounds, probe header checks).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from skyctl.errors import SpecError
from skyctl.spec_checks import MAX_COUNT, MAX_SPEC_BYTES
from skyctl.spec_yaml import load_spec_file, parse_spec

BASE = """\
service:
  readiness_probe: /
  replicas: 1
run: python -m http.server 8080
resources:
  ports: 8080
"""


def refused(text: str) -> str:
    with pytest.raises(SpecError) as info:
        parse_spec(text, source="svc.yaml")
    message = str(info.value)
    assert "\n" not in message and len(message) < 400, message
    return message


def alias_bomb(levels: int, under: str) -> str:
    """A billion-laughs document: 9**levels strings once expanded, a few hundred bytes."""
    lines = ["_metadata:", '  l0: &l0 ["$X","$X","$X","$X","$X","$X","$X","$X","$X"]']
    for i in range(1, levels):
        lines.append(f"  l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n" + BASE + f"envs:\n  X: y\n{under}: {{a: *l{levels - 1}}}\n"


@pytest.mark.parametrize("under", ["file_mounts", "config"])
def test_an_alias_bomb_is_refused_before_it_is_expanded(under: str) -> None:
    # 9**9 = 387 million strings: substituting $X walked every one (60 s, 1 GB, then killed)
    start = time.monotonic()
    message = refused(alias_bomb(9, under))
    assert "more than 100000 values once its aliases are expanded" in message
    assert message.startswith("svc.yaml:")  # the line of the key holding the bomb
    assert time.monotonic() - start < 10


def test_a_recursive_alias_is_refused() -> None:
    assert "aliases are expanded" in refused(BASE + "_metadata: &a {x: *a}\n")


def test_aliases_within_reason_still_load() -> None:
    spec = parse_spec(BASE + "_metadata: {a: &a [1, 2], b: *a}\n")
    assert spec.extra["_metadata"] == {"a": [1, 2], "b": [1, 2]}


def test_a_huge_spec_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text(BASE + "envs:\n" + "".join(f"  K{i}: v\n" for i in range(100_000)))
    assert big.stat().st_size > MAX_SPEC_BYTES
    with pytest.raises(SpecError, match=r"too large: a spec is at most 256 KiB"):
        load_spec_file(big)
    with pytest.raises(SpecError, match=r"too large"):
        parse_spec("x" * (MAX_SPEC_BYTES + 1))


def test_an_endless_file_is_not_read_forever() -> None:
    # /dev/zero was read until memory ran out
    with pytest.raises(SpecError, match=r"^/dev/zero: too large"):
        load_spec_file("/dev/zero")


def test_standard_input_is_not_a_file_name() -> None:
    with pytest.raises(SpecError, match=r"^-: a spec is read from a file, not standard input"):
        load_spec_file("-")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('envs:\n  A: "x\\0y"\n', r"svc.yaml:8: .*NUL character"),
        ('envs:\n  A: "\\ud800"\n', r"svc.yaml:8: .*lone surrogate"),
        ('run2: "\\0"\n', r"svc.yaml:7: .*NUL character"),  # before the unknown key
    ],
)
def test_text_no_process_can_take_is_refused_at_its_line(text: str, expected: str) -> None:
    # a NUL reached the replica's environment (ValueError in the launch); a lone
    # surrogate, the UTF-8 store
    assert __import__("re").search(expected, refused(BASE + text))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("9" * 5000, "svc.yaml:8: invalid YAML: bad value: an integer with more than 4300 digits"),
        ("2001-13-45", "svc.yaml:8: invalid YAML: bad value: month must be in 1..12"),
    ],
)
def test_values_python_cannot_build_name_their_line(value: str, expected: str) -> None:
    # were: no line, and "use sys.set_int_max_str_digits() to increase the limit"
    assert refused(BASE + f"envs:\n  A: {value}\n") == expected


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("replicas: 1", "replicas: 100000000000000000000", "service.replicas: must be <= 10000"),
        (
            "replicas: 1",
            "replica_policy: {min_replicas: 1, max_replicas: 99999, target_qps_per_replica: 1}",
            "service.replica_policy.max_replicas: must be <= 10000",
        ),
        ("ports: 8080", "ports: 8080\n  disk_size: 100000000000000000000000", "1 PB"),
        ("ports: 8080", "ports: 8080\n  disk_size: 2PB", "resources.disk_size: must be 1 to"),
        (
            "readiness_probe: /",
            "readiness_probe: {path: /, timeout_seconds: 1.0e+300}",
            "service.readiness_probe.timeout_seconds: must be at most 1e+09",
        ),
        ("replicas: 1", "replicas: 1\n  fan_out: 100000000000000000000", "at most 2**53"),
    ],
)
def test_numbers_beyond_any_use_are_refused(old: str, new: str, expected: str) -> None:
    # 10**20 replicas validated (and overflowed SQLite's integer at `serve up`);
    # a 1e300 s timeout overflows socket and thread timers
    assert expected in refused(BASE.replace(old, new))


def test_the_replica_cap_itself_loads() -> None:
    spec = parse_spec(BASE.replace("replicas: 1", f"replicas: {MAX_COUNT}"))
    assert spec.service.replica_policy.min_replicas == MAX_COUNT


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        ("1e3", "written like 1.0e+3"),
        ("'30'", "a number in quotes is text: drop the quotes"),
    ],
)
def test_a_number_written_as_text_says_why(value: str, hint: str) -> None:
    text = BASE.replace(
        "readiness_probe: /", f"readiness_probe: {{path: /, timeout_seconds: {value}}}"
    )
    message = refused(text)
    assert "service.readiness_probe.timeout_seconds: expected a number, got the string" in message
    assert hint in message


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ('{X: "a\\r\\nInjected: 1"}', "headers.X: a header value cannot hold line breaks"),
        ("{'X Y': z}", "expected a header name such as Authorization"),
        ("{'': z}", "expected a header name"),
        ("{Content-Length: '5'}", "headers.Content-Length: set by the probe itself"),
        ("{Transfer-Encoding: chunked}", "set by the probe itself"),
    ],
)
def test_probe_headers_cannot_forge_the_request(headers: str, expected: str) -> None:
    # CR/LF in a value was accepted (the prober raised on every probe); a name
    # with a space went out as it was
    text = BASE.replace(
        "readiness_probe: /", f"readiness_probe:\n    path: /\n    headers: {headers}"
    )
    message = refused(text)
    assert message.startswith("svc.yaml:4: service.readiness_probe.headers")
    assert expected in message


def test_ordinary_probe_headers_load() -> None:
    text = BASE.replace(
        "readiness_probe: /",
        "readiness_probe:\n    path: /v1/models\n"
        "    headers: {Authorization: Bearer $T, X-A: 'a\tb'}",
    )
    spec = parse_spec(text + "envs:\n  T: tok\n")
    assert spec.service.readiness_probe.headers == {"Authorization": "Bearer tok", "X-A": "a\tb"}


def test_a_very_long_value_is_cut_in_the_message() -> None:
    message = refused("name: " + "a" * 5000 + "\n" + BASE)
    assert message.startswith("svc.yaml:1: name: invalid service name 'aaaa")
    assert "...: letters, digits" in message


def test_a_nul_from_the_command_line_or_the_api_is_refused_too() -> None:
    with pytest.raises(SpecError, match=r"envs.A: a NUL character cannot be in an environment"):
        parse_spec(BASE, envs={"A": "x\x00y"})
    with pytest.raises(SpecError, match=r"secrets.S: a NUL character"):
        parse_spec(BASE, secrets={"S": "\x00"})


@pytest.mark.parametrize(
    "text",
    [
        "service: {replicas: 1}\nrun:\n",  # was: run: expected a string, got null
        "service: {replicas: 1}\nfile_mounts:\nname:\nnum_nodes:\nrun: x\n",
        "service: {replicas: null, load_balancing_policy: null, ports: null, tls: null}\nrun: x\n",
        "service: {replica_policy: null}\nrun: x\n",
        "service: {replicas: 1}\nresources: {cloud: null, any_of: [{use_spot: null}]}\nrun: x\n",
    ],
)
def test_a_null_value_is_an_absent_key_as_in_skypilot(text: str) -> None:
    # SkyPilot's schema check drops null keys at the top of the task, of service and
    # of resources (common_utils.validate_schema(skip_none=True))
    spec = parse_spec(text)
    assert spec.service.replica_policy.min_replicas == 1
    assert spec.service.load_balancing_policy == "least_load"


def test_a_null_probe_and_a_null_typo_are_still_refused() -> None:
    # SkyServe fails on a null readiness_probe (it indexes it); a typo stays a typo
    assert refused("service: {readiness_probe: null}\nrun: x\n") == (
        "svc.yaml:1: service.readiness_probe: expected a path such as /health, or a mapping"
    )
    assert "setpu: unknown key; did you mean 'setup'?" in refused(BASE + "setpu:\n")


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("  router: {port: 80}\n", "svc.yaml:3: service.router.port: port 80 is privileged"),
        ("  ports: 443\n", "svc.yaml:3: service.ports: port 443 is privileged"),
    ],
)
def test_a_privileged_port_is_refused_for_a_user_who_cannot_bind_it(
    monkeypatch: pytest.MonkeyPatch, extra: str, key: str
) -> None:
    # was: a router or local replica that could never listen (EACCES at bind)
    from skyctl import spec_files

    spec = parse_spec(
        "service:\n  readiness_probe: /\n" + extra + "  replicas: 1\nrun: x\n", source="svc.yaml"
    )
    monkeypatch.setattr(spec_files.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(spec_files, "unprivileged_port_start", lambda: 1024)
    with pytest.raises(SpecError) as info:
        spec_files.check_ports(spec)
    assert str(info.value).startswith(key)
    assert "use a port from 1024 to 65535" in str(info.value)
    monkeypatch.setattr(spec_files.os, "geteuid", lambda: 0)
    spec_files.check_ports(spec)  # root may
