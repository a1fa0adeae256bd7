"""Framing a byte stream two ways, for the router's differential wire tests.

:func:`llhttp_requests` / :func:`llhttp_responses` frame bytes with llhttp
(through httptools: the parser behind Node and uvicorn);
:func:`router_requests` / :func:`router_responses` frame them as the router's
front and client do (:mod:`skyctl.router.http1`: a head up to the blank line,
``parse_*_head``, then a ``Framer`` for the body). Each returns a
:class:`Framing`: the messages framed, in order, and how the stream ended
(``"complete"``, ``"partial"``: waiting for more bytes, ``"upgrade"``: the
rest is another protocol, or ``"error"``).

:func:`router_policy` names the documented points where the router rejects
what llhttp frames (docs/router.md, "Hostile input"): the expected answer is
llhttp's framing with those applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httptools

from skyctl.router.http1 import (
    MAX_HEAD_BYTES,
    BodyStream,
    Framer,
    ProtocolError,
    parse_request_head,
    parse_response_head,
    response_has_body,
)


@dataclass
class Message:
    start: tuple[bytes, ...]  # (method, target, version) or (version, status)
    headers: list[tuple[bytes, bytes]]  # names as sent, values without leading whitespace
    body: bytes = b""


@dataclass
class Framing:
    messages: list[Message] = field(default_factory=list)
    end: str = "complete"  # complete, partial, upgrade, error

    def key(self) -> tuple[object, ...]:
        return (self.end, [(m.start, m.headers, m.body) for m in self.messages])


class _Recorder:
    def __init__(self, parser: object | None = None) -> None:
        self.parser = parser
        self.framing = Framing()
        self.current: Message | None = None
        self.url = b""
        self.name = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []

    def on_message_begin(self) -> None:
        self.current = Message((), [])
        self.url, self.headers, self.body = b"", [], []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        assert self.current is not None and parser is not None
        version = parser.get_http_version().encode()  # type: ignore[attr-defined]
        if isinstance(parser, httptools.HttpRequestParser):
            self.current.start = (parser.get_method(), self.url, version)
        else:
            self.current.start = (version, b"%d" % parser.get_status_code())  # type: ignore[attr-defined]
        self.current.headers = self.headers

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        assert self.current is not None
        self.current.body = b"".join(self.body)
        self.framing.messages.append(self.current)
        self.current = None


def _llhttp(parser_type: type, data: bytes) -> Framing:
    recorder = _Recorder()
    parser = parser_type(recorder)
    recorder.parser = parser
    try:
        parser.feed_data(data)
    except httptools.HttpParserUpgrade:
        recorder.framing.end = "upgrade"
        if recorder.current is not None and recorder.current.start:  # upgraded at its head
            recorder.on_message_complete()
        return recorder.framing
    except httptools.HttpParserError as exc:
        # a 101 always ends HTTP/1.1 parsing (llhttp pauses, httptools raises)
        recorder.framing.end = "upgrade" if "CONNECT/Upgrade" in str(exc) else "error"
        return recorder.framing
    if recorder.current is not None:
        recorder.framing.end = "partial"
    return recorder.framing


def llhttp_requests(data: bytes) -> Framing:
    return _llhttp(httptools.HttpRequestParser, data)


def llhttp_responses(data: bytes) -> Framing:
    return _llhttp(httptools.HttpResponseParser, data)


def _headers(fields: bytes) -> list[tuple[bytes, bytes]]:
    out = []
    for line in fields.split(b"\r\n")[:-1]:
        name, _, value = line.partition(b":")
        out.append((name, value.lstrip(b" \t")))
    return out


def _body(framer: Framer, data: bytes, message: Message) -> tuple[bytes, bytes | None]:
    sink = BodyStream()
    rest = framer.feed(data, sink)
    message.headers += _headers(b"".join(line + b"\r\n" for line in framer.trailers))
    return sink.take(), rest


def router_requests(data: bytes, max_body: int = 1 << 40) -> Framing:
    """Frames requests as :class:`skyctl.router.front.Connection` does."""
    framing = Framing()
    try:
        while True:
            data = data.lstrip(b"\r\n")  # empty lines between requests
            if not data:
                return framing
            end = data.find(b"\r\n\r\n")
            if end < 0 or end > MAX_HEAD_BYTES:
                framing.end = "error" if len(data) > MAX_HEAD_BYTES else "partial"
                return framing
            head = parse_request_head(data[: end + 2])
            data = data[end + 4 :]
            version = b"1.1" if head.http11 else b"1.0"
            message = Message((head.method, head.target, version), _headers(head.fields))
            if head.upgrade:
                framing.messages.append(message)
                framing.end = "upgrade"
                return framing
            if head.chunked or head.content_length:
                body, rest = _body(
                    Framer(head.content_length, head.chunked, max_body), data, message
                )
                message.body = body
                if rest is None:
                    framing.end = "partial"
                    return framing
                data = rest
            framing.messages.append(message)
            if not head.keep_alive:  # the front answers, then closes: nothing more is read
                if data.lstrip(b"\r\n"):
                    framing.end = "error"
                return framing
    except ProtocolError:
        framing.end = "error"
        return framing


def router_responses(data: bytes, method: bytes = b"GET") -> Framing:
    """Frames a response as :class:`skyctl.router.client` does for a request of
    ``method``: informational heads, then one final response (the connection is
    not reused when bytes follow it, so nothing after it is framed)."""
    framing = Framing()
    try:
        while True:
            data = data.lstrip(b"\r\n")
            if not data:
                framing.end = "partial"
                return framing
            end = data.find(b"\r\n\r\n")
            if end < 0:
                framing.end = "error" if len(data) > MAX_HEAD_BYTES else "partial"
                return framing
            head = parse_response_head(data[: end + 2])
            data = data[end + 4 :]
            version = b"1.1" if head.http11 else b"1.0"
            message = Message((version, b"%d" % head.status), _headers(head.fields))
            if head.status == 101:
                framing.messages.append(message)
                framing.end = "upgrade"
                return framing
            if head.status >= 200 and response_has_body(method, head.status):
                framer = Framer(head.content_length, head.chunked)
                body, rest = _body(framer, data, message)
                message.body = body
                if rest is None:  # until close, or waiting for the rest
                    framing.end = "partial"
                    return framing
                data = rest
            framing.messages.append(message)
            if head.status >= 200:
                return framing
            if not head.keep_alive:
                raise ProtocolError(502, "informational response on a closing connection")
    except ProtocolError:
        framing.end = "error"
        return framing


def first_response(framing: Framing) -> Framing:
    """llhttp's framing up to the first final response (what the router reads)."""
    out = Framing(end=framing.end)
    for message in framing.messages:
        out.messages.append(message)
        if int(message.start[1]) >= 200:
            out.end = "complete"
            break
    if framing.end == "complete" and (not out.messages or int(out.messages[-1].start[1]) < 200):
        out.end = "partial"  # informational answers only: the final one is still to come
    return out


