"""cache_aware's keys for odd but legal JSON, as a peer would check them: what the
server reads is what the router keys (escapes, duplicate keys, parts, token ids)."""

from __future__ import annotations

import json

from policies import cache_aware as ca

CHAT = "/v1/chat/completions"
SYSTEM = "Réponds en français, s'il te plaît. 你好 " * 8


def keys(path: str, body: bytes, json_path: str | None = None) -> list[int]:
    found = ca.prefix(path, body, ca.parse_json_path(json_path) if json_path else None)
    return [] if found is None else found.keys


def test_escaped_and_raw_utf8_bodies_of_one_chat_share_every_block() -> None:
    doc = {"model": "m", "messages": [{"role": "system", "content": SYSTEM}]}
    escaped = json.dumps(doc, ensure_ascii=True).encode()
    raw = json.dumps(doc, ensure_ascii=False).encode("utf-8")
    assert escaped != raw and keys(CHAT, escaped) == keys(CHAT, raw) != []
    lone = b'{"messages": [{"role": "user", "content": "\\ud800 half a pair"}]}'
    assert len(keys(CHAT, lone)) == 1  # a lone surrogate escape: keyed, never an error


def test_a_duplicated_key_counts_as_the_server_reads_it_the_last() -> None:
    messages = json.dumps([{"role": "user", "content": SYSTEM}])
    twice = ('{"messages": "ignored", "model": "m", "messages": ' + messages + "}").encode()
    once = ('{"model": "m", "messages": ' + messages + "}").encode()
    assert keys(CHAT, twice) == keys(CHAT, once) != []


def test_image_parts_are_part_of_the_prefix_and_text_parts_read_as_text() -> None:
    def chat(image: str) -> bytes:
        content = [
            {"type": "text", "text": SYSTEM},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image}"}},
            {"type": "text", "text": "What is in it?"},
        ]
        return json.dumps({"messages": [{"role": "user", "content": content}]}).encode()

    one, other = keys(CHAT, chat("AAAA" * 40)), keys(CHAT, chat("BBBB" * 40))
    shared = len(b"\x00user\x01" + SYSTEM.encode()) // ca.BLOCK_BYTES
    assert one[:shared] == other[:shared] and one[shared + 1 :] != other[shared + 1 :]


def test_completion_token_ids_nested_as_a_batch_key_as_their_first_prompt() -> None:
    ids = list(range(1000, 1100))
    flat = json.dumps({"model": "m", "prompt": ids}).encode()
    batch = json.dumps({"model": "m", "prompt": [ids, [1, 2]]}).encode()
    assert keys("/v1/completions", flat) == keys("/v1/completions", batch)
    assert keys("/v1/completions", b'{"prompt": [[]]}') == []


def test_a_json_path_at_a_number_or_object_keys_its_json_and_at_nothing_gives_none() -> None:
    assert ca.prompt_bytes("/generate", b'{"inputs": 12345}', ("inputs",)) == b"12345"
    nested = b'{"inputs": {"b": [1, 2], "a": "x"}}'
    assert ca.prompt_bytes("/generate", nested, ("inputs",)) == b'{"a":"x","b":[1,2]}'
    for body in (b'{"inputs": null}', b'{"inputs": ""}', b'{"other": "x"}', b"{}", b""):
        assert ca.prompt_bytes("/generate", body, ("inputs",)) is None
    assert ca.prompt_bytes("/generate", b'{"inputs": ["a"]}', ("inputs", 3)) is None
