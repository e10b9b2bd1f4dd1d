"""A model's input and output schemas, inferred from sample values, in the vocabulary of
``nbserve/server/schema.py`` (which the served side decodes by; inference stays here, out of the image)."""

from __future__ import annotations

import sys

from ..server.shared import OBJECT, dtype_is_nullable, kind_of_dtype
from ..server.shared import json_cell as json_value


def describe(value, batch: int | None = None, top: bool = True):
    """The schema of a sample value, with the batch dimension of arrays and frames left open. In a dict,
    only fields whose length is the batch length (``batch_length``) get an open first dimension. A list that
    is the batch (the whole sample, or a dict's per-row field) must have at least one item."""
    np = sys.modules.get("numpy")
    pd = sys.modules.get("pandas")
    torch = sys.modules.get("torch")
    if pd is not None and isinstance(value, pd.DataFrame):
        columns = [column_schema(c, value.iloc[:, i]) for i, c in enumerate(value.columns)]
        return {"type": "dataframe", "columns": columns, **index_schema(value.index)}
    if pd is not None and isinstance(value, pd.Series):
        return {"type": "series", **column_schema(value.name, value), **index_schema(value.index)}
    if torch is not None and isinstance(value, torch.Tensor):
        return describe(value.detach().cpu().numpy(), batch)
    if np is not None and isinstance(value, np.ndarray):
        open_first = value.ndim > 0 and (batch is None or value.shape[0] == batch)
        shape = [None, *value.shape[1:]] if open_first else list(value.shape)
        return {"type": "ndarray", "dtype": value.dtype.name, "shape": shape, **_nan_flag(value)}
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
        schema = {"type": "list", "items": describe(value[0], top=False) if len(value) else {"type": "any"}}
        if len(value) and (top or (batch is not None and len(value) == batch)):
            schema["min_items"] = 1  # the rows of a batch: an empty one is the client's 400, not the model's 500
        return schema
    if isinstance(value, dict):
        batch = batch_length(value)
        return {"type": "dict", "fields": {str(k): describe(v, batch, top=False) for k, v in value.items()}}
    return {"type": "any", "python": type(value).__qualname__}


def column_schema(name, series) -> dict:
    """One column: name, dtype, kind, nullable, and categories/ordered, unit/tz where they apply."""
    dtype = series.dtype
    kind = kind_of_dtype(dtype)
    missing = bool(series.isna().any())
    if kind == OBJECT:
        kind = _object_kind(series)
    col: dict = {"name": None if name is None else str(name), "dtype": str(dtype), "kind": kind}
    if name is not None and not isinstance(name, str):  # an integer label: the model gets it back as it was
        label = json_value(name)
        if isinstance(label, (int, float, bool)) and not isinstance(label, str):
            col["label"] = label
    col["nullable"] = missing or dtype_is_nullable(dtype)
    if kind == "category":
        col["categories"] = [json_value(c) for c in series.cat.categories]
        col["ordered"] = bool(series.cat.ordered)
    elif kind in ("datetime", "timedelta"):
        col["unit"] = getattr(series.dt, "unit", None) or str(dtype).partition("[")[2].partition(",")[0].strip("]")
        if kind == "datetime":
            col["tz"] = None if series.dt.tz is None else str(series.dt.tz)
    return col


def index_schema(index) -> dict:
    """{"index": its schema} for a pandas index that is not the default 0, 1, 2, ...; else {}."""
    import pandas as pd

    if isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1 and index.name is None:
        return {}
    if isinstance(index, pd.MultiIndex):
        levels = [column_schema(n, index.get_level_values(i).to_series()) for i, n in enumerate(index.names)]
        return {"index": {"levels": levels}}
    spec = column_schema(index.name, index.to_series())
    freq = getattr(index, "freqstr", None)
    if freq:
        spec["freq"] = freq
    return {"index": spec}


def _object_kind(series) -> str:
    """An object column holding only strings is a string column; only booleans, a boolean one."""
    values = series.dropna()
    types = set(map(type, values))
    if types and all(issubclass(t, str) for t in types):
        return "string"
    if types == {bool}:
        return "boolean"
    return OBJECT


def _nan_flag(values) -> dict:
    """{"allow_nan": True} when a float sample holds NaN or infinities (the model evidently takes them,
    so requests may send null for NaN); else {}, and the decoder refuses non-finite values, which
    would otherwise reach the model and fail there (a 500) instead of being the client's 400."""
    import numpy as np

    arr = np.asarray(values)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        return {"allow_nan": True}
    return {}


def _length(value):
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__len__"):
        return None
    shape = getattr(value, "shape", None)
    if shape is not None:
        return shape[0] if len(shape) else None
    try:
        return len(value)
    except TypeError:
        return None


