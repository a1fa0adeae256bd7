"""A request's prompt as cache_aware routing keys it (pure: bytes in, keys out).

- :func:`prompt_bytes` reads the prompt out of a small JSON request body:
  OpenAI-style ``/v1/chat/completions`` messages and ``/v1/completions``
  prompts, or the value at a configured JSON path for other APIs.
- :func:`block_keys` cuts it into blocks of :data:`BLOCK_BYTES` and names each
  by a hash of the whole prefix up to its end (as vLLM names its KV blocks):
  two prompts share their first ``n`` keys exactly when they share their first
  ``n`` blocks (up to hash collisions, which only cost a cache miss).
- :func:`prefix` gives both, and for a chat the turns' keys (:class:`Prefix`):
  the key of the whole prompt (:func:`turn_key`), and for each earlier answer
  in it (an assistant message) the key of the prompt that produced it. A
  server caches the answer it generates with the prompt (vLLM's and SGLang's
  prefix caches keep the generated tokens' blocks too), and a chat's next turn
  resends prompt and answer: the replica that was sent the earlier prompt holds
  this one through the end of that answer. Without that, a router that never
  reads answers sees a turn's history only up to the last full block of the
  previous prompt: nothing at all when the first question was under two blocks.
- :func:`session_keys` names a session header's value.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any, Final, NamedTuple

BLOCK_BYTES: Final = 64  # about 16 tokens, vLLM's default KV block
MAX_BLOCKS: Final = 1024  # prefixes are compared over their first 64 KiB
CHAT_SUFFIX: Final = "/chat/completions"
COMPLETION_SUFFIX: Final = "/completions"
_TURN: Final = 1 << 61  # turn keys: apart from block keys (< 2**42) and session keys (2**62)
_SESSION: Final = 1 << 62


class Prefix(NamedTuple):
    """A request's keys (see the module docstring).

    ``keys``: its blocks' (:func:`block_keys`); ``end``: a chat prompt's own
    :func:`turn_key` (its holder will hold the answer that follows), else None;
    ``answers``: per earlier answer in a chat prompt, (the key of the prompt
    that produced it, this prompt's full blocks through the end of that answer).
    """

    keys: list[int]
    end: int | None = None
    answers: tuple[tuple[int, int], ...] = ()


NONE: Final = Prefix([])


def parse_json_path(text: str) -> tuple[str | int, ...]:
    """``"input.0.text"`` -> ``("input", 0, "text")``; a ValueError for an empty segment."""
    parts: list[str | int] = []
    for segment in text.split("."):
        if not segment:
            raise ValueError(f"json path {text!r}: empty segment (expected e.g. inputs or a.0.b)")
        parts.append(int(segment) if segment.isdigit() else segment)
    return tuple(parts)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _content(content: Any) -> str:
    """A chat message's content: a string, or parts (text, image URLs) in order."""
    if isinstance(content, list):
        return "".join(
            str(part.get("text", "")) if isinstance(part, dict) and "text" in part else _text(part)
            for part in content
        )
    return _text(content) if content is not None else ""


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _chat(doc: Mapping[str, Any]) -> tuple[bytes, list[tuple[int, str]]] | None:
    """The chat prompt's bytes and, per message, (where it ends in them, its role)."""
    messages = doc.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    head = _text(doc.get("model", "")) + "\x00"
    if "tools" in doc:  # chat templates put tool definitions before the messages
        head += _text(doc["tools"]) + "\x00"
    parts = [_bytes(head)]
    size = len(parts[0])
    ends: list[tuple[int, str]] = []
    for message in messages:
        if not isinstance(message, dict):
            return None
        role = str(message.get("role", ""))
        part = _bytes(role + "\x01" + _content(message.get("content")) + "\x02")
        parts.append(part)
        size += len(part)
        ends.append((size, role))
    return b"".join(parts), ends


def _completion(doc: Mapping[str, Any]) -> str | None:
    prompt = doc.get("prompt")
    if isinstance(prompt, list):  # a batch of prompts (the first decides) or token ids
        if not prompt:
            return None
        prompt = prompt[0] if isinstance(prompt[0], (str, list)) else prompt
    if isinstance(prompt, list):
        prompt = ",".join(str(token) for token in prompt)
    if not isinstance(prompt, str) or not prompt:
        return None
    return _text(doc.get("model", "")) + "\x00" + prompt


def _at(doc: Any, path: Sequence[str | int]) -> Any:
    for step in path:
        if isinstance(step, int) and isinstance(doc, list) and step < len(doc):
            doc = doc[step]
        elif isinstance(doc, dict) and str(step) in doc:
            doc = doc[str(step)]
        else:
            return None
    return doc


def _read(
    path: str, body: bytes, json_path: Sequence[str | int] | None
) -> tuple[bytes, list[tuple[int, str]]] | None:
    """The prompt's bytes, and a chat's message ends (else []); None for no prompt."""
    if not body or body[:1] not in (b"{", b" ", b"\n", b"\r", b"\t"):
        return None
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    try:  # a body nested nearly as deep as json.loads allows: dumping a part goes deeper
        return _prompt(path, doc, json_path)
    except RecursionError:
        return None


def _prompt(
    path: str, doc: Mapping[str, Any], json_path: Sequence[str | int] | None
) -> tuple[bytes, list[tuple[int, str]]] | None:
    if path.endswith(CHAT_SUFFIX):
        chat = _chat(doc)
        if chat is not None:
            return chat
    elif path.endswith(COMPLETION_SUFFIX):
        text = _completion(doc)
        if text is not None:
            return _bytes(text), []
    if json_path:
        value = _at(doc, json_path)
        if value is not None and value != "":
            return _bytes(_text(value)), []
    return None


def prompt_bytes(
    path: str, body: bytes, json_path: Sequence[str | int] | None = None
) -> bytes | None:
    """The prompt of a JSON request body, as bytes to cut into blocks; None if none.

    ``path`` is the request path without its query: one ending in
    ``/chat/completions`` is read as OpenAI chat (model, tools, then each
    message's role and content), one ending in ``/completions`` as a completion
    (model, then the prompt, or the first of a batch). Otherwise, or when that
    finds nothing, the value at ``json_path`` (strings as they are, anything
    else as canonical JSON). A body that is not a JSON object gives None.
    """
    read = _read(path, body, json_path)
    return None if read is None else read[0]


def block_keys(data: bytes, block: int = BLOCK_BYTES, max_blocks: int = MAX_BLOCKS) -> list[int]:
    """Keys of ``data``'s blocks, each a hash of the whole prefix up to the block's end.

    The last, partial block counts too (a short prompt still has a key); the
    key holds the block's index, so prefixes of different lengths never share
    a key by a collision of the running CRC.
    """
    keys: list[int] = []
    crc = 0
    end = min(len(data), block * max_blocks)
    for index, start in enumerate(range(0, end, block)):
        crc = zlib.crc32(data[start : start + block], crc)
        keys.append((index << 32) | crc)
    return keys


def turn_key(prompt: bytes) -> int:
    """The key of a whole chat prompt (its length in it: apart from every block key)."""
    return _TURN | ((len(prompt) & 0xFFFFF) << 32) | zlib.crc32(prompt)


def prefix(path: str, body: bytes, json_path: Sequence[str | int] | None = None) -> Prefix | None:
    """The request's :class:`Prefix` (see the module docstring); None if it has no prompt."""
    read = _read(path, body, json_path)
    if read is None:
        return None
    data, ends = read
    keys = block_keys(data)
    if not ends:
        return Prefix(keys)
    answers: list[tuple[int, int]] = []
    crc, done = 0, 0
    for (before, _), (after, role) in pairwise(ends):
        if role != "assistant":
            continue
        crc = zlib.crc32(data[done:before], crc)  # the prompt that produced this answer
        done = before
        key = _TURN | ((before & 0xFFFFF) << 32) | crc
        answers.append((key, min(after // BLOCK_BYTES, len(keys))))
    return Prefix(keys, turn_key(data), tuple(answers))


def session_keys(value: str) -> list[int]:
    """The one key of a session header's value (no body needed)."""
    return [_SESSION | zlib.crc32(value.encode("utf-8", "surrogatepass"))]
