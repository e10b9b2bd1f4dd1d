"""A client for a served model: ``Client(url).predict(X)`` with numpy/pandas in and out."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from typing import Any

import requests

from .errors import MethodNotFoundError, NbserveError, ServerError
from .server.shared import column_values, frame_split, index_values, json_dumps, json_loads, rebuild, to_jsonable


def encode(value: Any) -> Any:
    """A model input as the JSON value of ``data`` (what the server's decoders read): tables as
    {"columns", "data"} (and "index" where it is not 0, 1, 2...) with dates in ISO 8601, missing values (NaN,
    NaT, NA) as null and infinities as "Infinity"/"-Infinity", in the one vocabulary of
    nbserve/server/dtypes.py."""
    pd = sys.modules.get("pandas")
    np = sys.modules.get("numpy")
    torch = sys.modules.get("torch")
    if pd is not None and isinstance(value, pd.DataFrame):
        return frame_split(value)
    if pd is not None and isinstance(value, pd.Series):
        index = index_values(value.index)
        values = column_values(value)
        return values if index is None else {"data": values, "index": index}
    if torch is not None and isinstance(value, torch.Tensor):
        return encode(value.detach().cpu().numpy())
    if np is not None and isinstance(value, np.ndarray):
        return to_jsonable(value)
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    return to_jsonable(value)


def error_from_response(status: int, body: Any, where: str = "") -> ServerError:
    """The client's exception for an error answer of a served model, in any of the forms the server writes
    (nbserve/server/errors.py): nbserve's ``{"error": {"type", "message"}}``, MLflow's ``{"error_code",
    "message"}``, KServe's ``{"error": "..."}``; anything else (a proxy's page) is quoted, cut short."""
    kind, message = error_text(body)
    if kind is None and message is None:
        text = body.decode(errors="replace") if isinstance(body, (bytes, bytearray)) else str(body)
        return ServerError(f"{status} from {where or 'the server'}: {text[:500]}", status)
    return ServerError(f"{status} {kind}: {message}" if kind else f"{status}: {message}", status, kind)


def error_text(body: Any) -> tuple[str | None, str | None]:
    """(type, message) of an error body in any of the served model's forms; (None, None) for another body."""
    try:
        found = json_loads(body)
    except (ValueError, TypeError):
        return None, None
    if isinstance(found, dict):
        err = found.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return err.get("type"), err["message"]
        if isinstance(err, str):
            return None, err
        if isinstance(found.get("message"), str):
            return found.get("error_code"), found["message"]
    return None, None


def decode(spec: dict | None, body: dict) -> Any:
    """The JSON body of an answer (``data``, and ``index`` for pandas) as the value the method returned in the
    kernel: a DataFrame or Series where it returned one, with its dtypes, column labels and index."""
    return rebuild(spec, body["data"], body.get("index"))


class Client:
    """Talks to one served model. Each served method is a Python method: ``client.predict(X)``.

    Holds a connection pool: ``client.close()``, or ``with Client(url) as client: ...``.
    """

    def __init__(self, url: str, timeout: float = 60.0, token: str | None = None, interface: dict | None = None):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()
        if token:
            self._session.headers["Authorization"] = f"Bearer {token}"
        self._interface = interface  # else fetched from /interface.json on first use

    def __repr__(self) -> str:
        return f"<Client {self.url}>"

    def close(self) -> None:
        """Close the pooled connections (the client can still be used: it reconnects)."""
        self._session.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, verb: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            resp = self._session.request(verb, self.url + path, timeout=self.timeout, **kwargs)
        except requests.ConnectionError as exc:
            raise NbserveError(
                f"could not reach {self.url}: is the instance running? (`nbserve.instances()` shows its status)"
            ) from exc
        if resp.status_code >= 400:
            raise error_from_response(resp.status_code, resp.content, self.url + path)
        return resp

    @property
    def interface(self) -> dict:
        if self._interface is None:
            self._interface = self._request("GET", "/interface.json").json()
        return self._interface

    @property
    def methods(self) -> list[str]:
        return [m["name"] for m in self.interface["methods"]]

    def health(self) -> dict:
        return self._request("GET", "/health").json()

    def _spec(self, method: str) -> dict:
        spec = next((m for m in self.interface["methods"] if m["name"] == method), None)
        if spec is None:
            raise MethodNotFoundError(f"the model at {self.url} has no method {method!r}; it serves {self.methods}")
        return spec

    def call(self, method: str, data: Any) -> Any:
        """The method's answer (a method that streams: the list of its items)."""
        spec = self._spec(method)
        if spec.get("stream"):
            return list(self.stream(method, data))
        body = json_dumps({"data": encode(data)})
        resp = self._request("POST", f"/{method}", data=body, headers={"Content-Type": "application/json"})
        return decode(spec.get("output"), json_loads(resp.content))

    def stream(self, method: str, data: Any) -> Iterator[Any]:
        """The items of a streaming method as the server makes them (a generator; the request is sent now, so a
        refused input raises here). ``timeout`` applies between items. Closing the generator (or leaving a ``for``
        loop early) closes the connection, and the server stops the method."""
        spec = self._spec(method)
        body = json_dumps({"data": encode(data)})
        resp = self._request(
            "POST",
            f"/{method}",
            data=body,
            headers={"Content-Type": "application/json", "Accept": "application/x-ndjson"},
            stream=True,
        )
        return _items(resp, spec.get("output"), self.url + f"/{method}")

    def submit(self, method: str, data: Any) -> Job:
        """Queue a call as a job on the server (``POST /<method>?async=1``) and return at once: a ``Job``, which
        answers like a ``concurrent.futures.Future`` (``result()``, ``done()``, ``cancel()``, ...)."""
        spec = self._spec(method)
        body = json_dumps({"data": encode(data)})
        resp = self._request(
            "POST", f"/{method}", params={"async": "1"}, data=body, headers={"Content-Type": "application/json"}
        )
        return Job(self, resp.json(), spec)

    def job(self, job_id: str) -> Job:
        """A job submitted earlier (by this client or another), by its id."""
        doc = self._request("GET", f"/jobs/{job_id}").json()
        return Job(self, doc, self._spec(doc["method"]))

    def jobs(self) -> list[dict]:
        """Every job the server keeps: queued, running, and finished ones within their retention."""
        return self._request("GET", "/jobs").json()["jobs"]

    def __getattr__(self, name: str) -> Callable[[Any], Any]:
        """``client.predict``: the served method, without a request. A name the known interface lacks is
        an AttributeError here; before the interface is known, calling it asks the server, and an
        unknown method is a MethodNotFoundError (an AttributeError too)."""
        if name.startswith("_"):
            raise AttributeError(name)
        if self._interface is not None and name not in self.methods:
            raise MethodNotFoundError(f"the model at {self.url} has no method {name!r}; it serves {self.methods}")
        return functools.partial(self.call, name)

    def __dir__(self) -> list[str]:
        names = list(super().__dir__())
        try:
            names += self.methods
        except NbserveError:
            pass
        return names


