"""Other servers' contracts, spoken by the same app: MLflow's scoring protocol (mlflow.py), the Open
Inference Protocol of KServe, Triton and MLServer (v2.py) and KServe's V1 (v1.py).

Each adapter is a Flask blueprint that only translates: its request into the JSON value nbserve's own
``{"data": ...}`` carries, then ``Dispatch.call`` (the decode and the call every route shares), then the
result into its answer. Its views raise ``CallError``; the blueprint's one error handler writes it in the
protocol's error form (``errors.payload``). Imports nothing outside nbserve/server/.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import Blueprint

from .. import errors, jsonio
from ..dispatch import Dispatch
from ..errors import CallError

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence

    from flask import Flask

DEFAULT_METHOD_ENV = "NBSERVE_DEFAULT_METHOD"


@dataclass
class Served:
    """What every adapter needs to know about the served model."""

    dispatch: Dispatch
    model_id: str  # "diabetes:1"
    name: str  # "diabetes": the name the protocols' URLs use
    version: str  # "1"
    default_method: str | None  # what /invocations, /v1 and /v2 infer call (None: several, none chosen)
    read_body: Callable[[], bytes]
    max_body: int = 0  # bytes (what a 413 names)
    text_kind: str | None = None  # "chat" or "embeddings": the OpenAI routes serve text_method (openai.py)
    text_method: str | None = None
    takes: dict = field(default_factory=dict)  # method -> the keywords it takes (keywords.py)
    created: int = 0  # when the server loaded the model (OpenAI's model "created")

    def body(self) -> bytes:
        from werkzeug.exceptions import RequestEntityTooLarge

        try:
            return self.read_body()
        except RequestEntityTooLarge:
            raise errors.too_large(self.max_body) from None

    def method(self) -> str:
        if self.default_method is None:
            raise CallError(
                404,
                "NoDefaultMethod",
                f"this model serves {list(self.dispatch.methods)} and none is the default; serve it with "
                f"serve(..., default_method=NAME), or call POST /<method>",
            )
        return self.default_method


def choose_default(methods: Collection[str], chosen: str | None = None) -> str | None:
    """The method the protocols call: the chosen one, else predict, else the only method, else None."""
    if chosen:
        if chosen not in methods:
            raise ValueError(f"default_method {chosen!r} is not one of the model's methods {list(methods)}")
        return chosen
    if "predict" in methods:
        return "predict"
    if len(methods) == 1:
        return next(iter(methods))
    return None


# every route each protocol answers ({name} and {version}: the model's registered name and version);
# /interface.json lists them, and the app's /openapi.json has each (tests/test_protocols.py checks both)
ROUTES = {
    "mlflow": ["/invocations", "/ping", "/health", "/version"],
    "open-inference-v2": [
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/{name}",
        "/v2/models/{name}/versions/{version}",
        "/v2/models/{name}/ready",
        "/v2/models/{name}/versions/{version}/ready",
        "/v2/models/{name}/infer",
        "/v2/models/{name}/versions/{version}/infer",
    ],
    "kserve-v1": ["/v1/models", "/v1/models/{name}", "/v1/models/{name}:predict"],
}


def _name_version(model_id: str) -> tuple[str, str]:
    name, _, version = model_id.partition(":")
    return name, version or "1"


def spoken(
    model_id: str, methods: Sequence[str], default_method: str | None = None, text_kind: str | None = None
) -> list:
    """What /interface.json says about the protocols: each with its routes and the method it calls.
    No Flask here: the client side builds the interface from the registry too (openapi.interface_document)."""
    name, version = _name_version(model_id)
    method = choose_default(methods, default_method)
    out: list[dict] = [{"name": "nbserve", "routes": [f"/{m}" for m in methods]}]
    for protocol, routes in ROUTES.items():
        out.append(
            {"name": protocol, "routes": [r.format(name=name, version=version) for r in routes], "method": method}
        )
    if text_kind:
        text_routes = ["/v1/models", "/v1/chat/completions" if text_kind == "chat" else "/v1/embeddings"]
        out.append({"name": "openai", "kind": text_kind, "routes": text_routes, "method": method or methods[0]})
    return out


def blueprint(name: str, form: str) -> Blueprint:
    """A protocol's blueprint: every ``CallError`` its views raise is answered in the protocol's ``form``."""
    bp = Blueprint(name, __name__)
    bp.register_error_handler(CallError, lambda exc: errors.response(exc, form))
    return bp


def install(
    app: Flask,
    dispatch: Dispatch,
    model_id: str,
    openapi: dict,
    read_body: Callable[[], bytes],
    default_method: str | None = None,
    max_body: int = 0,
    text_kind: str | None = None,
    takes: dict | None = None,
) -> None:
    """Register every adapter's blueprint on ``app`` and add their paths to ``openapi``. ``default_method``
    is checked against the methods: a typo fails at load, not per request. ``text_kind``: "chat" or
    "embeddings" for a text function (the OpenAI routes); ``takes``: method -> the keywords it takes."""
    import time

    from . import mlflow, openai, v1, v2

    name, version = _name_version(model_id)
    default = choose_default(dispatch.methods, default_method)
    text_method = default or next(iter(dispatch.methods), None) if text_kind else None
    served = Served(
        dispatch,
        model_id,
        name,
        version,
        default,
        read_body,
        max_body,
        text_kind,
        text_method,
        dict(takes or {}),
        int(time.time()),
    )
    for module in (mlflow, v2, v1, openai):
        app.register_blueprint(module.blueprint(served))
        openapi["paths"].update(module.openapi_paths(served))


def columns(schema: dict | None) -> list | None:
    """The column names of a DataFrame input schema, else None."""
    if schema and schema.get("type") == "dataframe":
        return [c["name"] for c in schema["columns"]]
    return None


def loads(body: bytes, schema: dict | None = None) -> Any:
    """The JSON of a request body. The ecosystem's Python clients write a missing float as the bare
    ``NaN`` JSON lacks (MLflow's own serialisation does, for missing numbers and strings alike;
    tritonclient and KServe's SDK use ``json.dumps`` too), and their servers read it back with Python's
    json: so do these routes, as null where the input is a DataFrame (pandas' missing value, which each
    column then accepts where it takes nulls) and as NaN elsewhere (the array's decoder judges it).
    Raises jsonio's errors, as ``jsonio.loads`` does, for anything else that is not JSON."""
    try:
        return jsonio.loads(body)
    except (jsonio.JSONDecodeError, UnicodeDecodeError):
        if b"NaN" not in body and b"Infinity" not in body:
            raise
        import json
        import math

        nan = None if columns(schema) is not None else math.nan
        try:
            return json.loads(body, parse_constant=lambda c: nan if c == "NaN" else float(c))
        except ValueError:
            pass
        raise


def from_rows(schema: dict, rows: Any) -> Any:
    """Rows as the JSON value the input schema decodes: for a DataFrame model, a list of lists becomes
    {"columns", "data"} in the schema's column order (as MLflow and KServe send instances)."""
    names = columns(schema)
    if names is not None and isinstance(rows, list) and rows and all(isinstance(r, list) for r in rows):
        return {"columns": names, "data": rows}
    return rows


def from_records(schema: dict, records: Any) -> Any:
    """A list of records as the JSON value the input schema decodes (an array model takes their values)."""
    if columns(schema) is not None or schema.get("type") not in ("ndarray", "series"):
        return records
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise CallError(400, "BadRequest", "expected a list of records (objects keyed by column)")
    if schema.get("type") == "series":
        return [next(iter(r.values()), None) for r in records]
    return [list(r.values()) for r in records]


def from_split(schema: dict, split: Any) -> Any:
    """pandas' orient="split" ({"columns", "data", "index"}) as the JSON value the input schema decodes."""
    if not isinstance(split, dict) or not isinstance(split.get("data"), list):
        raise CallError(400, "BadRequest", 'expected {"columns": [...], "data": [[...], ...]} (pandas orient="split")')
    kind = schema.get("type")
    if kind == "ndarray":
        return split["data"]
    if kind == "series":
        data = split["data"]
        return [r[0] if isinstance(r, list) and len(r) == 1 else r for r in data]
    if "columns" not in split:
        if columns(schema) is not None:
            return {"columns": columns(schema), "data": split["data"]}
        return split["data"]
    return {"columns": split["columns"], "data": split["data"]}
