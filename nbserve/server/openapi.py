"""The documents a served model describes itself with: /interface.json and an OpenAPI 3 document,
derived from the manifest once at load. No Flask here: the client side builds the interface too.
Table columns are described from the schema vocabulary (schema.py): kinds, categories as enums,
dates as ``format: date-time``, nulls as ``nullable``."""

from .protocols import spoken
from .schema import column_kind, column_nullable

_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string"}


def interface_document(manifest: dict, model_id: str, default_method: str | None = None) -> dict:
    """What GET /interface.json answers: the model id, each method with its schemas, the requirements,
    the protocols spoken (default_method: the one MLflow's and KServe's routes call)."""
    signature = manifest.get("signature", {})
    return {
        "model": model_id,
        "methods": [
            {"name": name, **signature.get(name, {"input": {"type": "any"}, "output": {"type": "any"}})}
            for name in manifest["methods"]
        ],
        "requirements": manifest.get("requirements", []),
        "python": manifest.get("python"),
        "protocols": spoken(model_id, manifest["methods"], default_method),
    }


def _scalar(dtype: str, out: bool = False) -> dict:
    if dtype.startswith(("float", "Float")):
        # JSON has no NaN or infinity: a result that overflowed or is undefined is written as null
        return {"type": "number", "nullable": True} if out else {"type": "number"}
    if dtype.startswith(("int", "uint", "Int", "UInt")):
        return {"type": "integer"}
    if dtype in ("bool", "boolean"):
        return {"type": "boolean"}
    if dtype in ("object", "str", "string") or dtype.startswith("<U"):
        return {"type": "string"}
    return {}


def column_json_schema(col: dict, out: bool = False) -> dict:
    """The JSON Schema (OpenAPI 3.0) of one cell of a column or Series."""
    kind = column_kind(col)
    nullable = column_nullable(col) or (out and kind == "float")
    item: dict
    if kind == "float":
        item = {"type": "number"}
    elif kind in ("integer", "nullable_integer"):
        item = {"type": "integer"}
    elif kind == "boolean":
        item = {"type": "boolean"}
    elif kind == "string":
        item = {"type": "string"}
    elif kind == "category":
        categories = list(col.get("categories") or [])
        types = {_JSON_TYPES.get(type(c)) for c in categories}
        item = {"enum": categories + ([None] if nullable else [])}
        if len(types) == 1 and None not in types:
            item["type"] = types.pop()
    elif kind == "datetime":
        item = {"type": "string", "format": "date-time"}
        if col.get("tz"):
            item["description"] = f"ISO 8601; read in the time zone {col['tz']} when it has no offset"
    elif kind == "timedelta":
        item = {"type": "string", "format": "duration", "description": "ISO 8601 duration, such as P0DT1H30M0S"}
    else:
        item = {}
    if nullable and item:
        item["nullable"] = True
    return item


def json_schema(schema: dict | None, out: bool = False) -> dict:
    """The JSON Schema of a value of ``schema``; ``out`` for a method's result (floats may be null)."""
    schema = schema or {}
    kind = schema.get("type", "any")
    if kind == "ndarray":
        item = _scalar(schema["dtype"], out)
        for i, dim in enumerate(reversed(schema["shape"])):
            item = {"type": "array", "items": item}
            if dim is not None:
                item.update(minItems=dim, maxItems=dim)
            elif i == len(schema["shape"]) - 1:
                item["minItems"] = 1
        return item
    if kind == "dataframe":
        props = {c["name"]: column_json_schema(c, out) for c in schema["columns"]}
        return {
            "type": "array",
            "minItems": 1,
            "items": {"type": "object", "properties": props, "required": list(props)},
        }
    if kind == "series":
        return {"type": "array", "minItems": 1, "items": column_json_schema(schema, out)}
    if kind == "list":
        return {"type": "array", "items": json_schema(schema.get("items"), out)}
    if kind == "dict":
        props = {k: json_schema(v, out) for k, v in schema["fields"].items()}
        return {"type": "object", "properties": props, "required": list(props)}
    if kind == "number" and out:
        return {"type": "number", "nullable": True}
    if kind in ("number", "integer", "string", "boolean", "null"):
        return {"type": kind}
    return {}


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
    def error_response(text):
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
        paths["/" + m["name"]] = {
            "post": {
                "summary": f"Call {m['name']} on the model",
                "operationId": m["name"],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["data"],
                                "properties": {"data": json_schema(m.get("input"))},
                            }
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "The method's result",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["data"],
                                    "properties": {"data": json_schema(m.get("output"), out=True)},
                                }
                            }
                        },
                    },
                    "400": error_response("The input does not fit the model's input schema"),
                    "404": error_response("Unknown method"),
                    "413": error_response("The body is over the size limit"),
                    "500": error_response("The model raised an exception"),
                },
            }
        }
    return {
        "openapi": "3.0.3",
        "info": {"title": f"nbserve model {interface['model']}", "version": str(interface["model"])},
        "paths": paths,
        "components": {"schemas": {"Error": _ERROR}},
    }
