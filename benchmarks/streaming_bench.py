"""What streaming costs: time to the first item and items per second of a served generator, against calling
the same generator in the kernel, in the same run.

    python benchmarks/streaming_bench.py [--rounds 5] [--items 5000] [--gpt2] [--only count,work,gpt2] [--json OUT]

Three generators, each served on the process runtime (one worker) and called in this process:

* ``count``: bare items (``{"i": i}``), as fast as Python makes them: what the stream itself costs per item
  (the worker writes one item per turn of its event loop, a chunk each);
* ``work``: an item after about a millisecond of numpy work, as a model that computes each item does;
* ``gpt2`` (``--gpt2``): the tiny random GPT-2 of tests/text_models.py answering a chat, word by word (through
  the client's stream and through the ``openai`` client's streamed chat completion).

Served, the items are read with ``inst.client().stream(...)`` (NDJSON over a kept-alive connection): time to
the first item from the request to its arrival, items per second from the first item to the last. In the
kernel: from the call to the first ``next()``, and over the same items. Rounds alternate kernel and server;
the medians and their ratios are printed. Ratios from a loaded machine are not targets met.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def count(n):
    for i in range(int(n)):
        yield {"i": i}


def make_work():
    import numpy as np

    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(160, 160))

    def work(n):
        v = np.ones(160)
        for i in range(int(n)):
            for _ in range(100):  # about a millisecond of numpy per item on the 2-core machine
                v = np.tanh(matrix @ v)
            yield {"i": i, "x": float(v[0])}

    return work


def measure(items_of) -> tuple[float, float, int]:
    """(seconds to the first item, items per second after it, items) of one pass over ``items_of()``."""
    start = time.perf_counter()
    items = items_of()
    first = next(items)
    got_first = time.perf_counter()
    n = 1
    for _ in items:
        n += 1
    end = time.perf_counter()
    del first
    return got_first - start, (n - 1) / (end - got_first) if n > 1 else float("nan"), n


def run(name, fn, arg, inst, method, rounds, openai_client=None):
    client = inst.client(timeout=120)
    rows: dict[str, list] = {"kernel": [], "served": []}
    if openai_client is not None:
        rows["openai"] = []
    measure(lambda: fn(arg))  # warm both (imports, the worker's first call)
    measure(lambda: client.stream(method, arg))
    for _ in range(rounds):
        rows["kernel"].append(measure(lambda: fn(arg)))
        rows["served"].append(measure(lambda: client.stream(method, arg)))
        if openai_client is not None:
            rows["openai"].append(measure(lambda: _openai_stream(openai_client, arg)))
    client.close()
    out = {}
    for how, measured in rows.items():
        out[how] = {
            "first_item_ms": statistics.median(m[0] for m in measured) * 1000,
            "items_per_s": statistics.median(m[1] for m in measured),
            "items": measured[0][2],
        }
    return name, out


def _openai_stream(client, messages):
    for chunk in client.chat.completions.create(model="assistant", messages=messages, stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            yield chunk.choices[0].delta.content


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--items", type=int, default=5000, help="items of the count generator")
    parser.add_argument("--work-items", type=int, default=300, help="items of the work generator")
    parser.add_argument("--gpt2", action="store_true", help="also the tiny GPT-2 chat (imports torch)")
    parser.add_argument("--only", help="comma-separated generators to run (count, work, gpt2)")
    parser.add_argument("--json", help="write the medians here")
    args = parser.parse_args(argv)

    workdir = tempfile.mkdtemp(prefix="nbserve-streaming-bench-")
    os.environ["NBSERVE_HOME"] = workdir
    print(f"workdir {workdir}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    import nbserve

    results = []
    served = []
    try:
        work = make_work()
        only = set(args.only.split(",")) if args.only else {"count", "work", "gpt2"}
        cases = [("count", count, args.items), ("work", work, args.work_items)]
        for name, fn, arg in (c for c in cases if c[0] in only):
            inst = nbserve.serve(fn, name=name, runtime="process", progress=False)
            served.append(inst)
            results.append(run(name, fn, arg, inst, fn.__name__, args.rounds))
        if args.gpt2 and "gpt2" in only:
            import openai
            from text_models import tiny_gpt2

            generate = tiny_gpt2()
            inst = nbserve.serve(generate, name="assistant", kind="chat", runtime="process", progress=False)
            served.append(inst)
            client = openai.OpenAI(base_url=inst.url + "/v1", api_key="unused", timeout=120, max_retries=0)
            messages = [{"role": "user", "content": "hello the red bike"}]
            results.append(run("gpt2", generate, messages, inst, "generate", args.rounds, client))
    finally:
        for inst in served:
            inst.remove()
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)

    print()
    print("| generator | items | how | time to first item | items/s | first item: served / kernel | items/s: ratio |")
    print("|---|---|---|---|---|---|---|")
    medians = {}
    for name, rows in results:
        kernel = rows["kernel"]
        for how, row in rows.items():
            first_ratio = row["first_item_ms"] / kernel["first_item_ms"] if kernel["first_item_ms"] else float("nan")
            rate_ratio = row["items_per_s"] / kernel["items_per_s"] if kernel["items_per_s"] else float("nan")
            print(
                f"| {name} | {row['items']} | {how} | {row['first_item_ms']:.3f} ms | {row['items_per_s']:,.0f} | "
                + ("1 | 1 |" if how == "kernel" else f"{first_ratio:,.1f} | {rate_ratio:.3f} |")
            )
        medians[name] = rows
    if args.json:
        Path(args.json).write_text(json.dumps(medians, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
