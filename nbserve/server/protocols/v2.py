"""The Open Inference Protocol (KServe V2, spoken by Triton, MLServer, OpenVINO Model Server), REST.

The model is known by its registered name (``diabetes`` for ``diabetes:1``) and version ("1"); any other
name is a 404. Inputs are named tensors with row-major ``data``, flattened or nested, or raw bytes (Triton's
binary tensor extension, which tritonclient uses by default). An array model takes one tensor (any name);
a DataFrame model takes one tensor per column, named after the column, as KServe's pandas codec does.
Outputs are named after methods: by default the default method's; a request may ask for any method that
takes the same input (``outputs: [{"name": "predict_proba"}]``). Errors are ``{"error": "..."}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Response, request

from .. import errors, jsonio
from ..dtypes import NUMPY_OF_V2, column_kind, v2_datatype
from ..errors import CallError
from ..schema import to_jsonable
from . import blueprint as protocol_blueprint
from . import columns, loads

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np
    from flask import Blueprint

    from ..dispatch import Dispatch
    from . import Served

PROTOCOL = "open-inference-v2"
HEADER_LENGTH = "Inference-Header-Content-Length"

_FROM_V2 = NUMPY_OF_V2


def datatype(dtype: object) -> str:
    """The V2 datatype of a numpy or pandas dtype (dtypes.py's table): numbers and booleans by their width,
    strings, categories, dates and objects as BYTES."""
    return v2_datatype(dtype)


def _batch_shape(shape: Sequence[int | None]) -> list[int]:
    return [-1 if d is None else d for d in shape]


def input_tensors(schema: dict) -> list[dict]:
    """The metadata's inputs for a method's input schema."""
    kind = (schema or {}).get("type")
    if kind == "ndarray":
        return [{"name": "input-0", "datatype": datatype(schema["dtype"]), "shape": _batch_shape(schema["shape"])}]
    if kind == "dataframe":
        return [{"name": c["name"], "datatype": datatype(c["dtype"]), "shape": [-1]} for c in schema["columns"]]
    if kind == "series":
        return [{"name": schema.get("name") or "input-0", "datatype": datatype(schema["dtype"]), "shape": [-1]}]
    return [{"name": "input-0", "datatype": "BYTES", "shape": [-1]}]


def output_tensor(method: str, schema: dict) -> dict:
    kind = (schema or {}).get("type")
    if kind == "ndarray":
        return {"name": method, "datatype": datatype(schema["dtype"]), "shape": _batch_shape(schema["shape"])}
    if kind == "series":
        return {"name": method, "datatype": datatype(schema["dtype"]), "shape": [-1]}
    return {"name": method, "datatype": "BYTES", "shape": [-1]}


def _bad(message: str) -> CallError:
    return CallError(400, "BadRequest", message)


def _count(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _parameters(holder: dict, where: str) -> dict:
    """A ``parameters`` object of the request, an input or an output ({} when absent)."""
    params = holder.get("parameters")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise _bad(f'{where}: parameters must be an object such as {{"binary_data_output": true}}; got {params!r}')
    return params


def _nested_shape(name: object, data: list, shape: list[int]) -> list:
    """The values of nested ``data`` in row-major order, after checking that it has exactly ``shape``."""
    flat: list = []

    def walk(value: Any, depth: int, at: list[int]) -> None:
        if depth == len(shape):
            if isinstance(value, list):
                raise _bad(f"input {name!r}: shape {shape} is {len(shape)}-d; data is nested deeper at {at}")
            flat.append(value)
            return
        if not isinstance(value, list) or len(value) != shape[depth]:
            got = f"{len(value)} values" if isinstance(value, list) else f"a {type(value).__name__}"
            raise _bad(f"input {name!r}: shape {shape} wants {shape[depth]} values at {at}; data has {got}")
        for i, item in enumerate(value):
            walk(item, depth + 1, at + [i])

    walk(data, 0, [])
    return flat


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_PYTHON_CHECKS = {
    "BOOL": (lambda v: isinstance(v, bool), "true or false"),
    "BYTES": (lambda v: isinstance(v, str), "strings"),
    "INT": (_is_int, "integers"),
    "FP": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "numbers"),
}


def _typed(name: object, datatype: object, flat: list) -> list | np.ndarray:
    """``flat`` read as the tensor's declared ``datatype``: a 400 naming the input and the first value
    that is not of it (null passes: a column's decoder judges missing values); numbers as a numpy array of
    that datatype when none is missing (an FP32 tensor is float32, as Triton reads it), else the list."""
    if not isinstance(datatype, str) or (datatype not in _FROM_V2 and datatype != "BYTES"):
        raise _bad(f"input {name!r}: unknown datatype {datatype!r}; expected one of {sorted(_FROM_V2)} or BYTES")
    family = datatype if datatype in ("BOOL", "BYTES") else datatype.rstrip("0123456789").removeprefix("U")
    ok, words = _PYTHON_CHECKS[family]
    import numpy as np

    if family in ("INT", "FP") and flat:
        arr = np.asarray(flat) if type(flat[0]) in (int, float) else None
        if arr is not None and arr.ndim == 1 and arr.dtype.kind in ("iu" if family == "INT" else "iuf"):
            dtype = np.dtype(_FROM_V2[datatype])
            if family == "INT" and arr.size:
                info = np.iinfo(dtype)
                if arr.min() < info.min or arr.max() > info.max:
                    raise _bad(f"input {name!r}: {datatype} holds integers from {info.min} to {info.max}")
            return arr.astype(dtype, copy=False)
    for i, v in enumerate(flat):
        if v is not None and not ok(v):
            raise _bad(f"input {name!r} is {datatype}, of {words}; value {i} is {v!r}")
    if family == "INT":
        info = np.iinfo(np.dtype(_FROM_V2[datatype]))
        if any(v is not None and not info.min <= v <= info.max for v in flat):
            raise _bad(f"input {name!r}: {datatype} holds integers from {info.min} to {info.max}")
    return flat


def _tensor_values(tensor: dict, binary: memoryview, offset: int) -> tuple[list, int]:
    """(the tensor's values in its shape: a list of rows, numpy rows for numbers; the next binary offset)."""
    name = tensor.get("name")
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise _bad(f"input {name!r}: expected a shape, a list of non-negative integers; got {shape!r}")
    dtype = tensor.get("datatype")
    size = _parameters(tensor, f"input {name!r}").get("binary_data_size")
    flat: Any  # a list, or a numpy array of the declared datatype
    if size is not None:
        if not _is_int(size) or size < 0 or offset + size > len(binary):
            raise _bad(f"input {name!r}: binary_data_size {size!r} runs past the end of the body")
        flat = _from_bytes(name, dtype, binary[offset : offset + size])
        offset += size
    else:
        flat = tensor.get("data")
        if not isinstance(flat, list):
            raise _bad(f"input {name!r}: expected data, a list of values in row-major order")
        if any(isinstance(v, list) for v in flat):
            flat = _nested_shape(name, flat, shape)  # nested: exactly the declared shape, then row-major
        flat = _typed(name, dtype, flat)
    n = _count(shape)
    if len(flat) != n:
        raise _bad(f"input {name!r}: shape {shape} holds {n} values; data has {len(flat)}")
    if hasattr(flat, "reshape"):  # numbers of the declared datatype: the rows as numpy views
        array: Any = flat
        return (list(array.reshape(shape)) if len(shape) > 1 else array.tolist()), offset
    for width in reversed(shape[1:]):  # row-major: nest the flat values, innermost dimension first
        if width == 0:
            break
        flat = [flat[i : i + width] for i in range(0, len(flat), width)]
    return flat, offset


def _from_bytes(name: object, dtype: object, raw: memoryview) -> list:
    if dtype == "BYTES":
        out, i = [], 0
        while i < len(raw):
            if i + 4 > len(raw):
                raise _bad(f"input {name!r}: BYTES data cut short")
            length = int.from_bytes(raw[i : i + 4], "little")
            out.append(bytes(raw[i + 4 : i + 4 + length]).decode("utf-8", "replace"))
            i += 4 + length
        return out
    if not isinstance(dtype, str) or dtype not in _FROM_V2:
        raise _bad(f"input {name!r}: unknown datatype {dtype!r}; expected one of {sorted(_FROM_V2)} or BYTES")
    import numpy as np

    try:
        return np.frombuffer(raw, dtype=np.dtype(_FROM_V2[dtype]).newbyteorder("<")).tolist()
    except ValueError as exc:
        raise _bad(f"input {name!r}: {len(raw)} bytes are not a whole number of {dtype} values ({exc})") from None


def _flat_column(values: list) -> list:
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


def _model_input(schema: dict, tensors: list[tuple[str, list]]) -> Any:
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
        given = out.get(col["name"])
        if given and column_kind(col) == "nullable_integer" and any(v != v for v in given):
            out[col["name"]] = [None if v != v else v for v in given]
    return out


def _tensor_result(dispatch: Dispatch, method: str, value: Any) -> Any:
    """The method's answer for a tensor: a numpy array as the model returned it (its infinities stay numbers:
    NaN and inf in binary tensors, null in JSON ones), anything else as nbserve's JSON makes it."""
    import numpy as np

    result = dispatch.result(method, value)
    return result if isinstance(result, np.ndarray) else to_jsonable(result)


def _output(method: str, result: Any, binary: bool, chunks: list[bytes]) -> dict:
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
    out: dict[str, Any] = {"name": method, "datatype": dt, "shape": list(arr.shape)}
    if binary:
        out["parameters"] = {"binary_data_size": len(raw)}
        chunks.append(raw)
    else:
        out["data"] = data
    return out


def blueprint(served: Served) -> Blueprint:
    bp = protocol_blueprint("open_inference_v2", errors.KSERVE)
    dispatch = served.dispatch

    def check(name: str, version: str | None = None) -> None:
        if name != served.name:
            raise CallError(404, "NotFound", f"no model {name!r}; this server serves {served.name!r}")
        if version is not None and version != served.version:
            raise CallError(
                404, "NotFound", f"model {name!r} has no version {version!r}; this server serves {served.version!r}"
            )

    @bp.get("/v2")
    def v2_server() -> Response:
        return _ok({"name": "nbserve", "version": "2", "extensions": ["binary_tensor_data"]})

    @bp.get("/v2/health/live")
    def v2_live() -> Response:
        return _ok({"live": True})

    @bp.get("/v2/health/ready")
    def v2_ready() -> Response:
        return _ok({"ready": True})

    @bp.get("/v2/models/<name>")
    @bp.get("/v2/models/<name>/versions/<version>")
    def v2_model(name: str, version: str | None = None) -> Response:
        check(name, version)
        return _ok(metadata(served))

    @bp.get("/v2/models/<name>/ready")
    @bp.get("/v2/models/<name>/versions/<version>/ready")
    def v2_model_ready(name: str, version: str | None = None) -> Response:
        check(name, version)
        return _ok({"name": served.name, "ready": True})

    @bp.post("/v2/models/<name>/infer")
    @bp.post("/v2/models/<name>/versions/<version>/infer")
    def v2_infer(name: str, version: str | None = None) -> Response:
        check(name, version)
        body = served.body()
        header_length = request.headers.get(HEADER_LENGTH)
        if header_length is not None:
            try:
                n = int(header_length)
            except ValueError:
                raise _bad(f"{HEADER_LENGTH} must be an integer, got {header_length!r}") from None
            if not 0 <= n <= len(body):
                raise _bad(f"{HEADER_LENGTH} {n} is not within the body of {len(body)} bytes")
            head, binary = body[:n], memoryview(body)[n:]
        else:
            head, binary = body, memoryview(b"")
        method = served.method()
        try:
            payload = loads(head, dispatch.inputs[method])
        except (jsonio.JSONDecodeError, UnicodeDecodeError) as exc:
            raise errors.invalid_json(exc, '{"inputs": [...]}') from None
        if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list) or not payload["inputs"]:
            raise _bad('expected a JSON object {"inputs": [{"name", "shape", "datatype", "data"}, ...]}')
        wanted = payload.get("outputs") or [{"name": method}]
        allowed = outputs_of(dispatch, method)
        if not isinstance(wanted, list) or not all(isinstance(o, dict) and o.get("name") in allowed for o in wanted):
            raise _bad(f"outputs must name some of {allowed}; got {wanted!r}")
        tensors, offset = [], 0
        for tensor in payload["inputs"]:
            if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
                raise _bad('each input must be an object {"name", "shape", "datatype", "data"}')
            values, offset = _tensor_values(tensor, binary, offset)
            tensors.append((tensor["name"], values))
        value = _model_input(dispatch.inputs[method], tensors)
        all_binary = bool(_parameters(payload, "the request").get("binary_data_output"))
        chunks: list[bytes] = []
        outputs: list[dict] = []
        for out in wanted:
            binary_out = all_binary or bool(_parameters(out, f"output {out['name']!r}").get("binary_data"))
            outputs.append(_output(out["name"], _tensor_result(dispatch, out["name"], value), binary_out, chunks))
        reply = {"model_name": served.name, "model_version": served.version, "outputs": outputs}
        if "id" in payload:
            reply["id"] = payload["id"]
        head = dispatch.dumps(method, reply)
        if not chunks:
            return Response(head, mimetype="application/json")
        resp = Response(head + b"".join(chunks), mimetype="application/octet-stream")
        resp.headers[HEADER_LENGTH] = str(len(head))
        return resp

    return bp  # an unknown /v2 route is the app's 404, in this protocol's form (errors.form_of)


def outputs_of(dispatch: Dispatch, method: str) -> list[str]:
    """The methods a request may ask for as outputs: those taking the same input as ``method``."""
    return [m for m in dispatch.methods if dispatch.inputs[m] == dispatch.inputs[method]]


def metadata(served: Served) -> dict:
    method = served.method()
    dispatch = served.dispatch
    return {
        "name": served.name,
        "versions": [served.version],
        "platform": "nbserve",
        "inputs": input_tensors(dispatch.inputs[method]),
        "outputs": [output_tensor(m, dispatch.outputs[m]) for m in outputs_of(dispatch, method)],
    }


def _ok(payload: Any) -> Response:
    return Response(jsonio.dumps(payload), mimetype="application/json")


def openapi_paths(served: Served) -> dict:
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
    described = metadata(served) if served.default_method else None
    inputs_text = (
        ", ".join(f"{t['name']} ({t['datatype']} {t['shape']})" for t in described["inputs"]) if described else ""
    )

    def get(summary: str) -> dict:
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
