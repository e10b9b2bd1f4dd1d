"""Hypothesis strategies for what gets sent to a served model: shared by the in-process and the HTTP fuzzing."""

import json

from hypothesis import strategies as st

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),  # NaN / Infinity go out as bare tokens
    st.sampled_from([1e308, -1e308, 5e-324, 3.5e38, -3.5e38, 2**63, 2**64 - 1, -(2**63) - 1, 0.0, -0.0]),
    st.text(max_size=20),  # unicode, lone surrogates included
    st.sampled_from(["NaN", "nan", "Infinity", "-inf", "1e400", "", "0x10", "١٢٣", "\u0000"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=8), inner, max_size=5)),
    max_leaves=30,
)


def rows(width):
    """Lists of rows of about the right width: the shapes a model almost accepts."""
    cell = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**66), 2**66), scalars)
    return st.lists(st.lists(cell, min_size=max(width - 1, 0), max_size=width + 1), max_size=4)


def records(columns):
    cell = st.one_of(st.floats(allow_nan=False, allow_infinity=False, width=32), scalars)
    keys = st.sampled_from(columns + ["", "extra", columns[0].upper()])
    return st.lists(st.dictionaries(keys, cell, min_size=len(columns) - 1, max_size=len(columns) + 1), max_size=3)


def deep(depth_max=3000):
    return st.integers(1, depth_max).map(lambda d: "[" * d + "1" + "]" * d)


def data_for(name):
    """Values of ``data`` aimed at one model's schema, mixed with anything at all."""
    aimed = {
        "diabetes": rows(10),
        "parity": rows(3),
        "halve32": rows(2),
        "iris": st.one_of(
            records(["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]),
            st.fixed_dictionaries({"columns": json_values, "data": json_values}),
        ),
        "score": st.fixed_dictionaries({"values": st.lists(scalars, max_size=5), "name": scalars}),
        "squares": st.lists(scalars, max_size=5),
    }[name]
    return st.one_of(aimed, aimed, json_values)


def bodies(name):
    """Raw request bodies: {"data": ...} written with NaN/Infinity allowed, other JSON, deep nesting,
    broken JSON, bytes."""
    as_json = st.builds(lambda v: json.dumps({"data": v}, allow_nan=True), data_for(name))
    return st.one_of(
        as_json,
        as_json,
        as_json,
        st.builds(lambda v: json.dumps(v, allow_nan=True), json_values),
        st.builds(lambda s: '{"data": ' + s + "}", deep()),
        st.builds(lambda s, cut: s[:cut], as_json, st.integers(0, 40)),  # truncated JSON
        st.builds(lambda v: json.dumps({"data": v, "data2": v}), json_values),
        st.binary(max_size=64),
    )


CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "text/plain",
        "",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=zz",
        "application/octet-stream",
        "application/json; charset=latin-1",
        "ü/ü",
    ]
)
