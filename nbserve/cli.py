"""The ``nbserve`` console script: a thin face over the workspace for terminals and scripts."""

from __future__ import annotations

import argparse
import datetime
import json
import sys

from . import notebook_text, runtimes
from .errors import NbserveError


def _when(ts):
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M") if ts else "-"


def _table(rows, headers):
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    for row in (headers, *rows):
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())


def _by(mv) -> str:
    return f"{mv.registered_by}@{mv.registered_host}" if mv.registered_by else "-"


def _running(mv) -> str:
    return str(sum(p["status"] == "running" for p in mv.running))


def _registry(ws, args) -> None:
    sub = args.registry_command
    if sub == "info":
        info = ws.registry_info()
        if args.json:
            print(json.dumps(info, indent=2))
        else:
            _table(list(info.items()), ("", ""))
    elif sub == "running":
        found = ws.placements()
        if args.json:
            print(json.dumps(found, indent=2))
        elif not found:
            print("no instance reported")
        else:
            _table(
                [
                    (p["model"], p["machine"], p["registered_by"], p["runtime"], p["status"], p["url"] or "-")
                    for p in found
                ],
                ("MODEL", "MACHINE", "USER", "RUNTIME", "STATUS", "URL"),
            )
    else:
        done = ws.copy_registry(args.to, args.artifacts, progress=None if not args.json else False)
        if args.json:
            print(json.dumps(done))


class UsageProblem(Exception):
    """A command line that does not parse, raised instead of exiting by a parser made with ``raises=True``
    (the ``%nbserve`` magic turns it into IPython's UsageError)."""


class _Parser(argparse.ArgumentParser):
    raises = False

    def error(self, message):
        if self.raises:
            raise UsageProblem(f"{message}\n{self.format_usage().strip()}")
        super().error(message)


class _RaisingParser(_Parser):
    raises = True


def parser_class(notebook: bool = False) -> type[argparse.ArgumentParser]:
    """The console script's parser class exits on a mistake; the notebook's raises UsageProblem."""
    return _RaisingParser if notebook else _Parser


def serve_options(p: argparse.ArgumentParser) -> None:
    """The options of starting a server: ``nbserve serve`` and ``%serve`` take the same."""
    p.add_argument(
        "--runtime",
        default=runtimes.AUTO,
        choices=runtimes.CHOICES,
        help="where to run it: "
        + ", ".join(f"{s.name} ({s.description})" for s in runtimes.RUNTIMES)
        + ", or auto (the first of them that can run here)",
    )
    p.add_argument("--port", type=int, help="port on 127.0.0.1 (default: a free one)")
    p.add_argument("--workers", type=int, default=1, help="server worker processes (default 1)")
    p.add_argument("--batch", action="store_true", help="adaptive batching of concurrent requests (one model call)")
    _batch_limits(p)
    p.add_argument("--default-method", help="the method MLflow's /invocations and KServe's V1/V2 routes call")
    p.add_argument(
        "--extra-columns",
        choices=("refuse", "ignore"),
        help="a table's columns the model does not take: refuse them with a 400 naming them (the default) or ignore",
    )
    p.add_argument("--no-jobs", action="store_true", help="no jobs (POST /METHOD?async=1 is refused)")
    p.add_argument("--job-queue", type=int, help="jobs that may wait at once (default 100)")
    p.add_argument("--job-retention", type=float, help="seconds a finished job's result is kept (default 3600)")
    p.add_argument("--job-timeout", type=float, help="seconds a job may run, 0 for no limit (default 3600)")


def _batch_limits(p) -> None:
    p.add_argument("--max-batch", type=int, help="with --batch: rows per model call at most (default 64)")
    p.add_argument("--max-latency-ms", type=float, help="with --batch: longest wait to fill a batch (default 10)")


def serve_keywords(args) -> dict:
    """serve()'s batching and protocol keywords from the parsed serve options (the core checks them: a
    --max-batch without --batch is an error there, not silently ignored here)."""
    given = {
        "batch": args.batch or None,
        "max_batch": args.max_batch,
        "max_latency_ms": args.max_latency_ms,
        "default_method": args.default_method,
        "extra_columns": args.extra_columns,
        "jobs": False if args.no_jobs else None,
        "job_queue": args.job_queue,
        "job_retention": args.job_retention,
        "job_timeout": args.job_timeout,
    }
    return {k: v for k, v in given.items() if v is not None}


