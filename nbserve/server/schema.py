"""Schemas of model inputs and outputs: inferred from sample values, enforced on requests.

A schema is plain JSON, for example::

    {"type": "ndarray", "dtype": "float64", "shape": [null, 10]}
    {"type": "dataframe", "columns": [{"name": "age", "dtype": "float64"}, ...]}
    {"type": "list", "items": {...}}   {"type": "dict", "fields": {"a": {...}}}
    {"type": "number"} {"type": "integer"} {"type": "string"} {"type": "boolean"} {"type": "any"}

``compile_decoder`` turns a schema into a function, once at load time, so that a request pays only
for one JSON parse and one conversion to numpy. Every mismatch raises ``InputError`` whose message
says what was expected; the app turns it into a 400.
"""

import sys

# dtype kinds a JSON value may arrive as, for each target kind: no silent string-to-number casts, and
# true/false are not numbers (a batch of only booleans is refused; numpy reads true inside numbers as 1)
_ACCEPTED_KINDS = {"f": "fiu", "i": "iu", "u": "iu", "b": "b", "U": "U", "O": "fiubUO", "c": "fiuc"}
_KIND_WORDS = {
    "f": "numbers",
    "i": "integers",
    "u": "non-negative integers",
    "b": "booleans",
    "U": "strings",
    "O": "values",
    "c": "numbers",
}
_FOUND_WORDS = {
    "f": "floats",
    "i": "integers",
    "u": "integers",
    "b": "booleans",
    "U": "strings",
    "O": "mixed values or nested objects",
    "S": "bytes",
    "c": "complex numbers",
}


class InputError(ValueError):
    """The request's data does not fit the model's input schema."""


def describe(value):
    """The schema of a sample value, with the batch dimension of arrays and frames left open."""
    np = sys.modules.get("numpy")
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(value, pd.DataFrame):
        return {
            "type": "dataframe",
            "columns": [{"name": str(c), "dtype": str(t), **_nan_flag(value[c])} for c, t in value.dtypes.items()],
        }
    if pd is not None and isinstance(value, pd.Series):
        return {
            "type": "series",
            "dtype": str(value.dtype),
            "name": None if value.name is None else str(value.name),
            **_nan_flag(value),
        }
    if np is not None and isinstance(value, np.ndarray):
        return {"type": "ndarray", "dtype": value.dtype.name, "shape": [None, *value.shape[1:]], **_nan_flag(value)}
    if np is not None and isinstance(value, np.generic):
        return {"type": {"b": "boolean", "i": "integer", "u": "integer", "f": "number"}.get(value.dtype.kind, "any")}
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "integer"}
    if isinstance(value, float):
        return {"type": "number"}
    if isinstance(value, str):
        return {"type": "string"}
    if value is None:
        return {"type": "null"}
    if isinstance(value, (list, tuple)):
        return {"type": "list", "items": describe(value[0]) if len(value) else {"type": "any"}}
    if isinstance(value, dict):
        return {"type": "dict", "fields": {str(k): describe(v) for k, v in value.items()}}
    return {"type": "any", "python": type(value).__qualname__}


def _nan_flag(values) -> dict:
    """{"allow_nan": True} when a float sample holds NaN or infinities (the model evidently takes them,
    so requests may send null for NaN); else {}, and the decoder refuses non-finite values, which
    would otherwise reach the model and fail there (a 500) instead of being the client's 400."""
    import numpy as np

    arr = np.asarray(values)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        return {"allow_nan": True}
    return {}


def _first_nonfinite(arr):
    """Index (row, ...) of the first NaN or infinity in a float array, or None. One vectorised pass."""
    import numpy as np

    finite = np.isfinite(arr)
    if finite.all():
        return None
    return tuple(int(i) for i in np.argwhere(~finite)[0])


def batch_slice(value, n):
    """The first n rows of a sample, in the sample's own type (for replaying it)."""
    if hasattr(value, "iloc"):
        return value.iloc[:n]
    if isinstance(value, dict):
        return {k: batch_slice(v, n) for k, v in value.items()}
    try:
        return value[:n]
    except TypeError:
        return value


