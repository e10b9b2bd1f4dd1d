"""The one vocabulary of value kinds: what a column (or an array's element) is on the wire, in OpenAPI, in the
Open Inference Protocol, in MLflow's CSV, to drift, to the readiness check, and how the server decodes it.

Every place that asks "what is this dtype on the wire" looks up ``KINDS[kind_of_dtype(dtype)]``: the
signature (capture/signature.py) records the kind, the decoders (schema.py) and OpenAPI (openapi.py) read it,
V2 (protocols/v2.py) and MLflow (protocols/mlflow.py) map it, drift (drift.py) bins by it, and the image's
readiness check (runtimes/readiness.py) makes example values from it.

A column schema is ``{"name", "dtype", "kind", "nullable"}``, plus ``categories``/``ordered`` for a category,
``unit``/``tz`` for a datetime, ``unit`` for a timedelta, and ``label`` where the DataFrame's label is not a
string (an integer column name: ``name`` is its text on the wire, ``label`` what the model gets back).

Non-finite numbers and missing values have one encoding, everywhere JSON carries them:

* a missing value (None, pandas' NA, NaT, and NaN in a float column or array, numpy's missing float) is
  ``null``;
* the infinities are the strings ``"Infinity"`` and ``"-Infinity"``, and a NaN that is not a missing value
  (a NaN beside NA in pandas' nullable ``Float64``) is ``"NaN"``: the spellings of the JSON mapping of
  protocol buffers, and of Python's and JavaScript's ``float()``/``Number()``.

Decoders read the three strings (and null) back as the numbers in float positions, so an answer rebuilt by
the client holds exactly what the kernel's did.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    import random
    from collections.abc import Iterable, Sequence

    import numpy as np
    import pandas as pd

    # a column's JSON values (a list) -> the array pandas holds for it
    Decode = Callable[[list], Any]

# the strings that stand for non-finite floats (and their values, filled in on first use: no numpy import here)
NONFINITE = ("NaN", "Infinity", "-Infinity")
NONFINITE_SCHEMA = {"type": "string", "enum": list(NONFINITE)}
_NULLABLE_DTYPES = ("Int", "UInt", "Float", "boolean", "string")  # pandas' masked and string dtypes
MAX_LISTED = 20  # categories named in an error message


class InputError(ValueError):
    """The request's data does not fit the model's input schema."""


@dataclass(frozen=True)
class Kind:
    """What one kind of value is, for every part of nbserve that needs to know."""

    name: str
    cell: dict  # JSON Schema (OpenAPI 3.0) of one value, without "nullable"
    accepts: str  # numpy dtype kinds a JSON array of this kind may parse to (no string-to-number casts)
    words: str  # the values, in an error message ("numbers")
    v2: str  # Open Inference datatype; "" for numeric kinds: the dtype's own width (V2_DATATYPES)
    text: bool  # an MLflow CSV cell of this kind stays text ("007" stays a string; a number in a date is refused)
    binned: str  # how drift bins it: "numeric" (dates as days, durations as seconds) or "categorical"
    decoder: Callable  # (Column) -> (list of JSON values -> the array pandas holds), one small function per kind
    example: Callable  # (column schema, random.Random) -> a JSON value the decoder takes (readiness check)


# numpy dtype names to Open Inference Protocol datatypes (pandas' nullable Int64, Float64, boolean by width)
V2_DATATYPES = {
    "bool": "BOOL",
    "boolean": "BOOL",
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
NUMPY_OF_V2 = {v: k for k, v in V2_DATATYPES.items() if k != "boolean"}


def kind_of_dtype(dtype: object) -> str:
    """The kind a pandas/numpy dtype (or its name) stands for; an object column's kind needs its values
    (capture/signature.py looks at them), here it is "object"."""
    d = str(dtype)
    if d == "category":
        return "category"
    if d.startswith(("datetime64", "<M8")):
        return "datetime"
    if d.startswith(("timedelta64", "<m8")):
        return "timedelta"
    if d.startswith(("Int", "UInt")):
        return "nullable_integer"
    if d.startswith(("int", "uint")):
        return "integer"
    if d.lower().startswith("float"):
        return "float"
    if d.startswith("complex"):
        return "complex"
    if d in ("bool", "boolean"):
        return "boolean"
    if d in ("str", "string") or d.startswith(("string[", "<U", "str[")):
        return "string"
    return "object"


def column_kind(col: dict) -> str:
    """The kind of a column schema; schemas written before kinds existed get it from their dtype."""
    return col.get("kind") or kind_of_dtype(col.get("dtype", "object"))


def column_nullable(col: dict) -> bool:
    """Whether a column takes nulls: recorded at registration (seen in the sample, or a nullable dtype);
    older schemas said ``allow_nan`` for float columns."""
    if "nullable" in col:
        return bool(col["nullable"])
    return bool(col.get("allow_nan")) or dtype_is_nullable(col.get("dtype", ""))


def dtype_is_nullable(dtype: object) -> bool:
    return str(dtype).startswith(_NULLABLE_DTYPES)


def kind(dtype: object) -> Kind:
    """The table's entry for a dtype (name)."""
    return KINDS[kind_of_dtype(dtype)]


