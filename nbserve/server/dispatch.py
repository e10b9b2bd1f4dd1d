"""The one place a request's input meets the model: decode by the method's input schema, call, make the
result writable as JSON. nbserve's own ``POST /<method>`` and every protocol adapter (protocols/) go
through it, so all of them refuse the same inputs with the same 4xx and report a failing model the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import errors, guards, jsonio
from .errors import CallError
from .schema import EXTRA_COLUMNS, InputError, answer, compile_decoder, to_jsonable

if TYPE_CHECKING:
    import logging

__all__ = ["CallError", "Dispatch"]


def data_of(body: bytes) -> Any:
    """The model input of a ``{"data": ...}`` body (nbserve's own routes and a job's submission)."""
    try:
        payload = jsonio.loads(body)
    except (jsonio.JSONDecodeError, UnicodeDecodeError) as exc:
        raise errors.invalid_json(exc, '{"data": ...}') from None
    if not isinstance(payload, dict) or "data" not in payload:
        raise CallError(400, "BadRequest", 'expected a JSON object {"data": ...} holding the model input')
    return payload["data"]


class Dispatch:
    """The served methods with their decoders, compiled once at load."""

    def __init__(self, methods: dict, signature: dict, logger: logging.Logger, extra_columns: str = "refuse") -> None:
        if extra_columns not in EXTRA_COLUMNS:
            raise ValueError(f"extra_columns must be one of {EXTRA_COLUMNS}, got {extra_columns!r}")
        self.methods = methods
        self.extra_columns = extra_columns
        self.inputs = {name: (signature.get(name) or {}).get("input") or {"type": "any"} for name in methods}
        self.outputs = {name: (signature.get(name) or {}).get("output") or {"type": "any"} for name in methods}
        self.decoders = {name: compile_decoder(signature.get(name, {}).get("input"), extra_columns) for name in methods}
        self.logger = logger

    def call(self, method: str, data: Any) -> Any:
        """``method`` applied to the JSON value ``data``; the result as to_jsonable makes it."""
        return to_jsonable(self.result(method, data))

    def answer(self, method: str, data: Any) -> dict:
        """nbserve's own answer body: ``{"data": ...}``, with ``"index"`` where a pandas result has its own."""
        return answer(self.result(method, data))

    def result(self, method: str, data: Any) -> Any:
        """``method`` applied to the JSON value ``data``: what the model returned."""
        fn = self.methods.get(method)
        if fn is None:
            raise CallError(404, "NotFound", f"no method {method!r}; this model serves {list(self.methods)}")
        try:
            value = self.decoders[method](data)
        except InputError as exc:
            raise CallError(400, "InvalidInput", f"{method}: {exc}") from None
        try:
            result = fn(value)
        except CallError:  # already an answer (a graph's stage that failed names itself: graph.py)
            raise
        except Exception as exc:  # the user's model failed: report it, keep serving
            self.logger.warning("%s raised %s: %s", method, type(exc).__name__, exc)
            message = f"{method} raised {type(exc).__name__}: {guards.public_message(exc)}"
            raise CallError(500, "ModelError", message) from None
        return result

    def dumps(self, method: str, payload: Any) -> bytes:
        try:
            return jsonio.dumps(payload)
        except (TypeError, ValueError) as exc:
            raise CallError(
                500, "OutputError", f"{method} returned a value that cannot be written as JSON: {exc}"
            ) from None
