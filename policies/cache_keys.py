"""A request's prompt as cache_aware routing keys it (pure: bytes in, keys out).

- :func:`prompt_bytes` reads the prompt out of a small JSON request body:
  OpenAI-style ``/v1/chat/completions`` messages, ``/v1/responses`` input
  and ``/v1/completions`` prompts, or the value at a configured JSON path
  for other APIs; within bounds on the work (:data:`MAX_ITEMS`,
  :data:`MAX_DIGITS`, :data:`MAX_PARTS`, :data:`MAX_PROMPT`): it runs on
  the router's event loop, and a body over them goes by load.
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
MAX_PROMPT: Final = BLOCK_BYTES * MAX_BLOCKS  # prompt bytes read (the blocks cover no more)
# The work a body may cost the router's event loop (one client's crafted bodies within
# max_body_bytes took 20 to 180 ms each to key before these bounds; a few ms now, see
# docs/router.md). A body over them goes by load, as one with no prompt:
MAX_ITEMS: Final = 8192  # JSON values in the body (json.loads: about 0.15 us each)
MAX_DIGITS: Final = 40  # digits of an integer (converting one costs its length squared)
# messages and content parts read; a prompt with more is keyed by what came before
MAX_PARTS: Final = 512
CHAT_SUFFIX: Final = "/chat/completions"
COMPLETION_SUFFIX: Final = "/completions"
RESPONSES_SUFFIX: Final = "/responses"
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


_CANONICAL: Final = json.JSONEncoder(sort_keys=True, separators=(",", ":"))  # made once


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return _CANONICAL.encode(value)


class _Prompt:
    """A prompt's bytes as they are read, within :data:`MAX_PROMPT` bytes (the blocks
    cover no more) and :data:`MAX_PARTS` messages and parts (``cut`` past them: what
    was read is a prefix of the prompt, keyed as such)."""

    __slots__ = ("chunks", "cut", "ends", "parts", "size")

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.parts = 0
        self.cut = False
        self.ends: list[tuple[int, str]] = []  # per message read whole: its end, its role

    def full(self) -> bool:
        return self.cut or self.size >= MAX_PROMPT

    def add(self, text: str) -> None:
        room = MAX_PROMPT - self.size
        if room > 0:  # (room characters encode to room bytes or more)
            data = text[:room].encode("utf-8", "surrogatepass")
            self.chunks.append(data)
            self.size += len(data)

    def _content(self, content: Any, into: list[str]) -> None:
        """A message's content: a string, or parts (text, images, ...) in order:
        a part's text as it is (``text``: chat's, the Responses API's ``input_text``
        and ``output_text``; ``refusal``), any other part as canonical JSON."""
        if not isinstance(content, list):
            if content is not None:
                into.append(_text(content))
            return
        room = MAX_PROMPT - self.size
        for part in content:
            self.parts += 1
            if self.parts > MAX_PARTS:
                self.cut = True
                return
            if isinstance(part, dict):
                text = part.get("text", part.get("refusal"))
                into.append(text if isinstance(text, str) else _text(part))
            else:
                into.append(_text(part))
            room -= len(into[-1])
            if room <= 0:
                return

    def message(self, role: str, message: Mapping[str, Any], content: Any) -> None:
        """One message: its role (and ``name``), content, and what else a chat template
        renders of it: an assistant's ``tool_calls``, a tool answer's ``tool_call_id``."""
        self.parts += 1
        if self.parts > MAX_PARTS:
            self.cut = True
        if self.full():
            return
        name, call = message.get("name"), message.get("tool_call_id")
        text = [role if name is None else role + "\x03" + _text(name), "\x01"]
        if call is not None:
            text.append(_text(call) + "\x03")
        self._content(content, text)
        calls = message.get("tool_calls")
        if calls is not None and not self.cut:
            text.append("\x03" + _text(calls))
        if not self.cut:
            text.append("\x02")
        self.add("".join(text))
        if not self.cut:
            self.ends.append((self.size, role))

    def result(self) -> tuple[bytes, list[tuple[int, str]], bool]:
        return b"".join(self.chunks), self.ends, self.cut


def _head(doc: Mapping[str, Any]) -> _Prompt:
    """The model, then the tools (chat templates put their definitions first)."""
    prompt = _Prompt()
    head = _text(doc.get("model", "")) + "\x00"
    if "tools" in doc:
        head += _text(doc["tools"]) + "\x00"
    prompt.add(head)
    return prompt


def _chat(doc: Mapping[str, Any]) -> _Prompt | None:
    """A chat's prompt: per message, its role, content and calls; with its ends."""
    messages = doc.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    prompt = _head(doc)
    for message in messages:
        if not isinstance(message, dict):
            return None
        if prompt.full():
            break
        prompt.message(str(message.get("role", "")), message, message.get("content"))
    return prompt


