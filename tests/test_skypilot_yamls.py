"""SkyPilot's own service YAMLs, unchanged, as a SkyServe user passes them.

``tests/data/skypilot/`` holds a sample of the service YAMLs of SkyPilot's
repository (examples/, llm/, tests/skyserve/; Apache-2.0, see its NOTICE and
LICENSE). Each is validated with ``skyctl serve validate`` and the
``--env``/``--secret`` flags its README, its comments or SkyServe's smoke tests
tell users to pass; the few SkyServe itself refuses (or skyctl cannot run yet)
fail with the reason. Then the readiness probes of the LLM specs, with
``$MODEL_NAME`` and ``$AUTH_TOKEN`` substituted, are sent by skyctl's prober
to a local HTTP server standing in for the replica, which records what
arrives.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from click.testing import CliRunner

from providers import feasibility
from providers.feasibility import Machine
from skyctl.cli import cli
from skyctl.clock import SystemClock
from skyctl.controller.prober import Prober, Target
from skyctl.secrets import KEY_FILE_NAME, Secrets
from tests.helpers.waiting import eventually

DATA = Path(__file__).parent / "data" / "skypilot"
HF = "hf_" + "x" * 34  # what `HF_TOKEN=xxx sky serve up ... --secret HF_TOKEN` reads
AUTH = "auth-token-from-the-command-line"

PLACE = "no enabled provider can run this spec"  # a GPU spec on this 4-CPU machine
# file -> (flags, None when valid / a fragment of the one-line error)
CASES: dict[str, tuple[list[str], str | None]] = {
    # "Pass with `--secret HF_TOKEN` in CLI" (the YAML's comment)
    "llm/vllm/service.yaml": (["--secret", "HF_TOKEN"], PLACE),
    "llm/vllm/service-with-auth.yaml": (
        ["--secret", "HF_TOKEN", "--secret", f"AUTH_TOKEN={AUTH}"],
        PLACE,
    ),
    # README: HF_TOKEN=xxx sky serve up llama3.yaml -n llama3 --secret HF_TOKEN
    "llm/llama-3/llama3.yaml": (["--secret", "HF_TOKEN"], PLACE),
    # README: ... --secret HF_TOKEN --gpus L4:1 --env MODEL_NAME=meta-llama/Meta-Llama-3.1-8B-...
    "llm/llama-3_1/llama-3_1.yaml": (
        ["--secret", "HF_TOKEN", "--env", "MODEL_NAME=meta-llama/Meta-Llama-3.1-8B-Instruct"],
        PLACE,
    ),
    "llm/llama-3_2/llama3_2-vision-11b.yaml": (["--secret", "HF_TOKEN"], PLACE),
    "llm/dbrx/dbrx.yaml": (["--secret", "HF_TOKEN"], PLACE),
    # envs: {HF_TOKEN: } left blank for the command line
    "llm/gemma3/gemma3.yaml": (["--env", "HF_TOKEN"], PLACE),
    "llm/pixtral/pixtral.yaml": (["--env", "HF_TOKEN"], PLACE),
    "llm/qwen/qwen25-7b.yaml": ([], PLACE),
    "llm/codellama/endpoint.yaml": ([], PLACE),
    # header: sky serve up ... --env TLS_KEYFILE_ENV_VAR=<key-path> --env TLS_CERTFILE_ENV_VAR=...
    "examples/serve/https/service.yaml": (
        ["--env", "TLS_KEYFILE_ENV_VAR=key.pem", "--env", "TLS_CERTFILE_ENV_VAR=cert.pem"],
        None,
    ),
    # tests/smoke_tests/test_sky_serve.py (test_skyserve_https)
    "tests/skyserve/https/service.yaml": (
        ["--env", "TLS_KEYFILE_ENV_VAR=key.pem", "--secret", "TLS_CERTFILE_ENV_VAR=cert.pem"],
        None,
    ),
    # tests/smoke_tests/test_sky_serve.py (test_skyserve_llm): --secret AUTH_TOKEN={auth_token}
    "tests/skyserve/llm/service.yaml": (["--secret", f"AUTH_TOKEN={AUTH}"], PLACE),
    "tests/skyserve/spot/spot_hedge.yaml": (["--secret", "HF_TOKEN"], None),
    "tests/skyserve/multi_ports.yaml": ([], None),
    "examples/serve/http_server/task.yaml": ([], None),
    "examples/serve/load_balancing_policies_example.yaml": ([], None),
    "examples/serve/spot_policy/dynamic_on_demand_fallback.yaml": ([], None),
    "examples/serve/stable_diffusion_service.yaml": ([], PLACE),
    "examples/vector_database/serve_vectordb.yaml": ([], PLACE),
    # infra: lambda in every alternative
    "examples/instance-aware-autoscaling/instance-aware_lambda.yml": (
        [],
        "skyctl does not run on lambda; it runs on: local, aws, gcp, azure, kubernetes",
    ),
    # SkyServe refuses it too: "Resources must either all use spot or none use spot"
    "llm/rag/serve_rag.yaml": ([], "resources must all use spot or none use spot"),
    # multi-node (num_nodes: 2) passes; SkyServe refuses its spot/on-demand any_of too
    "llm/deepseek-r1/deepseek-r1-671B.yaml": ([], "resources.any_of[1].use_spot"),
}


def test_the_sample_is_every_file_shipped_with_the_license() -> None:
    shipped = {str(p.relative_to(DATA)) for p in DATA.rglob("*.y*ml")}
    assert shipped == set(CASES)
    assert "Apache License" in (DATA / "LICENSE").read_text()
    assert "unchanged" in (DATA / "NOTICE").read_text()


@pytest.fixture(autouse=True)
def small_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """The local provider's machine: 4 CPUs, 16 GB, the accelerators config.yaml lists."""
    monkeypatch.setattr(
        feasibility, "this_machine", lambda accels=None: Machine(4, 16, accels or {})
    )


