"""Generated HTTP/1.1 messages for the differential wire tests (seeded, reproducible).

Each message is built from parts drawn from pools of well-formed and hostile
variants (methods, targets, versions, separators, header names and values,
line endings, obs-fold, chunk-size lines, extensions, trailers), then with
some probability mutated at a byte (an insertion, deletion or replacement by
one of the bytes parsers disagree on), and sometimes followed by a second,
pipelined message.
"""

from __future__ import annotations

import random

METHODS = [b"GET", b"POST", b"PUT", b"HEAD", b"DELETE", b"OPTIONS", b"PATCH"]
ODD_METHODS = [
    b"CONNECT",
    b"get",
    b"FOO",
    b"PRI",
    b"G\x00T",
    b"GET\t",
    b"",
    b"PURGE",
    b"M-SEARCH",
    b"QUERY",
]
TARGETS = [b"/", b"/a/b?c=d&e", b"/x#frag", b"/%41%00", b"/~u;p=1"]
ODD_TARGETS = [
    b"*",
    b"http://h/p",
    b"HTTPS://h:8?q",
    b"http://[::1]",
    b"http://u@h/",
    b"http:///p",
    b"ftp://h/",
    b"h:443",
    b"/a b",
    b"/\x7f",
    b"/\x80",
    b"/a\tb",
    b"",
    b"//",
    b"/\x00",
]
VERSIONS = [b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0"]
ODD_VERSIONS = [
    b"HTTP/2.0",
    b"HTTP/0.9",
    b"HTTP/1.2",
    b"http/1.1",
    b"HTTP/1.1 ",
    b"HTTP/11",
    b"HTTP/1",
]
SPACES = [b" ", b" ", b" ", b"  ", b"\t", b""]
NAMES = [b"Host", b"Content-Length", b"Transfer-Encoding", b"Connection", b"Upgrade", b"X-A"]
ODD_NAMES = [
    b"host",
    b"HOST",
    b"content-length",
    b"transfer-encoding",
    b"Transfer-Encoding ",
    b" Transfer-Encoding",
    b"Content-Length\x0b",
    b"X A",
    b"",
    b"X\x80",
    b'X"',
    b"X(",
]
COLONS = [b":", b": ", b":  ", b":\t", b" :", b"\t:"]
VALUES = {
    b"host": [b"h", b"h:8080", b"", b"a b", b"[::1]"],
    b"content-length": [
        b"0",
        b"3",
        b"5",
        b"03",
        b"3 ",
        b" 3",
        b"+3",
        b"-1",
        b"3, 3",
        b"0x3",
        b"3\t",
        b"",
        b"1" * 20,
        b"3 3",
        b"00000000000000000003",
    ],
    b"transfer-encoding": [
        b"chunked",
        b"Chunked",
        b"CHUNKED",
        b"chunked ",
        b"\x0bchunked",
        b"chunked\x0b",
        b" chunked",
        b"\tchunked",
        b"gzip, chunked",
        b"chunked, gzip",
        b"chunked, chunked",
        b",chunked",
        b"chunked,",
        b"identity",
        b"",
        b"xchunked",
        b"chunked;q=1",
        b"\x0cchunked",
        b"chunked\t",
        b"chunked \t",
    ],
    b"connection": [b"close", b"keep-alive", b"upgrade", b"Upgrade", b"keep-alive, Upgrade", b""],
    b"upgrade": [b"websocket", b"h2c", b""],
}
ODD_VALUE_BYTES = [
    b"\x00",
    b"\x01",
    b"\x0b",
    b"\x0c",
    b"\x7f",
    b"\x80",
    b"\xff",
    b"\t",
    b"\r",
    b"\n",
]
EOLS = [b"\r\n"] * 12 + [b"\n", b"\r", b"\r\r\n", b"\r\n ", b"\r\n\t"]
CHUNK_SIZES = [
    b"%x",
    b"%X",
    b"0%x",
    b"%x;a",
    b"%x;a=b",
    b'%x;a="b c"',
    b"%x;",
    b"%x ;a",
    b"%x ",
    b" %x",
    b"0x%x",
    b"-%x",
    b"%x;a b",
    b"+%x",
    b"%x\t",
    b"00000000000000000%x",
]
MUTATION_BYTES = [
    b"\r",
    b"\n",
    b" ",
    b"\t",
    b"\x00",
    b"\x0b",
    b":",
    b",",
    b";",
    b"0",
    b"\x80",
    b"\x7f",
]


def _value(rng: random.Random, name: bytes) -> bytes:
    pool = VALUES.get(name.lower().strip(b" \t\x0b"))
    value = rng.choice(pool) if pool and rng.random() < 0.6 else b"v%d" % rng.randrange(100)
    if name.lower() in (b"content-length", b"transfer-encoding") and rng.random() < 0.5:
        value = b"chunked" if name.lower()[0] == 116 else b"%d" % rng.choice([0, 3, 5])
    if rng.random() < 0.03:
        at = rng.randrange(len(value) + 1)
        value = value[:at] + rng.choice(ODD_VALUE_BYTES) + value[at:]
    return value


def _body(rng: random.Random, headers: list[tuple[bytes, bytes]]) -> bytes:
    names = {n.lower().strip(): v for n, v in headers}
    if b"chunked" in names.get(b"transfer-encoding", b"").lower() or rng.random() < 0.05:
        out = b""
        for _ in range(rng.randrange(3)):
            size = rng.choice([1, 3, 5, 16])
            line = rng.choice(CHUNK_SIZES) if rng.random() < 0.3 else b"%x"
            end = rng.choice(EOLS) if rng.random() < 0.2 else b"\r\n"
            data = bytes(rng.choice(b"abcdef\r\n") for _ in range(size))
            if rng.random() < 0.1:
                data = data[: rng.randrange(size + 1)]
            out += (line % size) + b"\r\n" + data + end
        out += b"0" + rng.choice([b"", b"", b"", b";x=y", b" "]) + b"\r\n"
        if rng.random() < 0.2:
            out += (
                rng.choice([b"T: v", b"T : v", b"Tv", b"T: v\x01", b"Content-Length: 9"]) + b"\r\n"
            )
        if rng.random() < 0.9:
            out += b"\r\n"
        return out
    size = rng.choice([0, 0, 3, 5, 8])
    return bytes(rng.choice(b"abcGET /\r\n") for _ in range(size))


def request(rng: random.Random) -> bytes:
    method = rng.choice(METHODS) if rng.random() < 0.9 else rng.choice(ODD_METHODS)
    target = rng.choice(TARGETS) if rng.random() < 0.9 else rng.choice(ODD_TARGETS)
    version = rng.choice(VERSIONS) if rng.random() < 0.93 else rng.choice(ODD_VERSIONS)
    sp1 = rng.choice(SPACES) if rng.random() < 0.1 else b" "
    sp2 = rng.choice(SPACES) if rng.random() < 0.1 else b" "
    head = (
        method
        + sp1
        + target
        + sp2
        + version
        + (rng.choice(EOLS) if rng.random() < 0.1 else b"\r\n")
    )
    headers: list[tuple[bytes, bytes]] = []
    if rng.random() < 0.92:
        headers.append((b"Host", _value(rng, b"host") if rng.random() < 0.1 else b"h"))
    for _ in range(rng.choice([0, 1, 1, 2, 2, 3, 4])):
        name = rng.choice(NAMES) if rng.random() < 0.95 else rng.choice(ODD_NAMES)
        headers.append((name, _value(rng, name)))
    rng.shuffle(headers)
    for name, value in headers:
        colon = rng.choice(COLONS) if rng.random() < 0.04 else b": "
        eol = rng.choice(EOLS) if rng.random() < 0.04 else b"\r\n"
        head += name + colon + value + eol
        if eol[-1:] in (b" ", b"\t"):  # obs-fold: a continuation line
            head += b"more\r\n"
    head += b"\r\n" if rng.random() < 0.97 else rng.choice([b"\n", b"\r", b""])
    return head + _body(rng, headers)


def response(rng: random.Random) -> bytes:
    version = rng.choice(VERSIONS) if rng.random() < 0.95 else rng.choice(ODD_VERSIONS)
    status = rng.choice(
        [
            b"200",
            b"200",
            b"204",
            b"304",
            b"101",
            b"100",
            b"404",
            b"502",
            b"099",
            b"1000",
            b"20",
            b"2x0",
        ]
    )
    reason = rng.choice([b" OK", b" OK", b"", b" ", b" A\x01B", b" A\x80B", b" A\tB", b"\tOK"])
    head = version + b" " + status + reason + b"\r\n"
    headers: list[tuple[bytes, bytes]] = []
    for _ in range(rng.choice([0, 1, 1, 2, 3])):
        name = rng.choice(NAMES[1:]) if rng.random() < 0.9 else rng.choice(ODD_NAMES)
        headers.append((name, _value(rng, name)))
    for name, value in headers:
        colon = rng.choice(COLONS) if rng.random() < 0.1 else b": "
        eol = rng.choice(EOLS) if rng.random() < 0.08 else b"\r\n"
        head += name + colon + value + eol
        if eol[-1:] in (b" ", b"\t"):
            head += b"more\r\n"
    return head + b"\r\n" + _body(rng, headers)


def mutate(rng: random.Random, data: bytes) -> bytes:
    at = rng.randrange(len(data) + 1)
    kind = rng.randrange(3)
    byte = rng.choice(MUTATION_BYTES)
    if kind == 0:
        return data[:at] + byte + data[at:]
    if kind == 1:
        return data[:at] + data[at + 1 :]
    return data[:at] + byte + data[at + 1 :]


def messages(seed: int, count: int, make: str = "request") -> list[bytes]:
    rng = random.Random(seed)
    build = request if make == "request" else response
    out = []
    for _ in range(count):
        data = build(rng)
        if rng.random() < 0.25:
            data += build(rng)
        if rng.random() < 0.15:
            data = mutate(rng, data)
        out.append(data)
    return out
