"""HTTP/1.1 on the wire for the router: heads, body framing, body streams.

Pure parsing and serialisation shared by the router's front server
(:mod:`skyctl.router.front`) and its upstream client
(:mod:`skyctl.router.client`); no sockets here.

- :func:`parse_request_head` / :func:`parse_response_head` turn the bytes of a
  head (up to, not including, the blank line) into a :class:`Head`. Header
  lines are kept as the raw bytes they arrived as, next to their lower-cased
  name, so a proxy forwards them without re-encoding; the few values the
  router needs (framing, ``Connection``, ``Host``, ``X-Request-Id``,
  ``X-Forwarded-For``, ``Expect``) are picked out in the same pass.
- :class:`Framer` splits a message body off a byte stream: a fixed
  ``Content-Length``, ``chunked``, or until the connection closes.
- :class:`BodyStream` is one body as it arrives: the protocol feeds it, one
  consumer reads it (``await read()``), and a high-water mark pauses the
  transport's reading while the consumer lags.

An absolute-form request target (``GET http://host/path``, RFC 9112 3.2.2)
is accepted as a server must: the head's ``target`` is then its origin-form
(path and query) and ``host`` its authority, in place of the Host header.

Malformed input raises :class:`ProtocolError`, which carries the status a
server answers with (400, 413, 431, 501, 505). The parser is strict where
leniency lets two parties frame one message differently (request
smuggling, RFC 9112 sections 6 and 11.2): both ``Content-Length`` and
``Transfer-Encoding``, more than one ``Content-Length`` (even equal ones), a
request whose last transfer coding is not ``chunked`` (400) or that names
another coding before it (501), ``Transfer-Encoding`` in HTTP/1.0, chunk
sizes that are not bare hex, bare CR or LF, obsolete line folding,
whitespace before a colon are all rejected; so are more header lines than
the server allows (431) and a chunked body past its size limit (413).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from skyctl.router.body import HIGH_WATER, LOW_WATER, BodyStream

__all__ = ["HIGH_WATER", "LOW_WATER", "BodyStream"]  # re-exported: the body half of the wire

MAX_HEAD_BYTES: Final = 64 * 1024  # request or response head, like common servers' limits
MAX_FIELDS: Final = 100  # header lines in a request head (Apache's LimitRequestFields)
MAX_CHUNK_LINE: Final = 4096  # a chunk-size line with its extensions, or one trailer line
MAX_TRAILER_BYTES: Final = 64 * 1024

_TOKEN: Final = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+").fullmatch
# a header section as llhttp takes it: token, colon, a value of HTAB, SP, visible
# ASCII or obs-text (no other control byte), CRLF; nothing else
_FIELDS_OK: Final = re.compile(
    rb"(?:[!#$%&'*+.^_`|~0-9A-Za-z-]+:[\t\x20-\x7e\x80-\xff]*\r\n)*"
).fullmatch
# a chunk-size line: hex digits, then extensions (;name or ;name=token or "quoted")
_CHUNK_LINE: Final = re.compile(
    rb"([0-9A-Fa-f]+)(?:;+(?:[!#$%&'*+.^_`|~0-9A-Za-z-]*=(?:[!#$%&'*+.^_`|~0-9A-Za-z-]+|"
    rb""""(?:[\t\x20\x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t\x20-\x7e\x80-\xff])*")?"""
    rb"|[!#$%&'*+.^_`|~0-9A-Za-z-]+))*"
).fullmatch
# the headers the router reads, searched in LF + the header section (a literal LF
# first lets the regex engine skip ahead instead of trying every position): the
# name, the value without its surrounding whitespace, the whitespace after it
_REQUEST_SPECIAL: Final = re.compile(
    rb"\n(content-length|transfer-encoding|connection|host|x-request-id|x-forwarded-for|expect"
    rb"|authorization|upgrade)"
    rb":[ \t]*((?:[^\r]*[^\r \t])?)([ \t]*)\r",
    re.I,
).findall
_RESPONSE_SPECIAL: Final = re.compile(
    rb"\n(content-length|transfer-encoding|connection):[ \t]*((?:[^\r]*[^\r \t])?)([ \t]*)\r",
    re.I,
).findall
# possessive (``++``, ``*+``): the same matches (a name stops at its colon, a value at its
# CR, and a fullmatch ends after the last line), without the backtracking bookkeeping
_LINES: Final = rb"((?:[!#$%&'*+.^_`|~0-9A-Za-z-]++:[\t\x20-\x7e\x80-\xff]*+\r\n)*+)"
# a whole well-formed head (start line and header lines, each ending in CRLF) in
# one call; anything else goes the long way, which says what is wrong. Spaces
# between the request line's parts may repeat, as llhttp allows (RFC 9112 3).
_REQUEST_HEAD: Final = re.compile(
    rb"([A-Z-]+) +([\x21-\x7e]+) +HTTP/1\.([01])\r\n" + _LINES
).fullmatch
_RESPONSE_HEAD: Final = re.compile(
    rb"HTTP/1\.([01]) ([1-9][0-9]{2})(?: ([^\r\n]*))?\r\n" + _LINES
).fullmatch
# RFC 9112 3.2 / RFC 3986 3.2.2: uri-host [":" port]; an IP literal in brackets, or
# a reg-name (unreserved, pct-encoded, sub-delims); anything else is answered 400
_HOST_VALUE: Final = re.compile(
    rb"(?:\[[0-9A-Fa-fVv:.]+\]|[-A-Za-z0-9._~%!$&'()*+,;=]*)(?::[0-9]*)?"
).fullmatch
# the methods llhttp knows (an HTTP/1.1 server answers others 501); CONNECT is
# refused apart: the router is no forward proxy
_FRAMING_FIELD: Final = re.compile(rb"(?i:content-length|transfer-encoding):").match
METHODS: Final = frozenset(
    b"DELETE GET HEAD POST PUT OPTIONS TRACE COPY LOCK MKCOL MOVE PROPFIND PROPPATCH SEARCH"
    b" UNLOCK BIND REBIND UNBIND ACL REPORT MKACTIVITY CHECKOUT MERGE M-SEARCH NOTIFY SUBSCRIBE"
    b" UNSUBSCRIBE PATCH PURGE MKCALENDAR LINK UNLINK SOURCE QUERY".split()
)

_KEEP_ALIVE: Final = frozenset({b"keep-alive"})
_CLOSE: Final = frozenset({b"close"})
_COMMON_CONNECTION: Final = {  # Connection values as commonly spelt (else the long way)
    b"keep-alive": _KEEP_ALIVE,
    b"Keep-Alive": _KEEP_ALIVE,
    b"close": _CLOSE,
    b"Close": _CLOSE,
}

REASONS: dict[int, bytes] = {
    100: b"Continue",
    200: b"OK",
    401: b"Unauthorized",
    408: b"Request Timeout",
    204: b"No Content",
    304: b"Not Modified",
    400: b"Bad Request",
    404: b"Not Found",
    413: b"Content Too Large",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    501: b"Not Implemented",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
    505: b"HTTP Version Not Supported",
}


class ProtocolError(Exception):
    """Malformed HTTP; ``status`` is what a server answers (then closes)."""

    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        self.detail = detail
        super().__init__(detail)


class Head:
    """A parsed request or response head (see the module docstring).

    ``fields`` is the header section as it arrived: every line ending in CRLF,
    without the start line and the blank line.
    """

    # class-level defaults: a parse sets only what the message has (no per-head __init__)
    method = b""
    target = b""
    status = 0
    reason = b""
    http11 = True
    fields = b""
    content_length: int | None = None
    chunked = False
    connection: frozenset[bytes] = frozenset()  # tokens named in Connection
    keep_alive = True
    host: bytes | None = None
    authority: bytes | None = None  # an absolute-form target's, which ``host`` then is
    request_id: bytes | None = None
    forwarded_for: tuple[bytes, ...] = ()
    expect_continue = False
    authorization: bytes | None = None  # b"" when the request repeats the header
    upgrade = False  # HTTP/1.1, Connection names "upgrade" and an Upgrade header is present
    # the header lines a proxy forwards for it, kept once made (skyctl.router.headers)
    forwarded: bytes | None = None
    forwarded_without_auth: bytes | None = None


def _split(data: bytes, status: int) -> tuple[bytes, bytes]:
    """The start line and the header section (lines ending in CRLF), validated;
    ``status``: what a malformed head is answered with (400, or 502 for a replica's)."""
    end = data.find(b"\r\n")
    if end < 0:
        start, fields = data, b""
    else:
        start, fields = data[:end], data[end + 2 :] + b"\r\n"
        if not _FIELDS_OK(fields):
            raise ProtocolError(status, "malformed header section")
    if b"\n" in start or b"\r" in start or b"\0" in start:
        raise ProtocolError(status, "bare CR, LF or NUL in the start line")
    return start, fields


# the names the special-header regexes match; each found by its spelling as sent
# when common (lower case, Title-Case), else lower-cased first
_CONTENT_LENGTH: Final = 0
_TRANSFER_ENCODING: Final = 1
_CONNECTION: Final = 2
_HOST: Final = 3
_REQUEST_ID: Final = 4
_FORWARDED_FOR: Final = 5
_EXPECT: Final = 6
_AUTHORIZATION: Final = 7
_UPGRADE: Final = 8
_SPECIAL_NAMES: Final = (
    b"content-length",
    b"transfer-encoding",
    b"connection",
    b"host",
    b"x-request-id",
    b"x-forwarded-for",
    b"expect",
    b"authorization",
    b"upgrade",
)
_NAMES: Final[dict[bytes, int]] = {
    spelling: kind
    for kind, name in enumerate(_SPECIAL_NAMES)
    for spelling in (name, name.title(), name.title().replace(b"-Id", b"-ID"))
}
_MAX_LENGTH: Final = (1 << 64) - 2  # llhttp's bound on Content-Length and chunk sizes


def _parse_fields(
    head: Head,
    special: Callable[[bytes, int], list[tuple[bytes, bytes, bytes]]],
    data: bytes,
    pos: int,
    request: bool,
) -> None:
    """Pick out the headers the router reads from ``data[pos:]``: LF, then the header
    lines (``head.fields``) each ending in CRLF. The framing rules are llhttp's
    (RFC 9112 6.3), plus the router's own for requests (docs/router.md)."""
    status = 400 if request else 502
    length: bytes | None = None
    lengths = 0
    hosts = 0
    upgrade = False
    conflict = False
    codings: list[bytes] | None = None
    connection: list[bytes] | None = None
    for name, value, space in special(data, pos):  # findall: (name, value, OWS) triples, in C
        kind = _NAMES.get(name)
        if kind is None:
            kind = _NAMES[name.lower()]
        # the kinds most heads carry first (each test is a comparison)
        if kind == _CONTENT_LENGTH:
            if codings:  # after a Transfer-Encoding (llhttp: one with a value)
                conflict = True
            length = value  # llhttp 9.3: spaces and tabs after the digits are whitespace
            lengths += 1
        elif kind == _HOST:
            head.host = value
            hosts += 1
        elif kind == _REQUEST_ID:
            head.request_id = value
        elif kind == _CONNECTION:
            connection = [value] if connection is None else [*connection, value]
        elif kind == _TRANSFER_ENCODING:
            if lengths:  # after a Content-Length, even empty
                conflict = True
            if space and space.count(9):  # llhttp: a tab after the value is part of it
                value += space
            if not value:  # llhttp 9.3: an empty one is an error, in a response too
                raise ProtocolError(status, "empty Transfer-Encoding")
            codings = [value] if codings is None else [*codings, value]
        elif kind == _FORWARDED_FOR:
            head.forwarded_for = (*head.forwarded_for, value)
        elif kind == _EXPECT:
            head.expect_continue = value.lower() == b"100-continue"
        elif kind == _AUTHORIZATION:
            head.authorization = value if head.authorization is None else b""
        elif kind == _UPGRADE:
            upgrade = upgrade or bool(value)  # llhttp: an empty one does not count
    if codings is not None:
        if conflict or lengths:
            raise ProtocolError(status, "both Content-Length and Transfer-Encoding")
        if request:
            _request_codings(head, codings)
        else:  # chunked if it is the last coding, else the body runs until the close
            # (a response without a body, 1xx, 204, 304, ignores it)
            last = codings[-1].rsplit(b",", 1)[-1].lstrip(b" \t").rstrip(b" ")
            head.chunked = last.lower() == b"chunked"
    elif length is not None:
        if conflict:
            raise ProtocolError(status, "both Content-Length and Transfer-Encoding")
        if lengths > 1:
            raise ProtocolError(status, "more than one Content-Length")
        # isdigit: ASCII digits only, for bytes (no `b"," in value` here: bytes' `in`
        # formats an error message inside it, each time)
        if not length.isdigit():
            if length.count(44):  # ","
                raise ProtocolError(status, "more than one Content-Length")
            raise ProtocolError(status, f"invalid Content-Length {length[:20]!r}")
        number = int(length)
        if number > _MAX_LENGTH:
            raise ProtocolError(status, f"Content-Length overflow {length[:24]!r}")
        head.content_length = number
    if connection is not None:
        common = _COMMON_CONNECTION.get(connection[0]) if len(connection) == 1 else None
        tokens = head.connection = common or frozenset(
            t.lstrip(b" \t").rstrip(b" ").lower() for v in connection for t in v.split(b",")
        )
        if head.http11:
            head.keep_alive = b"close" not in tokens
        else:
            head.keep_alive = b"keep-alive" in tokens  # as llhttp (even with close)
        if upgrade and request and b"upgrade" in tokens:
            if head.http11:
                head.upgrade = True
            else:  # RFC 9110 7.8: ignored in HTTP/1.0; a plain request, then the close
                head.keep_alive = False  # (what follows is no request: llhttp upgrades)
    elif not head.http11:
        head.keep_alive = False  # (the class default: True, no Connection tokens)
    authority = head.authority  # an absolute-form target's (RFC 9112 3.2.2)
    if request and hosts != 1 and (hosts or (head.http11 and authority is None)):  # 3.2
        raise ProtocolError(400, "a request needs one Host header" if hosts else "no Host")
    if hosts and _HOST_VALUE(host := head.host or b"") is None:  # RFC 9112 3.2: 400
        raise ProtocolError(400, f"invalid Host {host[:40]!r}")
    if authority is not None:  # 3.2.2: the Host header (if any) is ignored, replaced
        head.host = authority


def _request_codings(head: Head, codings: list[bytes]) -> None:
    """A request's Transfer-Encoding: ``chunked`` alone (llhttp also frames
    ``gzip, chunked``; the router answers it 501), in HTTP/1.1 only."""
    # llhttp: whitespace before a coding is skipped, a tab after one is part of it
    tokens: list[bytes] = []
    for value in codings:
        parts = [t.lstrip(b" \t").rstrip(b" ").lower() for t in value.split(b",")]
        if value and not parts[-1]:  # "chunked," (llhttp: invalid)
            raise ProtocolError(400, f"invalid Transfer-Encoding {value[:40]!r}")
        tokens += [t for t in parts if t]
    if not head.http11:
        raise ProtocolError(400, "Transfer-Encoding in an HTTP/1.0 request")
    if not tokens or tokens[-1] != b"chunked" or tokens.count(b"chunked") != 1:
        raise ProtocolError(400, f"chunked must be the last transfer coding, once: {tokens!r}")
    if len(tokens) > 1:
        raise ProtocolError(501, f"unsupported Transfer-Encoding {b', '.join(tokens)!r}")
    head.chunked = True


# RFC 9112 3.2.2: absolute-form, an http(s) URI: scheme "://" authority, then the
# path and query (a server MUST accept it, as nginx does)
_ABSOLUTE: Final = re.compile(rb"(?i:https?)://([^/?#]*)(.*)", re.S).fullmatch


def _check_request_line(method: bytes, target: bytes) -> tuple[bytes, bytes | None]:
    """The target in origin-form (``*`` for OPTIONS as is) and, for absolute-form, its
    authority (what the request is routed by, in place of the Host header)."""
    if method not in METHODS:
        if method == b"CONNECT":
            raise ProtocolError(400, "CONNECT: the router is no forward proxy")
        raise ProtocolError(501, f"unknown method {method[:20]!r}")
    if target[:1] == b"/" or (target == b"*" and method == b"OPTIONS"):
        return target, None
    m = _ABSOLUTE(target)
    if m is None:
        raise ProtocolError(
            400, f"request target must be a path or an http(s) URI, got {target[:60]!r}"
        )
    authority, rest = m.groups()
    # RFC 9110 4.2.1: an http URI with an empty host is invalid; 4.2.4: no userinfo
    if _HOST_VALUE(authority) is None or authority[:1] in (b"", b":"):
        raise ProtocolError(400, f"invalid authority in the request target {target[:60]!r}")
    if rest[:1] not in (b"/", b"?", b""):  # (a fragment: no request target holds one)
        raise ProtocolError(400, f"invalid request target {target[:60]!r}")
    if not rest and method == b"OPTIONS":  # 3.2.4: the server-wide OPTIONS, "*"
        return b"*", authority
    return (rest if rest[:1] == b"/" else b"/" + rest), authority


def parse_request_head(data: bytes, max_fields: int = MAX_FIELDS) -> Head:
    """A request head: the request line and header lines, each ending in CRLF (the
    last line's CRLF may be left off), without the blank line."""
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    m = _REQUEST_HEAD(data)
    if m is None:
        return _parse_request_slowly(data[:-2], max_fields)  # raises what is wrong
    method, target, minor, fields = m.groups()
    if fields.count(b"\n") > max_fields:
        raise ProtocolError(431, f"more than {max_fields} header lines")
    head = Head()
    if method not in METHODS or target[:1] != b"/":  # (no call for the common case)
        target, head.authority = _check_request_line(method, target)
    head.method, head.target, head.http11, head.fields = method, target, minor == b"1", fields
    _parse_fields(head, _REQUEST_SPECIAL, data, m.start(4) - 1, True)
    return head


_REQUEST_LINE: Final = re.compile(
    rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+) +([\x21-\x7e]+) +(HTTP/\S*)"
).fullmatch


