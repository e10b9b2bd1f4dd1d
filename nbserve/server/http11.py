"""HTTP/1.1 on the wire, for the worker (worker.py): a request's head parsed strictly, its body read from
what has arrived (by Content-Length or chunked), the WSGI environ made from them, and a response's head.

Pure functions over bytes, no sockets: the worker feeds them whatever a non-blocking read gave it and asks
again when more arrives, so a slow client costs a buffer, never a thread. Strict where leniency is how
requests get smuggled past a proxy (RFC 9112): both Content-Length and Transfer-Encoding, conflicting lengths,
obsolete line folding, whitespace before a colon, bare CR or NUL in a field are refused with a 400 and the
connection is closed. Imports nothing else from nbserve.
"""

from __future__ import annotations

import io
import sys
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

if TYPE_CHECKING:
    from collections.abc import Iterable

MAX_HEAD = 65536  # request line + header fields
MAX_REQUEST_LINE = 8190
MAX_FIELDS = 100
_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_REASONS = {
    100: "Continue",
    400: "Bad Request",
    408: "Request Timeout",
    413: "Content Too Large",
    417: "Expectation Failed",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}


class ProtocolError(Exception):
    """A request that cannot be read as HTTP/1.1: answered with ``status`` and the connection closed."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class Head:
    """A request's line and header fields, with what the server needs of them worked out once."""

    __slots__ = ("method", "target", "version", "fields", "length", "chunked", "keep_alive", "expect_continue")

    def __init__(self, method: str, target: str, version: str, fields: list[tuple[str, str]]) -> None:
        self.method, self.target, self.version, self.fields = method, target, version, fields
        self.length: int | None = None
        self.chunked = False
        self.expect_continue = False
        connection = ""
        lengths: set[str] = set()
        encodings: list[str] = []
        for name, value in fields:
            if name == "content-length":
                lengths.add(value)
            elif name == "transfer-encoding":
                encodings.extend(v.strip().lower() for v in value.split(","))
            elif name == "connection":
                connection += "," + value.lower()
            elif name == "expect":
                if value.lower() != "100-continue":
                    raise ProtocolError(417, f"unsupported Expect: {value[:60]}")
                self.expect_continue = True
        if encodings:
            if lengths:
                raise ProtocolError(400, "a request may not have both Content-Length and Transfer-Encoding")
            if encodings != ["chunked"]:
                raise ProtocolError(501, f"unsupported Transfer-Encoding {', '.join(encodings)[:60]} (only chunked)")
            if version == "HTTP/1.0":
                raise ProtocolError(400, "Transfer-Encoding is not allowed in HTTP/1.0")
            self.chunked = True
        elif lengths:
            if len(lengths) > 1:
                raise ProtocolError(400, "conflicting Content-Length values")
            text = lengths.pop()
            if not text.isdigit() or len(text) > 18:
                raise ProtocolError(400, f"invalid Content-Length {text[:30]!r}")
            self.length = int(text)
        tokens = {t.strip() for t in connection.split(",")}
        self.keep_alive = "close" not in tokens if version == "HTTP/1.1" else "keep-alive" in tokens


def parse_head(data: bytes) -> Head:
    """The head ``data`` (request line and fields, without the final empty line)."""
    try:
        text = data.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        raise ProtocolError(400, "undecodable request head") from None
    if "\x00" in text:
        raise ProtocolError(400, "NUL in the request head")
    lines = text.split("\r\n")
    line = lines[0]
    if len(line) > MAX_REQUEST_LINE:
        raise ProtocolError(414, f"the request line is longer than {MAX_REQUEST_LINE} bytes")
    parts = line.split(" ")
    if len(parts) != 3:
        raise ProtocolError(400, "malformed request line")
    method, target, version = parts
    if not method or not all(ord(c) in _TOKEN for c in method):
        raise ProtocolError(400, "malformed method")
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        if version.startswith("HTTP/"):
            raise ProtocolError(505, f"{version[:20]} is not supported (HTTP/1.1 or HTTP/1.0)")
        raise ProtocolError(400, "malformed request line")
    if not target or not (target[0] == "/" or target == "*" or target.startswith(("http://", "https://"))):
        raise ProtocolError(400, "malformed request target")
    if any(c in target for c in " \t\r\x7f"):
        raise ProtocolError(400, "malformed request target")
    if len(lines) - 1 > MAX_FIELDS:
        raise ProtocolError(431, f"more than {MAX_FIELDS} header fields")
    fields = []
    for raw in lines[1:]:
        if "\r" in raw or "\n" in raw:
            raise ProtocolError(400, "bare CR or LF in a header field")
        name, colon, value = raw.partition(":")
        if not colon or not name:
            raise ProtocolError(400, "malformed header field" if raw[:1] not in " \t" else "obsolete line folding")
        if not all(ord(c) in _TOKEN for c in name):  # also catches whitespace before the colon, and folding
            raise ProtocolError(400, f"malformed header field name {name[:40]!r}")
        fields.append((name.lower(), value.strip(" \t")))
    return Head(method, target, version, fields)


