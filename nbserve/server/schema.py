"""Schemas of model inputs and outputs: the one vocabulary (inferred from samples by nbserve/capture/signature.py),
enforced on requests, and the JSON encoding of pandas/numpy values that the server and the client share.

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


def _first_nonfinite(arr):
    """Index (row, ...) of the first NaN or infinity in a float array, or None. One vectorised pass."""
    import numpy as np

    finite = np.isfinite(arr)
    if finite.all():
        return None
    return tuple(int(i) for i in np.argwhere(~finite)[0])


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


# -- the column vocabulary ------------------------------------------------------------------------
# A DataFrame column (and a Series) is {"name", "dtype", "kind", "nullable"}, plus "categories" and
# "ordered" for a category, "unit" and "tz" for a datetime, "unit" for a timedelta. ``kind`` is what the
# JSON value of a cell may be; ``dtype`` is what the server rebuilds, exactly as the model was trained.
KINDS = ("float", "integer", "nullable_integer", "boolean", "string", "category", "datetime", "timedelta")
OBJECT = "object"  # a column of mixed Python values: passed on as JSON gives them (not one of KINDS)
_NULLABLE_DTYPES = ("Int", "UInt", "Float", "boolean", "string")  # pandas' masked and string dtypes
MAX_LISTED = 20  # categories named in an error message


def kind_of_dtype(dtype) -> str:
    """The kind a pandas/numpy dtype name stands for (an object column's kind needs its values)."""
    d = str(dtype)
    if d == "category":
        return "category"
    if d.startswith("datetime64"):
        return "datetime"
    if d.startswith("timedelta64"):
        return "timedelta"
    if d.startswith(("Int", "UInt")):
        return "nullable_integer"
    if d.startswith(("int", "uint")):
        return "integer"
    if d.lower().startswith("float"):
        return "float"
    if d in ("bool", "boolean"):
        return "boolean"
    if d in ("str", "string") or d.startswith(("string[", "<U")):
        return "string"
    return OBJECT


def column_kind(col: dict) -> str:
    """The kind of a column schema; schemas written before kinds existed get it from their dtype."""
    return col.get("kind") or kind_of_dtype(col.get("dtype", "object"))


def column_nullable(col: dict) -> bool:
    """Whether a column takes nulls: recorded at registration (seen in the sample, or a nullable dtype);
    older schemas said ``allow_nan`` for float columns."""
    if "nullable" in col:
        return bool(col["nullable"])
    return bool(col.get("allow_nan")) or str(col.get("dtype", "")).startswith(_NULLABLE_DTYPES)


def dtype_is_nullable(dtype) -> bool:
    return str(dtype).startswith(_NULLABLE_DTYPES)


# -- decoding columns -----------------------------------------------------------------------------


def _first(values, bad):
    """(row, value) of the first value for which bad(value) is true, or None."""
    for i, v in enumerate(values):
        if bad(v):
            return i, v
    return None


def _shown(v) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _has_bool(values) -> bool:
    """true/false among numbers (numpy would read them as 1 and 0): one C-speed pass over the types."""
    return bool in set(map(type, values))


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_integer(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) or isinstance(v, float) and v.is_integer()


def column_decoder(col: dict):
    """A function from a column's JSON values (a list) to the array pandas holds for it in the model's dtype.
    Every refusal is an InputError naming the column, the row and what is allowed."""
    import numpy as np
    import pandas as pd

    name, dtype, kind = col["name"], col["dtype"], column_kind(col)
    nullable = column_nullable(col)
    label = f"column {name!r}" if name is not None else "the series"

    def fail(message):
        raise InputError(f"{label}: {message}")

    def check(values, ok, expected):
        """Refuse the first value that is neither ``ok`` nor an allowed null."""
        found = _first(values, lambda v: not (ok(v) or (v is None and nullable)))
        if found is not None:
            i, v = found
            if v is None:
                fail(f"row {i} is null; expected {expected} (the model's sample had no missing values here)")
            fail(f"row {i} is {_json_type(v)} {_shown(v)}; expected {expected}")

    def iso_strings(values, things, example):
        """Refuse anything but ISO 8601 strings (and allowed nulls), saying why a number is refused."""
        found = _first(values, lambda v: not (isinstance(v, str) or (v is None and nullable)))
        if found is not None:
            i, v = found
            if _is_number(v):
                fail(
                    f"row {i} is the number {_shown(v)}; {things} are ISO 8601 strings such as "
                    f"'{example}' (numbers are refused: their unit is ambiguous)"
                )
            check(values, lambda v: isinstance(v, str), f"ISO 8601 {things[:-1]} strings")

    def no_hidden_nulls(parsed, values, things):
        """pandas reads "", "NaT" and "nan" as a missing date or duration: where the column takes no
        nulls, refuse them as it refuses null, never hand the model a NaT it was not trained with."""
        if not nullable:
            missing = parsed.isna().to_numpy()
            if missing.any():
                i = int(missing.argmax())
                fail(
                    f"row {i} is {_shown(values[i])}, which reads as a missing value; expected ISO 8601 {things} "
                    f"strings (the model's sample had no missing values here)"
                )

    def finite(arr):
        if not nullable:
            where = _first_nonfinite(arr)
            if where is not None:
                fail(f"row {where[0]} is not a finite number; expected finite numbers")

    if kind == "float":

        def decode(values):
            arr = np.asarray(values)
            if arr.ndim != 1 or arr.dtype.kind not in "iuf" or _has_bool(values):
                check(values, _is_number, "numbers" + (" or null" if nullable else ""))
                arr = np.array([np.nan if v is None else v for v in values], dtype="float64")
            arr = arr.astype("float64" if dtype_is_nullable(dtype) else dtype, copy=False)
            finite(arr)
            return pd.array(arr, dtype=dtype) if dtype_is_nullable(dtype) else arr

    elif kind in ("integer", "nullable_integer"):
        target = dtype if kind == "integer" else dtype.lower()

        def decode(values):
            arr = np.asarray(values)
            if arr.ndim != 1 or arr.dtype.kind not in "iu" or _has_bool(values):
                what = "integers" + (" or null" if nullable else "")
                check(values, _is_integer, what)
                if kind == "nullable_integer":
                    return pd.array([None if v is None else int(v) for v in values], dtype=dtype)
                arr = np.asarray([int(v) for v in values])
            info = np.iinfo(target)
            if arr.size and (arr.min() < info.min or arr.max() > info.max):
                fail(f"values out of the range of {dtype} ({info.min} to {info.max})")
            try:
                return pd.array(arr, dtype=dtype) if kind == "nullable_integer" else arr.astype(dtype, copy=False)
            except (OverflowError, TypeError, ValueError) as exc:
                fail(f"expected integers within the range of {dtype} ({_first_line(exc)})")

    elif kind == "boolean":

        def decode(values):
            check(values, lambda v: v is True or v is False, "true or false" + (" or null" if nullable else ""))
            if dtype == "bool":
                return np.array(values, dtype=bool)
            if dtype == "boolean":
                return pd.array(values, dtype="boolean")
            return np.array(values, dtype=object)

    elif kind == "string":

        def decode(values):
            check(values, lambda v: isinstance(v, str), "strings" + (" or null" if nullable else ""))
            if dtype in ("object", "O"):  # missing as NaN, as pandas reads it (and scikit-learn's imputers expect)
                return np.array([np.nan if v is None else v for v in values], dtype=object)
            return pd.array(values, dtype=dtype)

    elif kind == "category":
        categories = list(col.get("categories") or [])
        allowed = set(categories)
        shown = categories[:MAX_LISTED] + (["..."] if len(categories) > MAX_LISTED else [])

        def decode(values):
            try:
                check(
                    values, lambda v: v in allowed, f"one of the categories {shown}" + (" or null" if nullable else "")
                )
            except TypeError:  # an unhashable value (a list, an object)
                fail(f"expected one of the categories {shown}")
            return pd.Categorical(values, categories=categories, ordered=bool(col.get("ordered")))

    elif kind == "datetime":
        tz = col.get("tz")

        def decode(values):
            iso_strings(values, "dates", "2024-01-31T08:30:00")
            try:
                parsed = pd.to_datetime(pd.Series(values, dtype=object), format="ISO8601")
            except (ValueError, TypeError):  # one bad string, or offsets that differ between rows
                parsed = pd.Series([_timestamp(v, i, fail) for i, v in enumerate(values)], dtype=object)
                parsed = pd.to_datetime(parsed, utc=True) if any(_aware(t) for t in parsed) else pd.to_datetime(parsed)
            if parsed.dt.tz is None and tz:
                parsed = parsed.dt.tz_localize(tz)
            elif parsed.dt.tz is not None:
                parsed = parsed.dt.tz_convert(tz) if tz else parsed.dt.tz_convert("UTC").dt.tz_localize(None)
            no_hidden_nulls(parsed, values, "date")
            return parsed.astype(dtype).array

    elif kind == "timedelta":

        def decode(values):
            iso_strings(values, "durations", "P0DT1H30M0S")
            try:
                parsed = pd.to_timedelta(pd.Series(values, dtype=object))
            except (ValueError, TypeError) as exc:
                fail(f"expected ISO 8601 duration strings such as 'P0DT1H30M0S' ({_first_line(exc)})")
            no_hidden_nulls(parsed, values, "duration")
            return parsed.astype(dtype).array

    else:  # mixed values: as JSON gives them

        def decode(values):
            out = np.empty(len(values), dtype=object)
            out[:] = [np.nan if v is None else v for v in values]
            return out

    def decode_column(values):
        try:
            return decode(values)
        except InputError:
            raise
        except (ValueError, TypeError, OverflowError) as exc:  # whatever numpy/pandas make of odd JSON
            fail(f"the values do not fit {dtype} ({type(exc).__name__}: {_first_line(exc)})")

    return decode_column


def _timestamp(v, row, fail):
    import pandas as pd

    if v is None:
        return pd.NaT
    try:
        return pd.to_datetime(v, format="ISO8601")
    except (ValueError, TypeError):
        fail(f"row {row} is {_shown(v)}, not an ISO 8601 date such as '2024-01-31T08:30:00'")


def _aware(t) -> bool:
    return getattr(t, "tzinfo", None) is not None


def _first_line(exc) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:200]


