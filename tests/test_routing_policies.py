"""Replica ranking and hedging arithmetic (policies/routing.py), as tables."""

from __future__ import annotations

import pytest

from policies import routing
from skyctl.types import Location

A = Location("aws", "us-east-1", "us-east-1a")
A2 = Location("aws", "us-east-1", "us-east-1b")
B = Location("aws", "us-west-2", "us-west-2a")
G = Location("gcp", "us-central1", "us-central1-a")


@pytest.mark.parametrize(
    ("count", "cursor", "excluded", "expected"),
    [
        (3, 0, frozenset(), 0),
        (3, 4, frozenset(), 1),
        (3, 1, frozenset({1}), 2),
        (3, 2, frozenset({2, 0}), 1),
        (2, 0, frozenset({0, 1}), -1),
        (0, 0, frozenset(), -1),
    ],
)
def test_round_robin_takes_the_next_index_not_excluded(
    count: int, cursor: int, excluded: frozenset[int], expected: int
) -> None:
    assert routing.pick_round_robin(count, cursor, excluded) == expected


@pytest.mark.parametrize(
    ("loads", "cursor", "excluded", "expected"),
    [
        ([3, 1, 2], 0, frozenset(), 1),
        ([1, 1, 1], 0, frozenset(), 0),
        ([1, 1, 1], 2, frozenset(), 2),  # ties rotate with the cursor
        ([1, 1, 1], 5, frozenset(), 2),
        ([0, 5, 0], 1, frozenset(), 2),
        ([0, 5, 1], 0, frozenset({0}), 2),  # never the excluded (just failed) one
        ([0.2, 0.4], 0, frozenset({0, 1}), -1),
        ([], 0, frozenset(), -1),
    ],
)
def test_least_load_takes_the_smallest_load(
    loads: list[float], cursor: int, excluded: frozenset[int], expected: int
) -> None:
    assert routing.pick_least_load(loads, cursor, excluded) == expected


@pytest.mark.parametrize(
    ("accelerators", "qps", "expected"),
    [
        ("A100:8", {"A100": 5.0, "L4": 1.0}, 5.0),
        ("L4:1", {"A100": 5.0, "L4": 1.0}, 1.0),
        ("A100:8", {"A100:8": 7.0, "A100": 5.0}, 7.0),  # exact match first
        ("A100:2", {"A100:1": 3.0}, 3.0),  # by accelerator name
        ("H100:8", {"A100": 5.0}, routing.DEFAULT_TARGET_QPS),
        ("", {"A100": 5.0}, routing.DEFAULT_TARGET_QPS),
        ("A100:8", 4.0, 4.0),
        ("A100:8", None, routing.DEFAULT_TARGET_QPS),
        ("A100:8", {"A100": 0.0}, routing.DEFAULT_TARGET_QPS),
    ],
)
def test_target_qps_per_accelerator_matches_like_skyserve(
    accelerators: str, qps: float | dict[str, float] | None, expected: float
) -> None:
    assert routing.target_qps(accelerators, qps) == expected


def test_instance_aware_load_prefers_the_replica_with_more_headroom() -> None:
    qps = {"A100": 5.0, "L4": 1.0}
    in_flight = [("A100:8", 2), ("L4:1", 1)]
    loads = [n / routing.target_qps(acc, qps) for acc, n in in_flight]
    assert routing.pick_least_load(loads, 1) == 0


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [(A, A, 0), (A, A2, 1), (A, B, 2), (A, G, 3), (B, G, 3)],
)
def test_domain_distance_orders_zone_region_cloud(a: Location, b: Location, distance: int) -> None:
    assert routing.domain_distance(a, b) == distance == routing.domain_distance(b, a)


@pytest.mark.parametrize(
    ("locations", "loads", "k", "excluded", "expected"),
    [
        # the least loaded first, then the farthest failure domain
        ([A, A2, G], [0, 0, 0], 2, frozenset(), [0, 2]),
        ([A, A, A2], [0, 0, 0], 2, frozenset(), [0, 2]),  # another zone beats the same one
        ([A, A2, B], [0, 0, 0], 2, frozenset(), [0, 2]),  # another region beats another zone
        ([A, A2, B, G], [0, 0, 0, 0], 3, frozenset(), [0, 3, 2]),  # a region before a zone
        ([A, A2, B, G], [5, 0, 0, 0], 2, frozenset(), [1, 3]),
        ([A, A2, B, G], [0, 0, 0, 0], 2, frozenset({3}), [0, 2]),
        ([A, G, G], [0, 3, 1], 2, frozenset(), [0, 2]),  # equal spread: the less loaded
        ([A, A], [0, 0], 5, frozenset(), [0, 1]),  # fewer replicas than k
        ([], [], 2, frozenset(), []),
    ],
)
def test_pick_diverse_spreads_over_failure_domains(
    locations: list[Location],
    loads: list[float],
    k: int,
    excluded: frozenset[int],
    expected: list[int],
) -> None:
    assert routing.pick_diverse(locations, loads, k, 0, excluded) == expected


def test_pick_diverse_rotates_ties_with_the_cursor() -> None:
    firsts = {routing.pick_diverse([A, A2, G], [0, 0, 0], 1, cursor)[0] for cursor in range(3)}
    assert firsts == {0, 1, 2}


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([], 95, 0.0),
        ([3.0], 50, 3.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.0),
        ([float(i) for i in range(1, 101)], 95, 95.0),
        ([float(i) for i in range(1, 101)], 99, 99.0),
        ([float(i) for i in range(100, 0, -1)], 100, 100.0),
    ],
)
def test_percentile_by_nearest_rank(values: list[float], q: float, expected: float) -> None:
    assert routing.percentile(values, q) == expected


@pytest.mark.parametrize(
    ("fixed", "recent", "expected"),
    [
        (0.05, [], 0.05),
        (-1.0, [], 0.0),
        (None, [0.01] * 19, None),  # too few samples to trust a P95
        (None, [0.01] * 19 + [1.0], 0.01),
        (None, [0.01] * 18 + [1.0, 1.0], 1.0),
    ],
)
def test_hedge_delay_is_fixed_or_the_recent_p95(
    fixed: float | None, recent: list[float], expected: float | None
) -> None:
    assert routing.hedge_delay(fixed, recent) == expected


@pytest.mark.parametrize(
    ("budget", "requests", "hedges"),
    [(0.1, 100, 10), (0.1, 9, 0), (0.25, 12, 3), (0.0, 50, 0), (1.0, 5, 5), (0.05, 1000, 50)],
)
def test_hedges_never_exceed_the_budget_share_of_requests(
    budget: float, requests: int, hedges: int
) -> None:
    tokens, sent = 0.0, 0
    for _ in range(requests):
        tokens = routing.earn_hedge_tokens(tokens, budget)
        allowed, tokens = routing.spend_hedge_token(tokens)
        sent += allowed
    assert sent == hedges
    assert sent <= budget * requests + 1e-9


def test_saved_hedge_tokens_are_capped() -> None:
    tokens = 0.0
    for _ in range(1000):
        tokens = routing.earn_hedge_tokens(tokens, 0.5)
    assert tokens == routing.HEDGE_TOKEN_CAP
    assert routing.spend_hedge_token(0.99) == (False, 0.99)
    assert routing.spend_hedge_token(1.5) == (True, 0.5)


@pytest.mark.parametrize("name", routing.POLICIES)
def test_known_policies_are_accepted(name: str) -> None:
    assert routing.check_policy(name) == name


def test_an_unknown_policy_names_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match="unknown policy 'random'; allowed: round_robin"):
        routing.check_policy("random")
