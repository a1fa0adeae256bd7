"""Older SkyPilot service YAMLs that users still have, as a SkyServe user passes them.

``tests/data/skypilot_specs/`` holds versions from SkyPilot's history (Apache-2.0,
see its NOTICE), each adding a key or a value form that SkyPilot's current files
(``tests/data/skypilot/``, tests/test_skypilot_yamls.py) lack: keys SkyServe has
since dropped (``replica_policy.auto_restart``, ``qps_upper_threshold``), a
probe key written one level off, accelerator maps of bare names, spot
alternatives by cloud/region/zone. Each is taken, or refused in one line naming
the file, the line, the key and what to write instead: never a traceback, never
"unknown key" alone. Then the forms SkyPilot documents that skyctl used to
misread: a per-region ``image_id`` map (dropped: the default image in every
region), SkyPilot's ``skypilot:`` image tags (sent to the cloud as an image id),
and keys kept but not acted on (``config``, ``disk_tier``, ...: silently).
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from providers import feasibility
from providers.feasibility import Machine
from skyctl.cli import cli
from skyctl.errors import SpecError
from skyctl.spec_files import spec_notes
from skyctl.spec_yaml import load_spec_file, parse_spec
from tests.helpers.cli import ROOT, run_cli
from tests.helpers.processes import pids_mentioning
from tests.helpers.status import wait_services

DATA = Path(__file__).parent / "data" / "skypilot_specs"
PLACE = "no enabled provider can run this spec"
_HTTP = "examples/serve/http_server/task.yaml"
TAKEN = "valid"
AUTO_RESTART = (
    "service.replica_policy.auto_restart: SkyServe no longer takes auto_restart: failed "
    "replicas are always replaced; remove the key"
)
# file -> (flags its README gives, line, what `serve validate` says: TAKEN, or the error)
CASES: dict[str, tuple[list[str], int | None, str]] = {
    "tests/skyserve/replica_failure/service.yaml": ([], 8, AUTO_RESTART),
    "llm/mixtral/serve.yaml": ([], 17, AUTO_RESTART),
    "tests/test_yamls/test_serve_autoscaler.yaml": (
        [],
        17,
        "service.replica_policy.qps_upper_threshold: SkyServe replaced qps_upper_threshold "
        "and qps_lower_threshold by target_qps_per_replica",
    ),
    # SkyServe refuses these too, for the same reasons
    "tests/skyserve/spot/base_ondemand_fallback.yaml": (
        [],
        7,
        "service.replica_policy.max_replicas: min_replicas != max_replicas needs "
        "target_qps_per_replica",
    ),
    "llm/deepseek-r1/deepseek-r1-671B.yaml": (
        ["--secret", "HF_TOKEN"],
        20,
        "resources.any_of[1].use_spot: resources must all use spot or none use spot",
    ),
    # taken; they need GPUs this 4-CPU machine lacks, or a cloud skyctl does not run
    "examples/cog/sky.yaml": ([], None, PLACE),  # accelerators: {L4, T4, A10G}
    "llm/llama-3_2/llama3_2.yaml": (["--env", "HF_TOKEN"], None, PLACE),
    "llm/llama-4/llama4.yaml": (["--secret", "HF_TOKEN"], None, PLACE),
    "llm/gpt-oss/gpt-oss-vllm.sky.yaml": ([], None, PLACE),
    "llm/kimi-k2/kimi-k2.sky.yaml": (["--secret", "HF_TOKEN"], None, PLACE),
    "examples/oci/serve-qwen-7b.yaml": ([], None, "skyctl does not run on oci"),
    # taken: spot any_of of cloud/region/zone (aws, gcp: a warning where they are not set up);
    # SkyPilot's http_server example: placed on the local provider
    "tests/skyserve/spot/spot_hedge.yaml": (["--env", "HF_TOKEN"], None, TAKEN),
    "examples/serve/http_server/task.yaml": ([], None, TAKEN),
}


@pytest.fixture(autouse=True)
def small_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """The local provider's machine: 4 CPUs, 16 GB, no accelerators."""
    monkeypatch.setattr(
        feasibility, "this_machine", lambda accels=None: Machine(4, 16, accels or {})
    )


def test_the_sample_is_every_file_shipped_with_the_license() -> None:
    shipped = {str(p.relative_to(DATA)) for p in DATA.rglob("*.y*ml")}
    assert shipped == set(CASES) | {"examples/per_region_images.yaml"}
    assert "Apache License" in (DATA / "LICENSE").read_text()
    notice = (DATA / "NOTICE").read_text()
    assert "unchanged" in notice and all(path in notice for path in shipped)


