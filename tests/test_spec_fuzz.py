"""Any input gives a ServiceSpec or a one-line SpecError, never another exception.

Property-based (hypothesis) over four kinds of input: random text from YAML's
special characters, random YAML documents built from the real key names,
mutations of the valid specs in ``tests/specs/valid`` and ``manifests``
(structural: a key dropped, a value replaced, a key added; textual: bytes cut,
inserted or lines swapped), plus a table of hostile documents (deep nesting,
alias bombs, huge numbers, impossible dates, tags).

CI runs about 600 inputs; ``HYPOTHESIS_PROFILE=long`` runs 20 times more:

    HYPOTHESIS_PROFILE=long python -m pytest tests/test_spec_fuzz.py -q -s
"""

from __future__ import annotations

import collections
import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skyctl.errors import SpecError
from skyctl.spec_yaml import parse_spec

ROOT = Path(__file__).resolve().parent.parent
settings.register_profile(
    "ci", max_examples=150, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.register_profile(
    "long", max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Keys from every level of the schema, so random documents reach deep code.
KEYS = """name resources service envs secrets workdir setup run num_nodes local file_mounts
readiness_probe replica_policy replicas load_balancing_policy ports tls load_balancer router
fan_out path initial_delay_seconds timeout_seconds post_data headers period_seconds min_replicas
max_replicas target_qps_per_replica use_spot dynamic_ondemand_fallback spot_placer spot_policy
base_ondemand_fallback_replicas accelerators any_of ordered infra cloud region zone cpus memory
disk_size image_id labels zones trace trace_zones trace_tick_seconds spot_price ondemand_price
fan_out_methods hedge_budget port host A100 L4 keyfile certfile url upscale_delay_seconds
downscale_delay_seconds num_overprovision failure_threshold stream_timeout_seconds
preemption_rate_per_hour seed notice_seconds trace_start retries max_buffer_bytes
request_timeout_seconds instance_type drain_timeout_seconds""".split()
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(),
    st.text(max_size=6),
    st.sampled_from(
        """/ /h A100:8 aws/us-east-1/a k8s/ctx * 2+ fan_out least_load instance_aware_least_load
        spothedge dynamic_fallback 8000-8010 1TB aws-v100-2023-02 local 0 -1 1e999 .nan
        round_robin hedge L4:0 A100:-1 32GB+ gcp/* azure""".split()
    ),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(KEYS), inner, max_size=4),
    ),
    max_leaves=20,
)
SPEC_FILES = sorted((ROOT / "tests" / "specs" / "valid").glob("*.yaml")) + sorted(
    (ROOT / "manifests").glob("*.yaml")
)
VALID = [p.read_text() for p in SPEC_FILES]
SEEN: collections.Counter[str] = collections.Counter()  # inputs tried, by kind


def parses_or_fails_cleanly(text: str, kind: str) -> None:
    SEEN[kind] += 1
    try:
        parse_spec(text, source="fuzz.yaml")
    except SpecError as e:
        assert str(e).startswith("fuzz.yaml"), str(e)
        assert len(str(e).splitlines()) == 1, str(e)


@given(st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=6), st.booleans())
def test_random_documents_give_a_spec_or_a_spec_error(doc: dict[str, object], flow: bool) -> None:
    doc = {"service": {}, "run": "serve", **doc}
    parses_or_fails_cleanly(yaml.safe_dump(doc, default_flow_style=flow), "documents")


