"""The Flask app that serves one model artifact.

Everything that can be worked out once (method table, decoders, the interface and OpenAPI
documents) is worked out in ``create_app``; a prediction request does one JSON parse, one
conversion to the model's input type, the call, and one JSON write.
"""

from __future__ import annotations

import functools
import gc
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from . import artifact, batching, errors, guards, jobs, jsonio, keywords, observe, prefix, protocols, streaming
from .dispatch import Dispatch, data_of
from .errors import CallError
from .openapi import complete as complete_openapi
from .openapi import interface_document, openapi_document
from .schema import answer
from .settings import DEFAULT_MAX_BODY, Settings  # noqa: F401 - DEFAULT_MAX_BODY: the app's name for it

if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Collection

STATIC = Path(__file__).parent / "static"


def _encode_item(dispatch: Dispatch, method: str, item: Any) -> bytes:
    return dispatch.dumps(method, answer(item))


def _json(payload: Any, status: int = 200) -> Response:
    return Response(jsonio.dumps(payload), status=status, mimetype="application/json")


def _error(status: int, type_: str, message: str) -> Response:
    return errors.response(CallError(status, type_, message))


def _read_body(max_body: int) -> bytes:
    """The request body, read once. With a Content-Length within the limit, straight from the server's
    stream: werkzeug's limit-enforcing wrapper (``request.get_data`` with MAX_CONTENT_LENGTH set) reads
    in small chunks, ~40 us of a 1,000-row request (benchmarks/wsgi_micro.py). A body without a length
    (chunked), or over the limit (413), still goes through werkzeug."""
    length = request.content_length
    if length is not None and length <= max_body:
        return request.environ["wsgi.input"].read(length)
    return request.get_data(cache=False)


def create_app(
    artifact_dir: str | os.PathLike[str], model_id: str | None = None, settings: Settings | None = None
) -> Flask:
    manifest = artifact.read_manifest(artifact_dir)
    if manifest.get("kind") == "graph":  # its stages' artifacts, each verified and loaded (graph.py)
        from . import graph

        return make_app(graph.load(artifact_dir, manifest), manifest, model_id=model_id, settings=settings)
    obj, manifest = artifact.load(artifact_dir)
    return make_app(obj, manifest, model_id=model_id, settings=settings)