def validate(path: Path, *flags: str, home: Path) -> tuple[int, str]:
    args = ["--home", str(home), "serve", "validate", str(path), *flags]
    result = CliRunner().invoke(cli, args, env={"HF_TOKEN": "hf_x"})
    output = result.output if result.exit_code == 0 else str(result.exception)
    return result.exit_code, output


@pytest.mark.parametrize(("path", "flags", "line", "outcome"), [(p, *c) for p, c in CASES.items()])
def test_each_is_taken_or_refused_in_one_line_saying_what_to_write(
    path: str, flags: list[str], line: int | None, outcome: str, tmp_path: Path
) -> None:
    code, output = validate(DATA / path, *flags, home=tmp_path)
    if outcome == TAKEN:
        assert code == 0, output
        assert f"{DATA / path}: valid" in output
        return
    assert code != 0, output
    assert "\n" not in output and "Traceback" not in output
    where = f"{DATA / path}:{line}: " if line is not None else f"{DATA / path}"
    assert output.startswith(where) and outcome in output, output


def test_a_probe_key_one_level_off_says_where_it_belongs() -> None:
    # the DeepSeek-R1 file with its spot mix (refused above) made all-spot: what is left
    # is `initial_delay_seconds` under `service:` itself, not under its readiness_probe
    text = (DATA / "llm/deepseek-r1/deepseek-r1-671B.yaml").read_text()
    text = text.replace("use_spot: false", "use_spot: true")
    with pytest.raises(SpecError) as err:
        parse_spec(text, "r1.yaml", secrets={"HF_TOKEN": "x"})
    assert str(err.value) == (
        "r1.yaml:7: service.initial_delay_seconds: belongs under readiness_probe "
        "(readiness_probe: {path: /health, initial_delay_seconds: ...})"
    )


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            "service: {replicas: 1}\naccelerators: L4\nrun: x\n",
            "s.yaml:2: accelerators: belongs under `resources:`, not at the top",
        ),
        (
            "service: {readiness_probe: /}\nmin_replicas: 2\nrun: x\n",
            "s.yaml:2: min_replicas: belongs under service.replica_policy, not at the top",
        ),
        (
            "readiness_probe: /health\nservice: {replicas: 1}\nrun: x\n",
            "s.yaml:1: readiness_probe: belongs under `service:`, not at the top",
        ),
        (
            "service:\n  readiness_probe: /\n  min_replicas: 1\nrun: x\n",
            "s.yaml:3: service.min_replicas: belongs under replica_policy "
            "(replica_policy: {min_replicas: ..., ...})",
        ),
        (
            "service:\n  replicas: 1\n  accelerators: L4\nrun: x\n",
            "s.yaml:3: service.accelerators: belongs under the top-level `resources:`, "
            "not under service",
        ),
        (
            "service: {replicas: 1}\nresources:\n  use_spot: true\n  spot_recovery: FAILOVER\n",
            "s.yaml:4: resources.spot_recovery: spot_recovery (now job_recovery) is for "
            "managed jobs, not services: remove it (the service itself replaces preempted "
            "spot replicas)",
        ),
    ],
)
def test_keys_in_the_wrong_section_or_renamed_say_what_to_write(text: str, error: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(text, "s.yaml")
    assert str(err.value) == error


def test_an_unknown_key_with_no_close_match_lists_the_allowed_ones() -> None:
    with pytest.raises(SpecError) as err:
        parse_spec("service:\n  replicas: 1\n  controller_resources: {cpus: 2}\n", "s.yaml")
    assert str(err.value) == (
        "s.yaml:3: service.controller_resources: unknown key (allowed: auth, fan_out, "
        "load_balancer, load_balancing_policy, pool, ports, readiness_probe, replica_policy, "
        "replicas, router, tls, workers)"
    )
    with pytest.raises(SpecError, match=r"s.yaml:1: servce: unknown key; did you mean 'service'"):
        parse_spec("servce: {replicas: 1}\n", "s.yaml")


# -- resources.image_id: a per-region map, SkyPilot's image tags ---------------------

AMIS = "  image_id:\n    us-east-1: ami-0aaa\n    us-west-2: ami-0bbb\n"


def places(text: str) -> list[tuple[str | None, str | None, str | None]]:
    spec = parse_spec(text, "s.yaml")
    return [(c.cloud, c.region, c.image_id) for c in spec.resources.candidates]


def test_a_per_region_image_map_is_one_candidate_per_region_with_its_image() -> None:
    # before: the map went to `extra` and every region got the provider's default image
    base = "service: {replicas: 1}\nrun: x\nresources:\n  infra: aws\n"
    assert places(base + AMIS) == [
        ("aws", "us-east-1", "ami-0aaa"),
        ("aws", "us-west-2", "ami-0bbb"),
    ]
    pinned = base.replace("infra: aws", "infra: aws/us-west-2")
    assert places(pinned + AMIS) == [("aws", "us-west-2", "ami-0bbb")]
    by_zone = base.replace("infra: aws", "infra: aws/*/us-east-1b")
    assert places(by_zone + AMIS) == [("aws", "us-east-1", "ami-0aaa")]
    alternatives = base + AMIS + "  any_of:\n    - region: us-west-2\n    - region: us-east-1\n"
    assert places(alternatives) == [
        ("aws", "us-west-2", "ami-0bbb"),
        ("aws", "us-east-1", "ami-0aaa"),
    ]


def test_a_region_missing_from_the_image_map_is_refused_naming_the_regions() -> None:
    text = "service: {replicas: 1}\nrun: x\nresources:\n  infra: aws/eu-west-1\n" + AMIS
    with pytest.raises(SpecError) as err:
        parse_spec(text, "s.yaml")
    assert str(err.value) == (
        "s.yaml:5: resources.image_id: no image for region 'eu-west-1' in the per-region map "
        "(it has: us-east-1, us-west-2): add one, or give one image_id"
    )
    with pytest.raises(SpecError, match=r"s.yaml:6: resources.image_id.us-east-1: expected an"):
        parse_spec(
            "service: {}\nrun: x\nresources:\n  image_id:\n    us-west-2: ami-1\n"
            "    us-east-1: 3\n",
            "s.yaml",
        )


def test_skypilot_image_tags_stand_for_the_default_image_with_a_note() -> None:
    # SkyPilot's examples/per_region_images.yaml, turned into a service as SkyServe's docs
    # say (a service section added): its images are SkyPilot's own tags, which used to
    # reach the cloud as an image id (a launch that fails)
    text = (DATA / "examples/per_region_images.yaml").read_text() + "service: {replicas: 1}\n"
    spec = parse_spec(text, "p.yaml")
    assert [(c.cloud, c.region, c.accelerators, c.image_id) for c in spec.resources.candidates] == [
        ("aws", "us-east-1", {"T4": 1}, None),
        ("aws", "us-west-2", {"T4": 1}, None),
    ]
    assert any("skypilot:... tags name SkyPilot's own images" in n for n in spec_notes(spec))
    gcp = parse_spec(
        "service: {}\nrun: x\nresources: {infra: gcp, image_id: skypilot:gpu-ubuntu-2204}\n"
    )
    assert gcp.resources.candidates[0].image_id is None
    assert places("service: {}\nrun: x\nresources: {infra: aws, image_id: ami-0ccc}\n") == [
        ("aws", None, "ami-0ccc")
    ]


# -- keys kept but not acted on: each gets a note ------------------------------------


def test_kept_keys_that_change_a_replica_on_skypilot_each_get_a_note(tmp_path: Path) -> None:
    # before: kept in `extra` without a word (61 versions of SkyPilot's LLM specs
    # ask for `disk_tier: best`)
    spec = load_spec_file(DATA / "llm/llama-3_2/llama3_2.yaml", envs={"HF_TOKEN": "x"})
    assert spec_notes(spec) == [
        "resources.disk_tier is kept but not acted on by skyctl: replicas get the provider's "
        "default disk"
    ]
    spec = load_spec_file(DATA / "llm/kimi-k2/kimi-k2.sky.yaml", secrets={"HF_TOKEN": "x"})
    assert any(n.startswith("resources.network_tier is kept but") for n in spec_notes(spec))
    svc = tmp_path / "svc.yaml"
    svc.write_text(
        "service: {replicas: 1}\nrun: x\nconfig:\n  kubernetes: {pod_config: {}}\n"
        "resources:\n  max_hourly_cost: 2.5\n  any_of:\n    - {disk_tier: high}\n"
    )
    notes = spec_notes(load_spec_file(svc))
    assert [n.split(" is kept")[0] for n in notes] == [
        "config",
        "resources.max_hourly_cost",
        "resources.disk_tier",
    ]
    code, output = validate(svc, home=tmp_path / "home")  # the user sees them
    assert code == 0 and f"{svc}: valid" in output
    assert all(note in output for note in notes), output


def test_the_old_experimental_config_overrides_is_taken_as_config_is() -> None:
    # SkyPilot <= 0.10 took `experimental: {config_overrides: ...}` (0.11 renamed it `config`)
    text = (
        "service: {replicas: 1}\nrun: x\nexperimental:\n  config_overrides:\n"
        "    docker: {run_options: [--gpus all]}\n"
    )
    spec = parse_spec(text, "s.yaml")
    assert spec.extra["experimental"] == {
        "config_overrides": {"docker": {"run_options": ["--gpus all"]}}
    }
    assert any(n.startswith("experimental is kept but not acted on") for n in spec_notes(spec))
    with pytest.raises(SpecError, match=r"s.yaml:4: experimental.other: unknown key \(allowed: co"):
        parse_spec("service: {replicas: 1}\nrun: x\nexperimental:\n  other: 1\n", "s.yaml")


# -- an unchanged SkyPilot service, really served by the local provider --------------


@pytest.mark.timeout(150)
def test_skypilots_http_server_example_serves_unchanged_on_the_local_provider(
    skyctl_home: Path,
) -> None:
    """examples/serve/http_server/task.yaml as its header says (``sky serve up -n http
    examples/serve/http_server/task.yaml`` from the checkout's root, here the data
    folder): 2 replicas of ``python3 server.py`` on the fixed port 8080 (the second
    one's bind moved by the port shim), ready on /health; the endpoint answers with
    the server's page; ``serve down`` leaves no process behind."""
    up = _in_data(skyctl_home, "serve", "up", "-n", "http", "-y", _HTTP)
    assert up.returncode == 0, up.stdout + up.stderr

    def ready_or_failed(shown: list[dict[str, Any]]) -> bool:
        (svc,) = shown
        return "FAILED" in str(svc) or [r["status"] for r in svc["replicas"]].count("READY") == 2

    # through the API, then shown by `serve status --json` (tests/helpers/status.py)
    (service,) = wait_services(skyctl_home, ready_or_failed, "2 READY replicas", 60)
    assert "FAILED" not in str(service), service
    with urllib.request.urlopen(service["endpoint"] + "/", timeout=10) as reply:
        assert "Hi, SkyPilot here!" in reply.read().decode()
    down = run_cli(skyctl_home, "serve", "down", "http", "-y")
    assert down.returncode == 0, down.stdout + down.stderr
    assert not pids_mentioning(str(skyctl_home / "local"))


def test_an_instance_type_with_no_cloud_notes_that_local_ignores_it() -> None:
    # SkyPilot finds the cloud whose catalog has m5.xlarge; a spec naming no cloud runs
    # on local here, which has no machine types: said, not silently dropped
    spec = parse_spec("service: {replicas: 1}\nrun: x\nresources: {instance_type: m5.xlarge}\n")
    assert spec_notes(spec) == [
        "resources.instance_type m5.xlarge names a cloud's machine type: a replica placed on "
        "local runs on this machine, whatever its size (name the cloud in resources.infra to "
        "get one)"
    ]
    on_aws = "service: {}\nrun: x\nresources: {infra: aws, instance_type: m5.xlarge}\n"
    assert spec_notes(parse_spec(on_aws)) == []


def _in_data(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``skyctl ARGS`` run in the data folder (a relative workdir is relative to where
    skyctl runs), this checkout's skyctl first on the path: from a folder outside
    the checkout, ``python -m skyctl`` would import whichever skyctl is installed."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", "skyctl", *args],
        cwd=DATA,
        env={**os.environ, "SKYCTL_HOME": str(home), "PYTHONPATH": path},
        text=True,
        capture_output=True,
        timeout=120,
        check=False,
    )


