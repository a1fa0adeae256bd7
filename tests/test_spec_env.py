"""envs and secrets: the command line's overrides, and where they are substituted.

SkyServe's semantics (sky/task.py, sky/client/cli/flags.py): ``--env KEY=V``
and ``--secret KEY=V`` override the spec, ``KEY`` alone reads the shell,
``--env-file`` fills envs and secrets; then ``$NAME``/``${NAME}`` are replaced in
``service:``, ``file_mounts:``, ``workdir:`` and ``volumes:`` only.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from skyctl.errors import SpecError
from skyctl.spec_env import merge_overrides, parse_assignment
from skyctl.spec_yaml import parse_spec
from tests.helpers.cli import run_cli

BLANK = """\
name: llm
envs:
  MODEL_NAME: meta-llama/Llama-3-8B
  HF_TOKEN:
secrets:
  AUTH_TOKEN:
service:
  readiness_probe:
    path: /v1/chat/completions
    post_data:
      model: $MODEL_NAME
      messages: [{role: user, content: "cost $5"}]
    headers:
      Authorization: Bearer ${AUTH_TOKEN}
  replicas: 1
resources:
  ports: 8000
run: vllm serve $MODEL_NAME --api-key $AUTH_TOKEN
"""


def test_a_blank_value_is_one_line_naming_the_key_and_the_flag() -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(BLANK, "llm.yaml")
    message = str(err.value)
    assert message.startswith("llm.yaml:4: envs.HF_TOKEN: no value given: pass --env HF_TOKEN=")
    assert "\n" not in message
    with pytest.raises(SpecError, match=r"llm.yaml:6: secrets.AUTH_TOKEN: .*--secret AUTH_TOKEN"):
        parse_spec(BLANK, "llm.yaml", envs={"HF_TOKEN": "hf"})


def test_overrides_fill_blanks_replace_values_and_add_new_variables() -> None:
    spec = parse_spec(
        BLANK,
        envs={"HF_TOKEN": "hf", "MODEL_NAME": "Qwen/Qwen3-8B", "EXTRA": "1"},
        secrets={"AUTH_TOKEN": "tok"},
    )
    assert spec.envs == {"MODEL_NAME": "Qwen/Qwen3-8B", "HF_TOKEN": "hf", "EXTRA": "1"}
    assert spec.secrets == {"AUTH_TOKEN": "tok"}
    # an empty value is a value
    assert (
        parse_spec(BLANK, envs={"HF_TOKEN": ""}, secrets={"AUTH_TOKEN": ""}).envs["HF_TOKEN"] == ""
    )


def test_the_probe_body_and_headers_get_envs_and_secrets() -> None:
    spec = parse_spec(BLANK, envs={"HF_TOKEN": "hf"}, secrets={"AUTH_TOKEN": "tok"})
    probe = spec.service.readiness_probe
    assert probe.post_data is not None
    body = json.loads(probe.post_data)
    assert body["model"] == "meta-llama/Llama-3-8B"
    assert body["messages"][0]["content"] == "cost $5"  # not a variable name: kept
    assert probe.headers == {"Authorization": "Bearer tok"}
    assert spec.run == "vllm serve $MODEL_NAME --api-key $AUTH_TOKEN"  # run sees them as envs


def test_post_data_as_json_text_and_header_names_are_substituted() -> None:
    text = """\
envs: {MODEL: m1, HEADER: X-Model}
service:
  readiness_probe:
    path: /v1/completions
    post_data: '{"model": "$MODEL", "prompt": "hi"}'
    headers: {$HEADER: $MODEL}
run: serve
"""
    probe = parse_spec(text).service.readiness_probe
    assert probe.post_data is not None and json.loads(probe.post_data)["model"] == "m1"
    assert probe.headers == {"X-Model": "m1"}


def test_a_secret_wins_over_an_env_of_the_same_name_in_substitution() -> None:
    text = "envs: {T: env}\nsecrets: {T: secret}\nservice:\n  readiness_probe:\n"
    text += "    path: /\n    headers: {X-T: $T}\nrun: serve\n"
    assert parse_spec(text).service.readiness_probe.headers == {"X-T": "secret"}


def test_tls_paths_are_substituted_then_anchored_to_the_spec_file(tmp_path: Path) -> None:
    text = """\
envs:
  TLS_KEYFILE_ENV_VAR:
secrets:
  TLS_CERTFILE_ENV_VAR:
service:
  readiness_probe: /
  tls:
    keyfile: $TLS_KEYFILE_ENV_VAR
    certfile: ${TLS_CERTFILE_ENV_VAR}
run: serve
"""
    spec = parse_spec(
        text,
        str(tmp_path / "svc.yaml"),
        envs={"TLS_KEYFILE_ENV_VAR": "certs/key.pem"},
        secrets={"TLS_CERTFILE_ENV_VAR": "/etc/cert.pem"},
    )
    assert spec.service.tls is not None
    assert spec.service.tls.keyfile == str(tmp_path / "certs/key.pem")
    assert spec.service.tls.certfile == "/etc/cert.pem"


def test_file_mounts_keys_and_values_workdir_and_volumes_are_substituted() -> None:
    text = """\
envs: {SIZE: "7", BUCKET: weights, DIR: app}
file_mounts:
  /models/llama-${SIZE}b: s3://$BUCKET/llama-${SIZE}b
  /data:
    name: $BUCKET-cache
    mode: MOUNT
workdir: ./$DIR
volumes:
  /mnt/$DIR: vol-$SIZE
