"""The cache_aware policy's pure part: prefix keys, the bounded index, the load bound."""

from __future__ import annotations

import json
import sys

import pytest

from policies import cache_aware as ca


def chat(*messages: tuple[str, str], model: str = "m") -> bytes:
    return json.dumps(
        {"model": model, "messages": [{"role": r, "content": c} for r, c in messages]}
    ).encode()


SYSTEM = "You are a careful assistant. " * 20  # ~580 bytes: 9 blocks


# ---- keys ----------------------------------------------------------------------------


def test_a_chat_turn_shares_every_block_of_the_previous_turn_but_its_last() -> None:
    first = chat(("system", SYSTEM), ("user", "What is a KV cache?"))
    second = chat(
        ("system", SYSTEM),
        ("user", "What is a KV cache?"),
        ("assistant", "Keys and values of attention, kept per token. " * 5),
        ("user", "And paged attention?"),
    )
    one = ca.block_keys(ca.prompt_bytes("/v1/chat/completions", first) or b"")
    two = ca.block_keys(ca.prompt_bytes("/v1/chat/completions", second) or b"")
    assert len(two) > len(one) > 9
    assert two[: len(one) - 1] == one[:-1]  # the last block of turn one was partial
    other = chat(("system", SYSTEM), ("user", "Something else"))
    three = ca.block_keys(ca.prompt_bytes("/v1/chat/completions", other) or b"")
    assert three[:9] == one[:9] and three[9:] != one[9 : len(three)]


def test_chat_content_parts_and_tools_are_part_of_the_prefix() -> None:
    parts = json.dumps(
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
    ).encode()
    plain = json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode()
    assert ca.prompt_bytes("/v1/chat/completions", parts) == ca.prompt_bytes(
        "/v1/chat/completions", plain
    )
    tools = json.dumps({"tools": [{"name": "f"}], "messages": [{"role": "user", "content": "hi"}]})
    assert ca.prompt_bytes("/v1/chat/completions", tools.encode()) != ca.prompt_bytes(
        "/v1/chat/completions", plain
    )


def test_completion_prompts_strings_batches_and_token_ids() -> None:
    text = ca.prompt_bytes("/v1/completions", b'{"model": "m", "prompt": "Once upon"}')
    assert text == b"m\x00Once upon"
    batch = ca.prompt_bytes("/v1/completions", b'{"model": "m", "prompt": ["Once upon", "x"]}')
    assert batch == text
    tokens = ca.prompt_bytes("/v1/completions", b'{"prompt": [1, 2, 3]}')
    assert tokens == b"\x001,2,3"
    assert ca.prompt_bytes("/v1/completions", b'{"prompt": ""}') is None


def test_other_apis_use_the_configured_json_path_and_nothing_else() -> None:
    body = b'{"inputs": "Translate: hello", "parameters": {"max_new_tokens": 9}}'
    assert ca.prompt_bytes("/generate", body) is None  # no path configured
    assert ca.prompt_bytes("/generate", body, ca.parse_json_path("inputs")) == b"Translate: hello"
    nested = b'{"input": [{"text": "a"}, {"text": "b"}]}'
    assert ca.prompt_bytes("/embed", nested, ca.parse_json_path("input.1.text")) == b"b"
    assert ca.prompt_bytes("/embed", nested, ca.parse_json_path("input.7.text")) is None
    with pytest.raises(ValueError, match="empty segment"):
        ca.parse_json_path("input..text")


@pytest.mark.parametrize(
    "body", [b"", b"not json", b"[1, 2]", b'{"messages": "x"}', b'{"messages": [1]}', b"{" * 5000]
)
def test_bodies_without_a_prompt_give_no_key(body: bytes) -> None:
    assert ca.prompt_bytes("/v1/chat/completions", body) is None


@pytest.mark.parametrize("field", ["content", "tools", "model"])
def test_bodies_nested_as_deep_as_json_allows_give_a_key_or_none_never_an_error(
    field: str,
) -> None:
    # json.loads takes a body nested nearly to the recursion limit; re-encoding a part
    # of it (message content as parts, tools, the model) then goes a few frames deeper
    for depth in range(sys.getrecursionlimit() - 120, sys.getrecursionlimit() + 20):
        deep = "[" * depth + "]" * depth
        content = deep if field == "content" else '"hi"'
        extra = {"tools": ', "tools": ' + deep, "model": ', "model": ' + deep}.get(field, "")
        message = '{"role": "user", "content": ' + content + "}"
        body = ('{"messages": [' + message + "]" + extra + "}").encode()
        data = ca.prompt_bytes("/v1/chat/completions", body)  # raised RecursionError
        found = ca.prefix("/v1/chat/completions", body)
        assert (found is None) == (data is None)  # either keyed, or left to least load