def compile_decoder(schema):
    """A function from the JSON value of ``data`` to what the model's method takes."""
    kind = (schema or {}).get("type", "any")
    if kind == "ndarray":
        return _ndarray_decoder(schema)
    if kind == "dataframe":
        return _dataframe_decoder(schema)
    if kind == "series":
        return _series_decoder(schema)
    if kind == "dict":
        fields = {k: compile_decoder(s) for k, s in schema["fields"].items()}

        def decode_dict(data):
            if not isinstance(data, dict):
                raise InputError(f"expected an object with keys {sorted(fields)}, got {_json_type(data)}")
            missing = [k for k in fields if k not in data]
            if missing:
                raise InputError(f"missing keys {missing}; expected keys {list(fields)}")
            out = {}
            for k, dec in fields.items():
                try:
                    out[k] = dec(data[k])
                except InputError as exc:
                    raise InputError(f"in {k!r}: {exc}") from None
            return out

        return decode_dict
    if kind == "list":
        items = compile_decoder(schema.get("items"))

        def decode_list(data):
            if not isinstance(data, list):
                raise InputError(f"expected a list, got {_json_type(data)}")
            out = []
            for i, v in enumerate(data):
                try:
                    out.append(items(v))
                except InputError as exc:
                    raise InputError(f"at index {i}: {exc}") from None
            return out

        return decode_list
    scalar_types = {
        "number": ((int, float), "a number"),
        "integer": ((int,), "an integer"),
        "string": ((str,), "a string"),
        "boolean": ((bool,), "true or false"),
    }
    if kind in scalar_types:
        types, word = scalar_types[kind]

        def decode_scalar(data):
            if not isinstance(data, types) or (kind in ("number", "integer") and isinstance(data, bool)):
                raise InputError(f"expected {word}, got {_json_type(data)}")
            return data

        return decode_scalar
    return lambda data: data


def _json_type(v):
    if v is None:
        return "null"
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }.get(type(v), type(v).__name__)


def _shape_words(shape):
    return "[" + ", ".join("N" if d is None else str(d) for d in shape) + "]"


def _ndarray_decoder(schema):
    import numpy as np

    dtype = np.dtype(schema["dtype"])
    shape = schema["shape"]
    accepted = _ACCEPTED_KINDS.get(dtype.kind, dtype.kind)
    check_finite = dtype.kind in "fc" and not schema.get("allow_nan")
    expected = f"a {len(shape)}-d array of shape {_shape_words(shape)} of {_KIND_WORDS.get(dtype.kind, dtype.name)}"
    if len(shape) == 2 and shape[1] is not None:
        expected += f" (a list of rows, each of {shape[1]} {_KIND_WORDS.get(dtype.kind, 'values')})"

    def decode_ndarray(data):
        if not isinstance(data, list):
            raise InputError(f"expected {expected}, got {_json_type(data)}")
        if not data:
            raise InputError(f"expected at least one row: {expected}")
        try:
            arr = np.asarray(data) if dtype.kind != "O" else np.asarray(data, dtype=object)
        except (ValueError, TypeError) as exc:
            raise InputError(f"expected {expected}; the rows have different lengths or nesting ({exc})") from None
        if arr.dtype.kind not in accepted:
            raise InputError(f"expected {expected}, got {_FOUND_WORDS.get(arr.dtype.kind, arr.dtype.name)}")
        if arr.ndim != len(shape) or any(want is not None and got != want for got, want in zip(arr.shape, shape)):
            raise InputError(f"expected {expected}, got shape {list(arr.shape)}")
        if arr.dtype != dtype:
            if dtype.kind in "iu" and arr.dtype.kind in "iu" and not np.can_cast(arr, dtype, casting="safe"):
                info = np.iinfo(dtype)
                if arr.min() < info.min or arr.max() > info.max:
                    raise InputError(f"expected {expected}; values out of range for {dtype.name}")
            try:
                arr = arr.astype(dtype)
            except (ValueError, TypeError, OverflowError) as exc:
                raise InputError(f"expected {expected}: {exc}") from None
        if check_finite:
            where = _first_nonfinite(arr)
            if where is not None:
                raise InputError(
                    f"expected {expected}, finite and within the range of {dtype.name}; the value "
                    f"at index {list(where)} is not"
                )
        return arr

    return decode_ndarray