class ChunkedReader:
    """Decodes a chunked body from successive buffers; ``feed`` takes what it can use and returns how much."""

    __slots__ = ("parts", "size", "limit", "state", "left", "done")

    def __init__(self, limit: int):
        self.parts: list[bytes] = []
        self.size = 0
        self.limit = limit
        self.state = "size"  # size -> data -> data-end -> size ... -> trailer -> done
        self.left = 0
        self.done = False

    def feed(self, buf: bytes | bytearray) -> int:
        """Consume from ``buf`` (bytes or bytearray); the number of bytes used. Raises ProtocolError."""
        pos, end = 0, len(buf)
        while pos < end and not self.done:
            if self.state == "data":
                take = min(self.left, end - pos)
                self.parts.append(bytes(buf[pos : pos + take]))
                pos += take
                self.left -= take
                if self.left == 0:
                    self.state = "data-end"
                continue
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                if end - pos > 4096:
                    raise ProtocolError(400, "a chunk-size line or trailer field is too long")
                break
            line = bytes(buf[pos:eol])
            pos = eol + 2
            if self.state == "data-end":
                if line:
                    raise ProtocolError(400, "chunk data longer than its size")
                self.state = "size"
            elif self.state == "size":
                digits = line.split(b";", 1)[0].strip(b" \t")
                if not digits or len(digits) > 15 or not all(c in _HEX for c in digits):
                    raise ProtocolError(400, "malformed chunk size")
                size = int(digits, 16)
                if size == 0:
                    self.state = "trailer"
                    continue
                self.size += size
                if self.size > self.limit:
                    from . import errors

                    raise ProtocolError(413, errors.too_large(self.limit).message)
                self.left = size
                self.state = "data"
            else:  # trailer fields, ignored, up to the empty line
                if not line:
                    self.done = True
        return pos

    def body(self) -> bytes:
        return b"".join(self.parts)


def environ_for(
    head: Head, body: bytes, server: tuple, client: Any, multithread: bool, multiprocess: bool
) -> dict[str, Any]:
    """The WSGI environ of a request whose body has been read whole."""
    target = head.target
    if target[0] != "/" and target != "*":  # absolute-form: keep the path
        after = target.split("://", 1)[1]
        slash = after.find("/")
        target = after[slash:] if slash >= 0 else "/"
    path, _, query = target.partition("?")
    path = path.partition("#")[0]
    environ = {
        "REQUEST_METHOD": head.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote_to_bytes(path).decode("latin-1") if "%" in path else path,
        "QUERY_STRING": query,
        "RAW_URI": head.target,
        "SERVER_PROTOCOL": head.version,
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1]),
        "SERVER_SOFTWARE": "nbserve",
        "REMOTE_ADDR": str(client[0]) if isinstance(client, tuple) else "",
        "REMOTE_PORT": str(client[1]) if isinstance(client, tuple) else "",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.input_terminated": True,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": multithread,
        "wsgi.multiprocess": multiprocess,
        "wsgi.run_once": False,
        "CONTENT_LENGTH": str(len(body)) if (head.length is not None or head.chunked) else "",
    }
    for name, value in head.fields:
        if name == "content-type":
            environ["CONTENT_TYPE"] = value
            continue
        if name in ("content-length", "transfer-encoding"):
            continue
        if "_" in name:  # a field spelt with "_" could pose as one spelt with "-": dropped, as nginx does
            continue
        key = "HTTP_" + name.upper().replace("-", "_")
        old = environ.get(key)
        environ[key] = value if old is None else f"{old},{value}"
    return environ


_date_second = 0
_date = b""


def http_date() -> bytes:
    """The Date field's value, made once a second."""
    global _date_second, _date
    now = int(time.time())
    if now != _date_second:
        _date_second, _date = now, time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now)).encode()
    return _date


def response_head(
    status: str, headers: Iterable[tuple[str, str]], version: str, close: bool, length: int | None, chunked: bool
) -> bytes:
    """The status line and fields of a response; adds Date, Connection and the framing the worker chose."""
    out = [f"HTTP/1.1 {status}\r\n".encode("latin-1")]
    for name, value in headers:
        low = name.lower()
        if low in ("connection", "transfer-encoding", "keep-alive", "date"):
            continue  # hop-by-hop fields are the server's to write
        if low == "content-length":
            continue  # written below, from what the worker sends
        out.append(f"{name}: {value}\r\n".encode("latin-1"))
    out.append(b"Date: " + http_date() + b"\r\n")
    if length is not None:
        out.append(b"Content-Length: %d\r\n" % length)
    if chunked:
        out.append(b"Transfer-Encoding: chunked\r\n")
    if close:
        out.append(b"Connection: close\r\n")
    elif version == "HTTP/1.0":
        out.append(b"Connection: keep-alive\r\n")
    out.append(b"\r\n")
    return b"".join(out)


def simple_response(status: int, message: str, close: bool = True) -> bytes:
    """A whole JSON error answer written by the worker itself (before or outside the app)."""
    from . import errors

    data = errors.body(errors.by_status(status, message, _REASONS.get(status, "")))
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n"
    ).encode()
    return head + b"Date: " + http_date() + b"\r\n" + (b"Connection: close\r\n" if close else b"") + b"\r\n" + data


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
