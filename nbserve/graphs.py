"""A graph of stages in the kernel: ``nbserve.graph(...)``, ``nbserve.chain(...)``, registered stage by stage.

    g = nbserve.chain(clean, pipe, threshold)                     # a straight line
    g = nbserve.graph(lin=lin, xgb=xgb, mean=average, edges={("lin", "xgb"): "mean"})
    inst = nbserve.serve(g, name="rentals", sample=frame)          # one service
    inst.update_stage("threshold", stricter)                      # one stage changes, the rest stay

Each stage is a live object (a model or a function) or a registered version ("features:3"). Registering the
graph runs the sample through the stages in the kernel; each live stage is then registered as its own model
version, ``<graph>.<stage>``, with its own requirements, signature and proof from the sample that reaches it
(a stage whose pickle, schemas and locked packages did not change keeps its version, without a new proof);
the graph is registered as a version of kind ``graph`` naming its stages' versions, with the first stage's
input schema, the last stage's output schema and the union of the stages' locks, refused when two stages pin
different versions of a package. The served side (``nbserve/server/graph.py``) runs the same ``Runner``.

A stage with one input stage gets that stage's answer; with several (a fan-in), a dict of their answers by
stage name in the order of the edges; with none, the graph's input.
"""

from __future__ import annotations

import hashlib
import platform
import sys
from dataclasses import dataclass
from importlib import metadata

from packaging.utils import canonicalize_name

from .errors import CaptureError, ModelNotFoundError, NbserveError, RequirementsError, SampleError
from .registry import require_name
from .resources import ModelVersion
from .server.shared import GraphRunner as Runner
from .server.shared import bind_methods
from .server.shared import graph_plan as plan

KIND = "graph"
FORMAT = 1


@dataclass
class Stage:
    """One stage: a live object, or a registered version (``ref``: "NAME" or "NAME:VERSION"), and the method
    of it the graph calls (None: "predict" if it has one, else its first)."""

    name: str
    target: object
    method: str | None = None

    @property
    def ref(self) -> str | None:
        if isinstance(self.target, ModelVersion):
            return self.target.id
        return self.target if isinstance(self.target, str) else None


