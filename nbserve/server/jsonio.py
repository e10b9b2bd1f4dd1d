"""JSON in and out: orjson when present (fast, writes numpy arrays natively), the stdlib otherwise."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

try:
    import orjson

    loads: Callable[[str | bytes | bytearray], Any] = orjson.loads
    JSONDecodeError: type[ValueError] = orjson.JSONDecodeError
    _OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS

    def dumps(value: Any) -> bytes:
        try:
            return orjson.dumps(value, option=_OPTS)
        except TypeError:
            return orjson.dumps(value, option=_OPTS, default=_fallback)

except ImportError:  # pragma: no cover - exercised only where orjson is missing
    import json

    JSONDecodeError = ValueError

    def loads(data: str | bytes | bytearray) -> Any:
        return json.loads(data)

    def dumps(value: Any) -> bytes:
        return json.dumps(value, default=_fallback, allow_nan=False).encode()


def _fallback(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot write a {type(value).__name__} as JSON")
