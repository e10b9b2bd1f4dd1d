"""OpenAI-compatible routes for text functions, called with the official ``openai`` client.

A tiny GPT-2 with random weights (built from a local config, a word-level tokenizer from a vocabulary written
here: nothing downloaded) served with ``kind="chat"`` answers ``/v1/chat/completions`` whole and streamed with
the kernel's reply and the usage it reports; an embedding function served with ``kind="embeddings"`` answers
``/v1/embeddings`` with the kernel's vectors, in floats and in base64 (the client's default); ``/v1/models``
answers both OpenAI's shape and KServe V1's; a function that takes no ``max_tokens`` or ``stop`` gets them
applied by the server; errors come in OpenAI's shape as the client's own exceptions; the time to the first
item and tokens per second show in the metrics. On Docker, a character-level model trained here and the same
embedder (numpy only, a light image). Through the Jupyter server's proxy: tests/ui/test_streaming_ui.py.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import openai
import pytest
import requests
from nbserve_testing import RUNTIMES, docker_workspace
from text_models import bigram_chat, tiny_gpt2, trigram_embed

TIMEOUT = 60
HELLO = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello the red bike"}]


def echo(messages):
    """The last message's words back, one piece each (takes no max_tokens and no stop: the server applies them)."""
    for word in messages[-1]["content"].split():
        yield word + " "


def reply(chat, messages, **kw):
    """The kernel's reply: its text, and the usage it reported."""
    text, usage = "", None
    for piece in chat(messages, **kw):
        if isinstance(piece, dict):
            text += piece.get("content", "")
            usage = piece.get("usage") or usage
        else:
            text += piece
    return text, usage


@pytest.fixture(scope="module")
def models():
    return SimpleNamespace(gpt2=tiny_gpt2(), bigram=bigram_chat(), embed=trigram_embed())


@pytest.fixture(scope="module")
def process(module_workspace, models):
    ws = module_workspace
    chat = ws.serve(models.gpt2, name="assistant", kind="chat", runtime="process", progress=False)
    embedder = ws.serve(models.embed, name="embedder", kind="embeddings", runtime="process", progress=False)
    echoing = ws.serve(echo, kind="chat", runtime="process", progress=False)
    return SimpleNamespace(runtime="process", chat=chat, chat_fn=models.gpt2, embedder=embedder, echo=echoing)


@pytest.fixture(scope="module")
def docker(tmp_path_factory, models):
    for ws in docker_workspace(tmp_path_factory, "openai-docker"):
        chat = ws.serve(models.bigram, name="assistant", kind="chat", runtime="docker", progress=False)
        embedder = ws.serve(models.embed, name="embedder", kind="embeddings", runtime="docker", progress=False)
        yield SimpleNamespace(runtime="docker", chat=chat, chat_fn=models.bigram, embedder=embedder)


@pytest.fixture(params=RUNTIMES)
def served(request):
    return request.getfixturevalue(request.param)


def client_for(inst, **kw):
    return openai.OpenAI(base_url=inst.url + "/v1", api_key="unused", timeout=TIMEOUT, max_retries=0, **kw)


# -- chat ---------------------------------------------------------------------------------------------------


def test_a_chat_completion_is_the_kernels_reply(served):
    expected, usage = reply(served.chat_fn, HELLO, max_tokens=8)
    done = client_for(served.chat).chat.completions.create(model="assistant", messages=HELLO, max_tokens=8)
    assert done.object == "chat.completion" and done.model == "assistant"
    assert done.choices[0].message.role == "assistant"
    assert done.choices[0].message.content == expected and expected.strip()
    assert done.choices[0].finish_reason == "stop"
    if usage is None:  # the bigram model reports none: no usage is made up
        assert done.usage is None
    else:
        assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (
            usage["prompt_tokens"],
            usage["completion_tokens"],
        )
        assert done.usage.total_tokens == usage["prompt_tokens"] + usage["completion_tokens"]


