"""The documents a served model describes itself with: /interface.json and an OpenAPI 3 document,
derived from the manifest once at load. No Flask here: the client side builds the interface too.
Table columns are described from the schema vocabulary (schema.py): kinds, categories as enums,
dates as ``format: date-time``, nulls as ``nullable``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .dtypes import NONFINITE_SCHEMA, cell_schema
from .jobs import ASYNC_VALUES
from .protocols import spoken

if TYPE_CHECKING:
    from collections.abc import Callable


def interface_document(
    manifest: dict,
    model_id: str,
    default_method: str | None = None,
    extra_columns: str = "refuse",
    serving: dict | None = None,
) -> dict:
    """What GET /interface.json answers: the model id, each method with its schemas, the requirements,
    the protocols spoken (default_method: the one MLflow's and KServe's routes call), what a table's other
    columns get (extra_columns: "refuse" or "ignore"), and (served) how it is served: the server's settings
    (Settings.public(): timeouts, limits, batching, workers, native threads per worker)."""
    signature = manifest.get("signature", {})
    examples = manifest.get("examples", {})  # a row of the registration sample and the kernel's answer
    return {
        "model": model_id,
        "methods": [
            {
                "name": name,
                **signature.get(name, {"input": {"type": "any"}, "output": {"type": "any"}}),
                **({"example": examples[name]} if name in examples else {}),
            }
            for name in manifest["methods"]
        ],
        "requirements": manifest.get("requirements", []),
        "python": manifest.get("python"),
        "protocols": spoken(model_id, manifest["methods"], default_method, manifest.get("openai")),
        "extra_columns": extra_columns,
        **({"serving": serving} if serving is not None else {}),
    }


def column_json_schema(col: dict, out: bool = False) -> dict:
    """The JSON Schema (OpenAPI 3.0) of one cell of a column or Series (dtypes.py's table)."""
    return cell_schema(col, out)


def _element(schema: dict, out: bool) -> dict:
    """The JSON Schema of one element of an array of ``schema["dtype"]`` (NaN allowed where the sample had it)."""
    return cell_schema({"dtype": schema["dtype"], "nullable": bool(schema.get("allow_nan"))}, out)


def _index(schema: dict) -> dict:
    """The ``index`` a table may be sent with (and a pandas answer carries): one label per row."""
    spec = schema.get("index")
    if spec is None:
        item: dict = {}
    elif "levels" in spec:
        item = {"type": "array", "items": {}, "minItems": len(spec["levels"]), "maxItems": len(spec["levels"])}
    else:
        item = cell_schema(spec, out=True)
    return {"type": "array", "items": item, "description": "the row labels (pandas' index), one per row"}


def json_schema(schema: dict | None, out: bool = False, extra_columns: str = "refuse") -> dict:
    """The JSON Schema of a value of ``schema``; ``out`` for a method's result (floats may be null or
    non-finite, spelled as strings: see dtypes.py)."""
    schema = schema or {}
    kind = schema.get("type", "any")
    if kind == "ndarray":
        item = _element(schema, out)
        for i, dim in enumerate(reversed(schema["shape"])):
            item = {"type": "array", "items": item}
            if dim is not None:
                item.update(minItems=dim, maxItems=dim)
            elif i == len(schema["shape"]) - 1:
                item["minItems"] = 1
        return item
    if kind == "dataframe":
        props = {c["name"]: column_json_schema(c, out) for c in schema["columns"]}
        row: dict = {"type": "object", "properties": props, "required": list(props)}
        if not out and extra_columns != "ignore":
            row["additionalProperties"] = False  # other columns are refused (serve with extra_columns="ignore")
        return {"type": "array", "minItems": 1, "items": row}
    if kind == "series":
        return {"type": "array", "minItems": 1, "items": column_json_schema(schema, out)}
    if kind == "list":
        out_schema: dict = {"type": "array", "items": json_schema(schema.get("items"), out, extra_columns)}
        if schema.get("min_items") and not out:
            out_schema["minItems"] = int(schema["min_items"])
        return out_schema
    if kind == "dict":
        props = {k: json_schema(v, out, extra_columns) for k, v in schema["fields"].items()}
        return {"type": "object", "properties": props, "required": list(props)}
    if kind == "number" and out:
        return {"oneOf": [{"type": "number", "nullable": True}, NONFINITE_SCHEMA]}
    if kind in ("number", "integer", "string", "boolean", "null"):
        return {"type": kind}
    return {}


def _answer_schema(output: dict | None) -> dict:
    props = {"data": json_schema(output, out=True)}
    if (output or {}).get("type") in ("dataframe", "series"):
        props["index"] = _index(output or {})
    return {"type": "object", "required": ["data"], "properties": props}


_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}