def _responses(doc: Mapping[str, Any]) -> _Prompt | None:
    """A Responses API request (``/v1/responses``) read as a chat: ``instructions`` as a
    system message, then ``input``, a string (one user message) or items: messages
    (``output_text`` parts of an assistant's are its answer), a ``function_call`` as
    an assistant's call, a ``function_call_output`` as a tool's answer, any other
    item as its JSON."""
    items = doc.get("input")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    if not isinstance(items, list) or not items:
        return None
    prompt = _head(doc)
    instructions = doc.get("instructions")
    if instructions is not None:
        prompt.message("system", {}, instructions)
    for item in items:
        if not isinstance(item, dict):
            return None
        if prompt.full():
            break
        kind = item.get("type", "message")
        if kind == "message":
            prompt.message(str(item.get("role", "")), item, item.get("content"))
        elif kind == "function_call":
            call = {k: item.get(k) for k in ("name", "arguments", "call_id")}
            prompt.message("assistant", {"tool_calls": [call]}, None)
        elif kind == "function_call_output":
            prompt.message("tool", {"tool_call_id": item.get("call_id")}, item.get("output"))
        else:
            prompt.message(str(kind), {}, item)
    return prompt


def _completion(doc: Mapping[str, Any]) -> _Prompt | None:
    """The model, then the prompt: a string, the first of a batch, or token ids."""
    prompt = doc.get("prompt")
    if isinstance(prompt, list):  # a batch of prompts (the first decides) or token ids
        if not prompt:
            return None
        prompt = prompt[0] if isinstance(prompt[0], (str, list)) else prompt
    if isinstance(prompt, list):  # token ids: as many as the blocks cover (1 byte and a comma)
        prompt = ",".join(str(token) for token in prompt[: MAX_PROMPT // 2])
    if not isinstance(prompt, str) or not prompt:
        return None
    read = _Prompt()
    read.add(_text(doc.get("model", "")) + "\x00")
    read.add(prompt)
    return read


def _at(doc: Any, path: Sequence[str | int]) -> Any:
    for step in path:
        if isinstance(step, int) and isinstance(doc, list) and step < len(doc):
            doc = doc[step]
        elif isinstance(doc, dict) and str(step) in doc:
            doc = doc[str(step)]
        else:
            return None
    return doc


def _affordable(body: bytes) -> bool:
    """Whether ``body`` holds at most :data:`MAX_ITEMS` JSON values (each but the first
    of a container follows a comma): a body no longer has no more; else they are counted
    at C speed, with the commas and brackets of its strings first (an upper bound), then,
    if that is over, without them (the text between unescaped quotes left out)."""
    if len(body) <= MAX_ITEMS:
        return True
    if len(body) - len(body.translate(None, b",[{")) <= MAX_ITEMS:
        return True
    if body.count(b'"') > 4 * MAX_ITEMS:  # strings enough for twice as many values
        return False
    bare = b"".join(body.replace(b"\\\\", b"").replace(b'\\"', b"").split(b'"')[::2])
    return len(bare) - len(bare.translate(None, b",[{")) <= MAX_ITEMS


def _int(digits: str) -> int:
    """An integer of at most :data:`MAX_DIGITS` digits (converting one of n digits costs
    n squared: 65 of 4,000 took 9 ms); a longer one makes the body unread."""
    if len(digits) > MAX_DIGITS:
        raise ValueError(f"an integer of {len(digits)} digits")
    return int(digits)


_DECODER: Final = json.JSONDecoder(parse_int=_int)  # made once (json.loads makes one a call)


def _parse(body: bytes) -> Any:
    """``body`` parsed, or None when it is not JSON or too costly to read (see
    :data:`MAX_ITEMS`, :data:`MAX_DIGITS`); at most a few ms of CPU either way."""
    if not _affordable(body):
        return None
    try:  # (as json.loads reads bytes)
        return _DECODER.decode(body.decode(json.detect_encoding(body), "surrogatepass"))
    except (ValueError, RecursionError):
        return None


def _read(
    path: str, body: bytes, json_path: Sequence[str | int] | None
) -> tuple[bytes, list[tuple[int, str]], bool] | None:
    """The prompt's bytes, a chat's message ends (else []) and whether it was cut
    (:class:`_Prompt`); None for no prompt."""
    if not body or body[:1] not in (b"{", b" ", b"\n", b"\r", b"\t"):
        return None
    doc = _parse(body)
    if not isinstance(doc, dict):
        return None
    try:  # a body nested nearly as deep as json.loads allows: dumping a part goes deeper
        return _prompt(path, doc, json_path)
    except RecursionError:
        return None


def _prompt(
    path: str, doc: Mapping[str, Any], json_path: Sequence[str | int] | None
) -> tuple[bytes, list[tuple[int, str]], bool] | None:
    read: _Prompt | None = None
    if path.endswith(CHAT_SUFFIX):
        read = _chat(doc)
    elif path.endswith(RESPONSES_SUFFIX):
        read = _responses(doc)
    elif path.endswith(COMPLETION_SUFFIX):
        read = _completion(doc)
    if read is not None:
        return read.result()
    if json_path:
        value = _at(doc, json_path)
        if value is not None and value != "":
            return _text(value)[:MAX_PROMPT].encode("utf-8", "surrogatepass"), [], False
    return None


def prompt_bytes(
    path: str, body: bytes, json_path: Sequence[str | int] | None = None
) -> bytes | None:
    """The prompt of a JSON request body, as bytes to cut into blocks; None if none.

    ``path`` is the request path without its query: one ending in
    ``/chat/completions`` is read as OpenAI chat (model, tools, then each
    message's role, name, content and tool calls), one ending in ``/responses``
    as the Responses API (model, tools, instructions, then the input's items as
    chat messages), one ending in ``/completions`` as a completion (model, then
    the prompt, or the first of a batch). Otherwise, or when that finds nothing,
    the value at ``json_path`` (strings as they are, anything else as canonical
    JSON). A body that is not a JSON object, or that holds more than
    :data:`MAX_ITEMS` values or an integer over :data:`MAX_DIGITS` digits, gives
    None (its request goes by load). At most :data:`MAX_PROMPT` bytes are read,
    of at most :data:`MAX_PARTS` messages and parts.
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
    """The request's :class:`Prefix` (see the module docstring); None if it has no prompt.

    A prompt cut at :data:`MAX_PARTS` has no key of its own (``end``): its holder
    holds more than what was read, not an answer right after it.
    """
    read = _read(path, body, json_path)
    if read is None:
        return None
    data, ends, cut = read
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
    return Prefix(keys, None if cut else turn_key(data), tuple(answers))


def session_keys(value: str) -> list[int]:
    """The one key of a session header's value (no body needed)."""
    return [_SESSION | zlib.crc32(value.encode("utf-8", "surrogatepass"))]