class Graph:
    """Stages and the edges between them. Call it (or its method, ``predict`` unless told) to run it here,
    in the kernel: the served graph answers the same."""

    def __init__(self, stages: dict, edges, method: str = "predict"):
        if not stages:
            raise CaptureError("a graph needs at least one stage")
        if not isinstance(method, str) or not method.isidentifier() or method.startswith("_"):
            raise CaptureError(f"a graph's method is a public identifier such as 'predict', got {method!r}")
        self.stages: dict[str, Stage] = {}
        for name, value in stages.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise CaptureError(f"a stage name is an identifier (it is part of URLs and model names), got {name!r}")
            target, chosen = value if isinstance(value, tuple) and len(value) == 2 else (value, None)
            if isinstance(target, Graph):
                raise CaptureError(f"stage {name!r} is a graph: a stage is a model, a function or a registered version")
            if chosen is not None and not isinstance(chosen, str):
                raise CaptureError(f"stage {name!r}: give (object, 'method name'), got a {type(chosen).__name__}")
            self.stages[name] = Stage(name, target, chosen)
        self.edges = _edges(edges)
        self.method = method
        try:
            self.steps, self.output = plan(self.stages, self.edges)
        except ValueError as exc:
            raise CaptureError(str(exc)) from None
        self._live: dict = {}  # stage name -> (bound method, method, methods) of this kernel, made on first use
        self.workspace = None  # where its registered stages are looked up (None: $NBSERVE_HOME's)

    # -- running in the kernel -----------------------------------------------------------------------

    def __call__(self, data):
        return self.runner()(data)

    def __getattr__(self, name):
        if name != "_live" and name == self.__dict__.get("method"):
            return self.__call__
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def runner(self, workspace=None) -> Runner:
        """The stages' methods run in order, as the served graph runs them (registered stages are loaded)."""
        calls = {name: self._bound(name, workspace)[0] for name in self.stages}
        return Runner(self.steps, self.output, calls, {}, served=False)

    def _bound(self, name: str, workspace=None):
        if name not in self._live:
            from .capture import resolve_methods

            stage = self.stages[name]
            if stage.ref is not None:  # as the server binds it: by its registered manifest
                mv = _workspace(workspace or self.workspace).get_model(stage.target)
                if is_graph(mv):
                    raise CaptureError(f"stage {name!r} is the graph {mv.id}: a stage is a model or a function")
                names, bound = mv.methods, bind_methods(mv.load(), mv.manifest)
            else:
                kind, names = resolve_methods(stage.target, _methods_for(stage.target, stage.method))
                bound = bind_methods(stage.target, {"kind": kind, "methods": names, "signature": {}})
            method = stage.method or ("predict" if "predict" in names else names[0])
            if method not in bound:
                raise CaptureError(f"stage {name!r} has no method {method!r}; it has {list(names)}")
            self._live[name] = (bound[method], method, names)
        return self._live[name]

    # -- changing ----------------------------------------------------------------------------------------

    def replace(self, stage: str, target) -> Graph:
        """The same graph with ``stage`` now ``target`` (a live object, a registered version, or (it, method))."""
        if stage not in self.stages:
            raise NbserveError(f"the graph has no stage {stage!r}; its stages are {list(self.stages)}")
        stages = {n: (s.target, s.method) for n, s in self.stages.items()}
        if isinstance(target, tuple):
            stages[stage] = target
        else:  # the method the stage was called by, where the new one has it (a refit model's predict_proba)
            method = self.stages[stage].method
            stages[stage] = (target, method if method and self._offers(target, method) else None)
        out = Graph(stages, self.edges, self.method)
        out.workspace = self.workspace
        return out

    def _offers(self, target, method: str) -> bool:
        if isinstance(target, (str, ModelVersion)):
            return method in _workspace(self.workspace).get_model(target).methods
        from .capture import resolve_methods

        try:
            return method in resolve_methods(target, None)[1] or callable(getattr(target, method, None))
        except CaptureError:
            return callable(getattr(target, method, None))

    @property
    def first(self) -> list[str]:
        """The stages that take the graph's input."""
        return [name for name, inputs in self.steps if not inputs]

    def __repr__(self):
        if all(len(inputs) <= 1 for _, inputs in self.steps) and len(self.first) == 1:
            return f"<Graph {' -> '.join(n for n, _ in self.steps)}>"
        edges = ", ".join(f"{a}->{b}" for a, b in self.edges)
        return f"<Graph stages={list(self.stages)} edges=[{edges}] output={self.output}>"


def graph(edges=None, method: str = "predict", **stages) -> Graph:
    """A graph of ``stages`` (name=live object, "NAME[:VERSION]", a ModelVersion, or (one of those, "method")).
    ``edges``: {from: to}, where from is a stage name or a tuple of them (a fan-in) and to is a name or a list
    of them (a fan-out), or a list of (from, to) pairs."""
    if edges is None:
        if len(stages) > 1:
            raise CaptureError("give edges={'a': 'b', ...} between the stages, or use nbserve.chain(...) for a line")
        edges = []
    return Graph(stages, edges, method)


def chain(*steps, method: str = "predict", **named) -> Graph:
    """A straight line of stages: ``chain(clean, model, threshold)`` (named after the functions, the registered
    models, or the objects' classes) or ``chain(clean=clean, model=pipe, decide=threshold)``."""
    if steps and named:
        raise CaptureError("chain() takes its stages either all by position or all by name")
    stages = dict(named) if named else {}
    for value in steps:
        target = value[0] if isinstance(value, tuple) else value
        base = _stage_name(target)
        name, n = base, 2
        while name in stages:
            name, n = f"{base}_{n}", n + 1
        stages[name] = value
    names = list(stages)
    return Graph(stages, list(zip(names, names[1:])), method)


def _stage_name(target) -> str:
    if isinstance(target, ModelVersion):
        text = target.name
    elif isinstance(target, str):
        text = target.partition(":")[0]
    else:
        text = getattr(target, "__name__", None) or type(target).__name__.lower()
    clean = "".join(c if c.isalnum() or c == "_" else "_" for c in str(text)).strip("_") or "stage"
    return clean if clean[0].isalpha() or clean[0] == "_" else f"stage_{clean}"