def openapi_document(interface: dict) -> dict:
    extra = interface.get("extra_columns", "refuse")

    def error_response(text: str) -> dict:
        return {
            "description": text,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }

    paths = {
        "/health": {
            "get": {
                "summary": "Liveness",
                "responses": {
                    "200": {
                        "description": "The server is up",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {"status": {"type": "string"}, "model": {"type": "string"}},
                                }
                            }
                        },
                    }
                },
            }
        },
        "/interface.json": {
            "get": {
                "summary": "Methods with their input and output schemas",
                "responses": {
                    "200": {
                        "description": "The interface",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
    }
    for m in interface["methods"]:
        example = m.get("example") or {}
        request_example = {"example": {"data": example["input"]}} if "input" in example else {}
        answer_example = {"example": {"data": example["output"]}} if example.get("output") is not None else {}
        streams = bool(m.get("stream"))
        if streams:
            answer = _stream_answer(m.get("output"))
            summary = f"Call {m['name']} on the model: its items stream as they are made"
        else:
            answer = {
                "description": "The method's result",
                "content": {"application/json": {"schema": _answer_schema(m.get("output")), **answer_example}},
            }
            summary = f"Call {m['name']} on the model"
        operation: dict = {
            "post": {
                "summary": summary,
                "description": "With `?async=1` (or the header `Prefer: respond-async`) the call is queued as a job: "
                "a 202 answers at once with the job's URL (GET /jobs/{id}).",
                "operationId": m["name"],
                **({"x-nbserve-stream": True} if streams else {}),
                "parameters": [_ASYNC],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["data"],
                                "properties": {"data": json_schema(m.get("input"), extra_columns=extra)},
                            },
                            **request_example,
                        }
                    },
                },
                "responses": {
                    "200": answer,
                    "202": {
                        "description": "Queued as a job (?async=1)",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}},
                    },
                    "400": error_response("The input does not fit the model's input schema"),
                    "404": error_response("Unknown method"),
                    "413": error_response("The body is over the size limit"),
                    "500": error_response("The model raised an exception"),
                    "503": error_response("The job queue is full"),
                },
            }
        }
        paths["/" + m["name"]] = operation
        if streams:  # a browser's EventSource can only GET
            operation["get"] = {
                "summary": f"Stream {m['name']} (for EventSource): the input as ?data=<JSON>",
                "operationId": f"{m['name']}_stream",
                "x-nbserve-stream": True,
                "parameters": [
                    {
                        "name": "data",
                        "in": "query",
                        "required": True,
                        "description": "The JSON of the input",
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {"200": answer, "400": error_response("The input does not fit the model's input schema")},
            }
    paths.update(_jobs_paths(error_response))
    return {
        "openapi": "3.0.3",
        "info": {"title": f"nbserve model {interface['model']}", "version": str(interface["model"])},
        "paths": paths,
        "components": {"schemas": {"Error": _ERROR, "Job": _JOB}},
    }


_ASYNC: dict = {
    "name": "async",
    "in": "query",
    "required": False,
    "description": "1 or true: queue the call as a job and answer 202 at once (0 or false: answer in the request)",
    "schema": {"type": "string", "enum": list(ASYNC_VALUES)},
}

_JOB = {
    "type": "object",
    "required": ["id", "status", "method", "url"],
    "properties": {
        "id": {"type": "string"},
        "method": {"type": "string"},
        "status": {"type": "string", "enum": ["queued", "running", "succeeded", "failed", "cancelled"]},
        "url": {"type": "string", "description": "GET it for the status, DELETE it to cancel"},
        "model": {"type": "string"},
        "created": {"type": "number"},
        "started": {"type": "number"},
        "finished": {"type": "number"},
        "position": {"type": "integer", "nullable": True, "description": "jobs ahead of it, while queued"},
        "progress": {"type": "object", "description": "what the method reported: fraction, message, ..."},
        "result": {"type": "object", "description": "the method's answer, once it succeeded"},
        "error": {"type": "object", "properties": {"type": {"type": "string"}, "message": {"type": "string"}}},
    },
}


def _stream_answer(item: dict | None) -> dict:
    props = {"data": json_schema(item, out=True)}
    if (item or {}).get("type") in ("dataframe", "series"):
        props["index"] = _index(item or {})
    line = {"type": "object", "properties": props}
    return {
        "description": 'The items, as they are made: newline-delimited JSON, one `{"data": item}` per line (a '
        'last `{"error": ...}` line if the method fails midway); with `Accept: text/event-stream`, server-sent '
        'events (`data: {"data": item}`, then `event: end`, or `event: error`)',
        "content": {
            "application/x-ndjson": {"schema": line},
            "text/event-stream": {"schema": {"type": "string", "description": "data: <one line of the NDJSON form>"}},
        },
    }


def _jobs_paths(error_response: Callable[[str], dict]) -> dict:
    job = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}}
    job_id = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "/jobs": {
            "get": {
                "summary": "The jobs kept (queued, running, finished within the retention)",
                "responses": {
                    "200": {
                        "description": "The jobs",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}}
                                    },
                                }
                            }
                        },
                    }
                },
            }
        },
        "/jobs/{id}": {
            "get": {
                "summary": "A job's status, progress, and its result or error",
                "parameters": [job_id],
                "responses": {"200": {"description": "The job", **job}, "404": error_response("No such job")},
            },
            "delete": {
                "summary": "Cancel a queued or running job; forget a finished one",
                "description": "A cancelled job stays readable (status cancelled) for the retention, so that its "
                "caller sees the cancel take effect; a finished one is gone (404 after).",
                "parameters": [job_id],
                "responses": {
                    "200": {"description": "Cancelled (or forgotten)", **job},
                    "202": {"description": "Running: it stops within a second", **job},
                    "404": error_response("No such job"),
                },
            },
        },
    }