def start_keywords(args) -> dict:
    """start()'s batching keywords: --batch / --no-batch and the limits, only those given."""
    given = {k: getattr(args, k, None) for k in ("batch", "max_batch", "max_latency_ms")}
    return {k: v for k, v in given.items() if v is not None}


def parser(prog: str = "nbserve", notebook: bool = False) -> argparse.ArgumentParser:
    """The command tree of the console script; ``notebook=True`` is ``%nbserve``'s (``list`` for models, and
    ``panel``), raising UsageProblem instead of exiting."""
    parser = parser_class(notebook)(prog=prog, description="Serve models registered from notebooks.")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser(
        "models", aliases=["list"] if notebook else [], help="list registered models (latest version of each)"
    )
    p = sub.add_parser("versions", help="list the versions of a model")
    p.add_argument("name")
    sub.add_parser("instances", help="list instances with the status their runtime reports")
    sub.add_parser("runtimes", help="list the runtimes and what each can do")
    if notebook:
        sub.add_parser("panel", help="the ipywidgets panel of models and instances")
    p = sub.add_parser("serve", help="start an instance of a registered model")
    p.add_argument("model", help="NAME or NAME:VERSION")
    serve_options(p)
    for verb in ("stop", "start", "remove"):
        p = sub.add_parser(verb, help=f"{verb} an instance (an instance id, or a model name for all of its)")
        p.add_argument("ref")
        if verb == "start":  # starting a stopped instance again may change its batching (as serve --batch sets it)
            p.add_argument("--batch", action=argparse.BooleanOptionalAction, help="adaptive batching on (or off)")
            _batch_limits(p)
    p = sub.add_parser("logs", help="print the log tail of an instance")
    p.add_argument("ref")
    p.add_argument("--tail", type=int, default=200)
    p = sub.add_parser("metrics", help="requests, errors and latency of an instance, per model method")
    p.add_argument("ref")
    p = sub.add_parser("drift", help="drift of each input feature and output against the registration sample")
    p.add_argument("ref")
    p = sub.add_parser("jobs", help="the jobs of an instance (POST /METHOD?async=1): status, progress; --cancel ID")
    p.add_argument("ref")
    p.add_argument("--cancel", metavar="JOB_ID", help="cancel this job (queued: at once; running: its call stops)")
    p = sub.add_parser("prometheus-config", help="print a Prometheus scrape config for the running instances")
    p.add_argument("refs", nargs="*", help="instance ids or model names (default: every instance)")
    p.add_argument("--interval", default="15s", help="scrape interval (default 15s)")
    p = sub.add_parser("update", help="serve another version of the model at an instance's URL, in place")
    p.add_argument("ref", help="an instance id")
    p.add_argument("model", help="NAME:VERSION")
    p = sub.add_parser("rollback", help="serve the version an instance served before, in place")
    p.add_argument("ref", help="an instance id, or a model name for all of its instances")
    p.add_argument("--to", help="NAME:VERSION to return to (default: the previous one)")
    p = sub.add_parser("split", help="share an instance's URL between versions: split ID NAME:V=90 NAME:W=10")
    p.add_argument("ref", help="an instance id")
    p.add_argument("weights", nargs="*", help="NAME:VERSION=WEIGHT ... (none: end the split)")
    p = sub.add_parser("shadow", help="serve a version beside an instance and copy a share of its requests to it")
    p.add_argument("ref", help="an instance id")
    p.add_argument("model", help="NAME:VERSION of the candidate")
    p.add_argument("--share", type=float, default=1.0, help="fraction of the requests copied (default 1)")
    p = sub.add_parser("comparison", help="how a shadow candidate's answers compare with the served version's")
    p.add_argument("ref", help="an instance id")
    for verb, what in (
        ("promote", "serve an instance's shadow candidate's version in place of its own"),
        ("discard", "remove an instance's shadow candidate"),
    ):
        p = sub.add_parser(verb, help=what)
        p.add_argument("ref", help="an instance id")
    p = sub.add_parser("traffic", help="an instance's last requests and answers (its traffic ring), as CSV")
    p.add_argument("ref", help="an instance id")
    p.add_argument("-n", type=int, default=1000, help="requests (default 1000)")
    p = sub.add_parser("stages", help="the stages of a graph (a model NAME[:VERSION], or an instance with its metrics)")
    p.add_argument("ref", help="a graph's name or NAME:VERSION, or an instance id")
    p = sub.add_parser(
        "graph", help="register a graph of registered versions: graph NAME STAGE=MODEL ... --edges A:B ..."
    )
    p.add_argument("name", help="the graph's model name")
    p.add_argument("stages", nargs="+", metavar="STAGE=MODEL", help="a stage and the version it runs: clean=clean:2")
    p.add_argument(
        "--edges",
        nargs="+",
        default=None,
        metavar="A:B",
        help="edges between stages (A:B, or A,B:C for a fan-in); default: the stages in a line, in the order given",
    )
    p.add_argument("--method", default="predict", help="the graph's method (default predict)")
    p = sub.add_parser("update-stage", help="serve another version of one stage of a graph instance, in place")
    p.add_argument("ref", help="an instance id")
    p.add_argument("stage", help="the stage's name")
    p.add_argument("model", help="NAME:VERSION of the stage's new version")
    p = sub.add_parser("push", help="push the image of a registered model to a registry (named by digest)")
    p.add_argument("model")
    p.add_argument("--registry", help="HOST:PORT/PREFIX (default: $NBSERVE_REGISTRY)")
    sub.add_parser("deployments", help="list deployments (Swarm services, Kubernetes manifests)")
    p = sub.add_parser(
        "deploy", help="deploy MODEL --replicas N | deploy list | scale | update | rollback | split | remove | logs"
    )
    p.add_argument("words", nargs=argparse.REMAINDER)
    p = sub.add_parser("registry", help="where the registry lives; copy it into a team's")
    rsub = p.add_subparsers(dest="registry_command", required=True)
    rsub.add_parser("info", help="metadata URL, artifact store and schema version")
    rsub.add_parser("running", help="which versions run where, as the registry's users' workspaces report it")
    p = rsub.add_parser("copy", help="copy every version into another registry (idempotent, verified)")
    p.add_argument("--to", required=True, help="metadata: postgresql://USER:PASSWORD@HOST/DB (or sqlite:///PATH)")
    p.add_argument("--artifacts", required=True, help="artifacts: s3://BUCKET/PREFIX (or a directory)")
    p = sub.add_parser("build", help="build the Docker image of a registered model")
    p.add_argument("model")
    p.add_argument("--base-image")
    return parser


