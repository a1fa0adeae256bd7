"""A misspelt ``resources`` key is refused even with no value, as at the top and under
``service`` (``gpu:`` was dropped as a null and the spec ran without its GPUs)."""

from __future__ import annotations

import pytest

from skyctl.errors import SpecError
from skyctl.spec_yaml import parse_spec

HEAD = "name: svc\nrun: python3 -m http.server $PORT\nservice: {readiness_probe: /, replicas: 1}\n"


def test_a_misspelt_resources_key_without_a_value_is_refused_with_the_key_it_meant() -> None:
    with pytest.raises(SpecError) as e:
        parse_spec(HEAD + "resources:\n  cpus: 1\n  gpu:\n", "svc.yaml")
    assert str(e.value).startswith("svc.yaml:6: resources.gpu: unknown key; did you mean 'gpus'?")


def test_a_misspelt_key_without_a_value_in_an_any_of_entry_is_refused() -> None:
    spec = HEAD + "resources:\n  any_of:\n    - {cpus: 1}\n    - {cpu: null}\n"
    with pytest.raises(SpecError, match=r"resources\.any_of\[1\]\.cpu: unknown key"):
        parse_spec(spec, "svc.yaml")


def test_a_known_resources_key_without_a_value_is_still_absent() -> None:
    spec = parse_spec(HEAD + "resources:\n  accelerators:\n  cpus: null\n", "svc.yaml")
    (candidate,) = spec.resources.candidates
    assert candidate.accelerators is None and candidate.cpus is None
