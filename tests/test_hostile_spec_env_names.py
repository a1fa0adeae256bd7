"""A variable name YAML reads as a boolean or null is refused, not renamed.

YAML 1.1 (PyYAML, as SkyPilot loads specs) reads an unquoted ``ON``, ``yes``,
``off``, ``true`` as a boolean and ``~``/``null`` as null. As a key of
``envs`` or ``secrets`` that became the variable ``True``, ``False`` or
``None``: ``envs: {ON: "1"}`` started replicas with ``True=1`` and no
``ON``. Now the spec is refused at the key's line, saying to quote it.
"""

from __future__ import annotations

import pytest

from skyctl.errors import SpecError
from skyctl.spec_yaml import parse_spec

BASE = "name: w\nservice:\n  replicas: 1\nrun: x\n"


@pytest.mark.parametrize("section", ["envs", "secrets"])
@pytest.mark.parametrize(
    ("written", "reads_as"),
    [
        ("ON", "a boolean"),
        ("yes", "a boolean"),
        ("Off", "a boolean"),
        ("~", "null"),
        ("null", "null"),
    ],
)
def test_an_unquoted_boolean_or_null_name_is_refused_at_its_line(
    section: str, written: str, reads_as: str
) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(f"{BASE}{section}:\n  A: a\n  {written}: b\n", "s.yaml")
    message = str(caught.value)
    assert message.startswith(f"s.yaml:7: {section}.")
    assert f"as {reads_as}" in message and "quote it" in message and "\n" not in message


def test_the_same_names_quoted_are_variables() -> None:
    spec = parse_spec(f"{BASE}envs:\n  'ON': a\n  \"yes\": b\nsecrets:\n  'null': c\n", "s.yaml")
    assert spec.envs == {"ON": "a", "yes": "b"}
    assert spec.secrets == {"null": "c"}
