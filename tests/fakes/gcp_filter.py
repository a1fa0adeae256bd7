"""The ``filter`` query parameter of Compute Engine list calls, for the fake server.

Supports the subset skyctl and its tests use, as the API reference describes it:

- comparisons ``field = value``, ``field != value``, ``field : value`` (``:*``
  means "has the field"), ``field eq regex`` and ``field ne regex`` (the regex
  must match the whole value); values may be double- or single-quoted;
- dotted field paths into the resource (``labels.skyctl-service``,
  ``scheduling.provisioningModel``);
- expressions in parentheses, joined by ``AND`` (also implicit) and ``OR``.

Anything else raises :class:`FilterError`, which the server answers with 400
``invalid``, like the real API does for a malformed filter.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Predicate = Callable[[Mapping[str, Any]], bool]

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<lp>\() | (?P<rp>\)) |
        (?P<op>!=|=|:|\beq\b|\bne\b) |
        (?P<q>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*') |
        (?P<word>[^\s()=!:"']+)
    )""",
    re.VERBOSE,
)


class FilterError(ValueError):
    """The filter expression is malformed or uses an unsupported form."""


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise FilterError(f"invalid filter near {text[pos:]!r}")
        pos = m.end()
        kind = m.lastgroup or ""
        value = m.group(kind)
        if kind == "q":
            kind, value = "word", value[1:-1].replace('\\"', '"').replace("\\'", "'")
        out.append((kind, value))
    return out


def _lookup(resource: Mapping[str, Any], path: str) -> Any:
    value: Any = resource
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _comparison(field: str, op: str, value: str) -> Predicate:
    def check(resource: Mapping[str, Any]) -> bool:
        have = _lookup(resource, field)
        if op == ":" and value == "*":
            return have is not None
        if have is None:
            return op in ("!=", "ne")
        text = _as_text(have)
        if op in ("=", ":"):
            return text == value
        if op == "!=":
            return text != value
        matched = re.fullmatch(value, text) is not None
        return matched if op == "eq" else not matched

    return check


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise FilterError("invalid filter: unexpected end")
        self.i += 1
        return tok

    def expr(self) -> Predicate:
        terms = [self.term()]
        while self.peek() == ("word", "OR"):
            self.take()
            terms.append(self.term())
        return lambda r: any(t(r) for t in terms)

    def term(self) -> Predicate:
        factors = [self.factor()]
        while (tok := self.peek()) is not None and tok[0] != "rp" and tok != ("word", "OR"):
            if tok == ("word", "AND"):
                self.take()
            factors.append(self.factor())
        return lambda r: all(f(r) for f in factors)

    def factor(self) -> Predicate:
        kind, value = self.take()
        if kind == "lp":
            inner = self.expr()
            if self.take()[0] != "rp":
                raise FilterError("invalid filter: missing ')'")
            return inner
        if kind != "word":
            raise FilterError(f"invalid filter: unexpected {value!r}")
        op_kind, op = self.take()
        if op_kind != "op":
            raise FilterError(f"invalid filter: expected an operator after {value!r}")
        val_kind, val = self.take()
        if val_kind != "word":
            raise FilterError(f"invalid filter: expected a value after {value} {op}")
        return _comparison(value, op, val)


def parse_filter(text: str | None) -> Predicate:
    """A predicate over a resource (a JSON dict) for the filter ``text``."""
    if not text or not text.strip():
        return lambda r: True
    parser = _Parser(_tokens(text))
    predicate = parser.expr()
    if parser.peek() is not None:
        raise FilterError(f"invalid filter: unexpected {parser.peek()[1]!r}")  # type: ignore[index]
    return predicate
