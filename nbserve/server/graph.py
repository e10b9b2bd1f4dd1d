"""A graph of stages served as one model: each stage a registered version of its own, run in order in one
process, the answer of one stage handed to the next as the Python object it returned (no JSON between them).

The graph's artifact is a manifest of kind ``graph`` that names its stages' artifacts by address; they lie
beside it (the registry's store, the image's ``artifacts/``), each verified before it is unpickled. The
graph's method (``predict``) takes the first stage's input and answers the last stage's output; its schemas
are the graph manifest's own, so decoding, /openapi.json, batching, drift and every protocol treat the graph
as any model. What a graph adds (``install``):

* ``GET /graph``: the stages in order, each with its registered version, method, schemas and the stages it
  takes its input from;
* ``POST /stages/{name}/{method}``: one stage alone, decoded by its own input schema (for debugging);
* per-stage metrics: each call notes the seconds of every stage (and which one raised) in one tuple, which
  the housekeeping thread turns into ``nbserve_stage_duration_seconds`` and ``nbserve_stage_errors_total``
  (metrics.py), labelled by stage and stage version;
* a stage that raises is a 500 naming the stage and its version, without internals (StageError).

A stage with one input stage gets that stage's answer; a stage with several (a fan-in) gets a dict of their
answers by stage name, in the order the edges gave them; a stage with none gets the graph's input. The kernel
runs the very same ``Runner`` over the live objects (nbserve/graphs.py), so a served graph answers as the
kernel's. Imports nothing else from nbserve.
"""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import artifact, guards, jsonio
from .errors import CallError

if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Collection, Iterable

    from flask import Flask, Response

    from .settings import Settings

MAX_RECORDS = 100_000  # stage timings held between two pushes (as observe.py's records)


class StageError(CallError):
    """A stage raised: the graph's answer is a 500 naming the stage (the exception's first line only)."""

    def __init__(self, stage: str, model_id: str, exc: BaseException):
        self.stage, self.model_id, self.exception = stage, model_id, type(exc).__name__
        super().__init__(
            500,
            "StageError",
            f"stage {stage!r} ({model_id}) raised {type(exc).__name__}: {guards.public_message(exc)}",
        )


def plan(stages: dict, edges: Iterable[tuple[str, str]]) -> tuple[list, str]:
    """(stages in running order as (name, inputs), the last stage) for ``stages`` (names, in the order given)
    and ``edges`` ([(from, to)]); ValueError saying what is wrong with the graph."""
    names = list(stages)
    inputs: dict = {n: [] for n in names}
    for a, b in edges:
        for end in (a, b):
            if end not in inputs:
                raise ValueError(f"an edge names the stage {end!r}, which the graph does not have (it has {names})")
        if a == b:
            raise ValueError(f"stage {a!r} has an edge to itself")
        if a in inputs[b]:
            raise ValueError(f"the edge {a!r} -> {b!r} is given twice")
        inputs[b].append(a)
    feeds: dict = {n: [] for n in names}
    for b, sources in inputs.items():
        for a in sources:
            feeds[a].append(b)
    sinks = [n for n in names if not feeds[n]]
    if len(names) > 1:
        lonely = [n for n in names if not feeds[n] and not inputs[n]]
        if lonely:
            raise ValueError(f"stage(s) {lonely} have no edge: connect every stage to the graph")
    # Kahn's order, keeping the given order among stages that are ready together
    waiting = {n: len(inputs[n]) for n in names}
    ready = [n for n in names if waiting[n] == 0]
    order = []
    while ready:
        n = ready.pop(0)
        order.append(n)
        for b in feeds[n]:
            waiting[b] -= 1
            if waiting[b] == 0:
                ready.append(b)
        ready.sort(key=names.index)
    if len(order) != len(names):
        cycle = [n for n in names if n not in order]
        raise ValueError(f"the edges make a cycle through {cycle}: a graph runs each stage once, in order")
    if len(sinks) != 1:
        raise ValueError(
            f"a graph ends in one stage, whose answer is the graph's; these stages feed no other: {sinks} "
            f"(add a stage that combines them, e.g. an average)"
        )
    return [(n, tuple(inputs[n])) for n in order], sinks[0]


class Runner:
    """Calls the stages in order. ``calls``: stage name -> the bound method the graph uses; ``records``: a
    deque the served graph notes each call's stage seconds in (None in the kernel); ``raises``: how a
    stage's exception leaves (the server's StageError, or the kernel's own exception with a note)."""

    def __init__(
        self,
        steps: Iterable[tuple[str, tuple[str, ...]]],
        output: str,
        calls: dict[str, Callable[[Any], Any]],
        ids: dict[str, str],
        records: deque | None = None,
        served: bool = True,
    ) -> None:
        self.steps = [(name, calls[name], inputs) for name, inputs in steps]
        self.output, self.ids, self.records, self.served = output, ids, records, served
        self.__name__ = "graph"

    def __call__(self, value: Any) -> Any:
        results: dict = {}
        seconds = []
        perf = time.perf_counter
        for name, call, inputs in self.steps:
            arg = _input(value, results, inputs)
            t0 = perf()
            try:
                results[name] = call(arg)
            except Exception as exc:
                if self.records is not None:
                    seconds.append(perf() - t0)
                    self.records.append((seconds, name, type(exc).__name__))
                if self.served:
                    raise StageError(name, self.ids.get(name, name), exc) from None
                note = getattr(exc, "add_note", None)  # Python 3.11+: the traceback says which stage
                if note is not None:
                    note(f"in stage {name!r} of the graph")
                raise
            seconds.append(perf() - t0)
        if self.records is not None:
            self.records.append((seconds, None, None))
        return results[self.output]

    def flow(self, value: Any) -> dict:
        """Every stage's (input, output) on ``value``: how a sample flows through the graph (registration)."""
        results: dict = {}
        seen = {}
        for name, call, inputs in self.steps:
            arg = _input(value, results, inputs)
            results[name] = call(arg)
            seen[name] = (arg, results[name])
        return seen


