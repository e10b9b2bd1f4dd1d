"""The documents a served model describes itself with: /interface.json and an OpenAPI 3 document,
derived from the manifest once at load. No Flask here: the client side builds the interface too."""

from .protocols import spoken


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


def json_schema(schema: dict, out: bool = False) -> dict:
    """The JSON Schema of a value of ``schema``; ``out`` for a method's result (floats may be null)."""
    kind = (schema or {}).get("type", "any")
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
        props = {c["name"]: _scalar(c["dtype"], out) for c in schema["columns"]}
        return {
            "type": "array",
            "minItems": 1,
            "items": {"type": "object", "properties": props, "required": list(props)},
        }
    if kind == "series":
        return {"type": "array", "minItems": 1, "items": _scalar(schema["dtype"], out)}
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