def v2_datatype(dtype: object) -> str:
    """The Open Inference datatype of a numpy or pandas dtype: numbers and booleans by their width,
    everything else (strings, categories, dates, objects) BYTES."""
    return kind(dtype).v2 or V2_DATATYPES.get(str(dtype).lower(), "BYTES")


def cell_schema(col: dict, out: bool = False) -> dict:
    """The JSON Schema (OpenAPI 3.0) of one value of a column (or a Series, or an array's element).
    ``out``: a method's result, where any float may be missing or infinite."""
    k = KINDS[column_kind(col)]
    item = dict(k.cell)
    if k.name == "category":
        categories = list(col.get("categories") or [])
        types = {type(c) for c in categories}
        item = {"enum": categories}
        if len(types) == 1:
            json_type = {bool: "boolean", int: "integer", float: "number", str: "string"}.get(types.pop())
            if json_type:
                item["type"] = json_type
    elif k.name == "datetime" and col.get("tz"):
        item["description"] = (
            f"ISO 8601; a date without an offset is read as wall time in {col['tz']}, one with an offset is "
            f"converted to {col['tz']}"
        )
    nullable = column_nullable(col) or (out and k.name == "float")
    if nullable and item:
        if "enum" in item:
            item["enum"] = item["enum"] + [None]
        item["nullable"] = True
    if k.name == "float" and nullable:  # the infinities (and a NaN beside NA) as strings: see the module's text
        item = {"oneOf": [item, NONFINITE_SCHEMA]}
    return item


def nonfinite_value(text: object) -> float | None:
    """The float a non-finite string stands for, else None."""
    return _NONFINITE_VALUES.get(text) if isinstance(text, str) else None


_NONFINITE_VALUES = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


# -- decoding: one small function per kind -------------------------------------------------------------


class Column:
    """A column schema compiled for decoding: name, dtype, kind, nulls, and the words of its refusals.
    ``lenient`` rebuilds an answer (the client's side): nulls are taken where the sample had none, categories
    the sample never showed are kept, an integer column with nulls becomes float as pandas makes it."""

    def __init__(self, col: dict, lenient: bool = False) -> None:
        self.schema = col
        self.name = col.get("name")
        self.dtype = col.get("dtype", "object")
        self.kind = column_kind(col)
        self.lenient = lenient
        self.nullable = lenient or column_nullable(col)
        self.label = f"column {self.name!r}" if self.name is not None else "the series"

    def fail(self, message: str) -> NoReturn:
        raise InputError(f"{self.label}: {message}")

    def check(self, values: Sequence[Any], ok: Callable[[Any], bool], expected: str) -> None:
        """Refuse the first value that is neither ``ok`` nor an allowed null."""
        nullable = self.nullable
        for i, v in enumerate(values):
            if not (ok(v) or (v is None and nullable)):
                if v is None:
                    self.fail(f"row {i} is null; expected {expected} (the model's sample had no missing values here)")
                self.fail(f"row {i} is {json_type(v)} {shown(v)}; expected {expected}")

    def or_null(self, words: str) -> str:
        return words + (" or null" if self.nullable else "")

    def finite(self, arr: np.ndarray) -> None:
        if not self.nullable:
            where = first_nonfinite(arr)
            if where is not None:
                self.fail(f"row {where[0]} is not a finite number; expected finite numbers")


