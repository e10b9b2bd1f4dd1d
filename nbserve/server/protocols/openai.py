"""OpenAI's routes for text functions: what the official ``openai`` client, LangChain and LlamaIndex call.

A function registered with ``kind="chat"`` takes the conversation, a list of ``{"role", "content"}`` messages,
and returns the reply's text: a ``str``, or a generator of pieces of it (``str``, or dicts with ``"content"``
and, once, ``"usage": {"prompt_tokens", "completion_tokens"}`` and ``"finish_reason"``). It is served at
``POST /v1/chat/completions``, whole or streamed (``"stream": true``: server-sent events of
``chat.completion.chunk`` objects, then ``data: [DONE]``). A function registered with ``kind="embeddings"``
takes a list of texts and returns one vector per text (a 2-D array, a list of lists, or a dict with
``"embeddings"`` and ``"usage"``): ``POST /v1/embeddings``, in floats or base64 (what the client asks by
default). ``GET /v1/models`` lists the model, in OpenAI's shape and KServe V1's at once (v1.py answers it).

The request's sampling parameters (``max_tokens``, ``temperature``, ``top_p``, ``stop``, ``seed``, ...) reach
the function when its signature names them (keywords.py); otherwise ``max_tokens`` caps the pieces of a
streamed reply (``finish_reason: "length"``) and ``stop`` cuts the text where a stop sequence appears. Usage
is reported where the function reports it, never made up. Errors are OpenAI's ``{"error": {"message", "type",
"param", "code"}}``; a model name other than the served one is a 404 ``model_not_found``.
"""

from __future__ import annotations

import base64
import secrets
import time
from typing import TYPE_CHECKING, Any

from flask import Response, current_app, request

from .. import errors, jsonio, keywords, streaming
from ..errors import CallError
from . import blueprint as protocol_blueprint

if TYPE_CHECKING:
    from collections.abc import Iterator

    from flask import Blueprint

    from . import Served

PROTOCOL = "openai"
KINDS = ("chat", "embeddings")
SAMPLING = ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty", "user")
OPENAI_SSE = streaming.Format(streaming.SSE, sse=True, end=b"data: [DONE]\n\n", error_form=errors.OPENAI)
_DONE = object()


def routes(kind: str | None) -> list[str]:
    if kind == "chat":
        return ["/v1/models", "/v1/chat/completions"]
    if kind == "embeddings":
        return ["/v1/models", "/v1/embeddings"]
    return []


def model_entry(served: Served) -> dict:
    """The served model as OpenAI's ``GET /v1/models`` lists it."""
    return {"id": served.name, "object": "model", "created": served.created, "owned_by": "nbserve"}


def _bad(message: str, param: str | None = None, status: int = 400, type_: str = "BadRequest") -> CallError:
    return CallError(status, type_, message, param=param)


def _request_body(served: Served) -> dict:
    try:
        payload = jsonio.loads(served.body())
    except (jsonio.JSONDecodeError, UnicodeDecodeError) as exc:
        raise errors.invalid_json(exc, "a JSON object") from None
    if not isinstance(payload, dict):
        raise _bad("expected a JSON object")
    model = payload.get("model")
    if model is not None and model not in (served.name, served.model_id):
        raise _bad(
            f"the model {model!r} does not exist here; this server serves {served.name!r}",
            "model",
            404,
            "ModelNotFound",
        )
    return payload


