"""MLflow's scoring protocol (what `mlflow models serve` answers): ``POST /invocations``, ``GET /ping``,
``GET /version`` (``GET /health`` is nbserve's own, 200 as MLflow's).

The body is ``application/json`` with exactly one of ``dataframe_split``, ``dataframe_records``,
``instances`` or ``inputs`` (and optionally ``params``), or ``text/csv`` with a header row; the answer is
``{"predictions": ...}``. Errors are MLflow's ``{"error_code", "message"}``, with nbserve's statuses: the
client's fault a 4xx, a failing model a 500 (MLflow itself answers 400 for both).
"""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING, Any

from flask import Response, request

from .. import errors, jsonio
from ..dtypes import KINDS, column_kind
from ..errors import CallError
from . import blueprint as protocol_blueprint
from . import columns, from_records, from_rows, from_split, loads

if TYPE_CHECKING:
    from collections.abc import Callable

    from flask import Blueprint

    from ..dtypes import Kind
    from . import Served

PROTOCOL = "mlflow"
FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")


def _json_value(schema: dict, body: bytes) -> Any:
    try:
        payload = loads(body, schema)
    except (jsonio.JSONDecodeError, UnicodeDecodeError) as exc:
        raise errors.invalid_json(exc, f"a JSON object with one of {list(FORMATS)}") from None
    keys = [k for k in FORMATS if k in payload] if isinstance(payload, dict) else []
    if len(keys) != 1:
        got = sorted(payload) if isinstance(payload, dict) else type(payload).__name__
        raise CallError(
            400,
            "BadRequest",
            f"expected a JSON object with exactly one of the input fields {list(FORMATS)} (and optionally "
            f'"params"); got {got}',
        )
    params = payload.get("params")
    if params is not None and not isinstance(params, dict):
        raise CallError(400, "BadRequest", f'"params" must be an object; got {type(params).__name__}')
    if params:  # a model served by nbserve takes one input and no parameters: refuse, never ignore them
        raise CallError(400, "BadRequest", f"this model takes no params; got params {sorted(map(str, params))}")
    key = keys[0]
    value = payload[key]
    if key == "dataframe_split":
        return from_split(schema, value)
    if key == "dataframe_records":
        return from_records(schema, value)
    if isinstance(value, dict) and schema.get("type") == "ndarray" and len(value) == 1:
        return next(iter(value.values()))  # a single named tensor: {"inputs": {"x": [[...]]}}
    return from_rows(schema, value)


def _csv_value(schema: dict, body: bytes) -> Any:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CallError(400, "BadRequest", f"the CSV body is not UTF-8 ({exc})") from None
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:  # a stray carriage return, a NUL byte, an unterminated quote...
        raise CallError(400, "BadRequest", f"the body is not CSV that can be read ({exc})") from None
    if len(rows) < 2:
        raise CallError(400, "BadRequest", "expected CSV with a header row and at least one row of values")
    header, rows = rows[0], rows[1:]
    kinds = {c["name"]: KINDS[column_kind(c)] for c in schema["columns"]} if columns(schema) else {}
    convert = [_converter(kinds.get(name)) for name in header]
    try:
        data = [[conv(cell) for conv, cell in zip(convert, row, strict=True)] for row in rows]
    except ValueError:
        raise CallError(
            400, "BadRequest", f"every CSV row must have {len(header)} values, one per header column"
        ) from None
    if schema.get("type") == "dataframe":
        return {"columns": header, "data": data}
    if schema.get("type") == "series":
        return [r[0] if len(r) == 1 else r for r in data]
    return data


def _converter(kind: Kind | None) -> Callable[[str], Any]:
    """Reads a CSV cell as pandas.read_csv would, but by the column's kind (dtypes.py) where the schema has
    one: a string column keeps "007" a string."""
    if kind is not None and kind.text:
        return lambda cell: cell if cell != "" else None
    return _cell


def _cell(cell: str) -> int | float | bool | str | None:
    if cell == "":
        return None
    try:
        return int(cell)
    except ValueError:
        pass
    try:
        return float(cell)
    except ValueError:
        pass
    low = cell.lower()
    return (low == "true") if low in ("true", "false") else cell


def blueprint(served: Served) -> Blueprint:
    bp = protocol_blueprint("mlflow", errors.MLFLOW)
    dispatch = served.dispatch

    @bp.post("/invocations")
    def mlflow_invocations() -> Response:
        method = served.method()
        schema = dispatch.inputs[method]
        body = served.body()
        mimetype = request.mimetype
        if mimetype == "application/json":
            value = _json_value(schema, body)
        elif mimetype == "text/csv":
            value = _csv_value(schema, body)
        else:
            raise CallError(
                415,
                "UnsupportedMediaType",
                f"/invocations takes Content-Type application/json or text/csv; got {mimetype or 'none'}",
            )
        return Response(
            dispatch.dumps(method, {"predictions": dispatch.call(method, value)}), mimetype="application/json"
        )

    @bp.get("/ping")
    def mlflow_ping() -> Response:
        return Response("\n", mimetype="application/json")

    @bp.get("/version")
    def mlflow_version() -> Response:
        return Response(served.model_id, mimetype="text/plain")

    return bp


def openapi_paths(served: Served | None = None) -> dict:
    err = {
        "type": "object",
        "required": ["error_code", "message"],
        "properties": {"error_code": {"type": "string"}, "message": {"type": "string"}},
    }
    err_json = {"content": {"application/json": {"schema": err}}}
    formats = {
        "type": "object",
        "description": "exactly one of dataframe_split, dataframe_records, instances, inputs",
        "properties": {
            "dataframe_split": {
                "type": "object",
                "properties": {"columns": {"type": "array"}, "data": {"type": "array"}},
            },
            "dataframe_records": {"type": "array", "items": {"type": "object"}},
            "instances": {},
            "inputs": {},
            "params": {"type": "object"},
        },
    }
    return {
        "/invocations": {
            "post": {
                "tags": ["MLflow scoring protocol"],
                "summary": "MLflow scoring: the default method on dataframe_split, dataframe_records, instances, "
                "inputs or CSV",
                "operationId": "mlflow_invocations",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": formats},
                        "text/csv": {"schema": {"type": "string"}},
                    },
                },
                "responses": {
                    "200": {
                        "description": "The predictions",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {"predictions": {}},
                                    "required": ["predictions"],
                                }
                            }
                        },
                    },
                    "400": {"description": "The input does not fit the model", **err_json},
                    "404": {"description": "No default method", **err_json},
                    "415": {"description": "Neither JSON nor CSV", **err_json},
                    "500": {"description": "The model raised an exception", **err_json},
                },
            }
        },
        "/ping": {
            "get": {
                "tags": ["MLflow scoring protocol"],
                "summary": "MLflow health",
                "responses": {"200": {"description": "Up"}},
            }
        },
        "/version": {
            "get": {
                "tags": ["MLflow scoring protocol"],
                "summary": "The served model's id",
                "responses": {
                    "200": {"description": "The model id", "content": {"text/plain": {"schema": {"type": "string"}}}}
                },
            }
        },
    }
