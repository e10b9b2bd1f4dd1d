"""The Open Inference Protocol (KServe V2, spoken by Triton, MLServer, OpenVINO Model Server), REST.

The model is known by its registered name (``diabetes`` for ``diabetes:1``) and version ("1"); any other
name is a 404. Inputs are named tensors with row-major ``data``, flattened or nested, or raw bytes (Triton's
binary tensor extension, which tritonclient uses by default). An array model takes one tensor (any name);
a DataFrame model takes one tensor per column, named after the column, as KServe's pandas codec does.
Outputs are named after methods: by default the default method's; a request may ask for any method that
takes the same input (``outputs: [{"name": "predict_proba"}]``). Errors are ``{"error": "..."}``.
"""

from flask import Response, request

from .. import jsonio
from ..dispatch import CallError
from ..schema import column_kind
from . import columns, loads

PROTOCOL = "open-inference-v2"
HEADER_LENGTH = "Inference-Header-Content-Length"

_NUMPY = {
    "bool": "BOOL",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
}
_FROM_V2 = {v: k for k, v in _NUMPY.items()}


def datatype(dtype) -> str:
    """The V2 datatype of a numpy or pandas dtype name: pandas' nullable Int64/Float64/boolean map to
    their numpy widths; strings, categories, dates and objects travel as BYTES."""
    name = str(dtype).lower()
    if name == "boolean":
        return "BOOL"
    return _NUMPY.get(name, "BYTES")


def _batch_shape(shape) -> list:
    return [-1 if d is None else d for d in shape]


def input_tensors(schema) -> list:
    """The metadata's inputs for a method's input schema."""
    kind = (schema or {}).get("type")
    if kind == "ndarray":
        return [{"name": "input-0", "datatype": datatype(schema["dtype"]), "shape": _batch_shape(schema["shape"])}]
    if kind == "dataframe":
        return [{"name": c["name"], "datatype": datatype(c["dtype"]), "shape": [-1]} for c in schema["columns"]]
    if kind == "series":
        return [{"name": schema.get("name") or "input-0", "datatype": datatype(schema["dtype"]), "shape": [-1]}]
    return [{"name": "input-0", "datatype": "BYTES", "shape": [-1]}]


def output_tensor(method, schema) -> dict:
    kind = (schema or {}).get("type")
    if kind == "ndarray":
        return {"name": method, "datatype": datatype(schema["dtype"]), "shape": _batch_shape(schema["shape"])}
    if kind == "series":
        return {"name": method, "datatype": datatype(schema["dtype"]), "shape": [-1]}
    return {"name": method, "datatype": "BYTES", "shape": [-1]}


def error(exc: CallError):
    return Response(jsonio.dumps({"error": exc.message}), status=exc.status, mimetype="application/json")


def _bad(message):
    return CallError(400, "BadRequest", message)


