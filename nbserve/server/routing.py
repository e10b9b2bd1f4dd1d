"""What one generation of workers answers: one version, or several sharing its traffic (a split).

``Generation`` is the WSGI app the master forks its workers with (master.py builds one per ``serve``):

* every answer carries ``X-Model-Version`` (the version that answered);
* a split sends each ``POST`` to a version by weight (smooth weighted round robin: exactly 90 of every 100
  requests of a worker for ``{"a:1": 90, "a:2": 10}``); a request may pin a version with its own
  ``X-Model-Version`` header; other requests (health, docs, metrics) go to the version of the largest weight,
  and ``GET /health`` names every version with its weight;
* the tap: each model call answered 200 is noted (time, version, method, request id, the app's time, both
  bodies: references, no copy) in a list that the worker's housekeeping thread drains every
  ``DRAIN_SECONDS``: into the traffic ring (traffic.py, ``GET /traffic``) and, a share of them, to a shadow
  candidate (shadow.py, whose ``POST /shadow`` and ``GET /shadow`` are answered here too).

Imports nothing else from nbserve.
"""

from __future__ import annotations

import atexit
import io
import sys
import time
import urllib.parse
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import auth, errors, housekeeping, shadow, traffic
from .errors import CallError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from .batching import Batcher
    from .settings import Settings

DRAIN_SECONDS = 0.25
TAP_LIMIT = 8192  # calls noted between two drains, at most; more are not recorded
HEADER = "X-Model-Version"
OWN_ROUTES = ("/traffic", "/shadow")


@dataclass
class Served:
    """One version of a generation: its id, its WSGI app, its methods and its share of the traffic."""

    id: str
    app: Any
    methods: frozenset = field(default_factory=frozenset)
    weight: float = 100.0