def blueprint(served: Served) -> Blueprint:
    bp = protocol_blueprint("openai", errors.OPENAI)
    dispatch, method = served.dispatch, served.text_method
    if method is None:  # not a text function (protocols.install sets text_method with text_kind)
        return bp

    if served.text_kind == "chat":

        @bp.post("/v1/chat/completions")
        def chat_completions() -> Response:
            request.environ["nbserve.method"] = method  # the metrics count it as a call of the function
            payload = _request_body(served)
            messages = _messages(payload.get("messages"))
            if payload.get("n", 1) not in (1, None):
                raise _bad("this model answers with one choice: n must be 1", "n")
            max_tokens = _positive_int(payload, "max_completion_tokens") or _positive_int(payload, "max_tokens")
            stop = _stop(payload.get("stop"))
            takes = served.takes.get(method, frozenset())
            given = {k: payload.get(k) for k in SAMPLING}
            given.update(max_tokens=max_tokens, stop=stop)
            limit = None if "max_tokens" in takes else max_tokens  # pieces, when the function does not cap itself
            cut = None if "stop" in takes else stop
            started = time.perf_counter()
            with keywords.given(**given):
                result = dispatch.result(method, messages)
            pieces = _pieces(result, method, limit, cut)
            completion = {"id": f"chatcmpl-{secrets.token_hex(12)}", "created": int(time.time()), "model": served.name}
            if payload.get("stream"):
                usage_wanted = bool((payload.get("stream_options") or {}).get("include_usage"))
                chunks = _chunks(pieces, completion, usage_wanted)
                observer = current_app.extensions.get("nbserve.observer")
                return streaming.respond(
                    chunks, method, jsonio.dumps, request.environ, observer, started, OPENAI_SSE, _has_content
                )
            return _json(_whole(pieces, completion, method))

    if served.text_kind == "embeddings":

        @bp.post("/v1/embeddings")
        def embeddings() -> Response:
            request.environ["nbserve.method"] = method
            payload = _request_body(served)
            texts = _texts(payload.get("input"))
            encoding = payload.get("encoding_format") or "float"
            if encoding not in ("float", "base64"):
                raise _bad("encoding_format must be 'float' or 'base64'", "encoding_format")
            dimensions = payload.get("dimensions")
            with keywords.given(dimensions=dimensions, user=payload.get("user")):
                result = dispatch.result(method, texts)
            vectors, usage = _vectors(result, len(texts), method)
            if dimensions is not None and "dimensions" not in served.takes.get(method, frozenset()):
                if not isinstance(dimensions, int) or not 1 <= dimensions <= len(vectors[0]):
                    raise _bad(f"dimensions must be between 1 and {len(vectors[0])}", "dimensions")
                vectors = [v[:dimensions] for v in vectors]
            data = [
                {"object": "embedding", "index": i, "embedding": _encode_vector(v, encoding)}
                for i, v in enumerate(vectors)
            ]
            body: dict[str, Any] = {"object": "list", "data": data, "model": served.name}
            if usage:
                body["usage"] = {
                    "prompt_tokens": usage.get("prompt_tokens", 0),
                    "total_tokens": usage.get("total_tokens", usage.get("prompt_tokens", 0)),
                }
            return _json(body)

    return bp


# -- chat --------------------------------------------------------------------------------------------------


def _messages(messages: Any) -> list[dict]:
    """OpenAI's messages as the function takes them: ``{"role", "content"}`` with the content as text."""
    if not isinstance(messages, list) or not messages:
        raise _bad("messages must be a non-empty list of {'role', 'content'} objects", "messages")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise _bad(f"messages[{i}] must be an object with a 'role' and a 'content'", f"messages[{i}]")
        content = m.get("content")
        if isinstance(content, list):  # content parts: this function reads text
            texts = []
            for part in content:
                if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise _bad(
                        f"messages[{i}].content: this model reads text parts only ({{'type': 'text', 'text': ...}})",
                        f"messages[{i}].content",
                    )
                texts.append(part["text"])
            content = "".join(texts)
        elif content is None:
            content = ""
        elif not isinstance(content, str):
            raise _bad(f"messages[{i}].content must be text", f"messages[{i}].content")
        out.append({"role": m["role"], "content": content})
    return out


def _positive_int(payload: dict, key: str) -> int | None:
    value = payload.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _bad(f"{key} must be a whole number >= 1", key)
    return value


def _stop(stop: Any) -> list[str] | None:
    if stop is None:
        return None
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and len(stop) <= 4 and all(isinstance(s, str) and s for s in stop):
        return stop
    raise _bad("stop must be a string or a list of up to 4 strings", "stop")