def _count(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _tensor_values(tensor, binary, offset):
    """(the tensor's values as a nested list of its shape, the next offset into the binary part)."""
    name = tensor.get("name")
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise _bad(f"input {name!r}: expected a shape, a list of non-negative integers; got {shape!r}")
    dtype = tensor.get("datatype")
    size = (tensor.get("parameters") or {}).get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or offset + size > len(binary):
            raise _bad(f"input {name!r}: binary_data_size {size!r} runs past the end of the body")
        flat = _from_bytes(name, dtype, binary[offset : offset + size])
        offset += size
    else:
        flat = tensor.get("data")
        if not isinstance(flat, list):
            raise _bad(f"input {name!r}: expected data, a list of values in row-major order")
        if flat and isinstance(flat[0], list):
            return flat, offset  # nested already: the model's decoder checks it against its shape
    n = _count(shape)
    if len(flat) != n:
        raise _bad(f"input {name!r}: shape {shape} holds {n} values; data has {len(flat)}")
    if len(shape) > 1 and n:
        import numpy as np

        arr = np.asarray(flat) if flat and type(flat[0]) in (float, int) else None
        if arr is not None and arr.ndim == 1 and arr.dtype.kind in "fi":
            # numbers: the rows as numpy views (a 10th of the cost of nesting the list again); the
            # model's decoder still checks them as it checks JSON rows (kind, shape, range, finiteness)
            return list(arr.reshape(shape)), offset
    for width in reversed(shape[1:]):  # row-major: nest the flat values, innermost dimension first
        if width == 0:
            break
        flat = [flat[i : i + width] for i in range(0, len(flat), width)]
    return flat, offset


def _from_bytes(name, dtype, raw) -> list:
    if dtype == "BYTES":
        out, i = [], 0
        while i < len(raw):
            if i + 4 > len(raw):
                raise _bad(f"input {name!r}: BYTES data cut short")
            length = int.from_bytes(raw[i : i + 4], "little")
            out.append(bytes(raw[i + 4 : i + 4 + length]).decode("utf-8", "replace"))
            i += 4 + length
        return out
    if dtype not in _FROM_V2:
        raise _bad(f"input {name!r}: unknown datatype {dtype!r}; expected one of {sorted(_FROM_V2)} or BYTES")
    import numpy as np

    try:
        return np.frombuffer(raw, dtype=np.dtype(_FROM_V2[dtype]).newbyteorder("<")).tolist()
    except ValueError as exc:
        raise _bad(f"input {name!r}: {len(raw)} bytes are not a whole number of {dtype} values ({exc})") from None


def _flat_column(values):
    """A column's values from a tensor of shape [N] or [N, 1]."""
    if values and hasattr(values[0], "shape"):  # numpy rows (_tensor_values), all of one shape
        import numpy as np

        if values[0].shape != (1,):
            raise _bad("a column input must have shape [N] or [N, 1]")
        return np.concatenate(values).tolist()
    if values and isinstance(values[0], list):
        if not all(isinstance(v, list) and len(v) == 1 for v in values):
            raise _bad("a column input must have shape [N] or [N, 1]")
        return [v[0] for v in values]
    return values


def _model_input(schema, tensors):
    """The JSON value the method's input schema decodes, from the request's named tensors."""
    names = columns(schema)
    if names is None:
        if len(tensors) != 1:
            raise _bad(f"this model takes one input tensor; got {len(tensors)}: {[t[0] for t in tensors]}")
        values = tensors[0][1]
        if (schema or {}).get("type") == "series":
            return _flat_column(values)
        return values
    known = set(names)
    unknown = [n for n, _ in tensors if n not in known]
    if unknown:
        raise _bad(f"unknown inputs {unknown}; this model takes one input per column: {names}")
    out = {n: _flat_column(v) for n, v in tensors}
    # V2 has no null: a nullable integer column (pandas' Int64 with NA) may come as an FP tensor with NaN
    for col in schema["columns"]:
        values = out.get(col["name"])
        if values and column_kind(col) == "nullable_integer" and any(v != v for v in values):
            out[col["name"]] = [None if v != v else v for v in values]
    return out


def _output(method, result, binary: bool, chunks: list) -> dict:
    import numpy as np

    arr = result if isinstance(result, np.ndarray) else np.asarray(result, dtype=None)
    if arr.dtype.kind in "biuf" and arr.dtype.itemsize <= 8:
        dt = datatype(arr.dtype.name)
        flat = np.ascontiguousarray(arr).reshape(-1)
        if binary:
            raw = flat.astype(flat.dtype.newbyteorder("<"), copy=False).tobytes()
        else:
            data = flat if dt != "FP16" else flat.tolist()
    else:
        dt = "BYTES"
        items = [v if isinstance(v, str) else jsonio.dumps(v).decode() for v in arr.reshape(-1).tolist()]
        if binary:
            raw = b"".join(len(b).to_bytes(4, "little") + b for b in (s.encode() for s in items))
        else:
            data = items
    out = {"name": method, "datatype": dt, "shape": list(arr.shape)}
    if binary:
        out["parameters"] = {"binary_data_size": len(raw)}
        chunks.append(raw)
    else:
        out["data"] = data
    return out


def install(app, served) -> dict:
    dispatch = served.dispatch
    methods = dispatch.methods

    def check(name, version=None):
        if name != served.name:
            raise CallError(404, "NotFound", f"no model {name!r}; this server serves {served.name!r}")
        if version is not None and version != served.version:
            raise CallError(
                404, "NotFound", f"model {name!r} has no version {version!r}; this server serves {served.version!r}"
            )

    def outputs_of(method):
        """The methods a request may ask for as outputs: those taking the same input as ``method``."""
        return [m for m in methods if dispatch.inputs[m] == dispatch.inputs[method]]

    def metadata():
        method = served.method()
        return {
            "name": served.name,
            "versions": [served.version],
            "platform": "nbserve",
            "inputs": input_tensors(dispatch.inputs[method]),
            "outputs": [output_tensor(m, dispatch.outputs[m]) for m in outputs_of(method)],
        }

    def answer(fn):
        def view(**kw):
            try:
                return fn(**kw)
            except CallError as exc:
                return error(exc)

        view.__name__ = fn.__name__
        return view

    @app.get("/v2")
    @answer
    def v2_server():
        return _ok({"name": "nbserve", "version": "2", "extensions": ["binary_tensor_data"]})

    @app.get("/v2/health/live")
    def v2_live():
        return _ok({"live": True})

    @app.get("/v2/health/ready")
    def v2_ready():
        return _ok({"ready": True})

    @app.get("/v2/models/<name>")
    @app.get("/v2/models/<name>/versions/<version>")
    @answer
    def v2_model(name, version=None):
        check(name, version)
        return _ok(metadata())

    @app.get("/v2/models/<name>/ready")
    @app.get("/v2/models/<name>/versions/<version>/ready")
    @answer
    def v2_model_ready(name, version=None):
        check(name, version)
        return _ok({"name": served.name, "ready": True})

    @app.post("/v2/models/<name>/infer")
    @app.post("/v2/models/<name>/versions/<version>/infer")
    @answer
    def v2_infer(name, version=None):
        check(name, version)
        body = served.body()
        header_length = request.headers.get(HEADER_LENGTH)
        if header_length is not None:
            try:
                n = int(header_length)
            except ValueError:
                raise _bad(f"{HEADER_LENGTH} must be an integer, got {header_length!r}") from None
            head, binary = body[:n], memoryview(body)[n:]
        else:
            head, binary = body, b""
        method = served.method()
        try:
            payload = loads(head, dispatch.inputs[method])
        except (jsonio.JSONDecodeError, UnicodeDecodeError) as exc:
            raise _bad(f"the body is not valid JSON ({exc}); expected {{'inputs': [...]}}") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list) or not payload["inputs"]:
            raise _bad('expected a JSON object {"inputs": [{"name", "shape", "datatype", "data"}, ...]}')
        wanted = payload.get("outputs") or [{"name": method}]
        allowed = outputs_of(method)
        if not isinstance(wanted, list) or not all(isinstance(o, dict) and o.get("name") in allowed for o in wanted):
            raise _bad(f"outputs must name some of {allowed}; got {wanted!r}")
        tensors, offset = [], 0
        for tensor in payload["inputs"]:
            if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
                raise _bad('each input must be an object {"name", "shape", "datatype", "data"}')
            values, offset = _tensor_values(tensor, binary, offset)
            tensors.append((tensor["name"], values))
        value = _model_input(dispatch.inputs[method], tensors)
        all_binary = bool((payload.get("parameters") or {}).get("binary_data_output"))
        chunks, outputs = [], []
        for out in wanted:
            binary_out = all_binary or bool((out.get("parameters") or {}).get("binary_data"))
            outputs.append(_output(out["name"], dispatch.call(out["name"], value), binary_out, chunks))
        reply = {"model_name": served.name, "model_version": served.version, "outputs": outputs}
        if "id" in payload:
            reply["id"] = payload["id"]
        head = dispatch.dumps(method, reply)
        if not chunks:
            return Response(head, mimetype="application/json")
        resp = Response(head + b"".join(chunks), mimetype="application/octet-stream")
        resp.headers[HEADER_LENGTH] = str(len(head))
        return resp

    @app.route("/v2/<path:rest>", methods=["GET", "POST"])
    @answer
    def v2_unknown(rest):
        raise CallError(404, "NotFound", f"no route /v2/{rest} in the Open Inference Protocol; see /openapi.json")

    return openapi_paths(served, metadata if served.default_method else None)