def _edges(edges) -> list[tuple[str, str]]:
    pairs: list
    if isinstance(edges, dict):
        pairs = list(edges.items())
    elif isinstance(edges, (list, tuple)):
        pairs = list(edges)
    else:
        raise CaptureError(f"edges is a dict {{from: to}} or a list of (from, to) pairs, got {type(edges).__name__}")
    out = []
    for pair in pairs:
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise CaptureError(f"an edge is a (from, to) pair, got {pair!r}")
        sources, targets = pair
        sources = [sources] if isinstance(sources, str) else list(sources)
        targets = [targets] if isinstance(targets, str) else list(targets)
        for a in sources:
            for b in targets:
                if not isinstance(a, str) or not isinstance(b, str):
                    raise CaptureError(f"edges name stages by their names, got {a!r} -> {b!r}")
                out.append((a, b))
    return out


def _methods_for(obj, method):
    """The methods to register a live stage with: its defaults when they include the one the graph calls."""
    from .capture import resolve_methods

    if method is None:
        return None
    try:
        _kind, default = resolve_methods(obj, None)
    except CaptureError:
        return [method]
    return None if method in default else [method]


def _workspace(workspace):
    if workspace is not None:
        return workspace
    from .workspace import default_workspace

    return default_workspace()


# -- registering -----------------------------------------------------------------------------------------


def register(ws, g: Graph, name: str, sample, say, **rules) -> ModelVersion:
    """Register every live stage (as ``<name>.<stage>``) from the sample flowing through ``g``, check their
    pins agree, and register the graph as the next version of ``name`` naming its stages' versions."""
    from .capture import SAMPLE_ROWS, reference
    from .capture.signature import batch_slice, describe, example

    name = require_name(name)
    if sample is None:
        raise SampleError(
            f"register the graph {name} with sample=...: the sample flows through the stages, and each stage is "
            f"registered (its schema and proof) from what reaches it"
        )
    runner = g.runner(ws)
    try:
        flow = runner.flow(sample)
    except Exception as exc:
        where = " ".join(getattr(exc, "__notes__", ()))
        raise SampleError(
            f"the sample does not flow through the graph {name}: {type(exc).__name__}: {exc} ({where}); pass a "
            f"sample every stage accepts"
        ) from exc
    versions: dict[str, ModelVersion] = {}
    for stage_name, _inputs in g.steps:
        stage = g.stages[stage_name]
        if stage.ref is not None:
            versions[stage_name] = mv = ws.get_model(stage.target)
            moved = _not_installed(mv.requirements)
            if moved:
                say(
                    f"stage {stage_name} ({mv.id}) was registered with {', '.join(moved)}; this kernel has other "
                    f"versions: the process runtime serves it with this kernel's packages, an image with its pins"
                )
            continue
        _bound, method, _names = g._bound(stage_name, ws)
        versions[stage_name] = register_stage(
            ws,
            f"{name}.{stage_name}",
            stage.target,
            flow[stage_name][0],
            _methods_for(stage.target, stage.method),
            say,
            rules,
        )
    methods = {n: g._bound(n, ws)[1] for n in g.stages}
    check_pins(versions, name)
    first, last = g.first[0], g.output
    output = flow[last][1]
    graph_manifest: dict = {
        "format": FORMAT,
        "kind": KIND,
        "object_type": "nbserve.graphs.Graph",
        "methods": [g.method],
        "signature": {
            g.method: {
                "input": versions[first].signature.get(methods[first], {}).get("input") or describe(sample),
                "output": versions[last].signature.get(methods[last], {}).get("output") or describe(output),
            }
        },
        "requirements": union_requirements(versions),
        "python": platform.python_version(),
        "graph": {
            "stages": {
                n: {"model": versions[n].id, "sha256": versions[n].sha256, "method": methods[n]} for n in g.stages
            },
            "edges": [list(e) for e in g.edges],
            "order": [{"name": n, "inputs": list(inputs)} for n, inputs in g.steps],
            "output": last,
        },
    }
    rows = batch_slice(sample, SAMPLE_ROWS)
    examples = {"input": example(rows), "output": example(runner(rows))}
    if examples["input"] is not None:
        graph_manifest["examples"] = {g.method: examples}
    ref = reference.compute(lambda _m: runner, sample, [g.method])
    if ref:
        graph_manifest["reference"] = ref
    environment = merged_environment(versions, name)
    if environment:
        graph_manifest["environment"] = environment
    packages = sorted({p for mv in versions.values() for p in mv.system_packages})
    if packages:
        graph_manifest["system_packages"] = packages
    graph_manifest["load_starts_threads"] = _any_threads(versions)
    import pickle

    # the graph's own pickle: its plan, by stage versions (plain data: the served side never needs it)
    spec = {"stages": graph_manifest["graph"]["stages"], "edges": graph_manifest["graph"]["edges"], "method": g.method}
    data = pickle.dumps(spec, protocol=4)
    sha = ws.registry.store_artifact(data, graph_manifest)
    row, created = ws.registry.add_version(name, sha, sys.executable)
    mv = ws._version(row)
    stages = ", ".join(f"{n}={versions[n].id}" for n in g.stages)
    say(f"registered the graph {mv.id}: {stages}" if created else f"unchanged since {mv.id}: {stages}")
    return mv