def _columns_from_json(data, names):
    """{name: list of values} from the three table layouts a client may send."""
    if isinstance(data, dict) and "columns" in data and "data" in data:
        columns, rows = data["columns"], data["data"]
        if not isinstance(columns, list) or not isinstance(rows, list):
            raise InputError('expected {"columns": [...], "data": [[...], ...]}')
        if not all(isinstance(c, str) for c in columns) or len(set(columns)) != len(columns):
            raise InputError(f'expected "columns" to be distinct column names (strings) such as {names}')
        width = len(columns)
        if any(not isinstance(row, list) or len(row) != width for row in rows):
            raise InputError(
                f'expected {{"columns": [...], "data": [[...], ...]}} with each row a list of '
                f"{width} values, one per column"
            )
        position = {c: i for i, c in enumerate(columns)}
        missing = [n for n in names if n not in position]
        if missing:
            raise InputError(f"missing columns {missing}; expected columns {names}")
        return {n: [row[position[n]] for row in rows] for n in names}, len(rows)
    if isinstance(data, dict):
        if any(not isinstance(v, list) for v in data.values()) or len({len(v) for v in data.values()}) > 1:
            raise InputError("expected an object of columns, each a list of the same length")
        missing = [n for n in names if n not in data]
        if missing:
            raise InputError(f"missing columns {missing}; expected columns {names}")
        return {n: data[n] for n in names}, len(data[names[0]]) if names else 0
    if isinstance(data, list):
        if not all(isinstance(r, dict) for r in data):
            raise InputError(f"expected a list of records (objects keyed by column: {names})")
        for i, record in enumerate(data):
            missing = [n for n in names if n not in record]
            if missing:
                raise InputError(f"missing columns {missing} in row {i}; expected columns {names}")
        return {n: [r[n] for r in data] for n in names}, len(data)
    raise InputError(
        f"expected a table: a list of records, an object of columns, or "
        f'{{"columns": [...], "data": [...]}}; got {_json_type(data)}'
    )


