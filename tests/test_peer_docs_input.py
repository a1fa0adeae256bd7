"""Bad input at the command line, as a peer reads docs/cli.md ("Exit codes and errors")
and README.md's command table, checked black-box through ``python -m skyctl``.

Exit 2 and one ``error: ...`` line on stderr for a usage error, a spec the loader
refuses and a service that does not exist; exit 1 for what is not the input's
fault; arguments are checked before anything starts (no controller is left
behind by a refused command). No test here needs a running controller.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.cli import run_cli
from tests.helpers.processes import pids_mentioning

SPEC = """\
name: web
service:
  readiness_probe: /
  replicas: 1
run: exec python3 -m http.server "$PORT" --bind 127.0.0.1
"""


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "web.yaml"
    path.write_text(SPEC)
    return path


def one_error_line(stderr: str) -> str:
    """The one line a refused command prints: ``error: ...``."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    return lines[0]


def nothing_started(home: Path) -> None:
    assert not (home / "controller.json").exists()
    assert not (home / "supervisor.json").exists()
    assert pids_mentioning(str(home)) == []


@pytest.mark.parametrize("group", [[], ["serve"], ["controller"]])
def test_a_command_group_alone_prints_its_help_on_stderr_with_exit_2(
    skyctl_home: Path, group: list[str]
) -> None:
    result = run_cli(skyctl_home, *group)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Usage:" in result.stderr and "Commands:" in result.stderr


@pytest.mark.parametrize("name", ["../etc", "1abc", "a b", "web-", "-web", "x" * 64, "ünï"])
def test_serve_up_refuses_a_name_skypilot_would_refuse_with_the_rule_in_one_line(
    skyctl_home: Path, spec: Path, name: str
) -> None:
    result = run_cli(skyctl_home, "serve", "up", "-n", name, str(spec))
    assert result.returncode == 2
    line = one_error_line(result.stderr)
    assert "Invalid value for '-n' / '--name': invalid service name" in line
    assert (
        "letters, digits, '-', '_' and '.', starting with a letter and ending with a letter "
        "or digit, at most 63 characters" in line
    )
    assert line.endswith("serve up --help)")
    nothing_started(skyctl_home)


def test_the_documented_bad_name_line_is_printed_word_for_word(
    skyctl_home: Path, spec: Path
) -> None:
    result = run_cli(skyctl_home, "serve", "up", "-n", "../etc", str(spec))
    assert one_error_line(result.stderr) == (
        "error: Invalid value for '-n' / '--name': invalid service name '../etc': letters, "
        "digits, '-', '_' and '.', starting with a letter and ending with a letter or digit, "
        "at most 63 characters (see: python -m skyctl serve up --help)"
    )


@pytest.mark.parametrize("name", ["a", "web.v2", "my_svc-1", "x" * 63])
def test_names_skypilot_accepts_pass_the_name_check(
    skyctl_home: Path, spec: Path, name: str
) -> None:
    # `validate` checks the spec only; `up -n NAME` with a bad timeout fails on the
    # timeout, so the name got through
    result = run_cli(skyctl_home, "serve", "up", "-n", name, "--timeout", "-1", str(spec))
    assert result.returncode == 2
    assert "--timeout" in one_error_line(result.stderr)


def test_serve_update_refuses_a_bad_name_before_anything_starts(
    skyctl_home: Path, spec: Path
) -> None:
    result = run_cli(skyctl_home, "serve", "update", "../x", str(spec))
    assert result.returncode == 2
    assert "invalid service name '../x'" in one_error_line(result.stderr)
    nothing_started(skyctl_home)


@pytest.mark.parametrize(
    "args",
    [
        ["serve", "up", "--timeout", "-1"],
        ["serve", "up", "--timeout", "nan"],
        ["serve", "update", "web", "--timeout", "-1"],
        ["serve", "update", "web", "--timeout", "nan"],
    ],
)
def test_a_timeout_below_0_or_nan_is_a_usage_error_and_starts_nothing(
    skyctl_home: Path, spec: Path, args: list[str]
) -> None:
    result = run_cli(skyctl_home, *args, str(spec))
    assert result.returncode == 2
    assert "--timeout" in one_error_line(result.stderr)
    nothing_started(skyctl_home)


@pytest.mark.parametrize("command", ["up", "validate"])
def test_a_spec_from_standard_input_is_refused_saying_to_give_a_file(
    skyctl_home: Path, command: str
) -> None:
    result = run_cli(skyctl_home, "serve", command, "-")
    assert result.returncode == 2
    assert "a spec is read from a file" in one_error_line(result.stderr)