def commands(tree: argparse.ArgumentParser) -> list[str]:
    """The command names of a parser made by ``parser()`` (for tab completion)."""
    found = [a for a in tree._actions if isinstance(a, argparse._SubParsersAction)]
    return list(found[0].choices) if found else []


def main(argv=None) -> int:
    args = parser().parse_args(argv)

    from .workspace import default_workspace  # after parsing: --help and usage errors skip loading the core

    ws = default_workspace()
    try:
        return run(ws, args)
    except NbserveError as exc:
        print(f"nbserve: error: {exc}", file=sys.stderr)
        return 1


def run(ws, args) -> int:
    """Carry out one parsed command line against the workspace, printing what the console script prints."""
    cmd = args.command
    if cmd in ("models", "versions"):
        mvs = ws.models() if cmd == "models" else ws.versions(args.name)
        if cmd == "versions" and not mvs:
            ws.get_model(args.name)  # an unknown name: ModelNotFoundError names it and the registered ones
        if args.json:
            print(json.dumps([m.to_dict() for m in mvs], indent=2))
        elif not mvs:
            print("no models registered yet: in a notebook, `%load_ext nbserve` then `%serve model`")
        else:
            _table(
                [(m.id, ",".join(m.methods), len(m.requirements), _when(m.created), _by(m), _running(m)) for m in mvs],
                ("MODEL", "METHODS", "REQUIREMENTS", "CREATED", "BY", "RUNNING"),
            )
    elif cmd == "instances":
        insts = ws.instances()
        if args.json:
            print(json.dumps([i.to_dict() for i in insts], indent=2))
        elif not insts:
            print("no instances")
        else:
            _table(
                [(i.id, i.model, i.runtime, i.status, i.url or "-") for i in insts],
                ("ID", "MODEL", "RUNTIME", "STATUS", "URL"),
            )
    elif cmd == "runtimes":
        specs = [s.to_dict() for s in runtimes.RUNTIMES]
        if args.json:
            print(json.dumps(specs, indent=2))
        else:
            flags = ("proves_registration", "builds_images", "replicas")
            _table(
                [(s["name"], ",".join(f for f in flags if s[f]) or "-", s["description"]) for s in specs],
                ("RUNTIME", "CAPABILITIES", "DESCRIPTION"),
            )
    elif cmd == "serve":
        inst = ws.serve(args.model, runtime=args.runtime, port=args.port, workers=args.workers, **serve_keywords(args))
        print(inst.url)
    elif cmd in ("stop", "start", "remove"):
        for inst in ws.resolve_instances(args.ref):
            if cmd == "remove":
                ws.remove(inst.id)
                print(f"{inst.id} removed")
            elif cmd == "start":
                done = ws.start(inst.id, **start_keywords(args))
                print(f"{done.id} {done.status}" + (" (batching)" if done.batching else ""))
            else:
                done = ws.stop(inst.id)
                print(f"{done.id} {done.status}")
    elif cmd == "logs":
        for inst in ws.resolve_instances(args.ref):
            sys.stdout.write(ws.logs(inst.id, tail=args.tail))
    elif cmd in ("metrics", "drift"):
        _observe(ws, args)
    elif cmd == "jobs":
        _jobs(ws, args)
    elif cmd == "prometheus-config":
        sys.stdout.write(ws.prometheus_config(args.refs or None, interval=args.interval))
    elif cmd == "update":
        inst = ws.update(args.ref, args.model)
        print(f"{inst.id} serves {inst.model} at {inst.url}")
    elif cmd in ("rollback", "split", "shadow", "comparison", "promote", "discard", "traffic"):
        _loop(ws, args)
    elif cmd == "stages":
        _stages(ws, args)
    elif cmd == "graph":
        mv = ws.register_graph(args.name, _pairs(args.stages), _graph_edges(args), method=args.method)
        if args.json:
            print(json.dumps(mv.to_dict(), indent=2))
        else:
            print(mv.id)
    elif cmd == "update-stage":
        inst = ws.update_stage(args.ref, args.stage, args.model)
        stage = ws.get_model(inst.model).stages[args.stage]
        print(f"{inst.id} serves {inst.model} at {inst.url}: its stage {args.stage} is {stage}")
    elif cmd == "push":
        pushed = ws.push(args.model, registry=args.registry)
        print(pushed.reference)
    elif cmd in ("deploy", "deployments"):
        from . import deploy_commands as commands

        if cmd == "deployments" and args.json:
            print(json.dumps([d.to_dict() for d in ws.deployments()], indent=2))
        else:
            print(commands.run(ws, ["list"] if cmd == "deployments" else args.words, None))
    elif cmd == "registry":
        _registry(ws, args)
    elif cmd == "build":
        image = ws.build(args.model, base_image=args.base_image)
        print(f"{image.tag} {image.id} {image.size / 1e6:.0f} MB")
    return 0


