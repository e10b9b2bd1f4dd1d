"""The traffic ring: the last requests a server answered and its answers, kept so that the notebook can read
them back (``inst.traffic()``) and a shadow candidate can be compared on them (shadow.py).

What is kept: for each ``POST /<method>`` that was answered 200, its time, the version that answered, the
method, the request id, how long the app took, the request body and the answer body, as one JSON line.
Bodies over ``MAX_BODY`` are kept as a note of their size, not their content. Nothing else (no headers, no
client address, no token).

Where and for how long: segment files in one directory per server (``Settings.record_dir``; by default a
directory the master makes in /dev/shm, memory, and removes when it exits), shared by its workers and kept
across in-place updates. At most ``Settings.record_size`` requests (and ``MAX_BYTES``) are kept: older
segments are deleted as newer ones are written. ``record=False`` keeps nothing.

The request path only appends a tuple to a list (``Tap.note``); the worker's housekeeping thread turns the
list into lines and writes one segment at a time (a file written whole, then renamed: a reader never sees
half a segment). Imports nothing else from nbserve.
"""

from __future__ import annotations

import os
import time
from typing import Any

MAX_BODY = 1 << 20  # a request or answer larger than this is recorded as its size only
MAX_BYTES = 64 << 20  # the ring's bytes, whatever its count
SUFFIX = ".jsonl"


class Ring:
    """A bounded ring of JSON lines in ``directory``: segments named ``<kind>-<ns>-<pid>-<lines>-<bytes>.jsonl``
    (what trimming needs is in the name, so nothing is read to trim)."""

    def __init__(self, directory: str, size: int, kind: str = "traffic", max_bytes: int = MAX_BYTES):
        self.directory, self.size, self.kind, self.max_bytes = directory, int(size), kind, max_bytes

    def _segments(self) -> list[tuple[str, int, int]]:
        """(name, lines, bytes) of every segment, oldest first."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        found = []
        prefix = self.kind + "-"
        for name in names:
            if not (name.startswith(prefix) and name.endswith(SUFFIX)):
                continue
            parts = name[len(prefix) : -len(SUFFIX)].split("-")
            if len(parts) != 4 or not all(p.isdigit() for p in parts):
                continue
            found.append((parts[0], name, int(parts[2]), int(parts[3])))
        found.sort()
        return [(name, lines, size) for _, name, lines, size in found]

    def append(self, lines: list[bytes]) -> None:
        """Write ``lines`` as one segment, then delete the segments that fall out of the ring."""
        if not lines or self.size <= 0:
            return
        os.makedirs(self.directory, exist_ok=True)
        data = b"\n".join(lines) + b"\n"
        name = f"{self.kind}-{time.time_ns():020d}-{os.getpid()}-{len(lines)}-{len(data)}{SUFFIX}"
        tmp = os.path.join(self.directory, f".{name}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, os.path.join(self.directory, name))
        self.trim()

    def trim(self) -> None:
        kept_lines = kept_bytes = 0
        segments = self._segments()
        for i in range(len(segments) - 1, -1, -1):
            name, lines, size = segments[i]
            if kept_lines >= self.size or kept_bytes + size > self.max_bytes and kept_lines:
                for old, _, _ in segments[: i + 1]:
                    try:
                        os.remove(os.path.join(self.directory, old))
                    except FileNotFoundError:
                        pass  # another worker trimmed it first
                return
            kept_lines += lines
            kept_bytes += size

    def read(self, n: int | None = None) -> list[bytes]:
        """The last ``n`` lines (at most the ring's size), oldest first."""
        n = self.size if n is None else max(0, min(int(n), self.size))
        picked: list[bytes] = []
        for name, _, _ in reversed(self._segments()):
            if len(picked) >= n:
                break
            try:
                with open(os.path.join(self.directory, name), "rb") as f:
                    lines = f.read().splitlines()
            except FileNotFoundError:
                continue  # trimmed meanwhile
            picked[:0] = lines
        return picked[-n:] if n else []

    def clear(self) -> None:
        for name, _, _ in self._segments():
            try:
                os.remove(os.path.join(self.directory, name))
            except FileNotFoundError:
                pass


def line(
    t: float, version: str, method: str, rid: str, ms: float, body: bytes | None, answer: bytes | None, **more: bytes
) -> bytes:
    """One record as a JSON line, made of the bodies as they are (valid JSON already: the app parsed the
    request and wrote the answer), without parsing them again."""
    head = b'{"t":%.6f,"v":%s,"m":%s,"id":%s,"ms":%.3f' % (t, _q(version), _q(method), _q(rid), ms)
    extra = b"".join(b',"%s":%s' % (k.encode(), v) for k, v in more.items())
    return head + b',"in":' + _body(body) + b',"out":' + _body(answer) + extra + b"}"


def _body(data: bytes | None) -> bytes:
    if data is None:
        return b"null"
    if len(data) > MAX_BODY:
        return b'{"skipped":"a body of %d bytes, over the recording limit of %d"}' % (len(data), MAX_BODY)
    # JSON's own newlines are whitespace only (inside strings they are escaped): one record, one line
    return data.replace(b"\n", b" ").replace(b"\r", b" ") if b"\n" in data or b"\r" in data else data


def _q(text: object) -> bytes:
    import json

    return json.dumps(str(text)).encode()


def lines_as_json(lines: list[bytes], **head: Any) -> bytes:
    """``{"...": ..., "records": [line, ...]}`` made of the lines as they are."""
    import json

    prefix = json.dumps(head)[:-1].encode()
    sep = b"," if head else b""
    return prefix + sep + b'"records":[' + b",".join(lines) + b"]}"