service: {readiness_probe: /}
run: serve $UNKNOWN
"""
    spec = parse_spec(text)
    assert spec.extra["file_mounts"] == {
        "/models/llama-7b": "s3://weights/llama-7b",
        "/data": {"name": "weights-cache", "mode": "MOUNT"},
    }
    assert spec.workdir == "./app"
    assert spec.extra["volumes"] == {"/mnt/app": "vol-7"}
    assert spec.run == "serve $UNKNOWN"


def test_names_that_are_not_variables_stay_as_written() -> None:
    text = "envs: {A: x}\nservice:\n  readiness_probe:\n    path: /\n"
    text += "    headers: {X-A: '$A $B ${C} $$ 5$'}\nrun: serve\n"
    assert parse_spec(text).service.readiness_probe.headers == {"X-A": "x $B ${C} $$ 5$"}


def test_managed_secret_references_are_kept_and_an_inline_value_can_fill_them() -> None:
    listed = parse_spec("secrets: ['secrets:HF_TOKEN']\nservice: {}\nrun: x\n")
    assert listed.extra["secrets"] == ["secrets:HF_TOKEN"] and listed.secrets == {}
    mapped = parse_spec("secrets: {'secrets:HF_TOKEN': null, B: b}\nservice: {}\nrun: x\n")
    assert mapped.extra["secrets"] == ["secrets:HF_TOKEN"] and mapped.secrets == {"B": "b"}
    filled = parse_spec("secrets: ['secrets:A']\nservice: {}\nrun: x\n", secrets={"A": "a"})
    assert filled.secrets == {"A": "a"}
    with pytest.raises(SpecError, match=r"secrets.secrets:A: a managed secret reference .* null"):
        parse_spec("secrets: {'secrets:A': x}\nservice: {}\nrun: x\n")
    with pytest.raises(SpecError, match=r":1: secrets\[0\]: expected a managed secret reference"):
        parse_spec("secrets: [HF_TOKEN]\nservice: {}\nrun: x\n")


# -- the command line's side ------------------------------------------------------


def test_key_alone_reads_the_local_environment() -> None:
    assert parse_assignment("A=b=c", "--env", {}) == ("A", "b=c")
    assert parse_assignment("A=", "--env", {}) == ("A", "")
    assert parse_assignment("HF_TOKEN", "--secret", {"HF_TOKEN": "hf"}) == ("HF_TOKEN", "hf")
    with pytest.raises(ValueError, match=r"^--env HF_TOKEN: HF_TOKEN is not set in the local"):
        parse_assignment("HF_TOKEN", "--env", {})
    with pytest.raises(ValueError, match=r"'1A' is not a variable name"):
        parse_assignment("1A=x", "--env", {})


def test_flags_beat_files_and_later_files_beat_earlier_ones() -> None:
    env_file, secret_file = {"A": "file", "B": "file", "C": None}, {"B": "secret-file"}
    assert merge_overrides([env_file], [("A", "flag")]) == {"A": "flag", "B": "file"}
    assert merge_overrides([env_file, secret_file], []) == {"A": "file", "B": "secret-file"}


def test_validate_takes_env_env_file_and_secret_flags(tmp_path: Path) -> None:
    spec = tmp_path / "llm.yaml"
    spec.write_text(BLANK)
    dotenv = tmp_path / ".env"
    dotenv.write_text("# tokens\nHF_TOKEN=from-file\nAUTH_TOKEN='tok en'\n")
    home = tmp_path / "home"

    missing = run_cli(home, "serve", "validate", str(spec))
    assert missing.returncode == 2
    assert missing.stderr.strip().endswith(
        "(or --env HF_TOKEN to take $HF_TOKEN from your "
        'shell), or write HF_TOKEN: "" for an empty value'
    )
    assert len(missing.stderr.strip().splitlines()) == 1
    ok = run_cli(home, "serve", "validate", str(spec), "--env-file", str(dotenv))
    assert ok.returncode == 0, ok.stderr
    ok = run_cli(
        home, "serve", "validate", str(spec), "--env", "HF_TOKEN=x", "--secret", "AUTH_TOKEN=y"
    )
    assert ok.returncode == 0, ok.stderr
    unset = run_cli(home, "serve", "validate", str(spec), "--env", "SKYCTL_TEST_UNSET_VAR")
    assert unset.returncode == 2
    assert unset.stderr.strip() == (
        "error: --env SKYCTL_TEST_UNSET_VAR: SKYCTL_TEST_UNSET_VAR is not set in the local "
        "environment; export it, or pass --env SKYCTL_TEST_UNSET_VAR=VALUE"
    )


def test_a_managed_secret_reference_without_a_value_gets_a_note(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from skyctl.cli import cli

    spec = tmp_path / "s.yaml"
    spec.write_text("secrets: ['secrets:workspace.HF_TOKEN']\nservice: {}\nrun: serve\n")
    base = ["--home", str(tmp_path / "home"), "serve", "validate", str(spec)]
    noted = CliRunner().invoke(cli, base)
    assert noted.exit_code == 0, noted.output
    assert noted.stderr == (
        "note: secrets:HF_TOKEN is a managed secret reference and skyctl has no secret store: "
        "replicas get no HF_TOKEN unless you pass --secret HF_TOKEN\n"
    )
    given = CliRunner().invoke(cli, [*base, "--secret", "HF_TOKEN=hf"])
    assert given.exit_code == 0 and given.stderr == ""