def _loop(ws, args) -> None:
    """rollback, split, shadow, comparison, promote, discard, traffic: the notebook loop's verbs."""
    cmd = args.command
    if cmd == "rollback":
        for inst in ws.resolve_instances(args.ref):
            if inst.candidate_of:
                continue
            done = ws.rollback(inst.id, to=args.to)
            print(f"{done.id}: {done.model} answers at {done.url} again")
    elif cmd == "split":
        weights = {}
        for word in args.weights:
            ref, sep, weight = word.rpartition("=")
            try:
                weights[ref] = float(weight)
            except ValueError:
                raise NbserveError(f"split takes NAME:VERSION=WEIGHT, e.g. diabetes:2=10; got {word!r}") from None
            if not sep:
                raise NbserveError(f"split takes NAME:VERSION=WEIGHT, e.g. diabetes:2=10; got {word!r}")
        inst = ws.split(args.ref, weights or None)
        shares = inst.split_weights or {inst.model: 100}
        total = sum(shares.values())
        print(f"{inst.url} answers as " + ", ".join(f"{m} {w / total:.0%}" for m, w in shares.items()))
    elif cmd == "shadow":
        cand = ws.shadow(args.ref, args.model, share=args.share)
        print(f"{cand.id} ({cand.model}) shadows {args.ref}: {args.share:.0%} of its requests are copied to it")
    elif cmd == "comparison":
        report = ws.comparison(args.ref, summary=True)
        if args.json:
            print(json.dumps(report, indent=2))
            return
        print(
            f"{report['candidate']} against {report['live']}: {report['requests']} requests, "
            f"{report['rows']} rows, agreement {report['agreement']:.1%}"
        )
        lat = report["latency_ms"]
        _table(
            [(side, _ms(lat[side]["p50"]), _ms(lat[side]["p90"]), _ms(lat[side]["p99"])) for side in lat],
            ("SIDE", "P50 MS", "P90 MS", "P99 MS"),
        )
        for output, err in report["errors"].items():
            print(f"{output}: mean |error| {err['mean_abs']}, max {err['max_abs']}, rmse {err['rmse']}")
    elif cmd in ("promote", "discard"):
        done = ws.promote(args.ref) if cmd == "promote" else ws.discard(args.ref)
        print(f"{done.id} serves {done.model} at {done.url}")
    elif cmd == "traffic":
        sys.stdout.write(ws.traffic(args.ref, n=args.n).to_csv(index=False))


