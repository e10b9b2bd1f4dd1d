"""How nbserve's exceptions read over HTTP: one status table, one JSON shape.

Every error the REST API sends is ``{"error": {"type": ..., "message": ...}}``; the message is the
exception's own, which already says what to do next.
"""

from __future__ import annotations

from http.client import responses

from tornado.web import HTTPError

from ..errors import (
    ArtifactIntegrityError,
    BuildError,
    DeploymentNotFoundError,
    DiskFullError,
    InstanceNotFoundError,
    InstanceStartError,
    ModelNotFoundError,
    NbserveError,
    PortInUseError,
    RuntimeUnavailableError,
    ServerError,
)

# First match wins, so subclasses come before their bases.
STATUS = (
    (ModelNotFoundError, 404),
    (InstanceNotFoundError, 404),
    (DeploymentNotFoundError, 404),
    (PortInUseError, 409),
    (RuntimeUnavailableError, 503),  # includes DockerUnavailableError: no engine answers
    (DiskFullError, 507),  # Insufficient Storage: the Jupyter server's disk, not the request, is at fault
    (BuildError, 500),
    (InstanceStartError, 500),
    (ArtifactIntegrityError, 500),
    (ServerError, 502),  # a served model answered with an error
    (NbserveError, 400),  # the rest are refusals of what was asked (unknown runtime, bad reference...)
)


class BadRequest(HTTPError):
    """The request body or a parameter is not what the route expects."""

    def __init__(self, message: str):
        super().__init__(400, message)


class Conflict(HTTPError):
    def __init__(self, message: str):
        super().__init__(409, message)


def status_for(exc: BaseException) -> int:
    if isinstance(exc, HTTPError):
        return exc.status_code
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def error_body(exc: BaseException, status: int | None = None) -> dict:
    """``{"type", "message", "status"}`` for an exception (the value of the "error" key)."""
    status = status_for(exc) if status is None else status
    if isinstance(exc, HTTPError):
        kind = type(exc).__name__ if type(exc) is not HTTPError else _reason(status)
        message = exc.log_message or _reason(status)
    else:
        kind, message = type(exc).__name__, str(exc) or type(exc).__name__
    return {"type": kind, "message": message, "status": status}


def _reason(status: int) -> str:
    return responses.get(status, "Error").replace(" ", "")