def register_stage(ws, stage_name: str, obj, sample, methods, say, rules) -> ModelVersion:
    """A live stage as a version of ``stage_name``: the version it already has when its pickle, schemas and
    environment are the same and its locked packages are still the installed ones (no new proof needed),
    else captured, proven in a clean interpreter and registered."""
    from .capture import draft, prove

    d = draft(obj, stage_name, sample, methods, **rules)
    same = unchanged(ws, stage_name, d)
    if same is not None:
        say(f"stage {stage_name}: unchanged since {same.id}")
        return same
    say(f"stage {stage_name}: proving it in a clean interpreter")
    return ws._store(d.finish(prove(d)), stage_name, say)


def unchanged(ws, stage_name: str, d) -> ModelVersion | None:
    """The registered version of ``stage_name`` that ``d`` (a draft) would register again, if any."""
    try:
        versions = ws.versions(stage_name)
    except ModelNotFoundError:
        return None
    digest = hashlib.sha256(d.pickle).hexdigest()
    for mv in sorted(versions, key=lambda v: -v.version):
        m = mv.manifest
        if m.get("pickle_sha256") != digest or m.get("signature") != d.signature or m.get("methods") != d.names:
            continue
        if (m.get("environment") or {}) != (d.environment or {}) or list(m.get("system_packages") or []) != list(
            d.system_packages or []
        ):
            continue
        if (m.get("proof") or {"compare": "values"}) != (d.proof or {"compare": "values"}):
            continue
        if mv.python_executable != sys.executable or not _still_installed(mv.requirements):
            continue
        return mv
    return None


def _still_installed(requirements) -> bool:
    return not _not_installed(requirements)


def _not_installed(requirements) -> list[str]:
    """The pins of ``requirements`` that are not what this interpreter has installed."""
    moved = []
    for line in requirements:
        dist, _, pin = line.partition("==")
        try:
            if metadata.version(dist) != pin:
                moved.append(line)
        except metadata.PackageNotFoundError:
            moved.append(line)
    return moved


def check_pins(versions: dict, graph_name: str) -> None:
    """One interpreter serves every stage: two stages that pin different versions of a package cannot."""
    seen: dict[str, tuple[str, str]] = {}  # package -> (pin, stage)
    pythons: dict[str, str] = {}
    for stage, mv in versions.items():
        for line in mv.requirements:
            dist, _, pin = line.partition("==")
            key = canonicalize_name(dist)
            if key in seen and seen[key][0] != pin:
                other = seen[key][1]
                raise RequirementsError(
                    f"the stages of {graph_name} cannot run in one environment: stage {other!r} "
                    f"({versions[other].id}) pins {dist}=={seen[key][0]} and stage {stage!r} ({mv.id}) pins "
                    f"{dist}=={pin}. Register both stages from one environment (refit or re-register one of "
                    f"them in this kernel), or serve them as two services"
                )
            seen.setdefault(key, (pin, stage))
        pythons.setdefault(".".join(mv.python.split(".")[:2]), stage)
    if len(pythons) > 1:
        raise RequirementsError(
            f"the stages of {graph_name} were pickled by different Pythons ({', '.join(sorted(pythons))}: stages "
            f"{', '.join(repr(s) for s in pythons.values())}); one server loads them all: register them from one"
        )


def union_requirements(versions: dict) -> list[str]:
    pinned: dict[str, str] = {}
    for mv in versions.values():
        for line in mv.requirements:
            pinned.setdefault(canonicalize_name(line.partition("==")[0]), line)
    return sorted(pinned.values(), key=str.lower)


