"""The command line as a hostile or hurried user meets it: every way out is an exit
code and one line on stderr (2 bad input, 1 failure, 130 Ctrl-C), bad arguments
are refused before a controller starts, and Ctrl-C in `serve up` or `serve down`
says what goes on and leaves nothing unaccounted for.
"""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from skyctl import cli as cli_module
from skyctl.cli import cli
from skyctl.cli_exit import run
from tests.helpers.cli import run_cli
from tests.helpers.processes import pids_mentioning

ROOT = Path(__file__).resolve().parent.parent
SPEC = str(ROOT / "manifests" / "http-server.yaml")


def one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("serve", "up", SPEC, "-n", "../etc"), "'-n' / '--name': invalid service name '../etc'"),
        (("serve", "up", SPEC, "-n", ""), "invalid service name ''"),
        (("serve", "validate", "/tmp"), "'FILE': File '/tmp' is a directory"),
        (
            (
                "serve",
                "logs",
            ),
            "Missing argument 'NAME'. (see: ",
        ),
        (("serve", "status", "-o", "xml"), "'xml' is not one of 'table', 'json'"),
        (("serve", "validate", "-"), "-: a spec is read from a file, not standard input"),
        (("serve", "up", "/nonexistent.yaml"), "/nonexistent.yaml: cannot read"),
    ],
)
def test_bad_arguments_are_one_line_before_anything_starts(
    skyctl_home: Path, args: tuple[str, ...], expected: str
) -> None:
    # usage errors were three lines (Usage, Try, Error); `-n ../etc` started a controller
    # before the name was refused
    assert expected in one_line_error(run_cli(skyctl_home, *args), 2)
    assert not (skyctl_home / "controller.json").exists()


def test_a_home_that_is_not_a_directory_is_one_line(tmp_path: Path) -> None:
    # was a FileExistsError traceback
    result = run_cli(tmp_path, "--home", "/dev/null", "serve", "status")
    assert one_line_error(result, 1).startswith(
        "error: state directory /dev/null (--home or $SKYCTL_HOME): cannot create it: it is a file;"
    )


def test_status_json_flag_is_the_documented_output(skyctl_home: Path) -> None:
    for args in (("--json",), ("-o", "json")):
        result = run_cli(skyctl_home, "serve", "status", *args)
        assert result.returncode == 0 and json.loads(result.stdout) == []
    doc = (ROOT / "docs" / "cli.md").read_text()
    assert "`skyctl serve status --json`" in doc


def returned_keys(function: str) -> set[str]:
    """The keys of the dict literal ``function`` in skyctl/controller/describe.py returns."""
    tree = ast.parse((ROOT / "skyctl" / "controller" / "describe.py").read_text())
    (found,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function]
    (answer,) = [n.value for n in ast.walk(found) if isinstance(n, ast.Return)]
    assert isinstance(answer, ast.Dict)
    return {k.value for k in answer.keys if isinstance(k, ast.Constant)}


@pytest.mark.parametrize("function", ["describe_service", "replica_row"])
def test_every_status_json_field_is_documented(function: str) -> None:
    doc = (ROOT / "docs" / "cli.md").read_text().split("## `skyctl serve status --json`")[1]
    documented = set(re.findall(r"`([a-z_]+)`", doc))
    missing = returned_keys(function) - documented
    assert not missing, f"add to docs/cli.md: {sorted(missing)}"