@pytest.mark.timeout(150)
def test_a_task_name_skypilot_takes_but_no_service_can_have_is_valid(
    skyctl_home: Path, tmp_path: Path
) -> None:
    """SkyPilot's task names may start with a digit (`name: 7b-chat`); SkyServe names
    the service with -n (or makes one up), so such a spec is valid there. skyctl took
    `name:` for a service name and refused the spec; now it is valid, `-n` names the
    service, and without `-n` the service is named after the file."""
    assert parse_spec("name: 7b-chat\nservice: {}\nrun: x\n").name == "7b-chat"
    with pytest.raises(SpecError, match=r":1: name: invalid service name 'my chat'"):
        parse_spec("name: my chat\nservice: {}\nrun: x\n")  # SkyPilot refuses it too
    spec = tmp_path / "chat.yaml"
    spec.write_text(
        "name: 7b-chat\nservice: {readiness_probe: /, replicas: 1}\n"
        "run: exec python3 -m http.server $PORT --bind 127.0.0.1\n"
    )
    up = run_cli(skyctl_home, "serve", "up", str(spec), "-d")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "Service chat: endpoint" in up.stdout
    down = run_cli(skyctl_home, "serve", "down", "chat", "-y")
    assert down.returncode == 0, down.stdout + down.stderr
    assert not pids_mentioning(str(skyctl_home / "local"))
