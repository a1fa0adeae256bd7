"""The replica boot script: it is run here with bash, as a cloud instance would run it."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from providers.base import LaunchRequest
from providers.bootstrap import render_bootstrap
from skyctl.errors import SpecError
from skyctl.spec import ServiceSpec
from skyctl.types import Location, Offering

DUMP_ENV = (
    "python3 -c 'import json, os; json.dump({k: os.environ.get(k) for k in "
    '["PORT", "SKYCTL_SERVICE", "SKYCTL_REPLICA_ID", "SKYCTL_VERSION", "GREETING", "TRICKY"]}'
    ', open("env.json", "w"))\'\n'
)


def request(
    *, setup: str | None = None, run: str | None = None, envs: dict[str, str] | None = None
) -> LaunchRequest:
    return LaunchRequest(
        service="svc",
        replica_id=7,
        version=3,
        offering=Offering(Location("aws", "us-east-1", "us-east-1a"), True, 0.1, "m5.large"),
        client_token="svc-7-1",
        spec=ServiceSpec(name="svc", setup=setup, run=run),
        port=8123,
        envs=envs or {},
    )


def run_script(script: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "boot.sh"
    path.write_text(script)
    return subprocess.run(
        ["bash", str(path)], capture_output=True, text=True, timeout=30, cwd=tmp_path, check=False
    )


def test_script_exports_identity_and_envs_then_runs_setup_before_run(tmp_path: Path) -> None:
    tricky = 'it\'s $(touch pwned) `id` "quoted" ; rm -rf /nowhere'
    req = request(
        setup="echo setup > order.txt",
        run="echo run >> order.txt\n" + DUMP_ENV,
        envs={"GREETING": "hello world", "TRICKY": tricky, "PORT": "1"},
    )
    result = run_script(render_bootstrap(req, work_root=str(tmp_path / "work")), tmp_path)
    work = tmp_path / "work" / "svc-7"
    assert result.returncode == 0, result.stdout + result.stderr
    assert (work / "order.txt").read_text().split() == ["setup", "run"]
    env = json.loads((work / "env.json").read_text())
    assert env == {
        "PORT": "8123",  # the request's port wins over a user env of the same name
        "SKYCTL_SERVICE": "svc",
        "SKYCTL_REPLICA_ID": "7",
        "SKYCTL_VERSION": "3",
        "GREETING": "hello world",
        "TRICKY": tricky,
    }
    assert not (work / "pwned").exists() and not (tmp_path / "pwned").exists()


def test_a_failing_setup_stops_the_script_before_run(tmp_path: Path) -> None:
    req = request(setup="exit 4", run="touch ran")
    result = run_script(render_bootstrap(req, work_root=str(tmp_path / "w")), tmp_path)
    assert result.returncode == 4
    assert not (tmp_path / "w" / "svc-7" / "ran").exists()


def test_user_code_containing_heredoc_like_lines_is_kept_verbatim(tmp_path: Path) -> None:
    req = request(run="cat > out.txt <<'EOF'\n$HOME `x` SKYCTL_RUN_\nEOF\n")
    result = run_script(render_bootstrap(req, work_root=str(tmp_path / "w")), tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "w" / "svc-7" / "out.txt").read_text() == "$HOME `x` SKYCTL_RUN_\n"


def test_notice_watch_runs_in_background_and_reports_through_the_notice_file(
    tmp_path: Path,
) -> None:
    watch = 'echo 1700000120 > "$SKYCTL_NOTICE_FILE"\n'
    run = (
        'for i in $(seq 1 200); do [ -s "$SKYCTL_NOTICE_FILE" ] && break; sleep 0.05; done\n'
        'cp "$SKYCTL_NOTICE_FILE" seen.txt\n'
    )
    req = request(run=run)
    result = run_script(
        render_bootstrap(req, notice_watch=watch, work_root=str(tmp_path)), tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "svc-7" / "seen.txt").read_text().strip() == "1700000120"


def test_drain_on_notice_stops_the_server_gracefully_when_the_notice_comes(
    tmp_path: Path,
) -> None:
    """Clouds that tell only the VM (Azure): the server gets SIGTERM, so probes fail."""
    watch = 'while [ ! -e go ]; do sleep 0.05; done\necho 1700000120 > "$SKYCTL_NOTICE_FILE"\n'
    run = (
        "trap 'echo drained > drained.txt; exit 0' TERM\n"
        "touch go\n"
        "for i in $(seq 1 400); do sleep 0.05; done\n"
        "echo not-drained > drained.txt\n"
    )
    script = render_bootstrap(
        request(run=run), notice_watch=watch, work_root=str(tmp_path), drain_on_notice=True
    )
    result = run_script(script, tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "svc-7" / "drained.txt").read_text().strip() == "drained"
    assert "draining" in (tmp_path / "svc-7" / "replica.log").read_text()


def test_without_drain_on_notice_the_server_keeps_running() -> None:
    script = render_bootstrap(request(run="true"), notice_watch="true")
    assert "kill -TERM" not in script


def test_rendering_is_deterministic_for_a_retried_launch() -> None:
    req = request(setup="pip install x", run="python -m server", envs={"A": "1"})
    assert render_bootstrap(req) == render_bootstrap(req)
    assert "/opt/skyctl/svc-7" in render_bootstrap(req)


@pytest.mark.parametrize("name", ["1ABC", "A-B", "A B", "$(x)", ""])
def test_env_names_that_are_not_shell_identifiers_are_rejected(name: str) -> None:
    with pytest.raises(SpecError, match="not a valid environment variable name"):
        render_bootstrap(request(envs={name: "v"}))


def test_script_exports_skypilots_task_variables_with_the_nodes_address(tmp_path: Path) -> None:
    dump = (
        "python3 -c 'import json, os; json.dump({k: v for k, v in os.environ.items() "
        'if k.startswith("SKYPILOT_") or k == "PYTHONUNBUFFERED"}, open("env.json", "w"))\'\n'
    )
    req = request(run=dump, envs={"SKYPILOT_NODE_RANK": "5", "PYTHONUNBUFFERED": ""})
    req = replace(req, offering=replace(req.offering, accelerators="A100:8"))
    result = run_script(render_bootstrap(req, work_root=str(tmp_path / "work")), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    env = json.loads((tmp_path / "work" / "svc-7" / "env.json").read_text())
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["SKYPILOT_NODE_RANK"] == "0"  # ours win, as SkyPilot's own do
    assert env["SKYPILOT_NUM_NODES"] == "1" and env["SKYPILOT_NUM_GPUS_PER_NODE"] == "8"
    assert env["SKYPILOT_SERVE_REPLICA_ID"] == "7" and env["SKYPILOT_SERVICE_NAME"] == "svc"
    assert env["SKYPILOT_NODE_IPS"] and " " not in env["SKYPILOT_NODE_IPS"]  # one address
    assert env["SKYPILOT_SETUP_NODE_IPS"] == env["SKYPILOT_NODE_IPS"]
    assert env["SKYPILOT_SETUP_NODE_RANK"] == "0" and env["SKYPILOT_USER"]
    info = json.loads(env["SKYPILOT_CLUSTER_INFO"])
    assert (info["cloud"], info["region"], info["zone"]) == ("aws", "us-east-1", "us-east-1a")
