"""A shadow candidate: copies of a share of the live requests, answered by another version off the response path.

The live server's workers choose the copies when their housekeeping thread drains the tap (routing.py), put
them in a bounded queue, and a thread of their own (``Copier``) posts them in batches to the candidate's
``POST /shadow``: the caller's request never waits for a copy, and a candidate that is slow or gone only
costs copies (counted as dropped), never an answer.

The candidate answers each copy with its own app, as if it had been asked (its metrics count them), and keeps
one line per copy in its own ring (traffic.py, kind "shadow"): the request, the live answer and latency, its
own answer, status and latency. ``GET /shadow`` returns them; the notebook compares them (``inst.comparison()``).
Imports nothing else from nbserve.
"""

from __future__ import annotations

import http.client
import os
import threading
import time
import urllib.parse
from collections import deque
from typing import TYPE_CHECKING

from . import jsonio, traffic

if TYPE_CHECKING:
    from collections.abc import Callable

QUEUE = 4096  # copies waiting to be sent, per worker; more are dropped (and counted)
BATCH = 64  # copies per POST /shadow
TIMEOUT = 30.0


class Copier:
    """The live side: a share of the recorded requests, sent to the candidate by a thread of this worker."""

    def __init__(self, url: str, share: float, token: str | None = None, candidate: str | None = None):
        self.url, self.share, self.token, self.candidate = url.rstrip("/"), float(share), token, candidate
        self.queue: deque = deque()
        self.sent = self.dropped = self.failed = 0
        self.last_error: str | None = None
        self._credit = 0.0
        self._wake = threading.Event()
        self._pid: int | None = None
        self._conn: http.client.HTTPConnection | None = None
        self._path = "/shadow"

    def offer(self, lines: list[bytes]) -> None:
        """Choose a share of these records (exactly ``share`` of them over time) and queue them."""
        for record in lines:
            self._credit += self.share
            if self._credit < 1.0:
                continue
            self._credit -= 1.0
            if len(self.queue) >= QUEUE:
                self.dropped += 1
                continue
            self.queue.append(record)
        if self.queue:
            if self._pid != os.getpid():
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="nbserve-shadow", daemon=True).start()
            self._wake.set()

    def _run(self) -> None:
        pid = self._pid
        while pid == os.getpid():
            self._wake.wait(1.0)
            self._wake.clear()
            while self.queue:
                batch: list[bytes] = []
                while self.queue and len(batch) < BATCH:
                    batch.append(self.queue.popleft())
                try:
                    self._post(b'{"copies":[' + b",".join(batch) + b"]}")
                    self.sent += len(batch)
                except Exception as exc:  # the candidate is slow or gone: these copies are lost, not the answers
                    self.failed += len(batch)
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    self._close()
                    time.sleep(0.5)

    def _post(self, body: bytes) -> None:
        conn = self._conn
        if conn is None:
            parts = urllib.parse.urlsplit(self.url)
            conn = self._conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=TIMEOUT)
            self._path = (parts.path or "") + "/shadow"
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        conn.request("POST", self._path, body, headers)
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"the candidate answered {resp.status}: {data[:200]!r}")

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None

    def state(self) -> dict:
        return {
            "candidate": self.candidate,
            "share": self.share,
            "sent": self.sent,
            "queued": len(self.queue),
            "dropped": self.dropped,
            "failed": self.failed,
            "last_error": self.last_error,
        }


def replay_copies(
    body: bytes,
    answer: Callable[[str, bytes], tuple[int, bytes, float]],
    ring: traffic.Ring | None,
    version: str,
) -> int:
    """The candidate's side of ``POST /shadow``: answer each copy with ``answer(method, request bytes)`` ->
    (status, answer bytes, ms) and keep the comparison line in ``ring``. Returns how many copies it took."""
    copies = jsonio.loads(body).get("copies") or []
    lines = []
    for copy in copies:
        request = copy.get("in")
        if not isinstance(request, dict) or "skipped" in request:
            continue
        data = jsonio.dumps(request)
        status, out, ms = answer(copy.get("m") or "", data)
        lines.append(
            traffic.line(
                copy.get("t") or time.time(),
                copy.get("v") or "",
                copy.get("m") or "",
                copy.get("id") or "",
                float(copy.get("ms") or 0.0),
                data,
                jsonio.dumps(copy.get("out")),
                c=traffic._q(version),
                cms=b"%.3f" % ms,
                cstatus=b"%d" % status,
                cout=traffic._body(out) if out else b"null",
            )
        )
    if ring is not None:
        ring.append(lines)
    return len(lines)