def test_a_streamed_chat_completion_sends_the_kernels_pieces_as_chunks(served):
    expected, usage = reply(served.chat_fn, HELLO, max_tokens=8)
    stream = client_for(served.chat).chat.completions.create(
        model="assistant", messages=HELLO, max_tokens=8, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(texts) == expected and len(texts) > 1  # piece by piece, not one block
    finishing = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishing == ["stop"]
    usage_chunks = [c for c in chunks if c.usage is not None]
    if usage is None:
        assert usage_chunks == []
    else:
        assert usage_chunks[-1].usage.completion_tokens == usage["completion_tokens"] and not usage_chunks[-1].choices


def test_max_tokens_and_stop_reach_the_function_or_are_applied_by_the_server(process):
    chat = client_for(process.chat)
    three = chat.chat.completions.create(model="assistant", messages=HELLO, max_tokens=3)
    assert three.choices[0].message.content == reply(process.chat_fn, HELLO, max_tokens=3)[0]
    assert three.usage.completion_tokens == 3  # the function took max_tokens itself
    words = [{"role": "user", "content": "one two three four five"}]
    echoing = client_for(process.echo)
    capped = echoing.chat.completions.create(model="echo", messages=words, max_tokens=2)
    assert capped.choices[0].message.content == "one two " and capped.choices[0].finish_reason == "length"
    cut = echoing.chat.completions.create(model="echo", messages=words, stop=["ee f", "nothing"])
    assert cut.choices[0].message.content == "one two thr" and cut.choices[0].finish_reason == "stop"
    streamed = echoing.chat.completions.create(model="echo", messages=words, max_tokens=4, stream=True)
    chunks = list(streamed)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "one two three four "
    assert chunks[-1].choices[0].finish_reason == "length"


def test_errors_come_in_openais_shape_as_the_clients_exceptions(process):
    chat = client_for(process.chat)
    with pytest.raises(openai.NotFoundError) as found:
        chat.chat.completions.create(model="gpt-4o", messages=HELLO)
    assert found.value.code == "model_not_found" and "'assistant'" in found.value.message
    with pytest.raises(openai.BadRequestError) as bad:
        chat.chat.completions.create(model="assistant", messages=[])
    assert bad.value.param == "messages" and bad.value.type == "invalid_request_error"
    with pytest.raises(openai.BadRequestError, match="n must be 1"):
        chat.chat.completions.create(model="assistant", messages=HELLO, n=2)
    image = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}]
    with pytest.raises(openai.BadRequestError, match="text parts only"):
        chat.chat.completions.create(model="assistant", messages=image)
    resp = requests.post(process.chat.url + "/v1/chat/completions", data=b"{oops", timeout=10)
    assert resp.status_code == 400
    assert set(resp.json()["error"]) == {"message", "type", "param", "code"}
    # text parts are read as text
    parts = [{"type": "text", "text": "hello the "}, {"type": "text", "text": "red bike"}]
    done = chat.chat.completions.create(
        model="assistant", messages=[HELLO[0], {"role": "user", "content": parts}], max_tokens=8
    )
    assert done.choices[0].message.content == reply(process.chat_fn, HELLO, max_tokens=8)[0]


def test_models_list_answers_openai_and_kserve_v1_at_once(process):
    chat = client_for(process.chat)
    assert [m.id for m in chat.models.list()] == ["assistant"]
    assert chat.models.retrieve("assistant").owned_by == "nbserve"
    listing = requests.get(process.chat.url + "/v1/models", timeout=10).json()
    assert listing["models"] == ["assistant"] and listing["object"] == "list"  # KServe V1 reads "models"
    assert requests.get(process.chat.url + "/v1/models/assistant", timeout=10).json()["ready"] is True
    interface = requests.get(process.chat.url + "/interface.json", timeout=10).json()
    spoken = {p["name"]: p for p in interface["protocols"]}
    assert spoken["openai"]["kind"] == "chat" and "/v1/chat/completions" in spoken["openai"]["routes"]
    spec = requests.get(process.chat.url + "/openapi.json", timeout=10).json()
    assert "/v1/chat/completions" in spec["paths"] and "/v1/embeddings" not in spec["paths"]


def test_time_to_first_token_and_tokens_per_second_are_in_the_metrics(process):
    list(client_for(process.chat).chat.completions.create(model="assistant", messages=HELLO, stream=True))
    row = process.chat.metrics().set_index("method").loc["generate"]
    assert row["items"] > 0 and row["first_item_p50_ms"] > 0 and row["items_per_s"] > 0


# -- embeddings ----------------------------------------------------------------------------------------------


def test_embeddings_are_the_kernels_vectors_in_base64_and_in_floats(served, models):
    texts = ["the red bike", "rain today, sun tomorrow", "hello"]
    expected = models.embed(texts)
    client = client_for(served.embedder)
    got = client.embeddings.create(model="embedder", input=texts)  # the client asks for base64 by default
    assert [d.index for d in got.data] == [0, 1, 2] and got.model == "embedder"
    np.testing.assert_array_equal(np.array([d.embedding for d in got.data], dtype=np.float32), expected)
    floats = client.embeddings.create(model="embedder", input=texts[0], encoding_format="float")
    np.testing.assert_array_equal(np.float32(floats.data[0].embedding), expected[0])
    short = client.embeddings.create(model="embedder", input=texts[:1], dimensions=8, encoding_format="float")
    np.testing.assert_array_equal(np.float32(short.data[0].embedding), expected[0][:8])
    with pytest.raises(openai.BadRequestError, match="text"):
        client.embeddings.create(model="embedder", input=[[1, 2, 3]])
    raw = requests.post(served.embedder.url + "/v1/embeddings", json={"input": "hello"}, timeout=10).json()
    assert raw["object"] == "list" and len(raw["data"][0]["embedding"]) == 32 and "usage" not in raw
    assert json.loads(json.dumps(raw))["data"][0]["object"] == "embedding"
