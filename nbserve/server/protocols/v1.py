"""KServe's V1 protocol: ``GET /v1/models``, ``GET /v1/models/{name}``, ``POST /v1/models/{name}:predict``
with ``{"instances": [...]}`` or ``{"inputs": ...}``, answering ``{"predictions": [...]}``. The two GETs are
OpenAI's routes too (openai.py): their answers carry both shapes. For a DataFrame
model an instance is a record (an object keyed by column) or a row in the schema's column order.
Errors are ``{"error": "..."}``; a name other than the model's registered name is a 404.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Response
from werkzeug.routing import BaseConverter

from .. import errors, jsonio
from ..errors import CallError
from . import blueprint as protocol_blueprint
from . import from_rows, loads
from .openai import model_entry

if TYPE_CHECKING:
    from flask import Blueprint
    from flask.blueprints import BlueprintSetupState

    from . import Served

PROTOCOL = "kserve-v1"


class _ModelName(BaseConverter):
    """A model name in a V1 URL: no ':' (``/v1/models/NAME:predict`` is the predict route, not a name)."""

    regex = "[^/:]+"


def blueprint(served: Served) -> Blueprint:
    bp = protocol_blueprint("kserve_v1", errors.KSERVE)
    dispatch = served.dispatch

    def converter(state: BlueprintSetupState) -> None:
        state.app.url_map.converters.setdefault("model_name", _ModelName)

    bp.record_once(converter)

    def check(name: str) -> None:
        if name != served.name:
            raise CallError(404, "NotFound", f"no model {name!r}; this server serves {served.name!r}")

    # KServe V1 and OpenAI share these two routes: one answer holds both shapes (V1 reads "models", "name" and
    # "ready"; OpenAI's clients read "data", and "id" and "object")
    @bp.get("/v1/models")
    def v1_models() -> Response:
        body = {"models": [served.name], "object": "list", "data": [model_entry(served)]}
        return Response(jsonio.dumps(body), mimetype="application/json")

    @bp.get("/v1/models/<model_name:name>")
    def v1_model(name: str) -> Response:
        check(name)
        body = {"name": served.name, "ready": True, **model_entry(served)}
        return Response(jsonio.dumps(body), mimetype="application/json")

    @bp.post("/v1/models/<model_name:name>:predict")
    def v1_predict(name: str) -> Response:
        check(name)
        method = served.method()
        try:
            payload = loads(served.body(), dispatch.inputs[method])
        except (jsonio.JSONDecodeError, UnicodeDecodeError) as exc:
            raise errors.invalid_json(exc, 'a JSON object {"instances": [...]} or {"inputs": ...}') from None
        keys = [k for k in ("instances", "inputs") if k in payload] if isinstance(payload, dict) else []
        if len(keys) != 1:
            raise CallError(400, "BadRequest", 'expected a JSON object {"instances": [...]} or {"inputs": ...}')
        value = from_rows(dispatch.inputs[method], payload[keys[0]])
        return Response(
            dispatch.dumps(method, {"predictions": dispatch.call(method, value)}), mimetype="application/json"
        )

    return bp


def openapi_paths(served: Served) -> dict:
    err = {"content": {"application/json": {"schema": {"type": "object", "properties": {"error": {"type": "string"}}}}}}
    tag = ["KServe V1"]
    return {
        "/v1/models": {
            "get": {"tags": tag, "summary": "The served model's name", "responses": {"200": {"description": "OK"}}}
        },
        f"/v1/models/{served.name}": {
            "get": {"tags": tag, "summary": "Model readiness", "responses": {"200": {"description": "OK"}}}
        },
        f"/v1/models/{served.name}:predict": {
            "post": {
                "tags": tag,
                "summary": f"{served.default_method or 'The default method'} on instances or inputs",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"type": "object", "properties": {"instances": {"type": "array"}, "inputs": {}}}
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "The predictions",
                        "content": {
                            "application/json": {"schema": {"type": "object", "properties": {"predictions": {}}}}
                        },
                    },
                    "400": {"description": "The input does not fit the model", **err},
                    "404": {"description": "Unknown model", **err},
                    "500": {"description": "The model raised an exception", **err},
                },
            }
        },
    }