@pytest.mark.parametrize(
    ("flag", "key"),
    [
        (["--gpus", "A100"], "resources.accelerators"),
        (["--cpus", "2"], "resources.cpus"),
        (["--memory", "4"], "resources.memory"),
        (["--infra", "aws"], "resources.infra"),
        (["--cloud", "aws"], "resources.cloud"),
        (["--region", "us-east-1"], "resources.region"),
        (["--zone", "us-east-1a"], "resources.zone"),
        (["--disk-size", "10"], "resources.disk_size"),
        (["--image-id", "x"], "resources.image_id"),
        (["--ports", "8080"], "resources.ports"),
        (["--num-nodes", "2"], "num_nodes"),
        (["--workdir", "."], "workdir"),
        (["--use-spot"], "resources.use_spot"),
        (["--no-use-spot"], "resources.use_spot"),
        (["--instance-type", "m5.large"], "resources.instance_type"),
        (["-t", "m5.large"], "resources.instance_type"),
        (["--disk-tier", "high"], "resources.disk_tier"),
        (["--network-tier", "best"], "resources.network_tier"),
        (["--local-disk", "nvme"], "resources.local_disk"),
    ],
)
def test_a_skypilot_resource_override_is_refused_naming_the_flag_and_the_spec_key(
    skyctl_home: Path, spec: Path, flag: list[str], key: str
) -> None:
    commands = [["serve", "up", str(spec)]]
    if flag[0] in ("--gpus", "--use-spot"):  # update takes the same flags
        commands.append(["serve", "update", "web", str(spec)])
    for command in commands:
        result = run_cli(skyctl_home, *command, *flag)
        assert result.returncode == 2
        line = one_error_line(result.stderr)
        typed = "--instance-type" if flag[0] == "-t" else flag[0]
        assert line.startswith(f"error: {typed}: skyctl reads resources from the spec only")
        assert f"set {key} in FILE" in line
    nothing_started(skyctl_home)


def test_a_spec_error_is_file_line_key_and_what_is_allowed(
    skyctl_home: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(SPEC.replace("  replicas: 1\n", "  replicas: 1\n  replica: 2\n"))
    for command in ("up", "validate"):
        result = run_cli(skyctl_home, "serve", command, str(bad))
        assert result.returncode == 2
        line = one_error_line(result.stderr)
        assert line.startswith(f"error: {bad}:5: service.replica: unknown key"), line
    nothing_started(skyctl_home)


def test_a_spec_file_that_does_not_exist_is_exit_2(skyctl_home: Path, tmp_path: Path) -> None:
    result = run_cli(skyctl_home, "serve", "up", str(tmp_path / "missing.yaml"))
    assert result.returncode == 2
    assert "missing.yaml" in one_error_line(result.stderr)
    nothing_started(skyctl_home)


def test_a_directory_where_the_spec_file_goes_is_exit_2(skyctl_home: Path, tmp_path: Path) -> None:
    result = run_cli(skyctl_home, "serve", "up", str(tmp_path))
    assert result.returncode == 2
    assert "is a directory" in one_error_line(result.stderr)


def test_serve_status_with_no_controller_is_an_empty_json_list_or_no_services(
    skyctl_home: Path,
) -> None:
    for args in (["-o", "json"], ["--json"]):
        result = run_cli(skyctl_home, "serve", "status", *args)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "[]"
    table = run_cli(skyctl_home, "serve", "status")
    assert table.returncode == 0 and table.stdout.strip() == "No services."
    nothing_started(skyctl_home)


@pytest.mark.parametrize(
    "args",
    [
        ["serve", "status", "nosuch"],
        ["serve", "status", "nosuch", "-o", "json"],
        ["serve", "status", "--endpoint", "nosuch"],
        ["serve", "logs", "nosuch"],
        ["serve", "logs", "nosuch", "--events"],
        ["serve", "down", "nosuch"],
        ["serve", "down", "nosuch", "--replica-id", "1"],
        ["serve", "retry", "nosuch"],
    ],
)
def test_a_service_that_does_not_exist_is_exit_2_naming_it(
    skyctl_home: Path, args: list[str]
) -> None:
    result = run_cli(skyctl_home, *args)
    assert result.returncode == 2
    assert "no service named 'nosuch'" in one_error_line(result.stderr)


def test_serve_update_of_a_service_that_does_not_exist_is_exit_2(
    skyctl_home: Path, spec: Path
) -> None:
    result = run_cli(skyctl_home, "serve", "update", "nosuch", str(spec))
    assert result.returncode == 2
    assert "no service named 'nosuch'" in one_error_line(result.stderr)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["serve", "status", "-o", "yaml"], "'-o' / '--output'"),
        (["serve", "logs", "web", "--replica", "0"], "'--replica'"),
        (["serve", "logs", "web", "0"], "REPLICA_ID"),
        (["serve", "logs", "web", "abc"], "REPLICA_ID"),
        (["serve", "logs", "web", "--tail", "-1"], "'--tail'"),
        (["serve", "logs", "web", "--tail", "x"], "'--tail'"),
        (["serve", "down", "web", "--replica-id", "0"], "'--replica-id'"),
        (["serve", "down", "web", "--timeout", "-1"], "'--timeout'"),
        (["serve", "update", "web", "FILE", "--mode", "purple"], "'--mode'"),
    ],
)
def test_a_bad_flag_value_is_one_line_naming_the_flag_and_pointing_at_help(
    skyctl_home: Path, args: list[str], named: str
) -> None:
    result = run_cli(skyctl_home, *args)
    assert result.returncode == 2
    line = one_error_line(result.stderr)
    assert named in line, line
    assert line.endswith(f"(see: python -m skyctl {args[0]} {args[1]} --help)"), line
    nothing_started(skyctl_home)