@pytest.mark.parametrize(
    ("error", "code", "stderr"),
    [
        (RuntimeError("boom\nsecond line"), 1, "error: internal error: RuntimeError: boom (run"),
        (
            PermissionError(13, "Permission denied", "/x/state.db"),
            1,
            "error: Permission denied: /x/state.db",
        ),
    ],
)
def test_any_failure_ends_in_one_line_and_an_exit_code(
    error: Exception,
    code: int,
    stderr: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SKYCTL_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", ["skyctl", "fail"])

    @click.group()
    def group() -> None:
        pass

    @group.command()
    def fail() -> None:
        raise error

    with pytest.raises(SystemExit) as info:
        run(group)
    assert info.value.code == code
    err = capsys.readouterr().err
    assert err.strip() == stderr or (err.startswith(stderr) and err.count("\n") == 1)


def test_ctrl_c_before_the_service_is_submitted_says_nothing_was_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_module.ControllerClient, "ensure", interrupted)
    result = CliRunner().invoke(cli, ["--home", str(tmp_path), "serve", "up", SPEC])
    # was click's bare "Aborted."
    assert result.exit_code == 130
    assert "Interrupted before the service was submitted: no service was created" in result.output


SLOW = """\
name: slow
service:
  readiness_probe: {path: /, initial_delay_seconds: 600}
  replicas: 1
run: trap '' TERM; sleep 600
"""


def wait_for_line(proc: subprocess.Popen[str], text: str, seconds: float = 60) -> str:
    deadline = time.monotonic() + seconds
    seen = ""
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        seen += line
        if text in line:
            return seen
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"{text!r} not printed: {seen!r}")


def interrupt(home: Path, *args: str, after: str) -> tuple[int, str]:
    env = {**os.environ, "SKYCTL_HOME": str(home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "skyctl", *args],
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_line(proc, after)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err


@pytest.mark.timeout(240)
def test_ctrl_c_in_up_and_down_says_what_goes_on_and_leaves_nothing(
    tmp_path: Path, skyctl_home: Path
) -> None:
    spec = tmp_path / "slow.yaml"
    spec.write_text(SLOW)
    assert run_cli(skyctl_home, "controller", "start").returncode == 0

    code, err = interrupt(skyctl_home, "serve", "up", str(spec), after="endpoint")
    assert code == 130 and "Traceback" not in err
    assert "Stopped waiting. Service slow keeps starting in the controller" in err
    assert "skyctl serve down slow" in err
    status = run_cli(skyctl_home, "serve", "status", "slow", "--json")
    assert json.loads(status.stdout)[0]["name"] == "slow"  # it was submitted: it is there

    code, err = interrupt(skyctl_home, "serve", "down", "slow", after="Shutting down")
    # was: exit 130 and nothing on stderr, the shutdown's state unsaid
    assert code == 130 and "Traceback" not in err
    assert "Stopped waiting. The shutdown of slow goes on in the controller" in err

    down = run_cli(skyctl_home, "serve", "down", "slow", timeout=180)  # resumes the wait
    assert down.returncode in (0, 2), down.stderr  # 2: it finished in between
    assert run_cli(skyctl_home, "serve", "status").stdout.strip() == "No services."
    assert run_cli(skyctl_home, "controller", "stop", "--all").returncode == 0
    deadline = time.monotonic() + 10
    while pids_mentioning(str(skyctl_home)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert pids_mentioning(str(skyctl_home)) == []  # no replica, router or controller left


def test_tls_files_that_are_not_there_are_refused_before_up(
    tmp_path: Path, skyctl_home: Path
) -> None:
    # was "valid", then a service whose endpoint never opened
    spec = tmp_path / "tls.yaml"
    (tmp_path / "certs").mkdir()
    (tmp_path / "cert.pem").write_text("not checked here: only that it can be read")
    spec.write_text(
        "service:\n  readiness_probe: /\n  replicas: 1\n  tls:\n"
        "    keyfile: $KEYS/key.pem\n    certfile: cert.pem\nrun: x\nenvs:\n  KEYS: certs\n"
    )
    for args in (("up", str(spec)), ("update", "svc", str(spec))):
        line = one_line_error(run_cli(skyctl_home, "serve", *args), 2)
        assert line == (
            f"error: {spec}:5: service.tls.keyfile: {tmp_path}/certs/key.pem: no such readable "
            "file (a relative path is relative to the spec file)"
        )
    assert not (skyctl_home / "controller.json").exists()
    # validate checks the spec only (SkyPilot's READMEs validate with placeholder paths)
    assert run_cli(skyctl_home, "serve", "validate", str(spec)).returncode == 0


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("update", "-n", "svc", "x.yaml"), "no service named 'svc'"),  # was: Missing argument
        (("update", "svc", "x.yaml"), "no service named 'svc'"),
        (("update", "-n", "a", "b", "x.yaml"), "-n a and NAME b differ: give one of them"),
        (("update", "svc"), "give the service and its spec: skyctl serve update NAME FILE"),
    ],
)
def test_update_takes_name_file_or_dash_n(
    tmp_path: Path, skyctl_home: Path, args: tuple[str, ...], expected: str
) -> None:
    spec = tmp_path / "x.yaml"
    spec.write_text("service: {readiness_probe: /, replicas: 1}\nrun: x\n")
    result = run_cli(skyctl_home, "serve", *(str(spec) if a == "x.yaml" else a for a in args))
    assert expected in one_line_error(result, 2)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (("--infra", "aws"), "--infra: skyctl reads resources from the spec only"),
        (("--gpus", "L4:1", "-y"), "set resources.accelerators in FILE"),
        (("--no-use-spot",), "set resources.use_spot in FILE"),
        (("--num-nodes", "2"), "set num_nodes in FILE"),
    ],
)
def test_sky_serve_resource_flags_name_the_spec_key(
    skyctl_home: Path, flags: tuple[str, ...], expected: str
) -> None:
    # were "No such option: --infra" (three lines), as a SkyPilot user types them
    for command in (("up", "-n", "svc"), ("update", "svc")):
        result = run_cli(skyctl_home, "serve", *command, *flags, SPEC)
        assert expected in one_line_error(result, 2)
    assert not (skyctl_home / "controller.json").exists()


