"""cache_aware's chat turn keys (an answer is held where its prompt went) and
:class:`policies.cache_aware.Homes`, the steps the router and the benchmark share."""

from __future__ import annotations

import json

from policies import cache_aware as ca

CHAT = "/v1/chat/completions"
ANSWER = "Keys and values of attention, kept per token for every layer. " * 8  # ~500 bytes


def chat(*messages: tuple[str, str]) -> bytes:
    doc = {"model": "m", "messages": [{"role": r, "content": c} for r, c in messages]}
    return json.dumps(doc).encode()


def turns(first: str, *more: str) -> list[ca.Prefix]:
    """The prefixes of a chat's turns: ``first`` asked, then each of ``more`` after an answer."""
    messages = [("user", first)]
    out = []
    for question in (None, *more):
        if question is not None:
            messages += [("assistant", ANSWER), ("user", question)]
        prompt = ca.prefix(CHAT, chat(*messages))
        assert prompt is not None
        out.append(prompt)
    return out


# ---- keys ----------------------------------------------------------------------------


def test_a_turn_names_the_prompts_that_produced_its_answers() -> None:
    one, two, three = turns("What is a KV cache?", "And paged attention?", "Thanks")
    data = ca.prompt_bytes(CHAT, chat(("user", "What is a KV cache?"))) or b""
    assert one.keys == ca.block_keys(data) and one.end == ca.turn_key(data)
    assert one.answers == ()  # nothing answered yet
    # the next turn resends prompt one and its answer: the holder of one holds both
    (key, through), *_ = two.answers
    assert key == one.end
    assert through == len(data + b"assistant\x01" + ANSWER.encode() + b"\x02") // ca.BLOCK_BYTES
    assert through > len(one.keys)  # the answer's blocks, which the router never saw
    assert [k for k, _ in three.answers] == [one.end, two.end]  # every earlier turn
    assert three.answers[1][1] > three.answers[0][1]


def test_turn_keys_apart_from_block_and_session_keys_and_only_for_chats() -> None:
    one, two = turns("hi", "more")
    assert one.end not in two.keys and one.end != ca.session_keys("hi")[0]
    completion = ca.prefix("/v1/completions", b'{"model": "m", "prompt": "Once upon"}')
    assert completion == ca.Prefix(ca.block_keys(b"m\x00Once upon"))  # no turns
    edited = ca.prefix(CHAT, chat(("user", "hi!"), ("assistant", ANSWER), ("user", "more")))
    assert edited is not None and edited.answers[0][0] != one.end  # another history
    assert ca.prefix(CHAT, b'{"messages": []}') is None


# ---- the index -----------------------------------------------------------------------


def test_a_short_first_question_still_finds_its_home_at_the_next_turn() -> None:
    index = ca.PrefixIndex()
    one, two = turns("hi", "and then?")
    assert len(one.keys) == 1  # one partial block: the next turn shares no block key with it
    index.record(one.keys, 1, now=0.0, end=one.end)
    index.record(ca.block_keys(b"another prompt " * 30), 2, now=0.0)
    assert index.depths(two.keys, now=1.0) == {}  # by blocks alone: nowhere
    assert index.depths(two.keys, now=1.0, answers=two.answers) == {1: two.answers[0][1]}
    # the deeper of blocks and answers: a holder of the whole of turn two
    index.record(two.keys, 3, now=2.0, end=two.end)
    assert index.depths(two.keys, 3.0, two.answers) == {1: two.answers[0][1], 3: len(two.keys)}
    index.forget(1)  # a replica leaving takes its turn keys too
    assert index.depths(two.keys, 3.0, two.answers) == {3: len(two.keys)}
    assert index.depths(two.keys, now=2.0 + ca.DEFAULT_TTL + 1.0, answers=two.answers) == {}


# ---- Homes: order, sent, answered, forget --------------------------------------------


def test_homes_send_a_chat_home_and_count_only_the_new_question_as_pending() -> None:
    homes = ca.Homes()
    one, two = turns("hi", "and then?")
    ids = [10, 11, 12, 13]
    order, depths = homes.order(one, ids, [0.0, 0.0, 0.0, 0.0], now=0.0)
    home = ids[order[0]]
    first = ca.Ticket()
    homes.sent(one, home, depths[order[0]], first, now=0.0)
    assert homes.pending.of(home) == len(one.keys)  # nothing was cached: all of it
    homes.answered(first)
    assert homes.pending.of(home) == 0
    for now in (5.0, 6.0, 7.0):  # ties rotate, but the home holds the turn
        order, depths = homes.order(two, ids, [1.0, 1.0, 1.0, 1.0], now)
        assert ids[order[0]] == home
    second = ca.Ticket()
    homes.sent(two, home, depths[order[0]], second, now=7.0)
    assert homes.pending.of(home) == len(two.keys) - two.answers[0][1]  # the question only
    homes.forget(home)
    assert homes.pending.of(home) == 0
    order, depths = homes.order(two, [i for i in ids if i != home], [1.0, 1.0, 1.0], now=8.0)
    assert max(depths) == 0  # its prefixes left with it


def test_homes_sample_the_load_averages_that_let_a_home_go_over_the_bound() -> None:
    """A fake clock: ``now`` passed in. Loads balanced for a minute, then a momentary
    swing: the home keeps the prefix; the same counts sustained for a minute: it moves."""
    prompt = ca.Prefix(ca.block_keys(b"a long system prompt " * 100))
    ids = [1, 2, 3, 4]

    def first_choice(homes: ca.Homes, loads: list[float], now: float) -> int:
        order, _ = homes.order(prompt, ids, loads, now)
        return ids[order[0]]

    swing = [8.0, 7.0, 5.0, 4.0]  # bound 8: the home (1) is one over it with this request
    for sustained, expected in ((False, 1), (True, 4)):
        homes = ca.Homes()
        homes.sent(prompt, 1, 0, ca.Ticket(), now=0.0)
        for second in range(60):
            loads = swing if sustained else [6.0, 6.0, 6.0, 6.0]
            homes.order(ca.NONE, ids, loads, float(second))
        assert first_choice(homes, swing, 60.0) == expected
