"""Any input gives a ServiceSpec or a one-line SpecError, never another exception."""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skyctl.errors import SpecError
from skyctl.spec_yaml import parse_spec

# Keys from every level of the schema, so random documents reach deep code.
KEYS = """name resources service envs secrets workdir setup run num_nodes local file_mounts
readiness_probe replica_policy replicas load_balancing_policy ports tls load_balancer router
fan_out path initial_delay_seconds timeout_seconds post_data headers period_seconds min_replicas
max_replicas target_qps_per_replica use_spot dynamic_ondemand_fallback spot_placer spot_policy
base_ondemand_fallback_replicas accelerators any_of ordered infra cloud region zone cpus memory
disk_size image_id labels zones trace trace_zones trace_tick_seconds spot_price ondemand_price
fan_out_methods hedge_budget port host A100 L4 keyfile certfile url""".split()
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(),
    st.text(max_size=6),
    st.sampled_from(
        """/ /h A100:8 aws/us-east-1/a k8s/ctx * 2+ fan_out least_load instance_aware_least_load
        spothedge dynamic_fallback 8000-8010 1TB aws-v100-2023-02 local""".split()
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


def parses_or_fails_cleanly(text: str) -> None:
    try:
        parse_spec(text, source="fuzz.yaml")
    except SpecError as e:
        assert str(e).startswith("fuzz.yaml")
        assert len(str(e).splitlines()) == 1


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=6), st.booleans())
def test_random_documents_give_a_spec_or_a_spec_error(doc: dict[str, object], flow: bool) -> None:
    doc = {"service": {}, "run": "serve", **doc}
    parses_or_fails_cleanly(yaml.safe_dump(doc, default_flow_style=flow))


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.text(alphabet=st.sampled_from(list("ab:-[]{}&*!|>'\"#\n ,?%@`0.\t\x00\u2028")), max_size=50)
)
def test_random_text_gives_a_spec_or_a_spec_error(text: str) -> None:
    parses_or_fails_cleanly(text)
