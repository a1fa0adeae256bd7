"""`serve validate` refuses what `serve up` would, in one line, before anything runs.

Regions and zones a spec names must exist (skyctl.spec_places, with the places
of providers.admission): the cloud's region list and catalog for aws, gcp and
azure, the local provider's zones for local (and for a spec naming no cloud),
anything for kubernetes. And what a provider refuses at up (Provider.check_spec)
validate refuses too, with the same line.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from providers.admission import SPEC_CHECKS, known_regions
from providers.base import Provider
from providers.registry import PROVIDERS, ProviderSet
from skyctl.clock import FakeClock
from skyctl.errors import SpecError
from skyctl.spec import ServiceSpec
from skyctl.spec_yaml import parse_spec
from tests.helpers.cli import run_in_process


def validate(
    tmp_path: Path,
    text: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *flags: str,
    command: str = "validate",
) -> tuple[int, str, str]:
    """``skyctl serve validate FILE`` in this process: exit status, stdout, stderr."""
    spec = tmp_path / "svc.yaml"
    spec.write_text(text)
    args = ["serve", command, str(spec), *flags]
    return run_in_process(tmp_path / "home", args, capsys, monkeypatch)


def error_line(result: tuple[int, str, str]) -> str:
    code, _, err = result
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), result
    return lines[0]


SERVICE = "service:\n  readiness_probe: /\n  replicas: 1\nrun: echo hi\n"

# resources text -> (line:key of the refusal, what the line also says)
REFUSED = {
    "resources:\n  cloud: aws\n  zone: mars-1a\n": (
        "svc.yaml:7: resources.zone",
        "unknown aws zone 'mars-1a'",
    ),
    "resources:\n  cloud: aws\n  region: moon-1\n": (
        "svc.yaml:7: resources.region",
        "unknown aws region 'moon-1'",
    ),
    "resources:\n  cloud: aws\n  region: us-east1\n": (
        "svc.yaml:7: resources.region",
        "did you mean 'us-east-1'?",
    ),
    "resources:\n  any_of:\n    - infra: aws/us-east-1\n    - infra: gcp/moon-1\n": (
        "svc.yaml:8: resources.any_of[1].infra",
        "unknown gcp region 'moon-1'",
    ),
    "resources:\n  cloud: gcp\n  ordered:\n    - region: us-central1\n    - region: us-centrl1\n": (
        "svc.yaml:9: resources.ordered[1].region",
        "did you mean 'us-central1'?",
    ),
    "resources:\n  cloud: aws\n  region: us-east-1\n  zone: us-west-2a\n": (
        "svc.yaml:8: resources.zone",
        "aws zone 'us-west-2a' is in region 'us-west-2', not 'us-east-1' "
        "(zones of us-east-1 are named us-east-1<letter>)",
    ),
    # an any_of entry's zone against the top-level region
    "resources:\n  cloud: gcp\n  region: us-east1\n  any_of:\n    - zone: us-east1-b\n"
    "    - zone: us-central1-a\n": (
        "svc.yaml:10: resources.any_of[1].zone",
        "gcp zone 'us-central1-a' is in region 'us-central1', not 'us-east1'",
    ),
    "resources:\n  infra: gcp/us-central1/us-east1-b\n": (
        "svc.yaml:6: resources.infra",
        "is in region 'us-east1', not 'us-central1'",
    ),
    "resources:\n  infra: azure/eastus/4\n": (
        "svc.yaml:6: resources.infra",
        "unknown azure zone '4' (allowed: 1, 2, 3;",
    ),
    # no cloud: local, whose default zones are us-east and us-west
    "resources:\n  region: moon-1\n": (
        "svc.yaml:6: resources.region",
        "unknown local region 'moon-1' (allowed: us-east, us-west;",
    ),
    "resources:\n  zone: us-east-1a\n": (
        "svc.yaml:6: resources.zone",
        "unknown local zone 'us-east-1a'; did you mean 'us-east-a'?",
    ),
    # the trace's zones, when the spec names a trace
    "resources:\n  zone: us-east-a\nlocal:\n  trace: aws-v100-2023-02\n": (
        "svc.yaml:6: resources.zone",
        "the zones of trace aws-v100-2023-02",
    ),
    # trace_zones are zones of the trace
    "local:\n  trace: aws-v100-2023-02\n  trace_zones: [us-east-1a, us-east-1b]\n": (
        "svc.yaml:7: local.trace_zones[1]",
        "unknown zone 'us-east-1b'; did you mean 'us-east-2b'? (allowed: us-east-1a, us-east-1c,",
    ),
    # a region written with spaces is not the region (the providers compare exactly)
    "resources:\n  cloud: aws\n  region: ' us-east-1'\n": (
        "svc.yaml:7: resources.region",
        "unknown aws region ' us-east-1'",
    ),
}


@pytest.mark.parametrize("resources", list(REFUSED))
def test_a_place_the_cloud_does_not_have_is_refused_in_one_line(
    resources: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    where, says = REFUSED[resources]
    line = error_line(validate(tmp_path, SERVICE + resources, capsys, monkeypatch))
    assert f"{where}: " in line and says in line, line
    assert "allowed: " in line or " not " in line  # what would do instead


ACCEPTED = [
    "resources:\n  cloud: aws\n  region: us-east-1\n  zone: us-east-1f\n",
    "resources:\n  infra: gcp/*/us-central1-a\n",  # SkyServe's spot tests
    # real regions outside the bundled price catalog (as in SkyServe's spot_hedge tests):
    # valid; the alternative inside the catalog is the one placed
    "resources:\n  any_of:\n    - infra: gcp/*/asia-northeast3-a\n    - infra: gcp/us-east1\n",
    "resources:\n  cloud: aws\n  any_of:\n    - region: ap-northeast-3\n    - region: us-east-2\n",
    "resources:\n  infra: azure/westeurope/2\n",
    "resources:\n  infra: k8s/my-context/with-slash\n",  # node labels are not known offline
    "resources:\n  cloud: kubernetes\n  region: anything\n",
    "resources:\n  cloud: AWS\n  zone: us-west-2b\n",
    "resources:\n  zone: us-west-a\n",  # the local default zones
    "resources:\n  zone: us-east-1c\nlocal:\n  trace: aws-v100-2023-02\n",
    "resources:\n  zone: us-west-2a\nlocal:\n  trace: aws-v100-2023-02\n"
    "  trace_zones: [us-east-1a, us-west-2a]\n",
    "resources:\n  region: lab\nlocal:\n  zones:\n    - {region: lab, zone: lab-1, "
    "spot_price: 0.1, ondemand_price: 0.3}\n",
]


@pytest.mark.parametrize("resources", ACCEPTED)
def test_places_that_exist_are_accepted(
    resources: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, out, err = validate(tmp_path, SERVICE + resources, capsys, monkeypatch)
    assert code == 0 and ": valid (" in out, err


def test_a_catalog_override_adds_a_region(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    text = SERVICE + "resources:\n  cloud: aws\n  region: xx-lab-1\n  zone: xx-lab-1b\n"
    assert "unknown aws region 'xx-lab-1'" in error_line(
        validate(tmp_path, text, capsys, monkeypatch)
    )
    catalog = tmp_path / "mine.csv"
    catalog.write_text(
        "instance_type,accelerator_name,accelerator_count,vcpus,memory_gib,region,"
        "ondemand_price,spot_price\nm5.large,,0,2,8,xx-lab-1,0.1,0.05\n"
    )
    (tmp_path / "home").mkdir(exist_ok=True)
    (tmp_path / "home" / "config.yaml").write_text(f"aws:\n  catalog: {catalog}\n")
    code, _, err = validate(tmp_path, text, capsys, monkeypatch)
    assert code == 0, err


def test_the_region_list_holds_every_catalog_region() -> None:
    """regions.txt is the clouds' public lists: every region a bundled catalog prices
    is in it (a catalog row for a misspelled region would go unnoticed otherwise)."""
    from providers.catalog import load_catalog, regions

    for cloud in ("aws", "gcp", "azure"):
        missing = set(regions(load_catalog(cloud))) - set(known_regions()[cloud])
        assert not missing, (cloud, missing)


# -- the provider's admission: validate agrees with up ----------------------------

FIXED_PORT = "service:\n  readiness_probe: /\n  replicas: 2\nresources:\n  ports: 8080\n"
FIXED_PORT += "run: python -m http.server 8080\n"


def test_validate_takes_a_fixed_port_for_several_local_replicas_as_up_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SkyPilot's examples fix their port; the local provider runs several replicas
    of them (providers.local_ports), so neither up nor validate refuses them."""
    code, out, err = validate(tmp_path, FIXED_PORT, capsys, monkeypatch)
    assert code == 0 and ": valid (2 on-demand replica(s) on local" in out, err
    providers = ProviderSet(config={}, clock=FakeClock(), local_state=tmp_path / "state")
    providers.get("local").check_spec(parse_spec(FIXED_PORT, str(tmp_path / "svc.yaml")))


