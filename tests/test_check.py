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
    assert "kubeconfig" in lines["kubernetes"]


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
