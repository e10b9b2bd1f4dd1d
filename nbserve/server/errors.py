"""Every error a served model answers, built in one place.

A refusal is a ``CallError`` (status, type, message and any headers it needs, such as ``Allow`` or
``WWW-Authenticate``). ``body`` writes it in the error form of the protocol that was spoken: nbserve's own
``{"error": {"type", "message"}}``, MLflow's ``{"error_code", "message"}``, KServe's (V1 and the Open
Inference Protocol) ``{"error": "..."}`` or OpenAI's ``{"error": {"message", "type", "param", "code"}}``. The
app, each protocol's blueprint and the WSGI middlewares (deadline, chunked body limit) all answer through it;
the client turns any of these forms back into its exception (``nbserve.client.error_from_response``).

Imports nothing else from nbserve.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import jsonio

if TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse
    from flask import Response

NBSERVE, MLFLOW, KSERVE, OPENAI = "nbserve", "mlflow", "kserve", "openai"
_MLFLOW_CODES = {404: "ENDPOINT_NOT_FOUND", 500: "INTERNAL_ERROR"}
_OPENAI_CODES = {"ModelNotFound": "model_not_found", "InvalidInput": "invalid_value", "InvalidJSON": "invalid_json"}


class CallError(Exception):
    """A request that cannot be answered: ``status`` (4xx: the client's fault; 500: the model's), ``type``,
    ``message`` and extra response ``headers``."""

    def __init__(self, status: int, type_: str, message: str, headers: dict | None = None, param: str | None = None):
        super().__init__(message)
        self.status, self.type, self.message = status, type_, message
        self.headers = dict(headers or {})
        self.param = param  # the request field at fault, where a protocol names it (OpenAI's)


# the protocols by the paths they own: where the app answers for them (an unknown route), it speaks their form
PROTOCOL_PREFIXES = (
    ("/invocations", MLFLOW, "MLflow's scoring protocol"),
    ("/v1/", KSERVE, "KServe V1"),
    ("/v2", KSERVE, "the Open Inference Protocol"),
)


def protocol_of(path: str) -> tuple[str, str]:
    """(error form, protocol name) of the protocol that owns ``path``; nbserve's own otherwise."""
    for prefix, form, name in PROTOCOL_PREFIXES:
        if path == prefix.rstrip("/") or path.startswith(prefix.rstrip("/") + "/"):
            return form, name
    return NBSERVE, "nbserve"


def payload(exc: CallError, form: str = NBSERVE) -> dict:
    """The JSON error body of ``exc`` in a protocol's form."""
    if form == MLFLOW:
        code = "INVALID_PARAMETER_VALUE" if exc.type == "InvalidInput" else _MLFLOW_CODES.get(exc.status, "BAD_REQUEST")
        return {"error_code": code, "message": exc.message}
    if form == KSERVE:
        return {"error": exc.message}
    if form == OPENAI:  # what the openai client reads into its APIError (message, type, param, code)
        kind = "invalid_request_error" if exc.status < 500 else "server_error"
        code = _OPENAI_CODES.get(exc.type, exc.type)
        return {"error": {"message": exc.message, "type": kind, "param": exc.param, "code": code}}
    return {"error": {"type": exc.type, "message": exc.message}}


def body(exc: CallError, form: str = NBSERVE) -> bytes:
    return jsonio.dumps(payload(exc, form))


def response(exc: CallError, form: str = NBSERVE) -> Response:
    """A Flask response for ``exc``."""
    from flask import Response

    resp = Response(body(exc, form), status=exc.status, mimetype="application/json")
    for name, value in exc.headers.items():
        resp.headers[name] = value
    return resp


def wsgi_answer(
    start_response: StartResponse,
    exc: CallError,
    extra_headers: Iterable[tuple[str, str]] = (),
    exc_info: OptExcInfo | None = None,
) -> list[bytes]:
    """Answer ``exc`` from WSGI middleware (below Flask), in nbserve's form."""
    data = body(exc)
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    headers += list(exc.headers.items()) + list(extra_headers)
    start_response(f"{exc.status} {_REASONS.get(exc.status, 'Error')}", headers, exc_info)
    return [data]


_REASONS = {401: "Unauthorized", 405: "Method Not Allowed", 413: "Request Entity Too Large", 504: "Gateway Timeout"}
_TYPES = {400: "BadRequest", 413: "PayloadTooLarge", 500: "ServerError", 504: "Timeout"}


def by_status(status: int, message: str, reason: str = "") -> CallError:
    """A refusal known only by its status (the worker's own, before the app runs), with nbserve's type."""
    return CallError(status, _TYPES.get(status) or reason.replace(" ", "") or "Error", message)


# -- the refusals several places make, worded once ----------------------------------------------------


def too_large(limit: int) -> CallError:
    return CallError(
        413,
        "PayloadTooLarge",
        f"the body is larger than the limit of {limit} bytes; send fewer rows per request, or raise the limit "
        f"with serve(..., max_body=BYTES) or NBSERVE_MAX_BODY",
    )


def unauthorized() -> CallError:
    return CallError(
        401,
        "Unauthorized",
        "this model needs a bearer token: send the header 'Authorization: Bearer <token>' (Instance.client() "
        "does; the token is Instance.auth_token in the notebook that served it)",
        {"WWW-Authenticate": 'Bearer realm="nbserve"'},
    )


def method_not_allowed(verb: str, path: str, allowed: Iterable[str] | None) -> CallError:
    allowed = sorted(set(allowed or ()))
    hint = ' (model methods take POST with {"data": ...})' if "POST" in allowed else ""
    return CallError(
        405,
        "MethodNotAllowed",
        f"{verb} is not allowed on {path}; it takes {', '.join(allowed) or 'nothing'}{hint}",
        {"Allow": ", ".join(allowed)},
    )


def timed_out(path: str, seconds: float) -> CallError:
    return CallError(
        504,
        "Timeout",
        f"{path} did not finish within the limit of {seconds:g} s; the request was stopped (raise the limit "
        f"with serve(..., timeout=SECONDS) or NBSERVE_TIMEOUT)",
    )


def invalid_json(exc: Exception, expected: str) -> CallError:
    return CallError(400, "InvalidJSON", f"the body is not valid JSON ({exc}); expected {expected}")
