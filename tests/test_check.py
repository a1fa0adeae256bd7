"""`skyctl check`: which clouds are usable, and exactly what to configure for the others."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_e2e_local import cli

CLOUD_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "AZURE_SUBSCRIPTION_ID",
    "AZURE_CLIENT_SECRET",
    "KUBECONFIG",
)


@pytest.fixture
def no_cloud_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in CLOUD_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.aws, ~/.kube, gcloud config


def test_without_credentials_each_cloud_says_what_to_configure(
    skyctl_home: Path, no_cloud_env: None
) -> None:
    result = cli(skyctl_home, "check")
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(": ", 1) for line in result.stdout.strip().splitlines())
    assert lines["local"].startswith("ok")
    assert "aws configure" in lines["aws"]
    assert "GOOGLE_APPLICATION_CREDENTIALS" in lines["gcp"]
    assert "subscription_id" in lines["azure"]
    assert "$SKYCTL_HOME" in lines["azure"]  # where config.yaml is when the home moved
    assert "kubeconfig" in lines["kubernetes"]


def test_a_misspelt_aws_key_is_named_before_the_missing_credentials(
    skyctl_home: Path, no_cloud_env: None
) -> None:
    (skyctl_home / "config.yaml").write_text("aws:\n  regoins: [us-east-1]\n")
    result = cli(skyctl_home, "check")
    lines = dict(line.split(": ", 1) for line in result.stdout.strip().splitlines())
    assert "config.yaml:2: aws.regoins: unknown key (did you mean 'regions'?)" in lines["aws"]


def test_credentials_in_the_environment_make_aws_usable_and_are_never_printed(
    skyctl_home: Path, no_cloud_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEKEYID0001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-value-1234567890")
    result = cli(skyctl_home, "check")
    aws = next(line for line in result.stdout.splitlines() if line.startswith("aws:"))
    assert aws.startswith("aws: ok")
    assert "very-secret-value" not in result.stdout + result.stderr
    assert "AKIAEXAMPLEKEYID0001" not in result.stdout + result.stderr


SDKS = ("boto3", "google.cloud.compute_v1", "azure.mgmt.compute", "kubernetes")

IMPORTED_AFTER_CHECK = """\
import sys
from click.testing import CliRunner
from skyctl.cli import cli
result = CliRunner().invoke(cli, ["check"])
assert result.exit_code == 0, result.output
print(",".join(m for m in {sdks!r} if m in sys.modules))
"""


def imported_by_check(home: Path) -> list[str]:
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    out = subprocess.run(
        [sys.executable, "-c", IMPORTED_AFTER_CHECK.format(sdks=SDKS)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SKYCTL_HOME": str(home), "PYTHONPATH": str(ROOT)},
        check=True,
    ).stdout.strip()
    return [m for m in out.split(",") if m]


def test_check_imports_no_cloud_sdk_for_a_cloud_without_credentials(
    skyctl_home: Path, no_cloud_env: None
) -> None:
    # the SDK imports were what made `check` take seconds (3.5-6.6 s, issue 16)
    assert imported_by_check(skyctl_home) == []


def test_check_imports_only_the_sdk_of_a_cloud_with_credentials(
    skyctl_home: Path, no_cloud_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEKEYID0001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-value-1234567890")
    assert imported_by_check(skyctl_home) == ["boto3"]


AWS_ONLY = """\
service:
  readiness_probe: /
  replicas: 2
resources:
  infra: aws
  ports: 8080
run: python3 -m http.server 8080
"""


def test_serve_up_of_a_spec_whose_only_cloud_has_no_credentials_is_refused_in_one_line(
    skyctl_home: Path, no_cloud_env: None, tmp_path: Path
) -> None:
    spec = tmp_path / "aws.yaml"
    spec.write_text(AWS_ONLY)
    up = cli(skyctl_home, "serve", "up", str(spec), "-n", "web")
    assert up.returncode == 2, up.stdout + up.stderr
    line = up.stderr.strip()
    assert line == (
        "error: the spec's cloud is not usable here: aws: no AWS credentials found: run "
        "`aws configure`, or set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
        "(see `skyctl check`)"
    )
    assert not (skyctl_home / "controller.json").exists()  # refused before any controller
    validate = cli(skyctl_home, "serve", "validate", str(spec))
    assert validate.returncode == 0, validate.stderr
    assert "warning: serve up here would refuse it: the spec's cloud is not usable" in (
        validate.stderr
    )


def test_a_spec_is_refused_only_when_none_of_its_clouds_may_be_used(
    no_cloud_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from skyctl.cli_check import unusable_clouds

    both = unusable_clouds({"aws", "gcp"}, {})
    assert both is not None and both.startswith("the spec's clouds are not usable here: aws: ")
    assert "; gcp: no Google credentials found" in both
    assert unusable_clouds({"aws", "local"}, {}) is None  # the local provider can run it
    assert unusable_clouds({"gcp"}, {"gcp": {"project": "p", "credentials": "anonymous"}}) is None
    monkeypatch.setenv("AWS_PROFILE", "work")
    assert unusable_clouds({"aws", "gcp"}, {}) is None  # one may be: the controller decides
