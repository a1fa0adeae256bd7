"""The user config file: one-line errors naming the file, line and section."""

from __future__ import annotations

from pathlib import Path

import pytest

from skyctl.config import load_user_config, paths, router_workers
from skyctl.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("aws: {}\nawz: {}\n", "config.yaml:2: unknown section 'awz' (did you mean 'aws'?)"),
        ("aws: 3\n", "config.yaml:1: section 'aws' must be a mapping"),
        ("aws: [\n", "config.yaml:2: not valid YAML"),
        ("- aws\n", "config.yaml: expected a mapping of sections"),
        (
            "aws: {}\nrouter:\n  worker: 4\n",
            "config.yaml:3: router.worker: unknown key (did you mean 'workers'?); allowed: workers",
        ),
        ("local: {gpus: 1}\n", "config.yaml:1: local.gpus: unknown key; allowed: accelerators"),
        ("controller: {port: 8000}\n", "config.yaml:1: unknown section 'controller'"),
        # the replica log cap (providers/local_logs.py)
        (
            "local:\n  log_max_mb: big\n",
            "config.yaml:2: local.log_max_mb: expected a positive number of MiB (default 32), "
            "got 'big'",
        ),
        ("local:\n  accelerators: {}\n  log_max_mb: 0\n", "config.yaml:3: local.log_max_mb:"),
        (
            "local:\n  log_backups: 10\n",
            "config.yaml:2: local.log_backups: expected an integer from 0 to 9 (default 1), got 10",
        ),
        ("local: {log_backups: -1}\n", "config.yaml:1: local.log_backups:"),
    ],
)
def test_a_bad_config_file_is_one_line_naming_where(
    tmp_path: Path, text: str, message: str
) -> None:
    error = config_error(tmp_path, text)
    assert message in error
    assert "\n" not in error


def config_error(home: Path, text: str) -> str:
    """The error ``config.yaml`` holding ``text`` in ``home`` is refused with."""
    p = paths(home)
    p.config.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_user_config(p)
    return str(err.value)


def test_a_good_config_gives_each_cloud_its_section(tmp_path: Path) -> None:
    p = paths(tmp_path)
    p.config.write_text("aws:\n  regions: [us-east-1]\ngcp:\n")
    assert load_user_config(p) == {"aws": {"regions": ["us-east-1"]}, "gcp": {}}


def test_no_config_file_is_an_empty_config(tmp_path: Path) -> None:
    assert load_user_config(paths(tmp_path)) == {}


@pytest.mark.parametrize("value", ["0", "65", "two", "true", "1.5"])
def test_router_workers_must_be_a_small_positive_integer(tmp_path: Path, value: str) -> None:
    p = paths(tmp_path)
    p.config.write_text(f"local: {{}}\nrouter:\n  workers: {value}\n")
    with pytest.raises(ConfigError) as e:
        router_workers(p)
    # the line of the workers key itself
    assert "config.yaml:3: router.workers: expected an integer from 1 to 64, got" in str(e.value)
    assert "\n" not in str(e.value)


def test_router_must_be_a_mapping(tmp_path: Path) -> None:
    p = paths(tmp_path)
    p.config.write_text("local: {}\nrouter: 4\n")
    with pytest.raises(ConfigError, match=r"config.yaml:2: section 'router' must be a mapping"):
        router_workers(p)


def test_router_workers_default_to_one(tmp_path: Path) -> None:
    p = paths(tmp_path)
    assert router_workers(p) == 1
    p.config.write_text("router:\n  workers: 4\n")
    assert router_workers(p) == 4