def test_block_keys_are_bounded_and_the_session_key_is_one_block() -> None:
    assert len(ca.block_keys(b"x" * (ca.BLOCK_BYTES * ca.MAX_BLOCKS * 3))) == ca.MAX_BLOCKS
    assert len(ca.block_keys(b"short")) == 1
    assert ca.session_keys("abc") == ca.session_keys("abc") != ca.session_keys("abd")
    assert len(ca.session_keys("abc")) == 1


# ---- the index ---------------------------------------------------------------------------


def test_depth_is_the_leading_blocks_a_replica_was_sent() -> None:
    index = ca.PrefixIndex()
    a = ca.block_keys(b"a" * 640)  # 10 blocks
    b = ca.block_keys(b"a" * 320 + b"b" * 320)  # shares 5 with a
    index.record(a, 1, now=0.0)
    index.record(b, 2, now=0.0)
    assert index.depths(a, now=1.0) == {1: 10, 2: 5}
    assert index.depths(b, now=1.0) == {1: 5, 2: 10}
    assert index.depths(ca.block_keys(b"c" * 640), now=1.0) == {}


def test_memory_is_bounded_by_size_oldest_first_and_by_age() -> None:
    index = ca.PrefixIndex(max_entries=100, ttl=60.0)
    for n in range(50):
        index.record(ca.block_keys(b"%05d" % n + b"x" * 600), n % 4, now=float(n))
        assert len(index) <= 100
    assert index.depths(ca.block_keys(b"%05d" % 49 + b"x" * 600), now=50.0) == {1: 10}
    assert index.depths(ca.block_keys(b"%05d" % 0 + b"x" * 600), now=50.0) == {}  # evicted
    assert index.depths(ca.block_keys(b"%05d" % 49 + b"x" * 600), now=49.0 + 61.0) == {}  # aged
    index.record(ca.block_keys(b"new"), 0, now=200.0)  # a write sweeps the aged ones
    assert len(index) == 1 and index.blocks() == 1
    assert index.evicted == 50 * 10  # every pair recorded but the last, for size or age


def test_a_replica_leaving_takes_only_its_own_prefixes() -> None:
    index = ca.PrefixIndex()
    keys = [ca.block_keys(b"conversation %d " % n * 20) for n in range(200)]
    for n, k in enumerate(keys):
        index.record(k, n % 4, now=0.0)
    before = [max(index.depths(k, 1.0).items(), key=lambda kv: kv[1])[0] for k in keys]
    index.forget(2)
    after = [index.depths(k, 1.0) for k in keys]
    for home, held in zip(before, after, strict=True):
        assert set(held) == (set() if home == 2 else {home})
    assert len(index) == sum(len(k) for n, k in enumerate(keys) if n % 4 != 2)


# ---- ranking and the bound --------------------------------------------------------------------


def test_the_deepest_holder_wins_while_under_the_bound() -> None:
    assert ca.rank([0, 8, 3, 0], [2, 2, 1, 1], total_blocks=10)[0] == 1
    assert ca.rank([0, 8, 9, 0], [2, 2, 2, 2], total_blocks=10)[:2] == [2, 1]  # next-best second


def test_an_overloaded_home_loses_its_prefix_to_the_least_loaded() -> None:
    loads = [10.0, 2.0, 1.0, 3.0]  # mean with this request 4.25, bound ceil(1.25 x 4.25) = 6
    assert ca.bound(loads, 1.25) == 6
    order = ca.rank([10, 0, 0, 0], loads, total_blocks=10)
    assert order[0] == 2 and order[-1] == 0  # the home is the last resort
    # a match too short to matter counts as none: least load decides
    assert ca.rank([1, 0, 0, 0], [0.0, 0.0, 0.0, 0.0], total_blocks=10, cursor=1)[0] == 1
    assert ca.rank([1, 0, 0, 0], [0.0, 0.0, 0.0, 0.0], total_blocks=1, cursor=1)[0] == 0


def test_at_low_load_the_home_may_run_half_a_request_over_the_mean() -> None:
    # 1.25 x a mean of 0.75 (counting the new request) alone would allow 1 in flight
    assert ca.bound([1.0, 1.0, 0.0, 0.0], 1.25, slack=0.0) == 1
    assert ca.bound([1.0, 1.0, 0.0, 0.0], 1.25) == 2  # 0.75 + 0.5, rounded up
    assert ca.rank([5, 0, 0, 0], [1.0, 1.0, 0.0, 0.0], total_blocks=5)[0] == 0
    # a mean of 1: the bound is 2 (1.5 rounded up), a home with 2 in flight is over it
    assert ca.rank([5, 0, 0, 0], [2.0, 1.0, 0.0, 0.0], total_blocks=5)[0] == 2