@given(
    st.text(alphabet=st.sampled_from(list("ab:-[]{}&*!|>'\"#\n ,?%@`0.\t\x00\u2028")), max_size=50)
)
def test_random_text_gives_a_spec_or_a_spec_error(text: str) -> None:
    parses_or_fails_cleanly(text, "text")


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside nested dicts and lists."""
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _mutate(doc: Any, path: tuple[Any, ...], how: str, value: Any, key: str) -> None:
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if how == "drop":
        del parent[last]
    elif how == "replace":
        parent[last] = value
    elif how == "add" and isinstance(parent[last], dict):
        parent[last][key] = value
    else:
        parent[last] = [parent[last], value]


@given(
    st.sampled_from(VALID),
    st.data(),
    st.sampled_from(["drop", "replace", "add", "wrap"]),
    VALUES,
    st.sampled_from(KEYS),
)
def test_structural_mutations_of_valid_specs_give_a_spec_or_a_spec_error(
    text: str, data: st.DataObject, how: str, value: Any, key: str
) -> None:
    doc = yaml.safe_load(text)
    paths = _paths(doc)
    for _ in range(data.draw(st.integers(1, 3))):
        if not paths:
            break
        _mutate(doc, data.draw(st.sampled_from(paths)), how, copy.deepcopy(value), key)
        paths = _paths(doc)
    parses_or_fails_cleanly(yaml.safe_dump(doc, sort_keys=False), "structural mutations")


@given(st.sampled_from(VALID), st.data())
def test_textual_mutations_of_valid_specs_give_a_spec_or_a_spec_error(
    text: str, data: st.DataObject
) -> None:
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(text)))
        op = data.draw(st.sampled_from(["cut", "insert", "swap lines"]))
        if op == "cut":
            text = text[:at] + text[at + data.draw(st.integers(1, 20)) :]
        elif op == "insert":
            text = text[:at] + data.draw(st.text(max_size=8)) + text[at:]
        else:
            lines = text.splitlines()
            if len(lines) > 1:
                i, j = data.draw(st.integers(0, len(lines) - 1)), at % len(lines)
                lines[i], lines[j] = lines[j], lines[i]
                text = "\n".join(lines)
    parses_or_fails_cleanly(text, "textual mutations")


LAUGHS = "".join(
    f"{a}: &{a} [{', '.join([f'*{p}' if p else 'x'] * 9)}]\n"
    for p, a in zip(["", *"abcdef"], "abcdefg", strict=True)
)
POST_DATA_BOMB = "run: x\nservice:\n  readiness_probe:\n    path: /\n    post_data:\n" + "".join(
    f"      {line}\n" for line in LAUGHS.splitlines()
)
HOSTILE = {
    "deep flow list": "run: x\nservice: {}\nenvs: " + "[" * 5000 + "]" * 5000,
    "deep flow map": "run: x\nservice: {}\nenvs: " + "{a: " * 3000 + "1" + "}" * 3000,
    "alias bomb": LAUGHS + "run: x\nservice: {}\n",
    "alias bomb as post_data": POST_DATA_BOMB,
    "integer of 5000 digits": "run: x\nservice:\n  replicas: " + "9" * 5000 + "\n",
    "impossible date": "run: 2001-13-45\nservice: {}\n",
    "python object tag": "run: !!python/object/apply:os.system ['true']\nservice: {}\n",
    "binary tag": "run: !!binary aGVsbG8=\nservice: {}\n",
    "set tag": "run: x\nservice: {}\nenvs: !!set {a, b}\n",
    "merge key": "base: &b {replicas: 1}\nrun: x\nservice:\n  <<: *b\n",
    "list as a key": "? [a, b]\n: x\nrun: x\nservice: {}\n",
    "null key": "~: x\nrun: x\nservice: {}\n",
    "nul byte": "run: x\x00\nservice: {}\n",
    "lone surrogate": "run: \ud800\nservice: {}\n",
    "two documents": "run: x\nservice: {}\n---\nrun: y\n",
    "bom": "\ufeffrun: x\nservice: {}\n",
}


@pytest.mark.parametrize("text", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_documents_give_a_spec_or_a_one_line_spec_error(text: str) -> None:
    parses_or_fails_cleanly(text, "hostile")


def test_zz_report_how_many_inputs_were_fuzzed() -> None:
    """Prints the count per kind (run with -s); runs last in file order."""
    print(f"\nspec inputs fuzzed: {sum(SEEN.values())} {dict(SEEN)}")