def _input(value: Any, results: dict, inputs: tuple[str, ...]) -> Any:
    """What a stage gets: the graph's input, its one input stage's answer, or its input stages' answers by name."""
    if not inputs:
        return value
    if len(inputs) == 1:
        return results[inputs[0]]
    return {i: results[i] for i in inputs}


class ServedGraph:
    """The stages of a graph artifact, loaded and verified, with the runner the graph's method calls."""

    def __init__(self, artifact_dir: str | os.PathLike[str], manifest: dict) -> None:
        spec = manifest["graph"]
        root = Path(artifact_dir).parent  # the stages' artifacts lie beside the graph's
        self.spec = spec
        self.stages: dict = {}  # name -> {"model", "method", "manifest", "methods"}
        calls = {}
        for name, stage in spec["stages"].items():
            obj, stage_manifest = artifact.load(root / stage["sha256"])
            methods = guards.contain_exits(artifact.bind_methods(obj, stage_manifest))
            self.stages[name] = dict(stage, manifest=stage_manifest, methods=methods)
            calls[name] = methods[stage["method"]]
        steps = [(s["name"], tuple(s["inputs"])) for s in spec["order"]]
        self.records: deque = deque(maxlen=MAX_RECORDS)
        ids = {n: s["model"] for n, s in spec["stages"].items()}
        self.runner = Runner(steps, spec["output"], calls, ids, self.records)

    def __call__(self, value: Any) -> Any:
        return self.runner(value)

    def drain(self) -> list:
        out, records = [], self.records
        while records:
            try:
                out.append(records.popleft())
            except IndexError:
                break
        return out

    def document(self, model_id: str, method: str) -> dict:
        """What GET /graph answers."""
        stages = []
        for step in self.spec["order"]:
            stage = self.stages[step["name"]]
            signature = stage["manifest"].get("signature", {}).get(stage["method"], {})
            stages.append(
                {
                    "name": step["name"],
                    "model": stage["model"],
                    "method": stage["method"],
                    "methods": list(stage["methods"]),
                    "inputs": list(step["inputs"]),
                    "input": signature.get("input", {"type": "any"}),
                    "output": signature.get("output", {"type": "any"}),
                    "path": f"/stages/{step['name']}/{stage['method']}",
                }
            )
        return {
            "model": model_id,
            "method": method,
            "output": self.spec["output"],
            "stages": stages,
            "edges": [list(e) for e in self.spec["edges"]],
        }


def load(artifact_dir: str | os.PathLike[str], manifest: dict) -> ServedGraph:
    return ServedGraph(artifact_dir, manifest)


def install(
    app: Flask,
    graph: ServedGraph,
    model_id: str,
    methods: Collection[str],
    openapi: dict,
    settings: Settings,
    read_body: Callable[[], bytes],
) -> None:
    """``GET /graph``, ``POST /stages/{name}/{method}`` (with their paths in ``openapi``), and the stage
    timings pushed into /metrics by the housekeeping thread."""
    from flask import Response

    from .dispatch import Dispatch, data_of
    from .openapi import interface_document, openapi_document

    method = next(iter(methods))
    document = jsonio.dumps(graph.document(model_id, method))
    dispatches = {
        name: Dispatch(stage["methods"], stage["manifest"].get("signature", {}), app.logger, settings.extra_columns)
        for name, stage in graph.stages.items()
    }

    observer = app.extensions.get("nbserve.observer")
    if observer is not None and observer.prom is not None:
        observer.prom.add_stages([(s["name"], graph.stages[s["name"]]["model"]) for s in graph.spec["order"]])
        observer.follow(graph.drain, observer.prom.record_stages)

    @app.get("/graph")
    def graph_view() -> Response:
        return Response(document, mimetype="application/json")

    def stage_view(name: str, stage_method: str) -> Response:
        dispatch = dispatches.get(name)
        if dispatch is None:
            raise CallError(404, "NotFound", f"no stage {name!r}; this graph has {list(dispatches)} (see /graph)")
        if stage_method not in dispatch.methods:
            raise CallError(
                404, "NotFound", f"stage {name!r} has no method {stage_method!r}; it serves {list(dispatch.methods)}"
            )
        data = data_of(read_body())
        try:
            answer = dispatch.answer(stage_method, data)
        except CallError as exc:
            if exc.status >= 500:  # say which stage failed, as the graph's own route does
                message = f"stage {name!r} ({graph.stages[name]['model']}): {exc.message}"
                raise CallError(exc.status, exc.type, message) from None
            raise
        return Response(dispatch.dumps(stage_method, answer), mimetype="application/json")

    app.add_url_rule("/stages/<name>/<stage_method>", "call_stage", stage_view, methods=["POST"])

    paths = openapi.setdefault("paths", {})
    paths["/graph"] = {
        "get": {
            "summary": "The graph: its stages in order, each with its registered version and schemas",
            "responses": {"200": {"description": "The graph", "content": {"application/json": {"schema": {}}}}},
        }
    }
    for name, stage in graph.stages.items():
        stage_doc = openapi_document(interface_document(stage["manifest"], stage["model"]))
        for stage_method in stage["methods"]:
            op = dict(stage_doc["paths"]["/" + stage_method]["post"])
            op["summary"] = f"Stage {name} alone ({stage['model']}.{stage_method}), for debugging"
            op["operationId"] = f"stage_{name}_{stage_method}"
            op["tags"] = ["stages"]
            paths[f"/stages/{name}/{stage_method}"] = {"post": op}
