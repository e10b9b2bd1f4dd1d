"""The request log of a served model: one JSON line per request in the instance's log (standard error).

``{"time", "request_id", "http", "path", "method", "status", "duration_ms", "rows"}``: the request id is the
client's ``X-Request-ID`` when it sends one (up to 128 printable characters), else the worker's, and is echoed
back in the response's ``X-Request-ID`` (observe.py). Request bodies are never logged unless
``request_log="bodies"``; the polls of /health, /metrics, /drift and /batching (a panel or a sidebar asks every
few seconds) are not logged. Lines are formatted and written
off the request's way, by the worker's housekeeping thread, in one system call per batch: at the latest a
second after the request.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from . import jsonio

if TYPE_CHECKING:
    from collections.abc import Iterable

BODY_LOG_LIMIT = 65536


class RequestLog:
    def __init__(self, bodies: bool = False) -> None:
        self.bodies = bodies
        self._second: int | None = None
        self._stamp = ""

    def write(self, records: Iterable[tuple]) -> None:
        lines = [self.line(*record) for record in records]
        if lines:
            try:
                os.write(2, b"\n".join(lines) + b"\n")
            except OSError:
                pass

    def line(
        self,
        method: str,
        status: str | int,
        seconds: float,
        rid: str,
        rows: int | None,
        _error: str | None,
        wall: float,
        verb: str,
        path: str,
        body: bytes | None,
    ) -> bytes:
        second = int(wall)
        if second != self._second:  # strftime once a second, not per line
            self._second, self._stamp = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        entry = {
            "time": f"{self._stamp}.{int((wall - second) * 1000):03d}Z",
            "request_id": rid,
            "http": verb,
            "path": path,
            "method": method,
            "status": int(status),
            "duration_ms": round(seconds * 1000, 3),
            "rows": rows,
        }
        if body is not None:
            entry["body"] = body.decode("utf-8", "replace")[:BODY_LOG_LIMIT]
        return jsonio.dumps(entry)
