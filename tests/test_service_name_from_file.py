"""A spec with no `name:` run without `-n` is named after its file, as a user
reads the file name: accents folded to ASCII (`ünï.yaml` was named `n`), other
characters to `-`, a letter first, at most 63 characters (SkyPilot's rule)."""

from __future__ import annotations

import pytest

from skyctl.controller.controller import _name_from
from skyctl.spec_yaml import service_name_problem

CASES = [
    ("/specs/vllm-llama.yaml", "vllm-llama"),
    ("ünï.yaml", "uni"),
    ("Ünï spec.yaml", "Uni-spec"),
    ("my spec (1).yaml", "my-spec-1"),
    ("1.yaml", "s-1"),
    ("日本.yaml", "service"),
    (None, "service"),
    ("x" * 80 + ".yaml", "x" * 63),
]


@pytest.mark.parametrize(("source", "name"), CASES, ids=[str(c[0])[:20] for c in CASES])
def test_a_service_is_named_after_its_file(source: str | None, name: str) -> None:
    assert _name_from(source) == name
    assert service_name_problem(name) == ""