@pytest.mark.parametrize(
    "args",
    [
        ["serve", "logs", "web", "1", "--replica", "2"],
        ["serve", "logs", "web", "1", "2"],
        ["serve", "logs", "web", "--events", "--controller"],
        ["serve", "logs", "web", "--controller", "--load-balancer"],
        ["serve", "logs", "web", "--replica", "1", "--events"],
    ],
)
def test_serve_logs_takes_one_target_at_a_time(skyctl_home: Path, args: list[str]) -> None:
    result = run_cli(skyctl_home, *args)
    assert result.returncode == 2
    one_error_line(result.stderr)


@pytest.mark.parametrize(
    "args",
    [
        ["serve", "down"],
        ["serve", "down", "web", "--all"],
        ["serve", "down", "a", "b", "--replica-id", "1"],
        ["serve", "down", "--all", "--replica-id", "1"],
    ],
)
def test_serve_down_needs_names_or_all_and_replica_id_one_service(
    skyctl_home: Path, args: list[str]
) -> None:
    result = run_cli(skyctl_home, *args)
    assert result.returncode == 2
    one_error_line(result.stderr)


def test_serve_down_all_with_no_answer_is_a_usage_error_saying_to_pass_y(
    skyctl_home: Path,
) -> None:
    result = run_cli(skyctl_home, "serve", "down", "--all")  # stdin: nothing (not a tty)
    assert result.returncode == 2
    assert "pass -y" in result.stderr


