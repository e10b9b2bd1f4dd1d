"""A request loop for rollout tests: POSTs predictions back to back while something changes underneath.

Imported by name (tests/ is on sys.path). The loop sends one request at a time, round-robin over the
endpoints ``endpoints()`` returns (re-read in the background every ``refresh`` seconds: replicas come
and go during a rollout). A refused connection (a replica that just stopped, not yet gone from the list)
is retried once on the next endpoint and counted as a retry. So is a connection closed before any byte of
an answer: that is how Docker's userland proxy refuses for a replica that just died (it accepts, finds no
server behind, and closes), and how a request in flight to a replica killed with SIGKILL ends; the
request was never answered, and a prediction is safe to send again. Retries are counted by reason.
Anything else (an error status, a timeout, a second unanswered attempt) is a failure. Every request has
a timeout.
"""

from __future__ import annotations

import threading
import time

import requests


def first_prediction(payload):
    return round(float(payload["data"][0]), 6)


class RequestLoop:
    """``key``: what of an answer's JSON tells the versions apart (default: its first prediction, rounded);
    ``answers`` counts the keys seen, ``by_version`` the keys seen under each ``X-Model-Version`` header."""

    def __init__(
        self,
        endpoints,
        body: dict,
        path: str = "/predict",
        refresh: float = 0.5,
        timeout: float = 10.0,
        key=first_prediction,
    ):
        self._endpoints_fn = endpoints
        self.endpoints = list(endpoints())
        self.body, self.path, self.refresh, self.timeout = body, path, refresh, timeout
        self.requests = self.retries = 0
        self.failures: list[str] = []
        self.retry_reasons: list[str] = []
        self.key = key
        self.answers: dict = {}  # key of an answer (its first prediction, rounded) -> count: tells versions apart
        self.by_version: dict = {}  # X-Model-Version -> {key: count}
        self.started = self.stopped = None
        self._stop = threading.Event()
        self._session = requests.Session()
        self._threads = [
            threading.Thread(target=self._run, daemon=True),
            threading.Thread(target=self._watch, daemon=True),
        ]

    def __enter__(self):
        self.started = time.monotonic()
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def run_for_at_least(self, seconds: float) -> None:
        left = seconds - (time.monotonic() - self.started)
        if left > 0:
            time.sleep(left)

    def stop(self) -> None:
        if not self._stop.is_set():
            self._stop.set()
            for t in self._threads:
                t.join(30)
            self.stopped = time.monotonic()
            self._session.close()

    @property
    def seconds(self) -> float:
        return (self.stopped or time.monotonic()) - self.started

    def summary(self) -> str:
        return (
            f"{self.requests} requests in {self.seconds:.1f} s, {self.retries} retries "
            f"({', '.join(sorted(set(self.retry_reasons))) or 'none'}), {len(self.failures)} failures"
            + (f": {self.failures[:3]}" if self.failures else "")
        )

    def _watch(self) -> None:
        while not self._stop.wait(self.refresh):
            try:
                found = list(self._endpoints_fn())
            except Exception:
                continue
            if found:
                self.endpoints = found

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            urls = self.endpoints
            if not urls:
                time.sleep(0.05)
                continue
            self.requests += 1
            url = urls[i % len(urls)]
            for attempt in (0, 1):
                try:
                    resp = self._session.post(url + self.path, json=self.body, timeout=self.timeout)
                except requests.exceptions.ConnectionError as exc:
                    reason = _unanswered(exc)
                    if reason and attempt == 0:
                        self.retries += 1
                        self.retry_reasons.append(reason)
                        others = [u for u in self.endpoints if u != url] or [u for u in urls if u != url] or [url]
                        url = others[i % len(others)]  # another replica than the one that did not answer
                        continue
                    self.failures.append(f"{url}: {type(exc).__name__}: {str(exc)[:200]}")
                    break
                except requests.exceptions.RequestException as exc:
                    self.failures.append(f"{url}: {type(exc).__name__}: {str(exc)[:200]}")
                    break
                if resp.status_code != 200:
                    self.failures.append(f"{url}: HTTP {resp.status_code}: {resp.text[:200]}")
                else:
                    key = self.key(resp.json())
                    self.answers[key] = self.answers.get(key, 0) + 1
                    seen = self.by_version.setdefault(resp.headers.get("X-Model-Version"), {})
                    seen[key] = seen.get(key, 0) + 1
                break
            i += 1


def _unanswered(exc) -> str | None:
    text = str(exc)
    if "refused" in text.lower():
        return "connection refused"
    if "Connection aborted" in text:  # urllib3's word for "closed or reset before any answer"
        return "closed without an answer"
    return None