def _frame_from_json(data, names):
    import pandas as pd

    if isinstance(data, dict) and "columns" in data and "data" in data:
        if not isinstance(data["columns"], list) or not isinstance(data["data"], list):
            raise InputError('expected {"columns": [...], "data": [[...], ...]}')
        columns = data["columns"]
        if not all(isinstance(c, str) for c in columns) or len(set(columns)) != len(columns):
            raise InputError(f'expected "columns" to be distinct column names (strings) such as {names}')
        width = len(columns)
        if any(not isinstance(row, list) or len(row) != width for row in data["data"]):
            raise InputError(
                f'expected {{"columns": [...], "data": [[...], ...]}} with each row a list of '
                f"{width} values, one per column"
            )
        return pd.DataFrame(data["data"], columns=data["columns"])
    if isinstance(data, dict):
        lengths = {len(v) if isinstance(v, list) else -1 for v in data.values()}
        if -1 in lengths or len(lengths) > 1:
            raise InputError("expected an object of columns, each a list of the same length")
        return pd.DataFrame(data)
    if isinstance(data, list):
        if not all(isinstance(r, dict) for r in data):
            raise InputError(f"expected a list of records (objects keyed by column: {names})")
        return pd.DataFrame.from_records(data)
    raise InputError(
        f"expected a table: a list of records, an object of columns, or "
        f'{{"columns": [...], "data": [...]}}; got {_json_type(data)}'
    )


def _dataframe_decoder(schema):
    names = [c["name"] for c in schema["columns"]]
    dtypes = {c["name"]: c["dtype"] for c in schema["columns"]}
    finite_columns = [c["name"] for c in schema["columns"] if _is_float(c["dtype"]) and not c.get("allow_nan")]
    numeric_columns = [c["name"] for c in schema["columns"] if _kind(c["dtype"]) in "fiuc"]

    def decode_dataframe(data):
        try:
            frame = _frame_from_json(data, names)
        except InputError:
            raise
        except Exception as exc:  # whatever pandas makes of odd JSON, it is the request's fault
            raise InputError(f"could not read a table from the data: {type(exc).__name__}: {exc}") from None
        if len(frame) == 0:
            raise InputError(f"expected at least one row with columns {names}")
        frame.columns = [str(c) for c in frame.columns]
        if frame.columns.duplicated().any():
            raise InputError(f"column names repeat; expected distinct columns {names}")
        missing = [n for n in names if n not in frame.columns]
        if missing:
            raise InputError(f"missing columns {missing}; expected columns {names}")
        frame = frame[names]
        for name in numeric_columns:
            if frame[name].dtype.kind == "b":
                raise InputError(f"column {name!r} holds true/false; expected {dtypes[name]} numbers")
        try:
            frame = frame.astype(dtypes)
        except (ValueError, TypeError) as exc:
            raise InputError(f"columns do not fit the dtypes {dtypes}: {exc}") from None
        if finite_columns:
            where = _first_nonfinite(frame[finite_columns].to_numpy(dtype="float64"))
            if where is not None:
                raise InputError(
                    f"column {finite_columns[where[1]]!r} at row {where[0]} is null, missing or not "
                    f"finite; expected a number (the model's sample had no missing values there)"
                )
        return frame

    return decode_dataframe


def _kind(dtype_name) -> str:
    """numpy's kind letter of a dtype name; "?" for pandas extension dtypes (Float64, category, string),
    which are left to pandas."""
    import numpy as np

    try:
        return np.dtype(dtype_name).kind
    except TypeError:
        return "?"


def _is_float(dtype_name) -> bool:
    return _kind(dtype_name) == "f"


def _series_decoder(schema):
    check_finite = _is_float(schema["dtype"]) and not schema.get("allow_nan")

    def decode_series(data):
        import pandas as pd

        if not isinstance(data, list) or not data:
            raise InputError(f"expected a non-empty list of {schema['dtype']} values, got {_json_type(data)}")
        try:
            series = pd.Series(data, name=schema.get("name")).astype(schema["dtype"])
        except (ValueError, TypeError) as exc:
            raise InputError(f"values do not fit dtype {schema['dtype']}: {exc}") from None
        if check_finite:
            where = _first_nonfinite(series.to_numpy())
            if where is not None:
                raise InputError(f"the value at index {where[0]} is null or not a finite {schema['dtype']} number")
        return series

    return decode_series


def to_jsonable(value):
    """What goes into the response's ``data``: numpy arrays stay arrays (orjson writes them natively)."""
    np = sys.modules.get("numpy")
    pd = sys.modules.get("pandas")
    if np is not None and isinstance(value, np.ndarray):
        if value.dtype.kind in "biuf" and value.dtype.itemsize <= 8:
            return value if value.flags.c_contiguous else np.ascontiguousarray(value)
        return value.tolist()
    if pd is not None and isinstance(value, pd.DataFrame):
        return value.to_dict(orient="records")
    if pd is not None and isinstance(value, pd.Series):
        return value.tolist()
    if np is not None and isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    return value