def test_serve_down_all_answered_no_takes_nothing_down_with_exit_1(skyctl_home: Path) -> None:
    import os
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "skyctl", "serve", "down", "--all"],
        input="n\n",
        env={**os.environ, "SKYCTL_HOME": str(skyctl_home)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "Nothing was taken down." in result.stdout + result.stderr


def test_a_state_directory_that_is_a_file_is_exit_1_saying_what_to_set(
    tmp_path: Path, spec: Path
) -> None:
    result = run_cli(Path("/dev/null"), "serve", "status")
    assert result.returncode == 1
    assert one_error_line(result.stderr) == (
        "error: state directory /dev/null (--home or $SKYCTL_HOME): cannot create it: it is a "
        "file; set SKYCTL_HOME (or --home) to a directory you can write"
    )


def test_serve_cost_refuses_a_window_that_does_not_start_before_it_ends(
    skyctl_home: Path,
) -> None:
    result = run_cli(skyctl_home, "serve", "cost", "--since", "2026-12-07", "--until", "2026-12-01")
    assert result.returncode == 2
    assert "is not before --until" in one_error_line(result.stderr)


def test_serve_validate_of_a_good_spec_says_valid_on_stdout_with_exit_0(
    skyctl_home: Path, spec: Path
) -> None:
    result = run_cli(skyctl_home, "serve", "validate", str(spec))
    assert result.returncode == 0, result.stderr
    assert "valid (" in result.stdout
    assert result.stderr == ""
    nothing_started(skyctl_home)


def test_serve_validate_warns_about_a_missing_tls_file_but_exits_0(
    skyctl_home: Path, tmp_path: Path
) -> None:
    tls = tmp_path / "tls.yaml"
    tls.write_text(
        SPEC.replace(
            "  replicas: 1\n",
            "  replicas: 1\n  tls:\n    keyfile: /nonexistent/key.pem\n"
            "    certfile: /nonexistent/cert.pem\n",
        )
    )
    result = run_cli(skyctl_home, "serve", "validate", str(tls))
    assert result.returncode == 0, result.stderr
    assert "valid (" in result.stdout
    assert result.stderr.startswith("warning: serve up here would refuse it: ")
    up = run_cli(skyctl_home, "serve", "up", str(tls))
    assert up.returncode == 2
    assert result.stderr.split("would refuse it: ", 1)[1].splitlines()[0] in up.stderr
    nothing_started(skyctl_home)


@pytest.mark.parametrize(
    ("flag", "content", "said"),
    [
        ("--env-file", "A=1\nthis is not dotenv\n", ":2: expected KEY=VALUE (dotenv)"),
        ("--secret-file", "B=2\n= nothing\n", ":2: expected KEY=VALUE (dotenv)"),
    ],
)
def test_a_dotenv_file_with_a_line_it_cannot_parse_is_refused_naming_file_and_line(
    skyctl_home: Path, spec: Path, tmp_path: Path, flag: str, content: str, said: str
) -> None:
    env_file = tmp_path / "bad.env"
    env_file.write_text(content)
    result = run_cli(skyctl_home, "serve", "up", str(spec), flag, str(env_file))
    assert result.returncode == 2
    assert f"{flag} {env_file}{said}" in one_error_line(result.stderr)
    nothing_started(skyctl_home)


@pytest.mark.parametrize("flag", ["--env-file", "--secret-file"])
def test_dev_zero_as_a_dotenv_file_is_refused_at_once(
    skyctl_home: Path, spec: Path, flag: str
) -> None:
    result = run_cli(skyctl_home, "serve", "up", str(spec), flag, "/dev/zero")
    assert result.returncode == 2
    assert "not a regular file" in one_error_line(result.stderr)


def test_dev_zero_as_a_spec_is_refused_at_once_as_too_large(skyctl_home: Path) -> None:
    result = run_cli(skyctl_home, "serve", "up", "/dev/zero")
    assert result.returncode == 2
    assert "too large: a spec is at most 256 KiB" in one_error_line(result.stderr)


def test_an_env_taken_from_an_unset_shell_variable_is_refused_naming_it(
    skyctl_home: Path, spec: Path
) -> None:
    result = run_cli(skyctl_home, "serve", "up", str(spec), "--env", "PEER_UNSET_VARIABLE")
    assert result.returncode == 2
    assert "PEER_UNSET_VARIABLE is not set" in one_error_line(result.stderr)


def test_validate_refuses_a_region_that_does_not_exist_with_its_line(
    skyctl_home: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "region.yaml"
    bad.write_text(SPEC + "resources:\n  cloud: aws\n  region: xx-nowhere-1\n")
    result = run_cli(skyctl_home, "serve", "validate", str(bad))
    assert result.returncode == 2
    line = one_error_line(result.stderr)
    assert line.startswith(f"error: {bad}:8: resources.region: unknown aws region 'xx-nowhere-1'")


def test_a_cloud_not_usable_here_is_refused_by_up_and_a_warning_in_validate(
    skyctl_home: Path, tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys

    aws = tmp_path / "aws.yaml"
    aws.write_text(SPEC + "resources:\n  cloud: aws\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(SKYCTL_HOME=str(skyctl_home), HOME=str(tmp_path))  # no ~/.aws
    outcomes = {}
    for command in ("up", "validate"):
        outcomes[command] = subprocess.run(
            [sys.executable, "-m", "skyctl", "serve", command, str(aws)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    up, validate = outcomes["up"], outcomes["validate"]
    assert up.returncode == 2
    assert one_error_line(up.stderr).startswith(
        "error: the spec's cloud is not usable here: aws: no AWS credentials found"
    )
    assert validate.returncode == 0 and "valid (" in validate.stdout
    assert validate.stderr.startswith("warning: serve up here would refuse it: the spec's cloud")
    nothing_started(skyctl_home)


def test_version_prints_the_version(skyctl_home: Path) -> None:
    result = run_cli(skyctl_home, "--version")
    assert result.returncode == 0 and result.stdout.startswith("skyctl, version ")


def test_update_mode_is_case_insensitive_as_in_sky_serve(skyctl_home: Path, spec: Path) -> None:
    result = run_cli(skyctl_home, "serve", "update", "nosuch", str(spec), "--mode", "BLUE_GREEN")
    assert result.returncode == 2
    assert "no service named 'nosuch'" in one_error_line(result.stderr)  # past the --mode check


def test_serve_up_takes_sky_serves_service_name_spelling(skyctl_home: Path, spec: Path) -> None:
    result = run_cli(skyctl_home, "serve", "up", "--service-name", "../x", str(spec))
    assert result.returncode == 2
    assert "invalid service name '../x'" in one_error_line(result.stderr)