def _float(c: Column) -> Decode:
    import numpy as np
    import pandas as pd

    masked = dtype_is_nullable(c.dtype)
    target = "float64" if masked else c.dtype

    def is_float(v: Any) -> bool:
        return is_number(v) or isinstance(v, str) and v in _NONFINITE_VALUES

    def decode(values: list) -> Any:
        arr = np.asarray(values)
        if arr.ndim != 1 or arr.dtype.kind not in "iuf" or has_bool(values):
            c.check(values, is_float, c.or_null("numbers"))
            if masked:  # null is NA, "NaN" a NaN beside it
                return pd.array([None if v is None else _float_of(v) for v in values], dtype=c.dtype)
            arr = np.array([np.nan if v is None else _float_of(v) for v in values], dtype="float64")
        arr = arr.astype(target, copy=False)
        c.finite(arr)
        return pd.array(arr, dtype=c.dtype) if masked else arr

    return decode


def _float_of(v: Any) -> Any:
    return _NONFINITE_VALUES[v] if isinstance(v, str) else v


def _integer(c: Column) -> Decode:
    import numpy as np
    import pandas as pd

    masked = c.kind == "nullable_integer"
    target = c.dtype.lower() if masked else c.dtype
    # an integer answer with nulls (or fractions) in it: pandas made it float64 in the kernel
    as_float = _float(Column({**c.schema, "dtype": "float64", "kind": "float"}, lenient=True)) if c.lenient else None

    def decode(values: list) -> Any:
        arr = np.asarray(values)
        if arr.ndim != 1 or arr.dtype.kind not in "iu" or has_bool(values):
            if as_float is not None and not masked and any(v is None or not is_integer(v) for v in values):
                return as_float(values)
            c.check(values, is_integer, c.or_null("integers"))
            if masked:
                return pd.array([None if v is None else int(v) for v in values], dtype=c.dtype)
            arr = np.asarray([int(v) for v in values])
        info = np.iinfo(target)
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            c.fail(f"values out of the range of {c.dtype} ({info.min} to {info.max})")
        try:
            return pd.array(arr, dtype=c.dtype) if masked else arr.astype(c.dtype, copy=False)
        except (OverflowError, TypeError, ValueError) as exc:
            c.fail(f"expected integers within the range of {c.dtype} ({first_line(exc)})")

    return decode


def _boolean(c: Column) -> Decode:
    import numpy as np
    import pandas as pd

    def decode(values: list) -> Any:
        c.check(values, lambda v: v is True or v is False, c.or_null("true or false"))
        if c.dtype == "bool" and not (c.lenient and None in values):
            return np.array(values, dtype=bool)
        if c.dtype == "boolean":
            return pd.array(values, dtype="boolean")
        return np.array(values, dtype=object)

    return decode


def _string(c: Column) -> Decode:
    import numpy as np
    import pandas as pd

    def decode(values: list) -> Any:
        c.check(values, lambda v: isinstance(v, str), c.or_null("strings"))
        if c.dtype in ("object", "O"):  # missing as NaN, as pandas reads it (and scikit-learn's imputers expect)
            return np.array([np.nan if v is None else v for v in values], dtype=object)
        return pd.array(values, dtype=c.dtype)

    return decode


def _category(c: Column) -> Decode:
    import pandas as pd

    categories = list(c.schema.get("categories") or [])
    allowed = set(categories)
    listed = categories[:MAX_LISTED] + (["..."] if len(categories) > MAX_LISTED else [])
    expected = c.or_null(f"one of the categories {listed}")
    ordered = bool(c.schema.get("ordered"))

    def decode(values: list) -> Any:
        if c.lenient:  # an answer's category the sample never showed is still that category
            unseen = [v for v in dict.fromkeys(values) if v is not None and v not in allowed]
            return pd.Categorical(values, categories=categories + unseen, ordered=ordered)
        try:
            c.check(values, allowed.__contains__, expected)
        except TypeError:  # an unhashable value (a list, an object)
            c.fail(f"expected one of the categories {listed}")
        return pd.Categorical(values, categories=categories, ordered=ordered)

    return decode


def _iso_strings(c: Column, values: list, things: str, example: str) -> None:
    """Refuse anything but ISO 8601 strings (and allowed nulls), saying why a number is refused."""
    for i, v in enumerate(values):
        if not (isinstance(v, str) or (v is None and c.nullable)):
            if is_number(v):
                c.fail(
                    f"row {i} is the number {shown(v)}; {things} are ISO 8601 strings such as "
                    f"'{example}' (numbers are refused: their unit is ambiguous)"
                )
            c.check(values, lambda v: isinstance(v, str), f"ISO 8601 {things[:-1]} strings")