_OPEN_GETS = {"/health", "/ping", "/v2/health/live", "/v2/health/ready"}  # auth.OPEN_PATHS: open for GET only


def complete(document: dict, auth: bool) -> dict:
    """Finish the document once every route is in it, so that it says what the server does: /metrics and
    /drift; a 400 for every POST (an empty or malformed body) and a 413 (the body limit); with a token, the
    bearer scheme on every operation but the health probes' GETs, each with its 401."""
    paths = document["paths"]
    error = {"$ref": "#/components/schemas/Error"}
    text = {"text/plain": {"schema": {"type": "string"}}}
    off = {"description": "Metrics are off for this instance", "content": {"application/json": {"schema": error}}}
    paths["/metrics"] = {
        "get": {
            "summary": "Prometheus metrics (text exposition format)",
            "responses": {"200": {"description": "The metrics", "content": text}, "404": off},
        }
    }
    paths["/drift"] = {
        "get": {
            "summary": "Drift of the live inputs and outputs against the registration sample",
            "responses": {
                "200": {
                    "description": "The drift report",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "404": off,
            },
        }
    }
    for item in paths.values():
        for verb, operation in item.items():
            responses = operation.setdefault("responses", {})
            if verb == "post":
                responses.setdefault("400", {"description": "The body is empty, not JSON, or does not fit the model"})
                responses.setdefault("413", {"description": "The body is over the size limit (max_body)"})
    if auth:
        document.setdefault("components", {})["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "Instance.auth_token"}
        }
        document["security"] = [{"bearer": []}]
        unauthorized = {
            "description": "No bearer token, or the wrong one",
            "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
            "content": {"application/json": {"schema": error}},
        }
        for path, item in paths.items():
            for verb, operation in item.items():
                if verb == "get" and path in _OPEN_GETS:
                    operation["security"] = []  # the probes stay open
                else:
                    operation["responses"]["401"] = unauthorized
    return document