def batch_length(sample: dict) -> int | None:
    """The number of rows of a dict sample: the length its arrays (frames, tensors; else its lists) most
    often share, the first one's on a tie. Fields of another length (a weight vector, a lookup table)
    are not per row."""
    shaped = [v for v in sample.values() if getattr(v, "shape", None)]
    lengths = [n for n in (_length(v) for v in (shaped or sample.values())) if n is not None]
    if not lengths:
        return None
    return max(lengths, key=lambda n: (lengths.count(n), -lengths.index(n)))


def batch_slice(value, n):
    """The first n rows of a sample, in the sample's own type (for replaying it). In a dict, only the
    fields that share the batch dimension are cut; the others are kept whole."""
    if isinstance(value, dict):
        batch = batch_length(value)
        return {k: _rows(v, n) if _length(v) == batch else v for k, v in value.items()}
    return _rows(value, n)


def _rows(value, n):
    if hasattr(value, "iloc"):
        return value.iloc[:n]
    try:
        return value[:n]
    except (TypeError, KeyError, IndexError):
        return value


def sliced_fields(value) -> str:
    """For an error message: which fields of a dict sample were cut to the first rows, which kept whole."""
    if not isinstance(value, dict):
        return ""
    batch = batch_length(value)
    cut = [k for k, v in value.items() if batch is not None and _length(v) == batch]
    kept = [k for k in value if k not in cut]
    return f" (fields {cut} cut to their first rows as per-row data of length {batch}; {kept} passed whole)"


EXAMPLE_LIMIT = 16_384  # bytes of JSON: an example too large to read in the docs page is left out


def example(value):
    """The first row of ``value`` as the JSON a client sends (``client.encode``: tables as columns and rows,
    dates in ISO 8601, missing values as null): what /docs offers in "Try it out". None where it does not
    fit in a few kilobytes or cannot be written as JSON."""
    from ..client import encode  # the client's own encoding: the example is what a client would send
    from ..server.shared import column_values, frame_records, json_dumps, json_loads

    row = batch_slice(value, 1)
    try:
        # a table as records, the form its JSON schema in /openapi.json describes (the server takes both)
        if hasattr(row, "columns"):
            value = frame_records(row)
        elif hasattr(row, "index") and hasattr(row, "dtype"):  # a Series: its values (the index travels beside)
            value = column_values(row)
        else:
            value = encode(row)
        text = json_dumps(value)
    except (TypeError, ValueError):
        return None
    return json_loads(text) if len(text) <= EXAMPLE_LIMIT else None


def incompatibility(served: dict, new: dict, served_id: str, new_label: str) -> str | None:
    """Why callers of the served version would break on the new one (a method gone, another input or output
    shape, column or dtype kind), or None. Only what a caller sees counts: nullability and the categories seen
    in a sample are the sample's, not the interface's."""
    for method, old in served.items():
        if method not in new:
            return f"{new_label} has no method {method!r}, which {served_id} serves"
        for part in ("input", "output"):
            a, b = _interface(old.get(part)), _interface(new[method].get(part))
            if a != b and "any" not in (a, b):
                return f"{new_label}.{method} {part}s {_words(b)}; {served_id} {part}s {_words(a)}"
    return None


def _interface(schema):
    """What callers depend on in a schema: types, kinds, shapes, column names (recursively)."""
    if not isinstance(schema, dict):
        return "any"
    kind = schema.get("type")
    if kind == "any":
        return "any"
    if kind == "ndarray":
        return ("ndarray", _dtype_kind(schema.get("dtype")), tuple(schema.get("shape") or ()))
    if kind == "dataframe":
        return ("dataframe", tuple((c.get("name"), c.get("kind")) for c in schema.get("columns") or ()))
    if kind == "series":
        return ("series", schema.get("kind"))
    if kind == "list":
        return ("list", _interface(schema.get("items")))
    if kind == "dict":
        return ("dict", tuple(sorted((k, _interface(v)) for k, v in (schema.get("fields") or {}).items())))
    return (kind,)


def _dtype_kind(dtype) -> str:
    try:
        import numpy as np

        return {"b": "bool", "i": "int", "u": "int", "f": "float", "c": "complex"}.get(np.dtype(dtype).kind, str(dtype))
    except TypeError:
        return str(dtype)


def _words(interface) -> str:
    if interface == "any":
        return "anything"
    kind = interface[0]
    if kind == "ndarray":
        shape = ", ".join("None" if d is None else str(d) for d in interface[2])
        return f"{interface[1]} arrays of shape [{shape}]"
    if kind == "dataframe":
        return "a table of columns " + ", ".join(f"{n} ({k})" for n, k in interface[1])
    return str(interface)