def _piece(item: Any, method: str) -> dict:
    """One piece of a reply: {"content", "usage"?, "finish_reason"?}."""
    if isinstance(item, str):
        return {"content": item}
    if isinstance(item, dict):
        content = item.get("content", item.get("text", ""))
        if content is None:
            content = ""
        if isinstance(content, str) and (item.get("usage") is None or isinstance(item["usage"], dict)):
            return {"content": content, "usage": item.get("usage"), "finish_reason": item.get("finish_reason")}
    raise CallError(
        500,
        "OutputError",
        f"{method} returned {type(item).__name__}; a chat function returns text (a str), or yields str pieces "
        f"(or dicts with 'content', and 'usage' once)",
    )


def _pieces(result: Any, method: str, limit: int | None, stop: list[str] | None) -> Iterator[dict]:
    """The reply's pieces, capped at ``limit`` pieces and cut before a ``stop`` sequence; the last one
    (``"last"``) says why it ended. With stop sequences, the text that could begin one is held back until the
    next piece shows whether it does (what is sent cannot be taken back)."""
    items = result if streaming.is_stream(result) else iter([result])
    keep = max((len(s) for s in stop), default=1) - 1 if stop else 0
    pending, count, usage, finish = "", 0, None, None
    try:
        for item in items:
            piece = _piece(item, method)
            usage = piece.get("usage") or usage
            finish = piece.get("finish_reason") or finish
            if not piece["content"]:
                continue
            count += 1
            pending += piece["content"]
            if stop:
                hits = [i for i in (pending.find(s) for s in stop) if i >= 0]
                if hits:
                    yield {"content": pending[: min(hits)], "usage": usage, "finish_reason": "stop", "last": True}
                    return
            ready, pending = (pending[: len(pending) - keep], pending[len(pending) - keep :]) if keep else (pending, "")
            if ready:
                yield {"content": ready, "usage": usage}
            if limit is not None and count >= limit:
                yield {"content": pending, "usage": usage, "finish_reason": "length", "last": True}
                return
        yield {"content": pending, "usage": usage, "finish_reason": finish, "last": True}
    finally:
        streaming._close(items)


def _whole(pieces: Iterator[dict], completion: dict, method: str) -> dict:
    texts, usage, finish = [], None, None
    for piece in pieces:
        texts.append(piece["content"])
        usage = piece.get("usage") or usage
        finish = piece.get("finish_reason") or finish
    body = {
        **completion,
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(texts)},
                "finish_reason": finish or "stop",
                "logprobs": None,
            }
        ],
    }
    if usage:
        body["usage"] = _usage(usage)
    return body


def _chunks(pieces: Iterator[dict], completion: dict, usage_wanted: bool) -> Iterator[dict]:
    """The ``chat.completion.chunk`` objects of a streamed reply: the role first (after the first piece is
    there, so that a function failing at once answers a plain error), the pieces, the finish, the usage."""
    base = {**completion, "object": "chat.completion.chunk"}

    def chunk(delta: dict, finish: str | None = None) -> dict:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}

    try:
        first = next(pieces)
        yield chunk({"role": "assistant", "content": ""})
        usage = None
        for piece in _chain(first, pieces):
            usage = piece.get("usage") or usage
            if piece["content"]:
                yield chunk({"content": piece["content"]})
            if piece.get("last"):
                yield chunk({}, piece.get("finish_reason") or "stop")
        if usage_wanted and usage:
            yield {**base, "choices": [], "usage": _usage(usage)}
    finally:
        streaming._close(pieces)


def _has_content(chunk: dict) -> bool:
    """A chunk that carries a piece of the reply (the role's and the finish's do not): a token, for the metrics."""
    choices = chunk.get("choices") or ()
    return bool(choices and choices[0]["delta"].get("content"))