def _pairs(words) -> dict:
    stages = {}
    for word in words:
        name, sep, ref = word.partition("=")
        if not sep or not name or not ref:
            raise NbserveError(f"a stage is STAGE=MODEL (e.g. clean=rentals.clean:2), got {word!r}")
        stages[name] = ref
    return stages


def _graph_edges(args) -> list:
    if args.edges is None:
        names = [w.partition("=")[0] for w in args.stages]
        return list(zip(names, names[1:]))
    edges = []
    for word in args.edges:
        sources, sep, target = word.partition(":")
        if not sep or not sources or not target:
            raise NbserveError(f"an edge is A:B (or A,B:C for a fan-in), got {word!r}")
        edges.append((tuple(sources.split(",")), target))
    return edges


def _stages(ws, args) -> None:
    """A graph's stages: for a registered version, what each runs; for an instance, with its metrics too."""
    from . import monitoring

    try:
        insts = [ws.get_instance(args.ref)]
    except NbserveError:
        insts = []
    if insts:
        inst = insts[0]
        mv = ws.get_model(inst.model)
        rows = monitoring.stage_summary(ws.metrics_snapshot(inst.id, settled=True), mv.manifest.get("graph"))
    else:
        mv = ws.get_model(args.ref)
        rows = [{"stage": n, "model": m} for n, m in mv.stages.items()]
    if not mv.stages:
        raise NbserveError(f"{mv.id} is a single model, not a graph of stages")
    if args.json:
        print(json.dumps({"model": mv.id, "stages": rows}, indent=2))
        return
    print(f"{mv.id}" + (f" served by {insts[0].id}" if insts else ""))
    if insts:
        _table(
            [
                (
                    r["stage"],
                    r["model"],
                    r["method"],
                    ",".join(r["inputs"]) or "(input)",
                    r["calls"],
                    r["errors"],
                    _ms(r["p50_ms"]),
                    _ms(r["p99_ms"]),
                )
                for r in rows
            ],
            ("STAGE", "VERSION", "METHOD", "INPUTS", "CALLS", "ERRORS", "P50 MS", "P99 MS"),
        )
    else:
        spec = mv.manifest["graph"]
        _table(
            [
                (
                    s["name"],
                    spec["stages"][s["name"]]["model"],
                    spec["stages"][s["name"]]["method"],
                    ",".join(s["inputs"]) or "(input)",
                )
                for s in spec["order"]
            ],
            ("STAGE", "VERSION", "METHOD", "INPUTS"),
        )