def _tokens(values: list[bytes]) -> list[bytes]:
    # llhttp: whitespace before a coding is skipped, a tab after one is part of it
    tokens = [t.lstrip(b" \t").rstrip(b" ").lower() for v in values for t in v.split(b",")]
    return [t for t in tokens if t]


_REG_NAME = b"-._~%!$&'()*+,;=" + bytes([*range(48, 58), *range(65, 91), *range(97, 123)])


def _valid_host(value: bytes) -> bool:
    """RFC 3986 3.2.2 host and 3.2.3 port, character by character."""
    host, port = value, b""
    if value.startswith(b"["):
        end = value.find(b"]")
        if end < 2 or any(c not in b"0123456789abcdefABCDEFvV:." for c in value[1:end]):
            return False
        host, port = b"", value[end + 1 :]
        if port and not port.startswith(b":"):
            return False
    elif b":" in value:
        host, _, rest = value.partition(b":")
        port = b":" + rest
    return all(c in _REG_NAME for c in host) and all(c in b"0123456789" for c in port[1:])


def _origin_form(target: bytes) -> bytes | None:
    """An absolute-form http(s) target's path and query (b"" for neither; None if
    it is no such target, or a bad one)."""
    scheme, sep, rest = target.partition(b"://")
    if not sep or scheme.lower() not in (b"http", b"https"):
        return None
    cut = min(
        [i for i in (rest.find(b"/"), rest.find(b"?"), rest.find(b"#")) if i >= 0] or [len(rest)]
    )
    authority, path = rest[:cut], rest[cut:]
    if not authority or authority.startswith(b":") or not _valid_host(authority):
        return None
    if path.startswith(b"#"):
        return None
    return path if path.startswith(b"/") or not path else b"/" + path