def _dataframe_decoder(schema):
    import pandas as pd

    names = [c["name"] for c in schema["columns"]]
    decoders = {c["name"]: column_decoder(c) for c in schema["columns"]}

    def decode_dataframe(data):
        columns, rows = _columns_from_json(data, names)
        if rows == 0:
            raise InputError(f"expected at least one row with columns {names}")
        return pd.DataFrame({n: decoders[n](columns[n]) for n in names}, columns=names)

    return decode_dataframe


def _series_decoder(schema):
    import pandas as pd

    decode_values = column_decoder({**schema, "name": schema.get("name")})

    def decode_series(data):
        if not isinstance(data, list) or not data:
            raise InputError(f"expected a non-empty list of {schema['dtype']} values, got {_json_type(data)}")
        return pd.Series(decode_values(data), name=schema.get("name"))

    return decode_series


# -- encoding: what pandas and numpy hold, as JSON (the server's answers and the client's requests) ----


def _cell(v):
    """One value of an object column as JSON: missing as null, dates as ISO 8601, numpy scalars unwrapped."""
    if v is None:
        return None
    if isinstance(v, float):
        return None if v != v else v
    if hasattr(v, "isoformat"):  # Timestamp, datetime, date, Timedelta
        pd = sys.modules.get("pandas")
        if pd is not None and (v is pd.NaT or v is pd.NA):
            return None
        return v.isoformat()
    pd = sys.modules.get("pandas")
    if pd is not None and v is pd.NA:
        return None
    if hasattr(v, "item") and hasattr(v, "dtype"):  # a numpy scalar
        return _cell(v.item())
    return v