class Generation:
    def __init__(self, versions: list[Served], settings: Settings, shadow_to: dict | None = None) -> None:
        if not versions:
            raise ValueError("a generation serves at least one version")
        self.versions = versions
        self.by_id = {v.id: v for v in versions}
        self.primary = max(versions, key=lambda v: v.weight)  # the first of the largest weight
        self.split = len(versions) > 1
        self.settings = settings
        directory = settings.record_dir
        self.ring = traffic.Ring(directory, settings.record_size) if directory and settings.record else None
        self.shadow_ring = traffic.Ring(directory, settings.record_size, kind="shadow") if directory else None
        self.copier = shadow.Copier(**shadow_to) if shadow_to else None
        self.prefix = settings.url_prefix or ""
        self.check = auth.bearer_checker(settings.auth_sha256) if settings.auth_sha256 else None
        self.tap: deque = deque()
        self.watching = self.ring is not None or self.copier is not None
        self._credit = [0.0] * len(versions)
        self._total = sum(v.weight for v in versions)
        self.artifacts: dict = {}  # version id -> artifact directory (the master fills it)
        if self.watching:  # registered with the apps of this generation: runs in each of its workers
            housekeeping.every(DRAIN_SECONDS, self.drain, "traffic")
            housekeeping.on_start(lambda: atexit.register(self.drain))  # a retired worker writes its last calls

    def describe(self) -> dict:
        return {
            "versions": {v.id: v.weight for v in self.versions},
            "shadow": self.copier.state() if self.copier else None,
            "record": self.ring is not None,
        }

    # -- the workers' side ---------------------------------------------------------------------------

    def load_deferred(self) -> None:
        """Load the models the master could not (forksafe.DeferredApp), in the worker after its fork."""
        for v in self.versions:
            load = getattr(v.app, "load", None)
            if callable(load):
                load()

    @property
    def nbserve_batching(self) -> Batcher | None:
        """The adaptive batching of the one version served (worker.py asks); a split does not batch."""
        if self.split:
            return None
        app = self.versions[0].app
        return getattr(getattr(app, "_app", None) or app, "nbserve_batching", None)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        prefix = self.prefix
        local = path[len(prefix) :] if prefix and path.startswith(prefix + "/") else path
        verb = environ.get("REQUEST_METHOD", "GET")
        if local in OWN_ROUTES:
            return self._own(local, verb, environ, start_response)
        if self.split and local == "/health" and verb in ("GET", "HEAD"):
            return self._answer(start_response, 200, self._health())
        served = self._choose(environ, verb)
        vid = served.id
        method = local[1:] if verb == "POST" else ""
        if not (self.watching and method in served.methods):

            def tagged(
                status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None
            ) -> Callable[[bytes], object]:
                headers.append((HEADER, vid))
                return start_response(status, headers, exc_info)

            return served.app(environ, tagged)
        return self._watched(served, method, environ, start_response)

    def _watched(
        self, served: Served, method: str, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        """A model call whose request and answer are noted for the ring and the shadow."""
        vid = served.id
        seen: list = []

        def start(
            status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None
        ) -> Callable[[bytes], object]:
            headers.append((HEADER, vid))
            seen[:] = [status, headers]
            return start_response(status, headers, exc_info)

        request: Any = environ.get("wsgi.input")  # a BytesIO under nbserve's worker
        t0 = time.perf_counter()
        result = served.app(environ, start)
        if not seen or seen[0][:3] != "200" or not any(k.lower() == "content-length" for k, _ in seen[1]):
            return result  # an error, or an answer streamed: passed on as it is, not recorded
        try:
            answer = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        ms = (time.perf_counter() - t0) * 1000.0
        body = request.getvalue() if hasattr(request, "getvalue") else None
        rid = next((v for k, v in seen[1] if k == "X-Request-ID"), "")
        if len(self.tap) < TAP_LIMIT:
            self.tap.append((time.time(), vid, method, rid, ms, body, answer))
        return [answer]

    def _choose(self, environ: WSGIEnvironment, verb: str) -> Served:
        pinned = environ.get("HTTP_X_MODEL_VERSION")
        if pinned is not None:
            found = self.by_id.get(pinned.strip())
            if found is not None:
                return found
        if not self.split or verb != "POST":
            return self.primary if self.split else self.versions[0]
        # smooth weighted round robin (nginx's): every version gains its weight, the richest answers and pays
        # the total; over any window of requests each version's share is its weight's, to one request
        credit, best = self._credit, 0
        for i, v in enumerate(self.versions):
            credit[i] += v.weight
            if credit[i] > credit[best]:
                best = i
        credit[best] -= self._total
        return self.versions[best]

    def _health(self) -> dict:
        return {"status": "ok", "model": self.primary.id, "versions": {v.id: v.weight for v in self.versions}}

    # -- off the request path: the housekeeping thread ---------------------------------------------------

    def drain(self) -> None:
        tap = self.tap
        if not tap:
            return
        items = []
        while tap:
            items.append(tap.popleft())
        lines = [traffic.line(*item) for item in items]
        if self.ring is not None:
            self.ring.append(lines)
        if self.copier is not None:
            self.copier.offer(lines)

    # -- GET /traffic, GET and POST /shadow ----------------------------------------------------------------

    def _own(self, route: str, verb: str, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        if self.check is not None and not self.check(environ.get("HTTP_AUTHORIZATION")):
            return errors.wsgi_answer(start_response, errors.unauthorized())
        allowed = ("GET",) if route == "/traffic" else ("GET", "POST")
        if verb not in allowed:
            return errors.wsgi_answer(start_response, errors.method_not_allowed(verb, route, allowed))
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        try:
            n = int(query["n"][0]) if "n" in query else None
        except ValueError:
            return errors.wsgi_answer(start_response, CallError(400, "BadRequest", "n must be a whole number"))
        if route == "/traffic":
            if self.ring is None:
                why = "traffic recording is off for this instance (served with record=False)"
                return errors.wsgi_answer(start_response, CallError(404, "RecordingOff", why))
            self.drain()
            body = traffic.lines_as_json(self.ring.read(n), model=self.primary.id, size=self.ring.size)
            return self._answer(start_response, 200, body)
        if verb == "GET":
            lines = self.shadow_ring.read(n) if self.shadow_ring is not None else []
            state = self.copier.state() if self.copier is not None else None
            return self._answer(start_response, 200, traffic.lines_as_json(lines, model=self.primary.id, copying=state))
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            took = shadow.replay_copies(
                environ["wsgi.input"].read(length), self._copy_answerer(environ), self.shadow_ring, self.primary.id
            )
        except (ValueError, AttributeError, TypeError) as exc:
            return errors.wsgi_answer(
                start_response, CallError(400, "BadRequest", f'expected {{"copies": [...]}} of recorded calls: {exc}')
            )
        return self._answer(start_response, 200, {"received": took})

    def _copy_answerer(self, outer: WSGIEnvironment) -> Callable[[str, bytes], tuple[int, bytes, float]]:
        """How the candidate answers a copy: its own app, called as for a request (the same path, the token
        the copy came with), timed as the live side times its calls."""
        served = self.primary
        passed = {k: outer[k] for k in ("HTTP_AUTHORIZATION",) if k in outer}

        def answer(method: str, data: bytes) -> tuple[int, bytes, float]:
            environ = {
                "REQUEST_METHOD": "POST",
                "SCRIPT_NAME": "",
                "PATH_INFO": "/" + method,
                "QUERY_STRING": "",
                "SERVER_NAME": "shadow",
                "SERVER_PORT": "0",
                "SERVER_PROTOCOL": "HTTP/1.1",
                "CONTENT_TYPE": "application/json",
                "CONTENT_LENGTH": str(len(data)),
                "wsgi.version": (1, 0),
                "wsgi.url_scheme": "http",
                "wsgi.input": io.BytesIO(data),
                "wsgi.errors": sys.stderr,
                "wsgi.multithread": False,
                "wsgi.multiprocess": False,
                "wsgi.run_once": False,
                "HTTP_X_NBSERVE_SHADOW": "1",
                **passed,
            }
            status = []
            t0 = time.perf_counter()
            result = served.app(environ, lambda s, h, e=None: status.append(s))
            try:
                out = b"".join(result)
            finally:
                if hasattr(result, "close"):
                    result.close()
            return int(status[0][:3]) if status else 500, out, (time.perf_counter() - t0) * 1000.0

        return answer

    def _answer(self, start_response: StartResponse, status: int, payload: Any) -> list[bytes]:
        from . import jsonio

        data = payload if isinstance(payload, bytes) else jsonio.dumps(payload)
        start_response(
            f"{status} OK",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(data))),
                (HEADER, self.primary.id),
            ],
        )
        return [data]