def test_dash_y_is_accepted_as_sky_serve_takes_it(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["--home", str(tmp_path), "serve", "update", "-y", "svc", SPEC]
    )
    assert "no service named 'svc'" in str(result.exception)  # got past the options


def test_a_workdir_that_is_not_there_is_refused_before_up(
    tmp_path: Path, skyctl_home: Path
) -> None:
    # was accepted, then every replica FAILED_PROVISION ("workdir: ... is not a directory")
    spec = tmp_path / "svc.yaml"
    spec.write_text("service: {readiness_probe: /, replicas: 1}\nworkdir: ../nowhere\nrun: x\n")
    line = one_line_error(run_cli(skyctl_home, "serve", "up", str(spec)), 2)
    here = os.path.normpath(os.path.join(ROOT, "../nowhere"))  # run_cli runs there
    assert line == (
        f"error: {spec}:2: workdir: ../nowhere: not a directory ({here} nor "
        f"{tmp_path.parent}/nowhere; a relative path is relative to the directory skyctl "
        "runs in, as in SkyPilot, or else to the spec file)"
    )
    assert not (skyctl_home / "controller.json").exists()


@pytest.mark.parametrize(
    "args",
    [("logs", "svc", "--replica", "-1"), ("down", "svc", "--replica-id", "0")],
)
def test_replica_ids_start_at_one(skyctl_home: Path, args: tuple[str, ...]) -> None:
    # `logs --replica -1` reached the controller and came back as "HTTP 404 Not Found"
    line = one_line_error(run_cli(skyctl_home, "serve", *args), 2)
    assert "is not in the range x>=1" in line


@pytest.mark.parametrize(
    ("stdin", "code", "expected"),
    [
        ("", 2, "--all asks first and no answer came: pass -y to confirm"),  # was "Aborted." 130
        ("n\n", 1, "Nothing was taken down."),
    ],
)
def test_down_all_without_yes_says_what_happened(
    skyctl_home: Path, stdin: str, code: int, expected: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "skyctl", "serve", "down", "--all"],
        input=stdin,
        env={**os.environ, "SKYCTL_HOME": str(skyctl_home)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == code
    assert expected in result.stderr and "Traceback" not in result.stderr