def _no_hidden_nulls(c: Column, parsed: pd.Series, values: list, things: str) -> None:
    """pandas reads "", "NaT" and "nan" as a missing date or duration: where the column takes no nulls,
    refuse them as null is refused, never hand the model a NaT it was not trained with."""
    if not c.nullable:
        missing = parsed.isna().to_numpy()
        if missing.any():
            i = int(missing.argmax())
            c.fail(
                f"row {i} is {shown(values[i])}, which reads as a missing value; expected ISO 8601 {things} "
                f"strings (the model's sample had no missing values here)"
            )


def _datetime(c: Column) -> Decode:
    """One rule for time zones, whatever the other rows: in a column with a zone, a date with an offset is
    converted to the zone and a date without one is wall time in the zone; in a column without a zone, a
    date with an offset is converted to UTC (and the offset dropped), a date without one is taken as it is."""
    import pandas as pd

    tz = c.schema.get("tz")

    def decode(values: list) -> Any:
        _iso_strings(c, values, "dates", "2024-01-31T08:30:00")
        try:
            parsed = pd.to_datetime(pd.Series(values, dtype=object), format="ISO8601")
        except (ValueError, TypeError):  # one bad string, or rows with and without offsets (or with different ones)
            parsed = pd.Series([_timestamp(c, v, i, tz) for i, v in enumerate(values)], dtype=object)
            parsed = pd.to_datetime(parsed, utc=True)
            parsed = parsed.dt.tz_convert(tz) if tz else parsed.dt.tz_localize(None)
        else:
            if parsed.dt.tz is None and tz:
                parsed = _localize(c, parsed, tz, values)
            elif parsed.dt.tz is not None:
                parsed = parsed.dt.tz_convert(tz) if tz else parsed.dt.tz_convert("UTC").dt.tz_localize(None)
        _no_hidden_nulls(c, parsed, values, "date")
        return parsed.astype(c.dtype).array

    return decode


def _localize(c: Column, parsed: pd.Series, tz: str, values: list) -> pd.Series:
    """Wall times in ``tz``; a time that does not exist there or exists twice (daylight saving) is refused."""
    try:
        return parsed.dt.tz_localize(tz, ambiguous="raise", nonexistent="raise")
    except Exception:  # pytz's and pandas' errors for ambiguous and non-existent wall times
        for i, v in enumerate(values):
            try:
                parsed.iloc[i : i + 1].dt.tz_localize(tz, ambiguous="raise", nonexistent="raise")
            except Exception as exc:
                c.fail(f"row {i} is {shown(v)}, a wall time that is ambiguous or does not exist in {tz} ({exc})")
        raise


def _timestamp(c: Column, v: Any, row: int, tz: str | None) -> Any:
    """One date, as a UTC Timestamp by the column's rule (see _datetime), for rows that differ in offsets."""
    import pandas as pd

    if v is None:
        return pd.NaT
    try:
        t = pd.to_datetime(v, format="ISO8601")
    except (ValueError, TypeError):
        c.fail(f"row {row} is {shown(v)}, not an ISO 8601 date such as '2024-01-31T08:30:00'")
    if t is pd.NaT:
        return t
    if t.tzinfo is None:
        if not tz:
            return t.tz_localize("UTC")
        try:
            t = t.tz_localize(tz, ambiguous="raise", nonexistent="raise")
        except Exception as exc:
            c.fail(f"row {row} is {shown(v)}, a wall time that is ambiguous or does not exist in {tz} ({exc})")
    return t.tz_convert("UTC")


def _timedelta(c: Column) -> Decode:
    import pandas as pd

    def decode(values: list) -> Any:
        _iso_strings(c, values, "durations", "P0DT1H30M0S")
        try:
            parsed = pd.to_timedelta(pd.Series(values, dtype=object))
        except (ValueError, TypeError) as exc:
            c.fail(f"expected ISO 8601 duration strings such as 'P0DT1H30M0S' ({first_line(exc)})")
        _no_hidden_nulls(c, parsed, values, "duration")
        return parsed.astype(c.dtype).array

    return decode


def _object(c: Column) -> Decode:
    """Mixed values: as JSON gives them (null as NaN, pandas' missing value in an object column)."""
    import numpy as np

    def decode(values: list) -> Any:
        out = np.empty(len(values), dtype=object)
        out[:] = [np.nan if v is None else v for v in values]
        return out

    return decode


