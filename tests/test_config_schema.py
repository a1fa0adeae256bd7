"""config.yaml is checked whole when it is read: every section and key, with the file,
the line, the dotted key and what is allowed, before any provider is built (a typo in
``gcp:`` was found only when a service first used GCP, deep in the controller).

The schema (skyctl/config_schema.py) imports no SDK; it is held here to the providers'
own checks: the same keys, and what it refuses they refuse too (it is never stricter
on a section the provider takes, for the good sections below).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from skyctl.config import load_user_config, paths, read_user_config
from skyctl.config_schema import SECTIONS, Bad, check_section
from skyctl.errors import ConfigError
from tests.test_config import config_error


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "local: {}\naws:\n  regoins: [us-east-1]\n",
            "config.yaml:3: aws.regoins: unknown key (did you mean 'regions'?); allowed: "
            "regions, endpoint_url, profile, catalog, ami, max_attempts, price_ttl_seconds",
        ),
        (
            "aws:\n  max_attempts: many\n",
            "config.yaml:2: aws.max_attempts: expected a number >= 1, got 'many'",
        ),
        (
            "aws:\n  regions: us-east-1\n",
            "config.yaml:2: aws.regions: expected a list of region names",
        ),
        (
            "gcp:\n  project: p\n  disk_size: big\n",
            "config.yaml:3: gcp.disk_size: expected an integer >= 1, got 'big'",
        ),
        (
            "gcp:\n  credentials: mine\n",
            "config.yaml:2: gcp.credentials: expected one of default, anonymous, got 'mine'",
        ),
        ("gcp:\n  network:\n", "config.yaml:2: gcp.network: expected a non-empty string, got None"),
        (
            "gcp:\n  source_ranges:\n    - 0.0.0.0/0\n    - 10.0.0.0/33\n",
            "config.yaml:4: gcp.source_ranges[1]: expected a CIDR range such as 10.0.0.0/8, "
            "got '10.0.0.0/33'",
        ),
        (
            "azure:\n  subscripton_id: x\n",
            "config.yaml:2: azure.subscripton_id: unknown key (did you mean 'subscription_id'?)",
        ),
        (
            "azure:\n  base_url: http://arm\n",
            "config.yaml:2: azure.base_url: expected an https:// URL",
        ),
        (
            "azure:\n  max_attempts: 2.5\n",
            "config.yaml:2: azure.max_attempts: expected an integer >= 1, got 2.5",
        ),
        (
            "kubernetes:\n  contexts:\n    - gke-us\n    - name: eks\n      namespce: x\n",
            "config.yaml:5: kubernetes.contexts[1].namespce: unknown key "
            "(did you mean 'namespace'?)",
        ),
        (
            "kubernetes:\n  contexts: [a, {name: a}]\n",
            "config.yaml:2: kubernetes.contexts[1]: 'a' is listed twice",
        ),
        (
            "kubernetes:\n  namespace: My_NS\n",
            "config.yaml:2: kubernetes.namespace: expected a namespace name",
        ),
        (
            "kubernetes:\n  spot_price: -1\n",
            "config.yaml:2: kubernetes.spot_price: expected a number >= 0, got -1",
        ),
        (
            "kubernetes:\n  on_demand: {}\n",
            "config.yaml:2: kubernetes.on_demand: only with capacity_preset: custom",
        ),
        (
            "kubernetes:\n  capacity_preset: custom\n  spot:\n    tolerations:\n"
            "      - {key: a, efect: NoSchedule}\n",
            "config.yaml:5: kubernetes.spot.tolerations[0].efect: unknown key "
            "(did you mean 'effect'?)",
        ),
        (
            "kubernetes:\n  endpoint_mode: nodeport\n",
            "config.yaml:2: kubernetes.endpoint_mode: expected one of pod_ip, service",
        ),
        (
            "simulated:\n  zones: 0\n",
            "config.yaml:2: simulated.zones: expected an integer >= 1, got 0",
        ),
        (
            "simulated:\n  launch_failure_rate: 2\n",
            "config.yaml:2: simulated.launch_failure_rate: expected a number from 0 to 1, got 2",
        ),
        (
            "local:\n  accelerators: {L4: 0}\n",
            "config.yaml:2: local.accelerators: expected NAME: COUNT (a positive number), "
            "got L4: 0",
        ),
        (
            "aws:\n  regions: [a]\n  profile: x\n  regions: [b]\n",
            "config.yaml:4: aws.regions: given twice (first on line 2)",
        ),
        ("aws: {}\naws: {}\n", "config.yaml:2: aws: given twice (first on line 1)"),
        ('aws:\n  "re\\ngions": [x]\n', "config.yaml:2: aws.'re\\ngions': unknown key"),
    ],
)
def test_every_key_of_every_section_is_checked_at_load(
    tmp_path: Path, text: str, message: str
) -> None:
    error = config_error(tmp_path, text)
    assert f"{paths(tmp_path).config}:" in error  # the file, by its full path
    assert message in error
    assert "\n" not in error


def test_a_cloud_section_s_problem_is_kept_apart_for_the_commands_that_report_each_cloud(
    tmp_path: Path,
) -> None:
    """``skyctl check`` and a teardown: the section as written, its problem on its line."""
    p = paths(tmp_path)
    p.config.write_text("gcp:\n  regions: [us-central1]\naws:\n  regoins: [us-east-1]\n")
    config, problems = read_user_config(p)
    assert config == {"gcp": {"regions": ["us-central1"]}, "aws": {"regoins": ["us-east-1"]}}
    assert list(problems) == ["aws"]
    assert problems["aws"].startswith(f"{p.config}:4: aws.regoins: unknown key")


def test_a_full_config_of_every_section_loads(tmp_path: Path) -> None:
    p = paths(tmp_path)
    p.config.write_text(
        "\n".join(f"{name}:\n" + "".join(f"  {line}\n" for line in body) for name, body in FULL)
    )
    assert set(load_user_config(p)) == set(SECTIONS)


# -- held to the providers' own checks ------------------------------------------------
def _aws(section: dict[str, Any]) -> Any:
    aws_config = pytest.importorskip("providers.aws_config")  # boto3 is an extra
    return aws_config.parse_config(section)


def _azure(section: dict[str, Any]) -> Any:
    from providers.azure_config import parse_config

    return parse_config(section, env={"AZURE_SUBSCRIPTION_ID": "0000"})


def _kubernetes(section: dict[str, Any]) -> Any:
    from providers.kubernetes_config import parse_config

    return parse_config(section)


def _simulated(section: dict[str, Any]) -> Any:
    from providers.simulated import SimulatedOptions

    return SimulatedOptions.parse(section)


def _local(section: dict[str, Any]) -> Any:
    from providers.feasibility import local_accelerators
    from providers.local_logs import LogLimits

    return local_accelerators(section), LogLimits.from_section(section)


def _gcp(section: dict[str, Any]) -> Any:
    from providers.gcp_config import validate_config

    return validate_config(section)


PROVIDER_CHECKS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "aws": _aws,
    "gcp": _gcp,
    "azure": _azure,
    "kubernetes": _kubernetes,
    "simulated": _simulated,
    "local": _local,
}


def _provider_keys(section: str) -> set[str]:
    if section == "aws":
        return set(pytest.importorskip("providers.aws_config").CONFIG_KEYS)
    if section == "simulated":
        from providers.simulated import _NUMBERS

        return {*_NUMBERS, "zones", "seed", "server", "max_concurrent_calls"}
    if section == "local":
        return {"accelerators", "log_max_mb", "log_backups"}
    module = {"gcp": "gcp_config", "azure": "azure_config", "kubernetes": "kubernetes_config"}
    imported = __import__(f"providers.{module[section]}", fromlist=["x"])
    return set(getattr(imported, "CONFIG_KEYS", None) or imported.KEYS)


@pytest.mark.parametrize("section", sorted(PROVIDER_CHECKS))
def test_the_schema_has_exactly_the_keys_the_provider_reads(section: str) -> None:
    assert set(SECTIONS[section].rules) == _provider_keys(section)


FULL: list[tuple[str, list[str]]] = [
    ("local", ["accelerators: {L4: 1}", "log_max_mb: 8", "log_backups: 2"]),
    (
        "aws",
        [
            "regions: [us-east-1]", "endpoint_url: https://ec2.example", "profile: p",
            "catalog: c.csv", "ami: {us-east-1: ami-1}", "max_attempts: 3",
            "price_ttl_seconds: 60",
        ],
    ),
    (
        "gcp",
        [
            "project: p", "api_endpoint: https://x", "regions: [us-central1]",
            "catalog: c.csv", "credentials: anonymous", "network: n", "subnetwork: s",
            "image: i", "gpu_image: g", "disk_size: 100", "service_account: a@b",
            "source_ranges: [10.0.0.0/8]",
        ],
    ),
    (
        "azure",
        [
            "subscription_id: s", "resource_group: g", "regions: [eastus]",
            "zones: [1, '2']", "cloud: azure_china_cloud", "base_url: https://arm",
            "credential_scope: https://arm/.default", "catalog: c.csv",
            "image_id: a:b:c:d", "ssh_public_key: ssh-rsa AAA",
            "poll_interval_seconds: 0", "max_attempts: 5.0",
        ],
    ),
    (
        "kubernetes",
        [
            "kubeconfig: k", "contexts: [a, {name: b, namespace: ns, spot_price: 0.2}]",
            "namespace: default", "capacity_preset: custom",
            "spot: {node_selector: {a: b}, tolerations: [{key: a, effect: NoSchedule}],"
            " exclude_labels: {z: [x]}}",
            "on_demand: {}", "endpoint_mode: service", "service_type: NodePort",
            "unschedulable_timeout_seconds: 60", "capacity_cooldown_seconds: 0",
            "spot_price: 0.3", "ondemand_price: 1", "image: python:3.11",
            "accelerator_label: gpu",
        ],
    ),
    (
        "simulated",
        [
            "launch_seconds: 0.1", "boot_seconds: 1", "launch_failure_rate: 0.5",
            "preemptions_per_hour: 2", "notice_seconds: 30", "spot_price: 1",
            "ondemand_price: 3", "zones: 2", "seed: 7", "server: process",
            "max_concurrent_calls: 8",
        ],
    ),
    ("router", ["workers: 4"]),
]  # fmt: skip


def _section(name: str) -> dict[str, Any]:
    import yaml

    return dict(yaml.safe_load("\n".join(dict(FULL)[name])))


@pytest.mark.parametrize("section", sorted(PROVIDER_CHECKS))
def test_a_section_the_provider_takes_the_schema_takes(section: str) -> None:
    full = _section(section)
    PROVIDER_CHECKS[section](full)
    check_section(section, full)


# sections both must refuse: (section, the keys changed from the full one)
REFUSED: list[tuple[str, dict[str, Any]]] = [
    ("aws", {"regoins": ["x"]}),
    ("aws", {"regions": "us-east-1"}),
    ("aws", {"regions": [""]}),
    ("aws", {"profile": 3}),
    ("aws", {"ami": 7}),
    ("aws", {"max_attempts": 0}),
    ("aws", {"price_ttl_seconds": True}),
    ("gcp", {"regoins": ["x"]}),
    ("gcp", {"regions": "us-central1"}),
    ("gcp", {"credentials": "mine"}),
    ("azure", {"subscripton_id": "x"}),
    ("azure", {"resource_group": ""}),
    ("azure", {"regions": {"a": 1}}),
    ("azure", {"cloud": "mars"}),
    ("azure", {"base_url": "http://arm"}),
    ("azure", {"poll_interval_seconds": -1}),
    ("azure", {"max_attempts": 2.5}),
    ("azure", {"max_attempts": None}),
    ("kubernetes", {"namespce": "x"}),
    ("kubernetes", {"namespace": "My_NS"}),
    ("kubernetes", {"contexts": []}),
    ("kubernetes", {"contexts": [{"namespace": "x"}]}),
    ("kubernetes", {"contexts": [{"name": "a", "region": "x"}]}),
    ("kubernetes", {"contexts": ["a", "a"]}),
    ("kubernetes", {"contexts": [3]}),
    ("kubernetes", {"capacity_preset": "spotty"}),
    ("kubernetes", {"capacity_preset": "gke"}),  # spot: and on_demand: only with custom
    ("kubernetes", {"spot": None}),
    ("kubernetes", {"spot": {"node_selector": {"a": 1}}}),
    ("kubernetes", {"spot": {"tolerations": [{"efect": "x"}]}}),
    ("kubernetes", {"spot": {"exclude_labels": {"a": "b"}}}),
    ("kubernetes", {"endpoint_mode": "nodeport"}),
    ("kubernetes", {"service_type": "Ingress"}),
    ("kubernetes", {"spot_price": -1}),
    ("kubernetes", {"spot_price": None}),
    ("kubernetes", {"unschedulable_timeout_seconds": float("inf")}),
    ("kubernetes", {"image": ""}),
    ("simulated", {"zone": 2}),
    ("simulated", {"zones": 0}),
    ("simulated", {"seed": 1.5}),
    ("simulated", {"boot_seconds": -1}),
    ("simulated", {"launch_failure_rate": 2}),
    ("simulated", {"server": "thread"}),
    ("simulated", {"max_concurrent_calls": 0}),
    ("local", {"accelerators": {"L4": 0}}),
    ("local", {"accelerators": 4}),
    ("local", {"accelerators": ["L4:x"]}),
    ("local", {"log_max_mb": 0}),
    ("local", {"log_backups": 10}),
]


@pytest.mark.parametrize(
    ("section", "change"), REFUSED, ids=[f"{s}-{'-'.join(c)}" for s, c in REFUSED]
)
def test_what_the_schema_refuses_the_provider_refuses_too(
    section: str, change: dict[str, Any]
) -> None:
    bad = {**_section(section), **change}
    with pytest.raises(Bad):
        check_section(section, bad)
    with pytest.raises(ConfigError):
        PROVIDER_CHECKS[section](bad)


def test_nested_aliases_are_read_once_not_walked_exponentially(tmp_path: Path) -> None:
    # "a billion laughs": 10**9 list items if each alias were walked again where it is
    # used (the check hung); the parse shares them, and so does the walk for the lines
    laughs = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    laughs += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    assert "config.yaml:1: unknown section 'a0'" in config_error(tmp_path, "\n".join(laughs))
    shared = "local: &l\n  log_backups: 2\nrouter:\n  <<: *l\n"  # a key met again by alias
    assert "config.yaml:3: router.log_backups: unknown key" in config_error(tmp_path, shared)