def column_values(series) -> list:
    """A pandas Series (or a column) as a list of JSON values."""
    import numpy as np

    dtype = series.dtype
    if dtype.kind in "iub" and isinstance(dtype, np.dtype):
        return series.to_numpy().tolist()
    if dtype.kind == "f" and isinstance(dtype, np.dtype):
        return [None if v != v else v for v in series.to_numpy().tolist()]
    if dtype.kind in "mM":
        return [None if v is None or v != v else v.isoformat() for v in series.array]
    return [_cell(v) for v in series.to_numpy(dtype=object)]


def frame_split(frame) -> dict:
    """A DataFrame as {"columns": [...], "data": [[...], ...]} (how the client sends tables)."""
    columns = [column_values(frame[c]) for c in frame.columns]
    return {"columns": [str(c) for c in frame.columns], "data": [list(row) for row in zip(*columns)]}


def frame_records(frame) -> list:
    """A DataFrame as a list of records (how the server answers a table)."""
    names = [str(c) for c in frame.columns]
    columns = [column_values(frame.iloc[:, i]) for i in range(frame.shape[1])]
    return [dict(zip(names, row)) for row in zip(*columns)]


def to_jsonable(value):
    """What goes into the response's ``data``: numpy arrays stay arrays (orjson writes them natively)."""
    np = sys.modules.get("numpy")
    pd = sys.modules.get("pandas")
    if np is not None and isinstance(value, np.ndarray):
        if value.dtype.kind in "biuf" and value.dtype.itemsize <= 8:
            return value if value.flags.c_contiguous else np.ascontiguousarray(value)
        return [to_jsonable(v) for v in value] if value.ndim > 1 else [_cell(v) for v in value.tolist()]
    if pd is not None and isinstance(value, pd.DataFrame):
        return frame_records(value)
    if pd is not None and isinstance(value, pd.Series):
        return column_values(value)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return to_jsonable(value.detach().cpu().numpy())
    if np is not None and isinstance(value, np.generic):
        return _cell(value)
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    return _cell(value)


def rebuild(schema: dict | None, data):
    """The JSON ``data`` of an answer as the type the method returned in the kernel (for the client):
    the strict decoder where the answer fits the recorded schema, else the closest pandas/numpy value."""
    schema = schema or {}
    kind = schema.get("type")
    if kind in ("dataframe", "series"):
        try:
            return compile_decoder(schema)(data)
        except InputError:
            import pandas as pd

            if kind == "series":
                return pd.Series(data, name=schema.get("name"))
            return pd.DataFrame.from_records(data, columns=[c["name"] for c in schema["columns"]])
    if kind == "ndarray":
        import numpy as np

        dtype = schema["dtype"]
        try:
            return np.asarray(data, dtype=dtype if dtype != "object" else object)
        except (TypeError, ValueError):  # nulls (NaN written as null) in an integer answer, say
            return np.asarray(data, dtype=object)
    if kind == "list" and isinstance(data, list):
        return [rebuild(schema.get("items"), v) for v in data]
    if kind == "dict" and isinstance(data, dict):
        return {k: rebuild(schema["fields"].get(k), v) for k, v in data.items()}
    return data