def merged_environment(versions: dict, graph_name: str) -> dict:
    env: dict[str, tuple[str, str]] = {}
    for stage, mv in versions.items():
        for key, value in mv.environment.items():
            if key in env and env[key][0] != value:
                raise RequirementsError(
                    f"the stages of {graph_name} need different values of {key}: stage {env[key][1]!r} "
                    f"{env[key][0]!r} and stage {stage!r} {value!r}; one server process cannot set both"
                )
            env.setdefault(key, (value, stage))
    return {k: v for k, (v, _s) in sorted(env.items())}


def _any_threads(versions: dict):
    values = [mv.manifest.get("load_starts_threads") for mv in versions.values()]
    if any(v is True for v in values):
        return True
    return None if any(v is None for v in values) else False


# -- registered graphs ---------------------------------------------------------------------------------


def is_graph(mv) -> bool:
    return isinstance(mv, ModelVersion) and mv.manifest.get("kind") == KIND


def from_version(mv: ModelVersion) -> Graph:
    """The graph of a registered graph version, its stages as their registered versions."""
    spec = mv.manifest["graph"]
    stages = {n: (s["model"], s["method"]) for n, s in spec["stages"].items()}
    g = Graph(stages, [tuple(e) for e in spec["edges"]], mv.methods[0])
    g.workspace = mv._workspace
    return g


def stage_versions(ws, mv: ModelVersion) -> dict[str, ModelVersion]:
    """Stage name -> its registered version, for a graph version (in running order)."""
    spec = mv.manifest["graph"]
    return {s["name"]: ws.get_model(spec["stages"][s["name"]]["model"]) for s in spec["order"]}


# -- serving -----------------------------------------------------------------------------------------------


def serve(
    ws,
    g: Graph,
    name,
    sample,
    say,
    rules,
    runtime="auto",
    port=None,
    host="127.0.0.1",
    start=True,
    update=None,
    **options,
):
    """Register ``g`` and serve it as one service (``start=False``: register and, on a runtime of images, build
    only). When an instance of ``name`` already runs (on the runtime and port asked for, if any), it is updated
    in place to the new graph version (``update=False``: a second instance instead): only the stages that
    changed were registered, and the swap drops no request."""
    if sample is None:
        sample = ws._samples.get(name)  # a re-serve without a sample: the one this process served it with
    mv = register(ws, g, name, sample, say, **rules)
    ws._samples[name] = sample
    materialize(ws, mv)
    if not start:
        return ws.prepare(mv, runtime=runtime, progress=say, **options)
    running = ws.running_instance(name, runtime, port, host) if update is not False else None
    if running is not None:
        if running.model == mv.id:
            say(f"{running.id} already serves {mv.id} at {running.url}")
            return running
        return ws.update(running.id, mv, progress=say)
    return ws.serve(mv, runtime=runtime, port=port, host=host, progress=say, **options)


def update_stage(ws, id: str, stage: str, target, sample, say, rules):
    """Register ``target`` as the new ``stage`` of the graph instance ``id`` serves, register the graph version
    that names it (every other stage keeps its version), and swap it in place."""
    row = ws.registry.get_instance(id)
    served = ws.get_model(row.model)
    if not is_graph(served):
        raise NbserveError(f"{id} serves {served.id}, a single model: update it with inst.update(...)")
    g = from_version(served).replace(stage, target)
    if sample is None:
        sample = ws._samples.get(row.name)
    if sample is None:
        sample = example_input(served)
    mv = register(ws, g, row.name, sample, say, **rules)
    ws._samples.setdefault(row.name, sample)
    materialize(ws, mv)
    if mv.id == served.id:
        say(f"{id} already serves {mv.id}: the stage did not change")
        return ws.get_instance(id)
    return ws.update(id, mv, progress=say)


def example_input(mv: ModelVersion):
    """A version's recorded example row, decoded as its first method's input (a sample of one row, where none
    is at hand: a graph of registered versions made by the CLI, a stage updated from another process)."""
    from .server.shared import compile_decoder

    method = mv.methods[0]
    found = (mv.manifest.get("examples") or {}).get(method) or {}
    if found.get("input") is None:
        raise SampleError(f"pass sample=...: {mv.id} has no recorded example row to run through the graph")
    return compile_decoder(mv.signature[method]["input"])(found["input"])


def materialize(ws, mv: ModelVersion) -> None:
    """Every artifact a graph version needs, in the local store (beside each other: the server finds them so)."""
    if is_graph(mv):
        for stage in mv.manifest["graph"]["stages"].values():
            ws.registry.artifact_dir(stage["sha256"])
