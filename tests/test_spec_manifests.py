"""The example manifests and the sample specs under tests/specs parse as
documented, and the local manifests' commands really serve their probe path."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from skyctl.errors import SpecError
from skyctl.spec import ServiceSpec
from skyctl.spec_yaml import load_spec_file

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "manifests"
SPECS = Path(__file__).resolve().parent / "specs"


def test_http_server_manifest_is_two_local_replicas_probed_at_root() -> None:
    spec = load_spec_file(MANIFESTS / "http-server.yaml")
    assert spec.clouds == frozenset({"local"})
    assert spec.service.replica_policy.min_replicas == 2
    assert spec.service.replica_policy.fixed
    assert spec.service.readiness_probe.path == "/"
    assert spec.service.readiness_probe.initial_delay_seconds <= 60
    assert spec.service.readiness_probe.period_seconds <= 2
    assert not spec.use_spot


def test_spot_local_trace_manifest_replays_the_bundled_aws_trace() -> None:
    spec = load_spec_file(MANIFESTS / "spot-local-trace.yaml")
    assert spec.use_spot and spec.clouds == frozenset({"local"})
    assert spec.local is not None
    assert (spec.local.trace, spec.local.trace_tick_seconds) == ("aws-v100-2023-02", 1.0)
    policy = spec.service.replica_policy
    assert policy.min_replicas >= 2 and (policy.num_overprovision or 0) >= 1
    assert policy.dynamic_ondemand_fallback and policy.spot_placer == "dynamic_fallback"
    assert spec.service.readiness_probe.period_seconds == 1.0


def test_skyserve_vllm_manifest_parses_as_skyserve_users_write_it() -> None:
    spec = load_spec_file(MANIFESTS / "skyserve-vllm.yaml")
    assert [c.accelerators for c in spec.resources.candidates] == [
        {"L4": 1},
        {"A10G": 1},
        {"A100": 1},
    ]
    assert spec.use_spot
    policy = spec.service.replica_policy
    assert (policy.min_replicas, policy.max_replicas, policy.target_qps_per_replica) == (2, 6, 2.5)
    assert policy.base_ondemand_fallback_replicas == 1
    assert spec.service.readiness_probe.post_data is not None
    assert spec.extra == {"resources.disk_tier": "best"}
    assert "cannot run on this machine" in spec.yaml_text


@pytest.mark.parametrize("path", sorted((SPECS / "valid").glob("*.yaml")), ids=lambda p: p.name)
def test_sample_specs_parse(path: Path) -> None:
    spec = load_spec_file(path)
    assert spec.run
    assert spec.resources.candidates


@pytest.mark.parametrize("path", sorted((SPECS / "invalid").glob("*.yaml")), ids=lambda p: p.name)
def test_invalid_sample_specs_fail_with_the_error_in_their_header(path: Path) -> None:
    expected = path.read_text().splitlines()[0].removeprefix("# expect: ")
    with pytest.raises(SpecError) as info:
        load_spec_file(path)
    assert str(info.value) == f"{path}:{expected}"


# -- the local manifests really serve ------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def run_replica(tmp_path: Path) -> Iterator[Callable[[ServiceSpec], int]]:
    """Start a spec's ``run`` like the local provider does; kill its group afterwards."""
    started: list[subprocess.Popen[bytes]] = []

    def start(spec: ServiceSpec) -> int:
        port = _free_port()
        env = {**os.environ, **spec.envs, "PORT": str(port), "SKYCTL_REPLICA_ID": "1"}
        proc = subprocess.Popen(
            ["bash", "-c", spec.run or ""],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        started.append(proc)
        return port

    yield start
    for proc in started:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def _get_status(url: str, deadline_seconds: float = 30.0) -> int:
    """Poll until the server answers (a deadline against hangs, not a timing check)."""
    give_up = time.monotonic() + deadline_seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as e:
            return int(e.code)
        except OSError:
            if time.monotonic() > give_up:
                raise
            time.sleep(0.1)


@pytest.mark.parametrize("name", ["http-server.yaml", "spot-local-trace.yaml"])
def test_local_manifest_command_answers_its_readiness_probe(
    name: str, run_replica: Callable[[ServiceSpec], int]
) -> None:
    spec = load_spec_file(MANIFESTS / name)
    port = run_replica(spec)
    url = f"http://127.0.0.1:{port}{spec.service.readiness_probe.path}"
    assert _get_status(url) == 200
