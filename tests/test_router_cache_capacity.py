"""``service.router.cache_aware.replica_cache_bytes``: the spec key, and the router's
index bounded per replica by it (the policy: tests/test_recovery_cache_capacity.py)."""

from __future__ import annotations

import pytest

from policies import cache_aware as ca
from skyctl.clock import FakeClock
from skyctl.errors import SpecError
from skyctl.router.affinity import Affinity
from skyctl.spec import CacheAware
from skyctl.spec_yaml import parse_spec

SPEC = """\
service:
  load_balancing_policy: cache_aware
  router:
    cache_aware:
{options}
run: serve
"""


def test_the_key_reads_bytes_and_is_unset_by_default() -> None:
    assert CacheAware().replica_cache_bytes is None
    spec = parse_spec(SPEC.format(options="      replica_cache_bytes: 190000"))
    assert spec.service.router.cache_aware == CacheAware(replica_cache_bytes=190_000)


@pytest.mark.parametrize("value", ["0", "-64", "1.5", "lots"])
def test_a_bad_value_names_the_key_and_its_line(value: str) -> None:
    options = f"      replica_cache_bytes: {value}"
    with pytest.raises(SpecError) as info:
        parse_spec(SPEC.format(options=options), source="svc.yaml")
    text = str(info.value)
    assert text.startswith("svc.yaml:5: ") and "cache_aware.replica_cache_bytes" in text


def test_the_router_bounds_each_replica_by_it_and_a_reload_changes_the_bound() -> None:
    affinity = Affinity(CacheAware(replica_cache_bytes=64 * 30), FakeClock())
    index = affinity.index
    assert index.replica_blocks == 30
    template = list(range(1000, 1010))
    index.record(template, 0, now=0.0)
    index.record(template, 1, now=1.0)
    index.record(list(range(10_000, 10_030)), 0, now=2.0)  # replica 0's cache turned over
    assert index.depths(template, now=3.0) == {1: 10}
    affinity.reconfigure(CacheAware())
    assert index.replica_blocks is None
    index.record(list(range(20_000, 20_030)), 1, now=4.0)  # no bound now: 1 keeps it
    assert index.depths(template, now=5.0) == {1: 10}
    assert ca.replica_blocks(None) is None and ca.replica_blocks(10) == 1
