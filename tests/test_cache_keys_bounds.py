"""cache_aware's keys: the work a body may cost is bounded (hostile bodies go by load),
and what OpenAI-compatible clients send (parts, tool calls, token ids, the Responses
API) is keyed as the server reads it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from policies import cache_aware as ca
from policies import cache_keys as ck

CHAT = "/v1/chat/completions"
RESPONSES = "/v1/responses"
SYSTEM = "You are a careful assistant with tools. " * 10


def body(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def chat(*messages: dict[str, Any], **extra: Any) -> bytes:
    return body({"model": "m", "messages": list(messages), **extra})


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


# ---- the bounds ---------------------------------------------------------------------------


def hostile() -> dict[str, tuple[str, bytes]]:
    """Bodies within max_body_bytes (256 KiB) crafted to cost the most to key (before the
    bounds: 13 to 180 ms of CPU each; the script in docs/router.md measures them)."""
    n = ck.MAX_ITEMS + 1
    deep = b",".join([b"[" * 500 + b"]" * 500] * (n // 500 + 1))  # nested 500 deep, many times
    return {
        "tiny messages": (CHAT, chat(*[{"role": "u", "content": "x"}] * n)),
        "empty messages": (CHAT, b'{"messages":[' + b",".join([b"{}"] * n) + b"]}"),
        "tiny parts": (CHAT, chat({"role": "user", "content": [{"a": 1}] * n})),
        "floats": (CHAT, chat({"role": "u", "content": [1.5e300] * n})),
        "nested": (CHAT, b'{"messages":[{"role":"u","content":[' + deep + b"]}]}"),
        "wide object": (CHAT, chat({"role": "user", "content": {str(i): 0 for i in range(n)}})),
        "wide tools": (CHAT, chat(user("hi"), tools={str(i): [] for i in range(n)})),
        "token ids": ("/v1/completions", body({"prompt": [1] * n})),
        "duplicate keys": (CHAT, b"{" + b'"a":1,' * n + b'"messages":[{"role":"u"}]}'),
        "items": (RESPONSES, body({"input": [{"type": "x"}] * n})),
        "long integers": (CHAT, chat({"role": "u", "content": [10 ** (ck.MAX_DIGITS + 1)] * 2})),
    }


@pytest.mark.parametrize("name", sorted(hostile()))
def test_a_body_over_the_work_bounds_has_no_key_and_goes_by_load(name: str) -> None:
    path, data = hostile()[name]
    assert len(data) <= 256 << 10
    assert ca.prefix(path, data) is None and ca.prompt_bytes(path, data) is None


def test_just_within_the_bounds_a_body_is_keyed() -> None:
    few = chat(*[{"role": "u", "content": "x"}] * (ck.MAX_ITEMS // 4))
    assert ca.prefix(CHAT, few) is not None
    digits = chat({"role": "u", "content": [10 ** (ck.MAX_DIGITS - 1)]})
    assert ca.prefix(CHAT, digits) is not None
    # digits, commas and brackets inside strings cost nothing to parse: they count not
    code = chat(
        user("f(a, [b], {c}) = 12345678901234567890123456789012345678901234567890\n" * 3000)
    )
    items = code.count(b",") + code.count(b"[") + code.count(b"{")
    assert items > ck.MAX_ITEMS and len(code) <= 256 << 10
    found = ca.prefix(CHAT, code)
    assert found is not None and len(found.keys) == ca.MAX_BLOCKS


def test_the_bytes_hashed_are_bounded_whatever_the_body() -> None:
    for data in (
        chat(user("a" * 200_000)),
        chat(*[user("b" * 1000)] * 200),
        chat(
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": "x" * 9}}] * 500,
            }
        ),
        body({"prompt": list(range(100_000, 100_000 + ck.MAX_ITEMS - 10))}),
    ):
        path = "/v1/completions" if b'"prompt"' in data else CHAT
        data_bytes = ca.prompt_bytes(path, data)
        assert data_bytes is not None and len(data_bytes) <= ck.MAX_PROMPT + 8 * 1024
        found = ca.prefix(path, data)
        assert found is not None and len(found.keys) <= ca.MAX_BLOCKS


def test_a_chat_of_more_messages_than_are_read_is_keyed_by_those_read_without_a_turn_key() -> None:
    messages = [
        user(f"q{n}") if n % 2 == 0 else {"role": "assistant", "content": f"a{n}"}
        for n in range(ck.MAX_PARTS + 40)
    ]
    long = ca.prefix(CHAT, chat(*messages))
    read = ca.prefix(CHAT, chat(*messages[: ck.MAX_PARTS]))
    assert long is not None and read is not None
    assert long.keys == read.keys  # the prefix read: where its home is
    assert long.end is None and read.end is not None  # no answer follows what was read
    assert long.answers == read.answers


# ---- what clients send ----------------------------------------------------------------------


def test_text_parts_string_content_and_refusals_read_the_same() -> None:
    plain = chat(user(SYSTEM))
    parts = chat(
        {
            "role": "user",
            "content": [
                {"type": "text", "text": SYSTEM[:50]},
                {"type": "text", "text": SYSTEM[50:]},
            ],
        }
    )
    assert ca.prompt_bytes(CHAT, plain) == ca.prompt_bytes(CHAT, parts)
    refusal = chat({"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]})
    assert ca.prompt_bytes(CHAT, refusal) == ca.prompt_bytes(
        CHAT, chat({"role": "assistant", "content": "No."})
    )


def test_tool_calls_and_tool_answers_are_part_of_the_prefix() -> None:
    def turn(city: str) -> bytes:
        call = {
            "id": "c1",
            "type": "function",
            "function": {"name": "weather", "arguments": json.dumps({"city": city})},
        }
        return chat(
            {"role": "system", "content": SYSTEM},
            user("What is the weather?"),
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        )

    paris, rome = ca.prompt_bytes(CHAT, turn("Paris")), ca.prompt_bytes(CHAT, turn("Rome"))
    assert paris is not None and rome is not None and paris != rome  # were the same
    assert b"Paris" in paris and b"c1" in paris
    named = chat({"role": "user", "name": "alice", "content": "hi"})
    assert ca.prompt_bytes(CHAT, named) != ca.prompt_bytes(CHAT, chat(user("hi")))


def test_a_plain_chat_is_keyed_as_before() -> None:
    """The bytes of a chat of string messages did not change (keys stay comparable)."""
    data = ca.prompt_bytes(CHAT, chat({"role": "system", "content": "s"}, user("q"), tools=[1]))
    assert data == b"m\x00[1]\x00system\x01s\x02user\x01q\x02"


def test_the_responses_api_input_reads_as_the_chat_it_stands_for() -> None:
    as_chat = chat({"role": "system", "content": SYSTEM}, user("What is a KV cache?"))
    text = body({"model": "m", "instructions": SYSTEM, "input": "What is a KV cache?"})
    items = body(
        {
            "model": "m",
            "instructions": SYSTEM,
            "input": [
                {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "What is a KV cache?"}],
                }
            ],
        }
    )
    assert ca.prompt_bytes(RESPONSES, text) == ca.prompt_bytes(CHAT, as_chat)
    assert ca.prompt_bytes(RESPONSES, items) == ca.prompt_bytes(CHAT, as_chat)
    assert ca.prompt_bytes(RESPONSES, b'{"input": []}') is None


def test_a_responses_conversation_keeps_its_turn_keys_and_function_calls() -> None:
    first_input: list[dict[str, Any]] = [{"role": "user", "content": "What is the weather? " * 3}]
    first = body({"model": "m", "instructions": SYSTEM, "input": first_input})
    later_input = [
        *first_input,
        {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "It is sunny."}],
        },
        {"role": "user", "content": "And tomorrow?"},
    ]
    one, two = (
        ca.prefix(RESPONSES, first),
        ca.prefix(RESPONSES, body({"model": "m", "instructions": SYSTEM, "input": later_input})),
    )
    assert one is not None and two is not None and one.end is not None
    assert two.keys[: len(one.keys) - 1] == one.keys[:-1]
    # the function call is the answer the first prompt produced: its holder holds it
    assert two.answers[0][0] == one.end
    other = [*later_input[:1], {**later_input[1], "arguments": '{"day": 2}'}, *later_input[2:]]
    three = ca.prefix(RESPONSES, body({"model": "m", "instructions": SYSTEM, "input": other}))
    assert three is not None and three.keys != two.keys