def _ok(payload):
    return Response(jsonio.dumps(payload), mimetype="application/json")


def openapi_paths(served, metadata) -> dict:
    tag = ["Open Inference Protocol (V2)"]
    err = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
    err_json = {"content": {"application/json": {"schema": err}}}
    tensor = {
        "type": "object",
        "required": ["name", "shape", "datatype"],
        "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer"}},
            "datatype": {"type": "string"},
            "parameters": {"type": "object"},
            "data": {"type": "array"},
        },
    }
    described = metadata() if metadata else None
    inputs_text = (
        ", ".join(f"{t['name']} ({t['datatype']} {t['shape']})" for t in described["inputs"]) if described else ""
    )

    def get(summary):
        return {
            "get": {
                "tags": tag,
                "summary": summary,
                "responses": {"200": {"description": "OK"}, "404": err_json | {"description": "Unknown model"}},
            }
        }

    model = f"/v2/models/{served.name}"
    infer = {
        "post": {
            "tags": tag,
            "summary": f"Infer with {served.default_method or 'a method'}"
            + (f": inputs {inputs_text}" if inputs_text else ""),
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["inputs"],
                            "properties": {
                                "id": {"type": "string"},
                                "inputs": {"type": "array", "items": tensor},
                                "outputs": {"type": "array", "items": {"type": "object"}},
                                "parameters": {"type": "object"},
                            },
                        }
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "Named output tensors",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "model_name": {"type": "string"},
                                    "model_version": {"type": "string"},
                                    "id": {"type": "string"},
                                    "outputs": {"type": "array", "items": tensor},
                                },
                            }
                        }
                    },
                },
                "400": {"description": "The input does not fit the model", **err_json},
                "404": {"description": "Unknown model", **err_json},
                "500": {"description": "The model raised an exception", **err_json},
            },
        }
    }
    return {
        "/v2": get("Server metadata"),
        "/v2/health/live": get("Server liveness"),
        "/v2/health/ready": get("Server readiness"),
        model: get("Model metadata: inputs and outputs with datatype and shape (-1: the batch)"),
        f"{model}/versions/{served.version}": get("Model metadata of this version"),
        f"{model}/ready": get("Model readiness"),
        f"{model}/versions/{served.version}/ready": get("Model readiness of this version"),
        f"{model}/infer": infer,
        f"{model}/versions/{served.version}/infer": infer,
    }
