"""Small text models that run here without downloading anything: a GPT-2 language model with random weights
built from a local config, with a word-level tokenizer made from a vocabulary written here (transformers and
tokenizers), a character-level bigram model trained here on a few sentences (numpy only, light enough for an
image), and an embedding function of hashed character trigrams (numpy only)."""

from __future__ import annotations

import numpy as np

WORDS = (
    "<unk> <eos> user assistant system : hello world the a bike ride is fast slow red blue green road hill "
    "today tomorrow rain sun wind my your it was will be and or not very good bad long short"
).split()
CORPUS = (
    "the red bike is fast. the blue bike is slow. a long ride up the hill. rain today, sun tomorrow. "
    "my bike was very good on the road. the wind was bad and the ride was long."
)


def tiny_gpt2():
    """``generate(messages, max_tokens=16)`` yields the reply's words greedily (deterministic; no word twice),
    then one last piece with the usage it counted."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(WORDS), n_positions=64, n_embd=32, n_layer=2, n_head=2, bos_token_id=1, eos_token_id=1
    )
    net = GPT2LMHeadModel(config).eval()
    words = list(WORDS)

    def generate(messages, max_tokens=16):
        prompt = " ".join(f"{m['role']} : {m['content']}" for m in messages) + " assistant :"
        ids = tokenizer.encode(prompt).ids[-40:]
        prompt_tokens, made = len(ids), 0
        with torch.no_grad():  # the whole sequence each step: a few dozen tokens, no cache API to depend on
            for _ in range(min(int(max_tokens), 20)):
                logits = net(input_ids=torch.tensor([ids])).logits[0, -1]
                logits[ids[prompt_tokens:]] = float("-inf")  # greedy, without repeating a word of the reply
                token = int(logits.argmax())
                if token == 1:
                    break
                made += 1
                ids.append(token)
                yield words[token] + " "
        yield {"content": "", "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": made}}

    return generate


def bigram_chat(corpus: str = CORPUS):
    """A character-level bigram model trained here on ``corpus``: ``chat(messages, max_tokens=40)`` yields one
    character at a time, each the likeliest after the one before (deterministic), starting from the last
    character of the last message."""
    chars = sorted(set(corpus))
    index = {c: i for i, c in enumerate(chars)}
    counts = np.ones((len(chars), len(chars)))
    for a, b in zip(corpus, corpus[1:]):
        counts[index[a], index[b]] += 1
    probs = counts / counts.sum(axis=1, keepdims=True)

    def chat(messages, max_tokens=40):
        text = messages[-1]["content"] or " "
        current = index.get(text[-1], index[" "])
        for _ in range(int(max_tokens)):
            current = int(np.argmax(probs[current]))
            yield chars[current]

    return chat


def trigram_embed(dim: int = 32):
    """``embed(texts)``: per text, its character trigrams hashed (crc32, stable across processes) into
    ``dim`` buckets, L2-normalised; float32 of shape (len(texts), dim)."""
    import zlib

    def embed(texts):
        out = np.zeros((len(texts), dim), dtype=np.float32)
        for row, text in enumerate(texts):
            padded = f"  {text.lower()} "
            for i in range(len(padded) - 2):
                out[row, zlib.crc32(padded[i : i + 3].encode()) % dim] += 1.0
            norm = np.linalg.norm(out[row])
            if norm:
                out[row] /= norm
        return out

    return embed