_VERSION: Final = re.compile(rb"HTTP/[0-9]\.[0-9]").fullmatch


def _parse_request_slowly(data: bytes, max_fields: int) -> Head:
    start, fields = _split(data, 400)
    if fields.count(b"\n") > max_fields:
        raise ProtocolError(431, f"more than {max_fields} header lines")
    m = _REQUEST_LINE(start)
    if m is None:
        raise ProtocolError(400, f"malformed request line {start[:60]!r}")
    method, target, version = m.groups()
    if version == b"HTTP/1.1":
        http11 = True
    elif version == b"HTTP/1.0":
        http11 = False
    elif _VERSION(version):
        raise ProtocolError(505, f"unsupported version {version[:16]!r}")
    else:
        raise ProtocolError(400, f"malformed request line {start[:60]!r}")
    head = Head()
    target, head.authority = _check_request_line(method, target)
    head.method, head.target, head.http11, head.fields = method, target, http11, fields
    _parse_fields(head, _REQUEST_SPECIAL, b"\n" + fields, 0, True)
    return head


def parse_response_head(data: bytes) -> Head:
    """A response head: the status line and header lines, each ending in CRLF (the
    last line's CRLF may be left off), without the blank line."""
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    m = _RESPONSE_HEAD(data)
    if m is None:
        start, _ = _split(data[:-2], 502)  # raises what is wrong with the header lines
        raise ProtocolError(502, f"malformed status line {start[:60]!r}")
    minor, status, reason, fields = m.groups(b"")
    head = Head()
    head.status, head.reason, head.http11 = int(status), reason, minor == b"1"
    head.fields = fields
    _parse_fields(head, _RESPONSE_SPECIAL, data, m.start(4) - 1, False)
    return head