def test_every_provider_admission_check_is_one_validate_runs() -> None:
    """A provider overriding check_spec (what the controller refuses at up) has its
    function in SPEC_CHECKS, so that validate runs it too."""
    import importlib

    overriding = set()
    for cloud, (module, name) in PROVIDERS.items():
        cls = getattr(importlib.import_module(module), name)
        if cls.check_spec is not Provider.check_spec:
            overriding.add(cloud)
    assert overriding == set(SPEC_CHECKS)


def test_a_provider_check_refuses_at_validate_when_every_candidate_names_its_cloud(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(spec: ServiceSpec) -> None:
        raise SpecError("gcp refuses it", key="resources", source=spec.source)

    monkeypatch.setitem(SPEC_CHECKS, "gcp", refuse)
    only_gcp = SERVICE + "resources:\n  infra: gcp\n"
    line = error_line(validate(tmp_path, only_gcp, capsys, monkeypatch))
    assert line.endswith("svc.yaml: resources: gcp refuses it")
    # as the controller: a spec with another cloud too may be placed there instead
    both = SERVICE + "resources:\n  any_of:\n    - infra: gcp\n    - infra: aws\n"
    code, _, err = validate(tmp_path, both, capsys, monkeypatch)
    assert code == 0, err


def test_this_machines_files_and_ports_are_warnings_at_validate_and_refusals_at_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (
        "service:\n  readiness_probe: /\n  tls:\n    keyfile: /nonexistent/key.pem\n"
        "    certfile: /nonexistent/cert.pem\nrun: echo\n"
    )
    code, out, err = validate(tmp_path, text, capsys, monkeypatch)
    assert code == 0 and ": valid (" in out
    assert err.strip() == (
        f"warning: serve up here would refuse it: {tmp_path / 'svc.yaml'}:4: "
        "service.tls.keyfile: /nonexistent/key.pem: no such readable file "
        "(a relative path is relative to the spec file)"
    )
    line = error_line(validate(tmp_path, text, capsys, monkeypatch, command="up"))
    assert line == "error: " + err.strip().removeprefix("warning: serve up here would refuse it: ")