def make_app(
    obj: Any, manifest: dict, model_id: str | None = None, settings: Settings | None = None, **overrides: Any
) -> Flask:
    """The app for a loaded model. ``settings``: the server's (default: from the environment, as the master
    has them); ``overrides``: fields of it to change (timeout, max_body, auth_sha256, default_method, ...)."""
    settings = settings or Settings.from_env()
    if overrides:
        settings = settings.replace(**{k: v for k, v in overrides.items() if v is not None})
    timeout, auth_sha256 = settings.timeout, settings.auth_sha256
    model_id = model_id or settings.model_id or manifest.get("pickle_sha256", "model")[:12]
    raw = artifact.bind_methods(obj, manifest)
    takes = {name: keywords.accepted(fn) for name, fn in raw.items()}  # progress, sampling parameters
    methods = guards.contain_exits(keywords.bind(raw))
    signature = manifest.get("signature", {})
    health_bytes = jsonio.dumps({"status": "ok", "model": model_id})

    app = Flask("nbserve_server", static_folder=str(STATIC), static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body
    app.json.sort_keys = False  # type: ignore[attr-defined]
    deadline = guards.install(app, request, timeout=timeout, auth_sha256=auth_sha256)
    max_body = settings.max_body  # read once, not per request
    methods = batching.install(app, methods, signature, settings, deadline)  # off unless settings.batch
    methods = observe.install(app, methods, manifest, model_id, settings)  # /metrics, /drift, request log

    dispatch = Dispatch(methods, signature, app.logger, settings.extra_columns)
    observer = app.extensions.get("nbserve.observer")
    job_queue = jobs.install(app, settings, dispatch, model_id)  # POST /<method>?async=1, /jobs

    def call(method: str, data: Any) -> Response:
        """The answer to ``method`` on ``data``: one JSON body, or a stream of items (streaming.py)."""
        started = time.perf_counter()
        result = dispatch.result(method, data)
        if streaming.is_stream(result):
            encode = functools.partial(_encode_item, dispatch, method)
            return streaming.respond(result, method, encode, request.environ, observer, started)
        return Response(dispatch.dumps(method, answer(result)), mimetype="application/json")

    def predict_view(method: str) -> Callable[[], Response]:
        def view() -> Response:
            body = _read_body(max_body)
            if method in numeric_arrays and _may_hold_booleans(body):
                _refuse_booleans(method, data_of(body))  # numpy would read them as 1 and 0
            if job_queue.asked(request):
                return job_queue.submit(method, body)
            return call(method, data_of(body))

        view.__name__ = f"call_{method}"
        return view

    # methods whose input is an array of numbers: JSON's true and false are not numbers (OpenAPI says so)
    numeric_arrays = {
        m for m, s in dispatch.inputs.items() if s.get("type") == "ndarray" and str(s.get("dtype"))[:1] in "fiu"
    }

    def stream_view(method: str) -> Callable[[], Response]:
        def view() -> Response:  # a browser's EventSource can only GET: the input comes as ?data=<JSON>
            raw = request.args.get("data")
            if raw is None:
                raise CallError(
                    400, "BadRequest", f"GET /{method} takes its input as ?data=<the JSON of the input>; or POST it"
                )
            try:
                data = jsonio.loads(raw)
            except (jsonio.JSONDecodeError, UnicodeDecodeError) as exc:
                raise errors.invalid_json(exc, "?data=<JSON>") from None
            return call(method, data)

        view.__name__ = f"stream_{method}"
        return view

    for method in methods:
        app.add_url_rule(f"/{method}", f"call_{method}", predict_view(method), methods=["POST"])
        if (signature.get(method) or {}).get("stream"):
            app.add_url_rule(f"/{method}", f"stream_{method}", stream_view(method), methods=["GET"])

    default_method = settings.default_method
    interface = interface_document(manifest, model_id, default_method, dispatch.extra_columns, settings.public())
    openapi = openapi_document(interface)
    if manifest.get("kind") == "graph":  # GET /graph, POST /stages/{name}/{method}, metrics by stage
        from . import graph

        graph.install(app, obj, model_id, methods, openapi, settings, lambda: _read_body(max_body))
    # MLflow's /invocations, the Open Inference Protocol (V2) and KServe V1, over the same dispatch
    protocols.install(
        app,
        dispatch,
        model_id,
        openapi,
        lambda: _read_body(max_body),
        default_method,
        max_body,
        text_kind=manifest.get("openai"),
        takes=takes,
    )
    complete_openapi(openapi, auth=bool(auth_sha256))
    interface_bytes = jsonio.dumps(interface)
    openapi_for_prefix = prefix.documents_by_prefix(openapi, jsonio.dumps)

    @app.get("/health")
    def health() -> Response:
        return Response(health_bytes, mimetype="application/json")

    @app.get("/interface.json")
    def interface_json() -> Response:
        return Response(interface_bytes, mimetype="application/json")

    @app.get("/openapi.json")
    def openapi_json() -> Response:
        return Response(openapi_for_prefix(request.script_root), mimetype="application/json")

    @app.get("/docs")
    def docs() -> Response:
        swagger = STATIC / "vendor" / "swagger-ui" / "swagger-ui-bundle.js"
        page = "swagger.html" if swagger.exists() else "docs.html"
        return Response((STATIC / page).read_bytes(), mimetype="text/html")

    @app.get("/")
    def index() -> Response:
        return _json(
            {
                "model": model_id,
                "methods": list(methods),
                "links": [request.script_root + p for p in ("/health", "/interface.json", "/openapi.json", "/docs")],
            }
        )

    # nbserve's own routes raise CallError; each protocol's blueprint answers its own in its form (protocols/)
    app.register_error_handler(CallError, errors.response)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        form = errors.protocol_of(request.path)[0] if exc.code == 404 else errors.NBSERVE
        return errors.response(_http_call_error(exc, methods, max_body), form)

    @app.errorhandler(Exception)
    def server_error(exc: Exception) -> Response:
        app.logger.exception("unexpected error")
        return _error(500, "ServerError", f"{type(exc).__name__}: {guards.public_message(exc)}")

    # The model and everything loaded so far live as long as the process: keep the collector off them
    # (a full collection over them in the middle of a request stalls it for tens of ms). Only the
    # young generations are collected first: the imports' garbage is long gone by now (a full collect
    # found none), and scanning the ~130k old objects of sklearn/scipy/pandas cost ~0.1 s of cold start.
    # behind a proxy (jupyter-server-proxy): links and "servers" carry its prefix
    prefix.install(app, settings.url_prefix or "")
    gc.collect(1)
    gc.freeze()
    return app


def _may_hold_booleans(body: bytes) -> bool:
    """Whether JSON ``true`` or ``false`` may be in the body. A JSON number never holds a "u" or an "s": one
    memchr each (~10 us for 1,000 rows) spares a well-formed numeric body the full scans (~200 us)."""
    if b"u" not in body and b"s" not in body:
        return False
    return b"true" in body or b"false" in body


def _refuse_booleans(method: str, data: Any) -> None:
    """A 400 when the nested lists ``data`` hold a JSON boolean (looked for only when the body has one)."""
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, bool):
            raise CallError(400, "InvalidInput", f"{method}: expected numbers, got the boolean {str(value).lower()}")
        if isinstance(value, list):
            stack.extend(value)


def _http_call_error(exc: HTTPException, methods: Collection[str], max_body: int) -> CallError:
    """Werkzeug's own refusals (routing, size) as nbserve's errors, saying what the server takes."""
    if exc.code == 404:
        path = request.path.strip("/")
        form, protocol = errors.protocol_of(request.path)
        if form != errors.NBSERVE:
            return CallError(404, "NotFound", f"no route {request.path} in {protocol}; see /openapi.json")
        if request.method == "POST":
            message = f"no method {path!r}; this model serves {list(methods)}"
        else:
            message = f"no route {request.path!r}; see /interface.json for the model's methods"
        return CallError(404, "NotFound", message)
    if exc.code == 405:  # RFC 9110: a 405 names the methods the route takes, in Allow
        return errors.method_not_allowed(request.method, request.path, getattr(exc, "valid_methods", None))
    if exc.code == 413:
        return errors.too_large(max_body)
    return CallError(exc.code or 500, type(exc).__name__, exc.description or str(exc))