def response_has_body(method: bytes, status: int) -> bool:
    return method != b"HEAD" and status >= 200 and status not in (204, 304)


# ---- body framing ----------------------------------------------------------------------

_LENGTH: Final = 0
_UNTIL_CLOSE: Final = 1
_SIZE: Final = 2
_DATA: Final = 3
_DATA_END: Final = 4
_TRAILER: Final = 5
_DONE: Final = 6


class Framer:
    """Splits one body off a byte stream; :meth:`feed` returns what follows the body."""

    __slots__ = ("_limit", "_pending", "_remaining", "_state", "_total", "_trailer", "trailers")

    def __init__(self, length: int | None, chunked: bool, limit: int | None = None) -> None:
        """``limit``: the most body bytes a chunked body may carry (413 beyond)."""
        self._pending = b""
        self._trailer = 0
        self.trailers: list[bytes] = []  # the trailer's lines (not forwarded)
        self._total = 0
        self._limit = limit
        if chunked:
            self._state, self._remaining = _SIZE, 0
        elif length is None:
            self._state, self._remaining = _UNTIL_CLOSE, 0
        else:
            self._state, self._remaining = (_LENGTH, length) if length else (_DONE, 0)

    @property
    def done(self) -> bool:
        return self._state == _DONE

    @property
    def until_close(self) -> bool:
        return self._state == _UNTIL_CLOSE

    def received(self, length: int | None) -> int:
        """Body bytes fed so far of a body of ``length`` (None: chunked, its data only:
        not its framing, nor a chunk announced whose bytes have not come)."""
        if length is not None:
            return length - self._remaining
        return self._total - (self._remaining if self._state == _DATA else 0)

    def feed(self, data: bytes, out: BodyStream) -> bytes | None:
        """Feed bytes; body bytes go to ``out``. Returns the bytes after the body's end
        (possibly empty) once it ended, else None."""
        state = self._state
        if state == _LENGTH:
            remaining = self._remaining
            if len(data) < remaining:
                self._remaining = remaining - len(data)
                if data:
                    out.feed(data)
                return None
            self._state, self._remaining = _DONE, 0
            if len(data) == remaining:
                out.feed(data)
                return b""
            out.feed(data[:remaining])
            return data[remaining:]
        if state == _UNTIL_CLOSE:
            if data:
                out.feed(data)
            return None
        if state == _DONE:
            return data
        return self._feed_chunked(data, out)

    def _feed_chunked(self, data: bytes, out: BodyStream) -> bytes | None:
        if self._pending:
            data, self._pending = self._pending + data, b""
        pos, size = 0, len(data)
        state = self._state
        while pos < size:
            if state == _DATA:
                take = min(self._remaining, size - pos)
                out.feed(data if take == size else data[pos : pos + take])
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    state = _DATA_END
            elif state == _DATA_END:
                if size - pos < 2:
                    break
                if data[pos : pos + 2] != b"\r\n":
                    raise ProtocolError(400, "chunk data not followed by CRLF")
                pos += 2
                state = _SIZE
            else:  # _SIZE or _TRAILER: one line
                end = data.find(b"\r\n", pos)
                if end < 0:
                    if size - pos > MAX_CHUNK_LINE:
                        raise ProtocolError(400, "chunk-size or trailer line too long")
                    break
                line = data[pos:end]
                pos = end + 2
                if state == _SIZE:
                    m = _CHUNK_LINE(line)  # as llhttp: no whitespace, extensions well formed
                    if m is None:
                        raise ProtocolError(400, f"invalid chunk size {line[:20]!r}")
                    self._remaining = int(m.group(1), 16)
                    if self._remaining > _MAX_LENGTH:
                        raise ProtocolError(400, f"chunk size overflow {line[:20]!r}")
                    self._total += self._remaining
                    if self._limit is not None and self._total > self._limit:
                        raise ProtocolError(413, f"request body over {self._limit} bytes")
                    state = _DATA if self._remaining else _TRAILER
                elif line:
                    if not _FIELDS_OK(line + b"\r\n"):
                        raise ProtocolError(400, f"malformed trailer line {line[:40]!r}")
                    if _FRAMING_FIELD(line):  # framing in a trailer (llhttp: an error)
                        raise ProtocolError(400, f"framing header in the trailer {line[:40]!r}")
                    self._trailer += len(line) + 2
                    self.trailers.append(line)
                    if self._trailer > MAX_TRAILER_BYTES:
                        raise ProtocolError(400, "trailer section too large")
                else:
                    self._state = _DONE
                    return data[pos:]
        self._state = state
        if pos < size:
            self._pending = data[pos:]
        return None


def encode_chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


LAST_CHUNK: Final = b"0\r\n\r\n"
