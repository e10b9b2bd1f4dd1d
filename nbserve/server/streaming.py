"""Streamed answers: a model method that returns a generator (or any other iterator) answers its items as it
makes them, instead of one body at the end.

On the wire, by the client's ``Accept``:

* newline-delimited JSON (``application/x-ndjson``, the default): one line per item, ``{"data": item}`` (with
  ``"index"`` for a pandas item, as a whole answer has), and a last line ``{"error": {"type", "message"}}``
  when the method fails midway;
* server-sent events (``text/event-stream``): each item an event ``data: {"data": item}``, a failure an
  ``event: error``, and an ``event: end`` last, so that a browser's ``EventSource`` closes instead of
  reconnecting (it reconnects whenever a stream ends unannounced).

The first item is computed in the view, under the request's deadline: a method that fails before its first
item answers a plain 500 (a bad input is a 400 before the method runs at all), and the time to the first item
is measured. The rest is produced by the worker (worker.py), one item per turn of its event loop with the
request deadline armed around each item: the deadline applies to the time between items, not to the stream.
A client that goes away closes this generator, which closes the method's generator (``GeneratorExit`` at its
``yield``): it does not run on for nobody. Under a job (jobs.py) the items are collected instead, and each one
counts as progress.

Imports nothing else of nbserve.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from . import errors, guards, jsonio
from .deadline import RequestTimeout, retire_worker
from .errors import CallError

if TYPE_CHECKING:
    from collections.abc import Callable

    from _typeshed.wsgi import WSGIEnvironment
    from flask import Response

    from .jobworker import RunningJob
    from .observe import Observer

NDJSON = "application/x-ndjson"
SSE = "text/event-stream"
_END = object()


def is_stream(value: object) -> bool:
    """Whether a method's result is streamed: a generator, or any iterator that is not text."""
    return isinstance(value, Iterator) and not isinstance(value, (str, bytes, bytearray))


def wants_sse(environ: WSGIEnvironment) -> bool:
    return SSE in environ.get("HTTP_ACCEPT", "")


class Format:
    """How a stream's items, its failure and its end are written."""

    def __init__(self, mimetype: str, sse: bool, end: bytes = b"", error_form: str = errors.NBSERVE) -> None:
        self.mimetype, self.sse, self.end, self.error_form = mimetype, sse, end, error_form

    def item(self, payload: bytes) -> bytes:
        return b"data: " + payload + b"\n\n" if self.sse else payload + b"\n"

    def fail(self, exc: CallError) -> bytes:
        body = jsonio.dumps(errors.payload(exc, self.error_form))
        if not self.sse:
            return body + b"\n"
        return (b"event: error\ndata: " if self.error_form == errors.NBSERVE else b"data: ") + body + b"\n\n"

    def headers(self) -> dict:
        # no proxy buffering (nginx honours X-Accel-Buffering), no caching of a live stream
        return {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"} if self.sse else {"Cache-Control": "no-cache"}


NDJSON_FORMAT = Format(NDJSON, sse=False)
SSE_FORMAT = Format(SSE, sse=True, end=b"event: end\ndata: {}\n\n")


def format_for(environ: WSGIEnvironment) -> Format:
    return SSE_FORMAT if wants_sse(environ) else NDJSON_FORMAT


def model_error(method: str, exc: BaseException) -> CallError:
    """A method's generator that raised: reported as any failing model call is (dispatch.py)."""
    if isinstance(exc, SystemExit):
        return CallError(500, "ModelError", f"{method} raised ModelExit: the model called sys.exit({exc.code!r})")
    return CallError(500, "ModelError", f"{method} raised {type(exc).__name__}: {guards.public_message(exc)}")


def first_item(items: Iterator[Any], method: str) -> Any:
    """The first item of ``items`` (``_END`` for an empty stream), its failure as the method's 500."""
    try:
        return next(items)
    except StopIteration:
        return _END
    except CallError:
        _close(items)
        raise
    except (Exception, SystemExit) as exc:
        _close(items)
        raise model_error(method, exc) from None


def respond(
    items: Iterator[Any],
    method: str,
    encode: Callable[[Any], bytes],
    environ: WSGIEnvironment,
    observer: Observer | None = None,
    started: float | None = None,
    fmt: Format | None = None,
    counts: Callable[[Any], object] | None = None,
) -> Response:
    """A Flask response streaming ``items`` (an iterator the method returned), each written as ``encode(item)``
    (bytes) in ``fmt`` (default: by the request's Accept). ``observer``: observe.Observer (items, time to the
    first item, how the stream ended); ``started``: perf_counter when the method was called; ``counts(item)``:
    whether an item written counts as one of the method's (default: every one does)."""
    from flask import Response

    started = time.perf_counter() if started is None else started
    if environ.get("nbserve.job") is not None:
        return collect(items, method, encode, environ["nbserve.job"])
    fmt = fmt or format_for(environ)
    environ["nbserve.stream_failure"] = fmt.fail  # what the worker writes for an item stuck past the deadline
    first = first_item(items, method)
    to_first = time.perf_counter() - started
    body = _body(items, first, method, encode, fmt, environ, observer, started, to_first, counts)
    return Response(body, mimetype=fmt.mimetype, headers=fmt.headers(), direct_passthrough=True)


def _body(
    items: Iterator[Any],
    first: Any,
    method: str,
    encode: Callable[[Any], bytes],
    fmt: Format,
    environ: WSGIEnvironment,
    observer: Observer | None,
    started: float,
    to_first: float,
    counts: Callable[[Any], object] | None = None,
) -> Iterator[bytes]:
    count, outcome = 0, "error"
    try:
        if first is not _END:
            count = 1 if counts is None else int(bool(counts(first)))
            yield fmt.item(encode(first))
            for item in items:  # the worker arms the request deadline around each step
                count += 1 if counts is None else int(bool(counts(item)))
                yield fmt.item(encode(item))
        outcome = "complete"
        if fmt.end:
            yield fmt.end
    except GeneratorExit:
        outcome = "disconnected"  # the client went away (or the server stops): the method's generator closes
        raise
    except RequestTimeout:
        outcome = "timeout"
        seconds = getattr(environ.get("nbserve.deadline"), "seconds", 0)
        yield fmt.fail(errors.timed_out(f"{environ.get('PATH_INFO', '')} (between two items)", seconds))
        retire_worker(environ)  # the interrupted code may hold a library's lock: this worker is replaced
    except CallError as exc:  # an item that cannot be written as JSON
        yield fmt.fail(exc)
    except (Exception, SystemExit) as exc:
        yield fmt.fail(model_error(method, exc))
    finally:
        _close(items)
        if observer is not None:
            observer.stream_ended(method, to_first, count, time.perf_counter() - started, outcome)


def collect(items: Iterator[Any], method: str, encode: Callable[[Any], bytes], job: RunningJob) -> Response:
    """A job's call of a streaming method (jobs.py): every item, as ``{"items": [answer, ...]}``; each item is
    progress (``{"items": n}``)."""
    from flask import Response

    parts = []
    try:
        for item in items:
            parts.append(encode(item))
            job.progress(items=len(parts))
    except CallError:
        raise
    except (Exception, SystemExit) as exc:
        raise model_error(method, exc) from None
    finally:
        _close(items)
    return Response(b'{"items":[' + b",".join(parts) + b"]}", mimetype="application/json")


def _close(items: object) -> None:
    close = getattr(items, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            pass
