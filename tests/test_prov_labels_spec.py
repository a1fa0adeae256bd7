"""``resources.labels`` in a spec: checked against the rules of the cloud they go to
(AWS instance tags, GCP labels, Azure tags, Kubernetes pod labels), and never
allowed to take the name of one of skyctl's own tags (teardown and every listing
find instances by those). Each refusal is one line naming the label, its line
and what is allowed."""

from __future__ import annotations

import pytest

from providers.base import user_labels
from skyctl.errors import ConfigError, SpecError
from skyctl.spec import ResourceCandidate
from skyctl.spec_yaml import parse_spec


def _spec(cloud: str, labels: str) -> str:
    return (
        f"service:\n  readiness_probe: /\nresources:\n  cloud: {cloud}\n  labels:\n{labels}run: x\n"
    )


@pytest.mark.parametrize("cloud", ["aws", "gcp", "azure", "kubernetes", "local"])
@pytest.mark.parametrize("name", ["skyctl-service", "skyctl-token", "Skyctl-Replica", "SKYCTL-X"])
def test_a_label_named_like_skyctls_own_tags_is_refused_on_every_cloud(
    cloud: str, name: str
) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(_spec(cloud, f"    team: ml\n    {name}: mine\n"), "svc.yaml")
    message = str(info.value)
    assert message.startswith(f"svc.yaml:7: resources.labels.{name}: ")
    assert "reserved for skyctl" in message and "\n" not in message


@pytest.mark.parametrize(
    ("cloud", "label", "allowed"),
    [
        ("aws", "'aws:owner': me", "starting with 'aws:'"),
        ("aws", "team: 'ml#1'", "+ - = . _ : / @"),
        ("aws", f"team: {'x' * 257}", "values up to 256"),
        ("gcp", "team.name: ml", "digits, _ and -"),
        ("gcp", "1team: ml", "start with a letter"),
        ("gcp", "team: ML Platform", "digits, _ and -"),
        ("gcp", f"team: {'x' * 64}", "up to 63"),
        ("azure", "'team/name': ml", "cannot contain"),
        ("azure", "microsoft-x: ml", "microsoft, azure or windows"),
        ("azure", f"team: {'x' * 257}", "up to 256"),
        ("kubernetes", "'team name': ml", "[prefix/]name"),
        ("kubernetes", "'Example.com/team': ml", "prefix a DNS subdomain"),
        ("kubernetes", "'k8s.io/team': ml", "reserves the kubernetes.io"),
        ("kubernetes", "team: 'ml platform'", "label values are up to 63"),
    ],
)
def test_a_label_the_cloud_refuses_is_a_spec_error_saying_what_is_allowed(
    cloud: str, label: str, allowed: str
) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(_spec(cloud, f"    {label}\n"), "svc.yaml")
    message = str(info.value)
    assert message.startswith("svc.yaml:6: resources.labels.") and allowed in message, message
    assert "\n" not in message


@pytest.mark.parametrize("cloud", ["gcp", "azure"])
def test_two_labels_differing_only_in_case_are_refused_where_case_does_not_count(
    cloud: str,
) -> None:
    with pytest.raises(SpecError, match=r"resources.labels.Team: the same .* as 'team'"):
        parse_spec(_spec(cloud, "    team: a\n    Team: b\n"), "svc.yaml")


@pytest.mark.parametrize(
    ("cloud", "labels"),
    [
        ("aws", {"Team": "ML Platform", "cost-center": "a/b:c@d", "Name": "my box"}),
        ("gcp", {"Team": "ML", "cost_center": "4-2"}),
        ("azure", {"Team": "ML Platform", "cost center": "42"}),
        ("kubernetes", {"example.com/team": "ml", "tier": "A_b.c-1", "empty": ""}),
        ("local", {"anything goes": "here too"}),
    ],
)
def test_labels_each_cloud_accepts_parse(cloud: str, labels: dict[str, str]) -> None:
    text = "".join(f"    '{k}': '{v}'\n" for k, v in labels.items())
    spec = parse_spec(_spec(cloud, text), "svc.yaml")
    assert spec.resources.candidates[0].labels == labels


def test_labels_follow_the_cloud_of_each_any_of_alternative() -> None:
    text = (
        "service:\n  readiness_probe: /\nresources:\n  labels:\n    Team: ML\n"
        "  any_of:\n    - cloud: aws\n    - infra: k8s/ctx\n    - cloud: gcp\n      labels:\n"
        "        'team.x': ml\nrun: x\n"
    )
    with pytest.raises(SpecError, match=r"svc.yaml:11: resources.any_of\[2\].labels.team.x: GCP"):
        parse_spec(text, "svc.yaml")


def test_too_many_labels_is_a_spec_error() -> None:
    text = "".join(f"    l{k}: v\n" for k in range(33))
    with pytest.raises(SpecError, match=r"resources\.labels: at most 32 labels, got 33"):
        parse_spec(_spec("aws", text), "svc.yaml")


def test_a_candidate_made_in_code_is_checked_by_the_provider_too() -> None:
    bad = ResourceCandidate(cloud="aws", labels={"skyctl-service": "other"})
    with pytest.raises(ConfigError, match=r"resources.labels.skyctl-service: .*reserved"):
        user_labels(bad, "aws")
    assert user_labels(ResourceCandidate(cloud="aws", labels={"a": "b"}), "aws") == {"a": "b"}
    assert user_labels(None, "aws") == {}