def router_policy(framing: Framing) -> Framing:
    """llhttp's framing of requests with the router's own rules applied: the first
    message a rule rejects ends the stream with an error (the router answers it
    with 400, 501 or 505 and closes). The rules (docs/router.md, "Hostile input"):

    - HTTP/1.0 or HTTP/1.1 only (llhttp also takes 0.9 and 2.0);
    - an origin-form target (``/...``), ``*`` for OPTIONS, or an absolute-form
      ``http(s)://`` URI (RFC 9112 3.2.2) with a non-empty host and no userinfo,
      which the router frames in origin-form (its path, ``/`` if empty, and
      query; ``*`` for an OPTIONS with neither, RFC 9112 3.2.4); no CONNECT
      and no other scheme: the router is no forward proxy;
    - ``Host`` exactly once in HTTP/1.1 (at most once with an absolute-form
      target, whose authority replaces it), at most once in HTTP/1.0 (RFC 9112 3.2),
      its value a URI host and optional port (RFC 3986 3.2.2: an IP literal in
      brackets or a reg-name, then ``:`` and digits);
    - ``Transfer-Encoding`` only as ``chunked`` alone, only in HTTP/1.1 (llhttp
      frames ``gzip, chunked`` as chunked: the router answers 501);
    - ``Upgrade`` in an HTTP/1.0 request is ignored (RFC 9110 7.8; llhttp upgrades):
      a plain request, body and all, then the connection closes (``"plain-1.0"``,
      compared by :func:`same`).
    """
    expected = Framing(end=framing.end)
    last = framing.messages[-1] if framing.messages else None
    if framing.end == "upgrade" and last is not None and last.start[2:] == (b"1.0",):
        expected.end = "plain-1.0"
    for message in framing.messages:
        method, target, version = message.start
        names = [name.lower() for name, _ in message.headers]
        codings = [v for n, v in message.headers if n.lower() == b"transfer-encoding"]
        hosts = names.count(b"host")
        host = next((v.strip(b" \t") for n, v in message.headers if n.lower() == b"host"), b"")
        origin = _origin_form(target)
        if origin == b"" and method == b"OPTIONS":  # RFC 9112 3.2.4: server-wide
            origin = b"*"
        if origin is not None:
            message = Message((method, origin or b"/", version), message.headers, message.body)
        if (
            version not in (b"1.0", b"1.1")
            or method == b"CONNECT"
            or not (
                target[:1] == b"/"
                or (target == b"*" and method == b"OPTIONS")
                or origin is not None
            )
            or (hosts != 1 if version == b"1.1" and origin is None else hosts > 1)
            or (hosts and not _valid_host(host))
            or (codings and (version != b"1.1" or _tokens(codings) != [b"chunked"]))
        ):
            expected.end = "error"
            return expected
        expected.messages.append(message)
    return expected


def response_policy(framing: Framing, data: bytes) -> Framing:
    """llhttp's framing of responses with the router's rules: HTTP/1.0 or 1.1, a
    status from 100 up, a status line ending in CRLF (llhttp also takes 0.9, 2.0,
    statuses below 100 and a status line ending in CR CR LF); the router
    answers such a replica 502."""
    expected = Framing(end=framing.end)
    if data.lstrip(b"\r\n").split(b"\n", 1)[0][:-1].count(b"\r"):
        expected.end = "error"
        return expected
    for message in framing.messages:
        version, status = message.start
        if version not in (b"1.0", b"1.1") or int(status) < 100:
            expected.end = "error"
            return expected
        expected.messages.append(message)
    return expected


def same(ours: Framing, theirs: Framing) -> bool:
    """Equal framing; a stream whose tail one side is still waiting on and the other
    has already refused counts as equal (neither delivers another message)."""
    if ours.key() == theirs.key():
        return True
    if theirs.end == "plain-1.0":  # llhttp's upgrade head, the router's plain request
        *before, last = theirs.messages
        if ours.messages[: len(before)] != before:
            return False
        if len(ours.messages) == len(before):  # its body still arriving, or broken
            return ours.end in ("partial", "error")
        mine = ours.messages[len(before)]
        return len(ours.messages) == len(theirs.messages) and (mine.start, mine.headers) == (
            last.start,
            last.headers,
        )
    ends = {ours.end, theirs.end}
    return ends == {"partial", "error"} and ours.key()[1] == theirs.key()[1]