def _chain(first: dict, rest: Iterator[dict]) -> Iterator[dict]:
    yield first
    yield from rest


def _usage(usage: dict) -> dict:
    prompt, completion = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


# -- embeddings --------------------------------------------------------------------------------------------


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    if isinstance(value, list) and value and all(isinstance(v, (int, list)) for v in value):
        raise _bad("this model embeds text: send input as a string or a list of strings, not token ids", "input")
    raise _bad("input must be a string or a non-empty list of strings", "input")


def _vectors(result: Any, n: int, method: str) -> tuple[list, dict | None]:
    usage = None
    if isinstance(result, dict):
        usage = result.get("usage") if isinstance(result.get("usage"), dict) else None
        result = result.get("embeddings", result.get("data"))
    rows = result.tolist() if hasattr(result, "tolist") else result
    if (
        not isinstance(rows, list)
        or len(rows) != n
        or not all(isinstance(r, list) and r and all(isinstance(x, (int, float)) for x in r) for r in rows)
    ):
        raise CallError(
            500,
            "OutputError",
            f"{method} must return one vector of numbers per text ({n} texts): a 2-D array or a list of lists",
        )
    return rows, usage


def _encode_vector(vector: list, encoding: str) -> list | str:
    if encoding == "float":
        return vector
    import array

    values = array.array("f", vector)  # float32, the byte order base64 embeddings use (little-endian here)
    if values.itemsize != 4:  # pragma: no cover
        raise RuntimeError("float32 is not 4 bytes on this platform")
    import sys

    if sys.byteorder != "little":  # pragma: no cover
        values.byteswap()
    return base64.b64encode(values.tobytes()).decode()


def _json(body: dict) -> Response:
    return Response(jsonio.dumps(body), mimetype="application/json")


def openapi_paths(served: Served) -> dict:
    if served.text_kind is None:
        return {}
    tag = ["OpenAI"]
    err = {
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "error": {
                            "type": "object",
                            "properties": {
                                "message": {"type": "string"},
                                "type": {"type": "string"},
                                "param": {"type": "string", "nullable": True},
                                "code": {"type": "string", "nullable": True},
                            },
                        }
                    },
                }
            }
        }
    }
    if served.text_kind == "chat":
        body = {
            "type": "object",
            "required": ["messages"],
            "properties": {
                "model": {"type": "string", "example": served.name},
                "messages": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"role": {"type": "string"}, "content": {"type": "string"}},
                    },
                    "example": [{"role": "user", "content": "Hello"}],
                },
                "stream": {"type": "boolean"},
                "max_tokens": {"type": "integer"},
                "temperature": {"type": "number"},
                "stop": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
            },
        }
        return {
            "/v1/chat/completions": {
                "post": {
                    "tags": tag,
                    "summary": f"{served.text_method} as an OpenAI chat completion (whole, or streamed as events)",
                    "x-nbserve-stream": True,
                    "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
                    "responses": {
                        "200": {
                            "description": "A chat.completion; with stream: chat.completion.chunk events, then [DONE]",
                            "content": {"application/json": {"schema": {"type": "object"}}, "text/event-stream": {}},
                        },
                        "400": {"description": "The request does not fit", **err},
                        "404": {"description": "Unknown model", **err},
                        "500": {"description": "The function raised an exception", **err},
                    },
                }
            }
        }
    body = {
        "type": "object",
        "required": ["input"],
        "properties": {
            "model": {"type": "string", "example": served.name},
            "input": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
            "encoding_format": {"type": "string", "enum": ["float", "base64"]},
        },
    }
    return {
        "/v1/embeddings": {
            "post": {
                "tags": tag,
                "summary": f"{served.text_method} as OpenAI embeddings",
                "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
                "responses": {
                    "200": {"description": "A list of embeddings", "content": {"application/json": {}}},
                    "400": {"description": "The request does not fit", **err},
                    "404": {"description": "Unknown model", **err},
                    "500": {"description": "The function raised an exception", **err},
                },
            }
        }
    }