def _items(resp: requests.Response, spec: dict | None, where: str) -> Iterator[Any]:
    """The decoded items of a streamed answer (NDJSON lines); a line ``{"error": ...}`` raises it."""
    try:
        if "ndjson" not in resp.headers.get("Content-Type", ""):  # not a stream: the one answer
            yield decode(spec, json_loads(resp.content))
            return
        for line in resp.iter_lines():
            if not line:
                continue
            item = json_loads(line)
            if "error" in item and "data" not in item:
                raise error_from_response(500, line, where)
            yield decode(spec, item)
    except requests.RequestException as exc:
        raise NbserveError(f"the stream from {where} broke off: {exc}") from exc
    finally:
        resp.close()


JOB_FINISHED = ("succeeded", "failed", "cancelled")


class Job:
    """A call queued on a served model (``Client.submit``), answered later. Like ``concurrent.futures.Future``:
    ``result(timeout)``, ``exception(timeout)``, ``done()``, ``running()``, ``cancel()``, ``cancelled()``; and
    ``status``, ``progress`` (what the method reported) and ``refresh()``, which asks the server again."""

    def __init__(self, client: Client, doc: dict, spec: dict):
        self.client, self.spec = client, spec
        self.id, self.method = doc["id"], doc["method"]
        self.doc = doc

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.method} {self.doc.get('status')}>"

    def refresh(self, patience: float = 5.0) -> dict:
        """The job's status document, asked now. A connection that fails is tried again for ``patience``
        seconds: a kept-alive connection dies with the worker that held it, and a job outlives its workers."""
        import time

        give_up = time.monotonic() + patience
        while True:
            try:
                self.doc = self.client._request("GET", f"/jobs/{self.id}").json()
                return self.doc
            except ServerError:
                raise
            except NbserveError:
                if time.monotonic() >= give_up:
                    raise
                time.sleep(0.1)

    def _doc(self) -> dict:
        return self.doc if self.doc.get("status") in JOB_FINISHED else self.refresh()

    @property
    def status(self) -> str:
        return self._doc()["status"]

    @property
    def progress(self) -> dict | None:
        return self._doc().get("progress")

    def done(self) -> bool:
        return self.status in JOB_FINISHED

    def running(self) -> bool:
        return self.status == "running"

    def cancelled(self) -> bool:
        return self.status == "cancelled"

    def cancel(self) -> bool:
        """Cancel the job: a queued one at once, a running one within a second (its call is interrupted). False
        when it had finished already."""
        if self._doc()["status"] in JOB_FINISHED:
            return self.doc["status"] == "cancelled"
        self.doc = self.client._request("DELETE", f"/jobs/{self.id}").json()
        return True

    def wait(self, timeout: float | None = None) -> dict:
        """Wait until the job has finished (polling its status); its document. TimeoutError after ``timeout`` s."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.05
        while True:
            doc = self._doc()
            if doc["status"] in JOB_FINISHED:
                return doc
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {self.id} ({self.method}) is still {doc['status']} after {timeout:g} s")
            time.sleep(delay if deadline is None else max(0.0, min(delay, deadline - time.monotonic())))
            delay = min(delay * 1.5, 1.0)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The error the job ended with (a ServerError), or None when it succeeded."""
        import concurrent.futures

        doc = self.wait(timeout)
        if doc["status"] == "cancelled":
            raise concurrent.futures.CancelledError(f"job {self.id} was cancelled")
        if doc["status"] == "failed":
            error = doc.get("error") or {}
            status = error.get("status") or 500
            return ServerError(f"{status} {error.get('type')}: {error.get('message')}", status, error.get("type"))
        return None

    def result(self, timeout: float | None = None) -> Any:
        """The method's answer, as ``client.<method>(data)`` gives it; raises the job's error, or
        ``concurrent.futures.CancelledError``."""
        error = self.exception(timeout)
        if error is not None:
            raise error
        found = self.doc.get("result") or {}
        if "items" in found:
            return [decode(self.spec.get("output"), item) for item in found["items"]]
        return decode(self.spec.get("output"), found)