def test_a_replica_reporting_its_kv_cache_full_loses_its_prefix_unless_all_are_full() -> None:
    loads = [1.0, 1.0, 2.0, 2.0]  # the home is under the bound by load
    assert ca.rank([9, 0, 0, 0], loads, total_blocks=9)[0] == 0
    full = [True, False, False, False]
    order = ca.rank([9, 0, 0, 0], loads, total_blocks=9, full=full)
    assert order[0] == 1 and order[-1] == 0  # the least loaded of the others; the home last
    everyone = [True] * 4  # nowhere better to go: the home keeps it
    assert ca.rank([9, 0, 0, 0], loads, total_blocks=9, full=everyone)[0] == 0


def test_among_equal_matches_the_least_pending_prefill_goes_first_then_the_least_loaded() -> None:
    # a new prefix (no holder): replica 0 has fewer in flight but a long prompt still to prefill
    loads, pending = [1.0, 3.0, 3.0, 3.0], [400.0, 0.0, 12.0, 0.0]
    assert ca.rank([0, 0, 0, 0], loads, total_blocks=10, pending=pending)[:2] == [1, 3]
    assert ca.rank([0, 0, 0, 0], loads, total_blocks=10)[0] == 0  # by load alone
    # two holders of a system prompt: the one with less prefill ahead
    assert ca.rank([30, 30, 0, 0], [1.0, 0.0, 1.0, 1.0], 40, pending=[0.0, 90.0, 0.0, 0.0])[0] == 0
    # never before a deeper match, nor over the bound
    assert ca.rank([30, 10, 0, 0], [1.0] * 4, 40, pending=[500.0, 0.0, 0.0, 0.0])[0] == 0
    order = ca.rank([30, 0, 0, 0], [9.0, 1.0, 1.0, 1.0], 40, pending=[0.0, 50.0, 9.0, 70.0])
    assert order == [2, 1, 3, 0]


def test_pending_prefill_is_counted_per_copy_and_taken_back_once() -> None:
    assert ca.uncached(30, 40) == 10
    assert ca.uncached(1, 40) == 40  # a match under MIN_MATCH blocks saves nothing
    assert ca.uncached(1, 1) == 0  # a one-block prompt held whole
    pending = ca.Pending()
    first, hedged = ca.Ticket(), ca.Ticket()
    pending.add(first, 1, 10)
    pending.add(hedged, 1, 5)
    pending.add(hedged, 2, 40)  # the hedge's copy on replica 2
    pending.add(hedged, 3, 0)  # nothing to prefill: not counted
    assert (pending.of(1), pending.of(2), pending.of(3)) == (15, 40, 0)
    pending.release(hedged)  # the first bytes came: both copies' prefill is done or moot
    pending.release(hedged)  # and the end of the exchange: nothing more
    assert (pending.of(1), pending.of(2)) == (10, 0)
    pending.forget(1)  # the replica left
    pending.release(first)
    assert pending.of(1) == 0
    pending.add(first, 1, 3)  # a replica back under the same id starts from zero
    assert pending.of(1) == 3


def test_a_holder_goes_up_to_two_requests_over_the_bound_while_its_average_is_fair() -> None:
    loads = [8.0, 7.0, 5.0, 4.0]  # mean with this request 6.25: bound ceil(7.8) = 8
    assert ca.bound(loads, 1.25) == 8
    depths = [200, 0, 0, 0]  # replica 0, over the bound, holds the whole system prompt
    assert ca.rank(depths, loads, 210)[0] == 3  # by the counts alone: a 200-block prefill
    fair = [6.0, 6.0, 6.0, 6.0]  # averaged over time: a moment's swing, not sustained
    assert ca.rank(depths, loads, 210, averages=fair)[0] == 0
    hot = [7.5, 6.0, 5.5, 5.0]  # sustained: 7.5 + the slack 0.5 > 1.25 x (24 + 1) / 4
    assert ca.rank(depths, loads, 210, averages=hot)[0] == 3
    # two requests over (bound 9: 10 + this one is 11), never three
    assert ca.bound([10.0, 7.0, 5.0, 3.0], 1.25) == 9
    assert ca.rank(depths, [10.0, 7.0, 5.0, 3.0], 210, averages=fair)[0] == 0
    assert ca.rank(depths, [11.0, 7.0, 5.0, 2.0], 210, averages=fair)[0] == 3
    assert ca.rank(depths, [10.0, 7.0, 5.0, 3.0], 210, averages=fair, room=1.0)[0] == 3
    # any holder, not only the deepest: with the deepest (the chat's history too) three
    # over, a shallower holder (its system prompt) two over beats a replica holding nothing
    assert ca.rank([120, 200, 0, 0], [9.0, 12.0, 3.0, 1.0], 210, averages=fair)[0] == 0
    # ... while its own average is fair: a hot shallower holder is held to the bound
    warm = [7.6, 6.0, 5.2, 5.2]
    assert ca.rank([120, 200, 0, 0], [9.0, 12.0, 3.0, 1.0], 210, averages=warm)[0] == 3
    # the deepest holder under the bound still comes first
    assert ca.rank([200, 120, 0, 0], [7.0, 8.0, 5.0, 4.0], 210, averages=fair)[0] == 0
    assert ca.rank([0, 0, 0, 0], [8.0, 7.0, 5.0, 4.0], 210, averages=fair)[0] == 3
    assert ca.rank([1, 0, 0, 0], loads, 210, averages=fair)[0] == 3  # a match too short


