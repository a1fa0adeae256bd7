"""YAML with line numbers, and the typed readers the spec parser is built from.

:func:`load_yaml` reads text with a safe PyYAML loader whose mappings and
sequences remember the line of every key and value (:class:`LineDict`,
:class:`LineList`). :class:`Section` wraps one mapping with its dotted key path
(``service.replica_policy``) and offers typed getters; every problem becomes a
one-line :class:`~skyctl.errors.SpecError` ``file:LINE: key.path: message``.

Nothing here knows the schema: ``skyctl.spec_yaml`` and
``skyctl.spec_resources`` say which keys exist.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import difflib
import math
import unicodedata
from collections.abc import Iterable, Iterator
from typing import Any

import yaml

from skyctl.errors import SpecError

#: True while a stored spec is read again (:func:`stored_spec`, skyctl.secrets.Secrets.open)
_STORED: contextvars.ContextVar[bool] = contextvars.ContextVar("skyctl_stored", default=False)


@contextlib.contextmanager
def stored_spec() -> Iterator[None]:
    """Parse a spec an earlier skyctl accepted and stored: an unknown key is skipped,
    not refused, as that skyctl did (``gpu:`` with no value was dropped until the
    checks got stricter). Without this, its service had no endpoint after an upgrade
    and its ``serve down`` never finished (docs/reliability.md#upgrading-skyctl)."""
    token = _STORED.set(True)
    try:
        yield
    finally:
        _STORED.reset(token)


# Characters str.splitlines() treats as line breaks: never let one into an error.
_BREAKS = str.maketrans({c: " " for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"})
MAX_NODES = 100_000  # values in a spec once its aliases are expanded (guards alias bombs)
MAX_DEPTH = 64
#: the largest spec text read: SkyPilot's largest service YAML is 3.6 KB, and the
#: pure-Python YAML parser needs seconds per 100 KB on a busy machine
MAX_SPEC_BYTES = 256 << 10
#: kind "count" (replicas): the most one controller is measured to run (docs/architecture.md)
MAX_COUNT = 10_000
MAX_NUMBER = 1e9  # a larger timeout overflows sockets' and threads' timers
MAX_INT = 2**53  # integers beyond this are no count, size or port (SQLite holds 2**63)


def one_line(text: str) -> str:
    return text.translate(_BREAKS)


def spec_error(message: str, *, key: str = "", line: int | None, source: str | None) -> SpecError:
    """A SpecError whose rendering is guaranteed to be a single line."""
    return SpecError(
        one_line(message),
        key=one_line(key),
        line=line,
        source=None if source is None else one_line(source),
    )


class LineDict(dict[Any, Any]):
    """A YAML mapping that knows where its keys and values are (1-based lines)."""

    line: int = 1
    key_lines: dict[Any, int]
    value_lines: dict[Any, int]


class LineList(list[Any]):
    """A YAML sequence that knows the line of each item."""

    line: int = 1
    item_lines: list[int]


class _Refused(yaml.MarkedYAMLError):  # a duplicate key, or nesting too deep
    pass


class _Loader(yaml.SafeLoader):
    """SafeLoader building LineDict/LineList, refusing duplicate keys, deep nesting,
    alias bombs, and text no process can take (NUL, lone surrogates)."""

    _depth = 0

    def compose_document(self) -> yaml.Node | None:
        node = super().compose_document()
        if node is not None:
            _check_expanded_size(node)
        return node

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            value = super().construct_object(node, deep=deep)
        except ValueError as e:  # an int of 5000 digits, a date like 2001-13-45
            raise _Refused(
                problem=f"bad value: {_reason(e)}", problem_mark=node.start_mark
            ) from None
        if isinstance(value, str):
            _check_text(value, node)
        return value

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                problem = f"nested deeper than {MAX_DEPTH} levels"
                raise _Refused(problem=problem, problem_mark=mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _reason(error: ValueError) -> str:
    text = str(error)
    if "integer string conversion" in text:  # Python's int_max_str_digits guard
        return "an integer with more than 4300 digits"
    return text


def _check_text(value: str, node: yaml.Node) -> None:
    """Strings end up in environments, argv, HTTP headers and UTF-8 files: refuse
    what none of them can hold (a NUL from a "\\0" escape, a lone surrogate)."""
    if "\x00" in value:
        problem = "a string holds a NUL character (\\0)"
        raise _Refused(problem=problem, problem_mark=node.start_mark)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        problem = "a string holds a lone surrogate (such as \\ud800), not UTF-8 text"
        raise _Refused(problem=problem, problem_mark=node.start_mark) from None


def _check_expanded_size(root: yaml.Node) -> None:
    """Refuse a document whose aliases expand past MAX_NODES values (a billion
    laughs): every reader downstream walks the expanded tree."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        sizes[id(node)] = MAX_NODES + 1  # a cycle (a recursive alias) counts as too large
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(item) for item in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(key) + size(value) for key, value in node.value)
        sizes[id(node)] = total = min(total, MAX_NODES + 1)
        return total

    if size(root) <= MAX_NODES:
        return
    worst = root  # point at the largest top-level value
    if isinstance(root, yaml.MappingNode) and root.value:
        worst = max(root.value, key=lambda kv: sizes.get(id(kv[1]), 0))[0]
    problem = f"more than {MAX_NODES} values once its aliases are expanded (an alias bomb?)"
    raise _Refused(problem=problem, problem_mark=worst.start_mark)


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _value_line(key_node: yaml.Node, value_node: yaml.Node) -> int:
    # a collection value starts on a later line; point at its key instead
    return _line(value_node) if isinstance(value_node, yaml.ScalarNode) else _line(key_node)


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> Iterator[LineDict]:
    data = LineDict()
    data.line = _line(node)
    data.key_lines = {}
    data.value_lines = {}
    yield data
    seen: dict[str, int] = {}
    for key_node, _ in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
            if key_node.value in seen:
                first = seen[key_node.value]
                problem = f"duplicate key {key_node.value!r} (first on line {first})"
                raise _Refused(problem=problem, problem_mark=key_node.start_mark)
            seen[key_node.value] = _line(key_node)
    data.update(loader.construct_mapping(node))  # also flattens `<<` merges
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node)
        data.key_lines[key] = _line(key_node)
        data.value_lines[key] = _value_line(key_node, value_node)


def _construct_seq(loader: _Loader, node: yaml.SequenceNode) -> Iterator[LineList]:
    data = LineList()
    data.line = _line(node)
    data.item_lines = [_line(item) for item in node.value]
    yield data
    data.extend(loader.construct_sequence(node))


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


def load_yaml(text: str, source: str | None) -> Any:
    """Parse one YAML document; any failure is a one-line SpecError with its line."""
    if len(text) > MAX_SPEC_BYTES:
        raise spec_error(too_large(), line=None, source=source)
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = int(mark.line) + 1 if mark is not None else None
        problem = " ".join(p for p in (e.context, e.problem) if p) or "unparsable"
        raise spec_error(f"invalid YAML: {problem}", line=line, source=source) from None
    except yaml.YAMLError as e:  # ReaderError: a character YAML does not allow
        position = getattr(e, "position", None)
        line = text[:position].count("\n") + 1 if isinstance(position, int) else None
        reason = getattr(e, "reason", None) or "unreadable text"
        raise spec_error(f"invalid YAML: {reason}", line=line, source=source) from None
    except RecursionError:
        raise spec_error("invalid YAML: nesting too deep", line=None, source=source) from None
    except ValueError as e:  # a constructor's: a date like 2001-13-45, an int of 5000 digits
        raise spec_error(f"invalid YAML value: {e}", line=None, source=source) from None


def too_large() -> str:
    return (
        f"too large: a spec is at most {MAX_SPEC_BYTES >> 10} KiB (put data in files, "
        "under workdir or file_mounts)"
    )


def shorten(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def drop_nulls(data: LineDict, keep: Iterable[str] = ()) -> None:
    """Remove the keys whose value is null, as SkyPilot's schema check does at the
    top of a task, of ``service`` and of ``resources`` (``run:`` with nothing after
    it means no run). ``keep``: keys whose null the parser reports itself."""
    for key in [k for k, v in data.items() if v is None and k not in keep]:
        del data[key]


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, list):
        return "list"
    return type(value).__name__


def finite_number(value: Any) -> float | None:
    """``value`` as a finite float when it is a YAML number (not a boolean)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def not_ascii(key: str) -> str:
    """What a key that reads as a known one holds beyond ASCII (a lookalike letter, a
    no-break space from a web page, an invisible character), named: else ''."""
    odd = list(dict.fromkeys(c for c in key if not c.isascii()))
    if not odd:
        return ""
    named = ", ".join(f"U+{ord(c):04X} {unicodedata.name(c, 'unnamed')}" for c in odd[:3])
    return f" (it holds {named}{', ...' if odd[3:] else ''}: keys are ASCII)"


class Section:
    """One mapping of the spec, its key path and where it sits in the file."""

    def __init__(
        self, data: LineDict, path: str, source: str | None, line: int | None = None
    ) -> None:
        self.data = data
        self.path = path
        self.source = source
        self.line = data.line if line is None else line  # of its key in the parent

    # -- locating ---------------------------------------------------------------
    def sub(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def key_line(self, key: Any) -> int:
        return self.data.key_lines.get(key, self.line)

    def value_line(self, key: Any) -> int:
        return self.data.value_lines.get(key, self.line)

    def error(self, key: str | None, message: str, *, at_key: bool = False) -> SpecError:
        """An error about ``key`` (its value's line, or the key's with ``at_key``)."""
        if key is None:
            return spec_error(message, key=self.path, line=self.line, source=self.source)
        line = self.key_line(key) if at_key else self.value_line(key)
        return spec_error(message, key=self.sub(key), line=line, source=self.source)

    # -- keys -------------------------------------------------------------------
    def check_keys(self, allowed: Iterable[str], hints: dict[str, str] | None = None) -> None:
        """Every key is one of ``allowed``: else the key, its line, and a did-you-mean
        or the allowed keys; a key of ``hints`` (one SkyPilot used to take, or one
        that belongs in another section) gets its own message saying what to write."""
        allowed = set(allowed)
        for key in self.data:
            if not isinstance(key, str):
                message = f"keys must be strings, got {type_name(key)} {key!r}"
                raise spec_error(
                    message, key=self.path, line=self.key_line(key), source=self.source
                )
            if key in allowed or _STORED.get():
                continue
            if hints and key in hints:
                raise self.error(key, hints[key], at_key=True)
            hint = did_you_mean(key, allowed) or f" (allowed: {', '.join(sorted(allowed))})"
            raise self.error(key, f"unknown key{hint}{not_ascii(key)}", at_key=True)

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def require(self, key: str, why: str = "") -> Any:
        if key not in self.data:
            suffix = f" ({why})" if why else ""
            raise self.error(None, f"missing required key {key!r}{suffix}")
        return self.data[key]

    # -- typed getters (``None`` when absent) -----------------------------------
    def mapping(self, key: str, *, null_ok: bool = False) -> Section | None:
        if key not in self.data or (null_ok and self.data[key] is None):
            return None
        value = self.data[key]
        if not isinstance(value, LineDict):
            raise self.error(key, f"expected a mapping, got {type_name(value)}")
        return Section(value, self.sub(key), self.source, self.key_line(key))

    def string(self, key: str, *, nonempty: bool = False) -> str | None:
        if key not in self.data:
            return None
        value = self.data[key]
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {type_name(value)}")
        if nonempty and not value.strip():
            raise self.error(key, "must not be empty")
        return value

    def boolean(self, key: str) -> bool | None:
        if key not in self.data:
            return None
        value = self.data[key]
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {type_name(value)}")
        return value

    def integer(
        self, key: str, *, minimum: int | None = None, maximum: int | None = None
    ) -> int | None:
        if key not in self.data:
            return None
        value = self.data[key]
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer, got {_described(value)}")
        if maximum is None and abs(value) > MAX_INT:
            raise self.error(key, f"expected an integer of at most 2**53, got {shorten(value)}")
        if minimum is not None and value < minimum:
            raise self.error(key, f"must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise self.error(key, f"must be <= {maximum}, got {value}")
        return value

    def number(
        self,
        key: str,
        *,
        minimum: float | None = None,
        positive: bool = False,
        maximum: float | None = None,
    ) -> float | None:
        if key not in self.data:
            return None
        value = self.data[key]
        number = finite_number(value)
        if number is None:
            if isinstance(value, int | float) and not isinstance(value, bool):
                raise self.error(key, f"expected a finite number, got {value!r}")
            raise self.error(key, f"expected a number, got {_described(value)}")
        if positive and number <= 0:
            raise self.error(key, f"must be > 0, got {value}")
        if minimum is not None and number < minimum:
            raise self.error(key, f"must be >= {minimum:g}, got {value}")
        if maximum is not None and number > maximum:
            raise self.error(key, f"must be <= {maximum:g}, got {value}")
        if abs(number) > MAX_NUMBER:  # beyond what timers, sockets and sleeps take
            raise self.error(
                key, f"must be at most {MAX_NUMBER:g} (31 years of seconds), got {value}"
            )
        return number

    def items(self, key: str) -> list[tuple[Any, str, int]] | None:
        """A list value as ``(item, key path, line)`` triples."""
        if key not in self.data:
            return None
        value = self.data[key]
        if not isinstance(value, LineList):
            raise self.error(key, f"expected a list, got {type_name(value)}")
        base = self.sub(key)
        return [(item, f"{base}[{i}]", value.item_lines[i]) for i, item in enumerate(value)]

    def at(self, path: str, line: int, message: str) -> SpecError:
        """An error about a list item (``path`` and ``line`` from :meth:`items`)."""
        return spec_error(message, key=path, line=line, source=self.source)

    def read(self, key: str, kind: str) -> Any:
        """A value of a declared kind (see ``_INT_MIN``); ``None`` when absent."""
        if kind.endswith("?"):  # null allowed, meaning "not set"
            if self.raw(key) is None:
                return None
            kind = kind[:-1]
        if kind == "text":
            return self.string(key, nonempty=True)
        if kind == "bool":
            return self.boolean(key)
        if kind == "port":
            return self.integer(key, minimum=1, maximum=65535)
        if kind == "count":
            return self.integer(key, minimum=0, maximum=MAX_COUNT)
        if kind.startswith("int"):
            return self.integer(key, minimum=_INT_MIN[kind])
        return self.number(key, **_NUM_RANGE[kind])

    def read_all(self, kinds: dict[str, str]) -> dict[str, Any]:
        """Every key of ``kinds`` present and not null, read as its kind."""
        values = {key: self.read(key, kind) for key, kind in kinds.items() if self.has(key)}
        return {key: value for key, value in values.items() if value is not None}

    def plain(self, key: str) -> Any:
        """The value as plain JSON-able data (for ``ServiceSpec.extra`` and post_data)."""
        budget = [MAX_NODES]
        try:
            return _plain(self.data[key], budget, 0)
        except ValueError as e:
            raise self.error(key, str(e)) from None


def _described(value: Any) -> str:
    """A wrong value's type, and for a string that reads as a number, why it is one."""
    if not isinstance(value, str):
        return type_name(value)
    try:
        if not math.isfinite(float(value)):
            return "string"
    except ValueError:
        return "string"
    if "e" in value.lower():
        return (
            f"the string {shorten(value, 30)} (YAML reads an exponent as a number only "
            "written like 1.0e+3: write that or 1000)"
        )
    return f"the string {shorten(value, 30)} (a number in quotes is text: drop the quotes)"


# Kinds for Section.read: "text" (non-empty string), "bool", "port", "count" (0 to
# MAX_COUNT), integers and
# numbers with their lower bounds; a trailing "?" also allows null.
_INT_MIN: dict[str, int | None] = {"int": None, "int>=0": 0, "int>=1": 1}
_NUM_RANGE: dict[str, dict[str, Any]] = {
    "num>0": {"positive": True},
    "num>=0": {"minimum": 0},
    "share": {"minimum": 0, "maximum": 1},
}


def _plain(value: Any, budget: list[int], depth: int) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise ValueError(f"too large (more than {MAX_NODES} values, check aliases)")
    if depth > MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"unsupported number {value!r}")
        return value
    if isinstance(value, datetime.date):  # also datetime
        return value.isoformat()
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"keys must be strings, got {type_name(k)} {k!r}")
            out[k] = _plain(v, budget, depth + 1)
        return out
    if isinstance(value, list):
        return [_plain(v, budget, depth + 1) for v in value]
    raise ValueError(f"unsupported YAML value of type {type_name(value)}")


_TYPE_WORDS = {dict: "a mapping", list: "a list", str: "a string", bool: "true or false"}
_TYPE_WORDS |= {int: "an integer", float: "a number"}


def keep_extra(sec: Section, types: dict[str, tuple[type, ...]], extra: dict[str, Any]) -> None:
    """Type-check accepted-but-unused SkyServe keys and keep them in ``extra``."""
    for key, allowed in types.items():
        if not sec.has(key):
            continue
        value = sec.raw(key)
        wrong_bool = isinstance(value, bool) and bool not in allowed
        if wrong_bool or not isinstance(value, allowed):
            names = " or ".join(_TYPE_WORDS[t] for t in allowed)
            raise sec.error(key, f"expected {names}, got {type_name(value)}")
        extra[sec.sub(key)] = sec.plain(key)