@pytest.mark.parametrize(("path", "flags", "error"), [(p, *c) for p, c in CASES.items()])
def test_validate_with_the_flags_the_readme_gives(
    path: str, flags: list[str], error: str | None, tmp_path: Path
) -> None:
    """Valid, or refused for placement only (the flags made the spec itself valid)."""
    runner = CliRunner()
    args = ["--home", str(tmp_path), "serve", "validate", str(DATA / path), *flags]
    result = runner.invoke(cli, args, env={"HF_TOKEN": HF})
    if error is None:
        assert result.exit_code == 0, f"{result.output}{result.exception}"
        assert f"{DATA / path}: valid" in result.output
    else:
        assert result.exit_code != 0
        message = str(result.exception)
        assert error in message and "\n" not in message and str(DATA / path) in message
        if error == PLACE:  # what the machine has, next to what was asked
            assert "local offers 4 CPUs, 16.0 GB memory, no accelerators" in message


def test_a_gpu_spec_validates_where_the_config_lists_the_gpu(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("local:\n  accelerators: {L4: 1}\n")
    path = DATA / "llm/vllm/service.yaml"  # L4 or A10G or A10 or A100 or A100-80GB
    args = ["--home", str(tmp_path), "serve", "validate", str(path), "--secret", "HF_TOKEN=x"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, f"{result.output}{result.exception}"


def test_without_the_flags_the_blank_ones_say_which_flag_to_pass(tmp_path: Path) -> None:
    runner = CliRunner()
    path = DATA / "llm/vllm/service-with-auth.yaml"
    result = runner.invoke(cli, ["--home", str(tmp_path), "serve", "validate", str(path)], env={})
    assert result.exit_code != 0
    assert "secrets.HF_TOKEN: no value given: pass --secret HF_TOKEN=VALUE" in str(result.exception)


# -- the substituted probe reaches the replica ------------------------------------


class Replica:
    """A stand-in replica on 127.0.0.1 that records every request and answers 200."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.endpoint = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append(
            {
                "method": request.method,
                "path": request.path,
                "headers": dict(request.headers),
                "body": await request.text(),
            }
        )
        return web.Response(text="{}")


@pytest.fixture
async def replica() -> AsyncIterator[Replica]:
    rep = Replica()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", rep.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    rep.endpoint = f"http://127.0.0.1:{port}"
    yield rep
    await runner.cleanup()


async def probe_once(path: str, replica: Replica, tmp_path: Path, **overrides: Any) -> None:
    """Submit the file as the controller stores it (sealed), reopen it as a restarted
    controller does, and let its prober probe the stand-in replica until ready."""
    text = (DATA / path).read_text()
    box = Secrets(tmp_path / KEY_FILE_NAME)
    sealed = box.seal(text, str(DATA / path), **overrides)
    assert HF not in sealed.yaml_text and AUTH not in sealed.yaml_text
    spec = box.open(sealed.yaml_text, str(DATA / path), sealed.ciphertext)
    prober = Prober(spec.service.readiness_probe, clock=SystemClock(), on_change=lambda: None)
    prober.start()
    try:
        prober.set_targets([Target(1, replica.endpoint)])
        await eventually(lambda: prober.results[1].ok, f"{path}: a ready probe")
    finally:
        await prober.close()


async def test_the_model_name_reaches_the_replica_in_the_probe_body(
    replica: Replica, tmp_path: Path
) -> None:
    await probe_once("llm/llama-3/llama3.yaml", replica, tmp_path, secrets={"HF_TOKEN": HF})
    first = replica.seen[0]
    assert (first["method"], first["path"]) == ("POST", "/v1/chat/completions")
    body = json.loads(first["body"])
    assert body["model"] == "meta-llama/Meta-Llama-3-70B-Instruct"  # was $MODEL_NAME
    assert body["max_tokens"] == 1 and first["headers"]["Content-Type"] == "application/json"


async def test_an_overridden_model_name_reaches_the_replica(
    replica: Replica, tmp_path: Path
) -> None:
    model = "meta-llama/Meta-Llama-3.1-8B-Instruct"
    await probe_once(
        "llm/llama-3_1/llama-3_1.yaml",
        replica,
        tmp_path,
        envs={"MODEL_NAME": model},
        secrets={"HF_TOKEN": HF},
    )
    assert json.loads(replica.seen[0]["body"])["model"] == model


@pytest.mark.parametrize(
    "path", ["llm/vllm/service-with-auth.yaml", "tests/skyserve/llm/service.yaml"]
)
async def test_the_auth_token_secret_reaches_the_replica_in_the_probe_headers(
    path: str, replica: Replica, tmp_path: Path
) -> None:
    secrets = {"AUTH_TOKEN": AUTH} | ({"HF_TOKEN": HF} if "vllm" in path else {})
    await probe_once(path, replica, tmp_path, secrets=secrets)
    first = replica.seen[0]
    assert (first["method"], first["path"]) == ("GET", "/v1/models")
    assert first["headers"]["Authorization"] == f"Bearer {AUTH}"  # was Bearer $AUTH_TOKEN


def test_the_census_tool_counts_the_sample_by_outcome() -> None:
    tool = Path(__file__).parent.parent / "tools" / "skypilot_yamls.py"
    result = subprocess.run(
        [sys.executable, str(tool), str(DATA), "--cpus", "4", "--memory", "16"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": str(tool.parent.parent)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == (
        "23 service YAMLs: 2 spec refused, 7 valid and placeable, 1 valid, cloud not run, "
        "13 valid, no provider here"
    )
    assert "spec refused: llm/rag/serve_rag.yaml:12: resources.any_of[1].use_spot" in result.stdout


def test_the_census_tool_reads_a_bare_git_mirror(tmp_path: Path) -> None:
    tool = Path(__file__).parent.parent / "tools" / "skypilot_yamls.py"
    work, bare = tmp_path / "work", tmp_path / "bare.git"
    (work / "examples").mkdir(parents=True)
    (work / "examples" / "svc.yaml").write_text("service: {replicas: 1}\nrun: x\n")
    (work / "examples" / "bad.yaml").write_text("service: {replicas: -1}\nrun: x\n")
    (work / "examples" / "task.yaml").write_text("run: x\n")  # no service: not counted
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q", str(work)], check=True)
    subprocess.run([*git, "-C", str(work), "add", "."], check=True)
    subprocess.run([*git, "-C", str(work), "commit", "-qm", "x"], check=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    result = subprocess.run(
        [sys.executable, str(tool), "--git", str(bare)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": str(tool.parent.parent)},
    )
    assert result.returncode == 0, result.stderr
    assert "spec refused: examples/bad.yaml:1: service.replicas: must be >= 0" in result.stdout
    assert result.stdout.splitlines()[-1] == (
        "2 service YAMLs: 1 spec refused, 1 valid and placeable"
    )