def test_load_averages_follow_time_not_the_number_of_samples() -> None:
    average = ca.LoadAverage(window=10.0)
    assert average.observe({1: 4.0, 2: 0.0}, now=0.0) == [4.0, 0.0]  # first seen: as is
    # a burst of samples in the same instant moves nothing
    assert average.observe({1: 20.0, 2: 0.0}, now=0.0) == [4.0, 0.0]
    # one window later: 1 - 1/e of the way to the load seen now
    one, two = average.observe({1: 0.0, 2: 10.0}, now=10.0)
    assert one == pytest.approx(4.0 * 0.3679, rel=1e-3) and two == pytest.approx(6.321, rel=1e-3)
    (late,) = average.observe({1: 0.0}, now=1000.0)  # long after: the load as it is now
    assert late == pytest.approx(0.0, abs=1e-9)
    average.forget(2)  # a replica that left and comes back under its id starts afresh
    assert average.observe({2: 3.0}, now=1001.0) == [3.0]


def test_the_outcome_names_hit_miss_overflow_and_unkeyed() -> None:
    assert ca.outcome([0, 9, 0], first=1, total_blocks=9) == ca.HIT
    assert ca.outcome([0, 9, 0], first=2, total_blocks=9) == ca.OVERFLOW
    assert ca.outcome([1, 0, 0], first=2, total_blocks=9) == ca.MISS  # too short to count
    assert ca.outcome([0, 0, 0], first=0, total_blocks=0) == ca.UNKEYED


def test_no_key_is_least_load_with_ties_rotating() -> None:
    assert ca.rank([0, 0, 0], [1, 0, 0], total_blocks=0, cursor=0)[0] == 1
    assert ca.rank([0, 0, 0], [1, 0, 0], total_blocks=0, cursor=2)[0] == 2
    assert ca.rank([], [], total_blocks=3) == []


# ---- the spec key ------------------------------------------------------------------------------

SPEC = """\
service:
  load_balancing_policy: cache_aware
  router:
    cache_aware:
{options}
run: serve
"""


def test_the_spec_key_and_its_defaults() -> None:
    from skyctl.spec import CacheAware
    from skyctl.spec_yaml import parse_spec

    plain = parse_spec("service:\n  load_balancing_policy: cache_aware\nrun: serve\n")
    assert plain.service.load_balancing_policy == "cache_aware"
    assert plain.service.router.cache_aware == CacheAware()
    options = "      json_path: inputs\n      race: hedge\n      balance_factor: 1.5\n"
    options += "      replica_metrics_seconds: 2\n"
    spec = parse_spec(SPEC.format(options=options))
    assert spec.service.router.cache_aware == CacheAware(
        json_path="inputs", race="hedge", balance_factor=1.5, replica_metrics_seconds=2.0
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("      race: fanout", "service.router.cache_aware.race: unknown race 'fanout'"),
        ("      balance_factor: 0.5", "cache_aware.balance_factor: expected a number >= 1"),
        ("      session_header: 'X Session'", "session_header: expected an HTTP header name"),
        ("      json_path: a..b", "json_path: expected dotted keys"),
        ("      max_prefixes: 0", "cache_aware.max_prefixes"),
        ("      replica_metrics_seconds: 0", "cache_aware.replica_metrics_seconds"),
        ("      affinity: on", "cache_aware.affinity: unknown key"),
    ],
)
def test_bad_spec_values_name_the_key_and_its_line(options: str, message: str) -> None:
    from skyctl.errors import SpecError
    from skyctl.spec_yaml import parse_spec

    with pytest.raises(SpecError) as info:
        parse_spec(SPEC.format(options=options), source="svc.yaml")
    assert message in str(info.value) and str(info.value).startswith("svc.yaml:5: ")