def _ms(value):
    return "-" if value is None else f"{value:.1f}"


def _jobs(ws, args) -> None:
    for inst in ws.resolve_instances(args.ref):
        if args.cancel:
            doc = ws.cancel_job(inst.id, args.cancel)
            print(f"{doc['id']} {'cancelling' if doc.get('cancelling') else doc['status']}")
            continue
        found = ws.jobs(inst.id)
        if args.json:
            print(json.dumps({"id": inst.id, "jobs": found}, indent=2))
            continue
        print(f"{inst.id} ({inst.model}): {len(found)} job{'s' * (len(found) != 1)}")
        if found:
            _table(
                [
                    (
                        j["id"],
                        j["method"],
                        j["status"] + (f" ({j['position']} ahead)" if j.get("position") else ""),
                        notebook_text.job_progress(j),
                        notebook_text.job_time(j),
                        (j.get("error") or {}).get("message", "")[:60],
                    )
                    for j in found
                ],
                ("JOB", "METHOD", "STATUS", "PROGRESS", "TIME", "ERROR"),
            )


def _observe(ws, args) -> None:
    from . import monitoring

    for inst in ws.resolve_instances(args.ref):
        if args.command == "metrics":
            rows = monitoring.summary(ws.metrics_snapshot(inst.id, settled=True))
            if args.json:
                print(json.dumps({"id": inst.id, "methods": rows}, indent=2))
                continue
            print(f"{inst.id} ({inst.model})")
            streams = any(r.get("items") for r in rows)  # streaming methods: time to the first item, items/s
            _table(
                [
                    (
                        r["method"],
                        r["requests"],
                        r["errors"],
                        f"{r['error_rate']:.1%}",
                        _ms(r["p50_ms"]),
                        _ms(r["p99_ms"]),
                    )
                    + ((_ms(r["first_item_p50_ms"]), _ms(r["items_per_s"])) if streams else ())
                    for r in rows
                ],
                ("METHOD", "REQUESTS", "ERRORS", "ERROR RATE", "P50 MS", "P99 MS")
                + (("FIRST ITEM MS", "ITEMS/S") if streams else ()),
            )
        else:
            report = ws.drift(inst.id)
            if args.json:
                print(json.dumps(report, indent=2))
                continue
            if not report.get("available"):
                print(f"{inst.id}: {report.get('reason')}")
                continue
            window = report["window"]
            verdict = "DRIFT" if report["drift"] else "no overall drift"
            print(f"{inst.id} ({inst.model}): {verdict}; {live_window(window)}")
            _table(
                [
                    (
                        f["name"] if f["role"] == "input" else f"{f['method']} -> {f['name']}",
                        f["kind"],
                        "-" if f["psi"] is None else f"{f['psi']:.3f}",
                        f["test"] or "-",
                        "-" if f["p_value"] is None else f"{f['p_value']:.3g}",
                        _nulls(f.get("null")),
                        f["status"],
                    )
                    for f in report["features"]
                ],
                ("FEATURE", "KIND", "PSI", "TEST", "P", "NULLS REF/LIVE", "STATUS"),
            )
            for f in report["features"]:
                if f["status"] == "not_computed":
                    print(f"{f['name']}: not computed: {f.get('reason')}")


def live_window(window: dict) -> str:
    """'1014 live rows (each worker keeps about its last 1000)': a worker drops whole blocks, so the window
    can hold a few rows more than its size, and several workers each hold one."""
    workers = window.get("workers") or 1
    each = "the worker keeps" if workers == 1 else f"each of {workers} workers keeps"
    return f"{window['rows']} live rows ({each} about its last {window['size']})"


def _nulls(null) -> str:
    return "-" if not null else f"{null['reference']:.1%}/{null['live']:.1%}"


if __name__ == "__main__":
    sys.exit(main())