def _complex(c: Column) -> Decode:
    import numpy as np

    def decode(values: list) -> Any:
        c.check(values, is_number, "numbers")
        return np.asarray(values, dtype=c.dtype)

    return decode


# -- examples for the image's readiness check (a value each decoder takes) ------------------------------


def _example_nr(col: dict, rng: random.Random) -> float:
    return round(rng.uniform(0.0, 1.0), 6)


def _example_category(col: dict, rng: random.Random) -> Any:
    return rng.choice(col["categories"]) if col.get("categories") else "a"


def _example_datetime(col: dict, rng: random.Random) -> str:
    offset = "+00:00" if col.get("tz") else ""
    return f"2024-01-{rng.randrange(1, 29):02d}T{rng.randrange(0, 24):02d}:00:00{offset}"


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind(
            "float",
            {"type": "number"},
            "fiu",
            "numbers",
            "",
            False,
            "numeric",
            _float,
            _example_nr,
        ),
        Kind(
            "integer",
            {"type": "integer"},
            "iu",
            "integers",
            "",
            False,
            "numeric",
            _integer,
            lambda col, rng: rng.randrange(0, 3),
        ),
        Kind(
            "nullable_integer",
            {"type": "integer"},
            "iu",
            "integers",
            "",
            False,
            "numeric",
            _integer,
            lambda col, rng: rng.randrange(0, 3),
        ),
        Kind(
            "boolean",
            {"type": "boolean"},
            "b",
            "booleans",
            "BOOL",
            False,
            "categorical",
            _boolean,
            lambda col, rng: rng.random() < 0.5,
        ),
        Kind(
            "string",
            {"type": "string"},
            "U",
            "strings",
            "BYTES",
            True,
            "categorical",
            _string,
            lambda col, rng: rng.choice(["a", "b"]),
        ),
        Kind(
            "category",
            {},
            "fiubUO",
            "categories",
            "BYTES",
            True,
            "categorical",
            _category,
            _example_category,
        ),
        Kind(
            "datetime",
            {"type": "string", "format": "date-time"},
            "U",
            "ISO 8601 dates",
            "BYTES",
            False,
            "numeric",
            _datetime,
            _example_datetime,
        ),
        Kind(
            "timedelta",
            {"type": "string", "format": "duration", "description": "ISO 8601 duration, such as P0DT1H30M0S"},
            "U",
            "ISO 8601 durations",
            "BYTES",
            False,
            "numeric",
            _timedelta,
            lambda col, rng: f"P0DT{rng.randrange(0, 24)}H0M0S",
        ),
        Kind("complex", {"type": "number"}, "fiuc", "numbers", "BYTES", False, "categorical", _complex, _example_nr),
        Kind("object", {}, "fiubUO", "values", "BYTES", True, "categorical", _object, lambda col, rng: "a"),
    )
}
COLUMN_KINDS = ("float", "integer", "nullable_integer", "boolean", "string", "category", "datetime", "timedelta")
OBJECT = "object"  # a column of mixed Python values: passed on as JSON gives them


def column_decoder(col: dict, lenient: bool = False) -> Decode:
    """A function from a column's JSON values (a list) to the array pandas holds for it in the model's dtype.
    Every refusal is an InputError naming the column, the row and what is allowed."""
    c = Column(col, lenient)
    decode = KINDS[c.kind].decoder(c)

    def decode_column(values: list) -> Any:
        try:
            return decode(values)
        except InputError:
            raise
        except (ValueError, TypeError, OverflowError) as exc:  # whatever numpy/pandas make of odd JSON
            c.fail(f"the values do not fit {c.dtype} ({type(exc).__name__}: {first_line(exc)})")

    return decode_column


# -- small helpers the decoders share --------------------------------------------------------------


def first_nonfinite(arr: np.ndarray) -> tuple[int, ...] | None:
    """Index (row, ...) of the first NaN or infinity in a float array, or None. One vectorised pass."""
    import numpy as np

    finite = np.isfinite(arr)
    if finite.all():
        return None
    return tuple(int(i) for i in np.argwhere(~finite)[0])


def json_type(v: object) -> str:
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


def shown(v: object) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def has_bool(values: Iterable[Any]) -> bool:
    """true/false among numbers (numpy would read them as 1 and 0): one C-speed pass over the types."""
    return bool in set(map(type, values))


def is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_integer(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) or isinstance(v, float) and v.is_integer()


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:200]
