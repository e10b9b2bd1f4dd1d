"""The notebook's first face: ``%serve``, ``%%serve`` and ``%nbserve`` (``%load_ext nbserve``).

Thin by design: options are parsed here, everything else is a call on the workspace of $NBSERVE_HOME.
A mistake (unknown variable, a sample that does not fit, an object that cannot be pickled, no Docker, a
port in use: any ``NbserveError``) becomes one ``UsageError`` line, never a traceback from nbserve's
insides. Bugs (any other exception) still show as tracebacks, so they get reported.
"""

from __future__ import annotations

import argparse
import difflib
import shlex
import time

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
from IPython.utils.text import dedent

from . import cli, runtimes
from .errors import NbserveError, RuntimeUnavailableError
from .notebook_text import duration, error_text, table, when
from .resources import Instance, ModelVersion
from .workspace import console_progress, default_workspace, explain_once


def serve_parser() -> argparse.ArgumentParser:
    """``%serve``'s options: the CLI's ``serve`` options (cli.serve_options) and what registering a live
    object of the notebook adds."""
    p = cli.parser_class(notebook=True)(prog="%serve", add_help=False)
    p.add_argument(
        "target",
        help="a variable of the notebook: a fitted model or a function (for %%%%serve: the name the cell defines)",
    )
    p.add_argument("--name", help="registered model name (default: the variable's name)")
    p.add_argument(
        "--sample",
        help="a variable (or expression) holding example input: gives the served model its "
        "input/output schema and proves the model answers on it",
    )
    cli.serve_options(p)
    p.add_argument(
        "--no-start",
        action="store_true",
        help="register only (and, for Docker, build the image); returns the ModelVersion",
    )
    p.add_argument("--methods", help="comma-separated methods to serve, e.g. predict,predict_proba")
    p.add_argument(
        "--follow",
        action="store_true",
        help="after every cell that changes the variable (refit, reassigned), serve it again in place",
    )
    p.add_argument("--unfollow", action="store_true", help="stop following the variable (serves nothing)")
    p.add_argument(
        "--no-update",
        action="store_true",
        help="start a second instance even when one of this name runs (default: update that one in place)",
    )
    p.add_argument(
        "--kind",
        choices=("chat", "embeddings"),
        help="a text function, served on OpenAI's routes too: chat (messages -> text, or its pieces) or embeddings",
    )
    return p


SERVE_PARSER = serve_parser()
NBSERVE_PARSER = cli.parser(prog="%nbserve", notebook=True)
SERVE_OPTIONS = tuple(o for a in SERVE_PARSER._actions for o in a.option_strings)
NBSERVE_COMMANDS = tuple(cli.commands(NBSERVE_PARSER))


def parse(parser: argparse.ArgumentParser, words: list[str], hint: str):
    """``words`` parsed by one of the CLI's parsers; a mistake is one UsageError line saying where the usage is."""
    try:
        return parser.parse_args(words)
    except cli.UsageProblem as exc:
        raise UsageError(f"{str(exc).partition(chr(10))[0]}; {hint}") from None


class CellFailed(Exception):
    """The body of a %%serve cell raised: its traceback is already shown. Raising this marks the cell
    as failed (so "Run All" stops there, as after any failing cell) and adds one line instead of a
    second traceback (IPython shows what ``_render_traceback_`` returns)."""

    def __init__(self, target):
        super().__init__(f"%%serve {target}: the cell raised an error, so nothing was served")

    def _render_traceback_(self):
        return [str(self)]


@magics_class
class NbserveMagics(Magics):
    @line_cell_magic
    def serve(self, line, cell=None):
        """Register a live object of the notebook and serve it over HTTP; returns the Instance.

        %serve lr --sample X            # inst = %serve lr  keeps the Instance
        %%serve is_bad --sample texts   # runs the cell, then serves the `is_bad` it defines
        """
        from IPython.utils.process import arg_split

        try:
            args = parse(SERVE_PARSER, arg_split(line), "`%serve?` shows its options")
        except UsageError as exc:
            if "unrecognized arguments" in str(exc):  # e.g. --sample X[:5, 0] split at the space
                raise UsageError(f'{exc}; quote an expression that has spaces: --sample "X[:5, 0]"') from None
            raise
        if args.unfollow:
            from .follow import follower

            if cell is not None:
                raise UsageError("%serve --unfollow NAME is a line magic: it serves nothing")
            done = follower(self.shell, default_workspace).unfollow(args.target)
            print(f"no longer following {args.target}" if done else f"{args.target} was not followed")
            return None
        if cell is not None:
            # The nested run_cell resets the display hook's record of the outer cell's result; put it
            # back so the Instance this magic returns is the cell's result (Out[n], `_`).
            shell = self.shell
            assert shell is not None  # a magic runs in a shell
            outer = getattr(shell.displayhook, "exec_result", None)
            ran = shell.run_cell(cell)
            shell.displayhook.exec_result = outer
            if not ran.success:
                raise CellFailed(args.target)  # its traceback is on screen; serve nothing
            if args.target not in shell.user_ns:
                raise UsageError(
                    f"the cell ran but did not define {args.target!r}; %%serve NAME serves the "
                    f"object the cell assigns to NAME (def NAME(...) or NAME = ...)"
                )
        obj = self._lookup(args.target, "variable")
        sample = self._lookup(args.sample, "sample") if args.sample is not None else None
        name = args.name or args.target
        if args.name is None and not args.target.isidentifier():
            raise UsageError(f"pass --name to serve the expression {args.target!r}")
        methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None

        ws = default_workspace()
        runtime, began = None, time.time()
        running = None
        if not args.no_update and not args.no_start:
            try:
                running = ws.running_instance(name, args.runtime, args.port)
            except NbserveError as exc:
                raise UsageError(error_text(exc)) from None
        say = self._progress(f"%serve {args.target}" + (f": updating {running.id}" if running else ""))
        try:
            if running is not None:
                before = running.model
                updated = ws.serve(
                    obj,
                    name=name,
                    sample=sample,
                    methods=methods,
                    runtime=args.runtime,
                    port=args.port,
                    progress=say,
                    update=True,
                    **({"kind": args.kind} if args.kind else {}),
                    **cli.serve_keywords(args),  # checked; an instance keeps its server options when updated
                )
                if args.follow:
                    self._follow(args, updated)
                line = (
                    f"{updated.model} now answers at {updated.url}, was {before}"
                    if updated.model != before
                    else f"{name} is unchanged: {before} keeps serving at {updated.url}"
                )
                _done(say, line)
                print(line)
                graph = ws.get_model(updated.model).stages
                if graph:  # a graph: the version each stage runs now (the unchanged ones kept theirs)
                    print("stages: " + ", ".join(f"{stage}={ref}" for stage, ref in graph.items()))
                return updated
            runtime, why = ws.runtime_choice(args.runtime)
            keywords = cli.serve_keywords(args)
            if args.kind:
                keywords["kind"] = args.kind  # a text function: OpenAI's routes too
            # the one serve path of every face: on the process runtime the server doubles as the proof
            if args.no_start:
                result: Instance | ModelVersion = ws.prepare(
                    obj, name=name, sample=sample, methods=methods, runtime=runtime, progress=say, **keywords
                )
            else:
                result = ws.serve(
                    obj,
                    name=name,
                    sample=sample,
                    methods=methods,
                    runtime=runtime,
                    port=args.port,
                    workers=args.workers,
                    progress=say,
                    update=False,
                    **keywords,
                )
        except NbserveError as exc:
            text = error_text(exc)
            fallback = runtimes.fallback()
            if isinstance(exc, RuntimeUnavailableError) and runtime != fallback.name:
                text += f"; `%serve {args.target} --runtime {fallback.name}` would serve it {fallback.fallback_note}"
            registered = _registered_since(ws, name, began)
            if registered is not None:
                text = f"{registered} is registered but not served: {text}"
            _fail(say, text)
            raise UsageError(text) from None

        mv = result if isinstance(result, ModelVersion) else ws.get_model(result.model)
        n = len(mv.requirements)
        print(f"registered {mv.id} (methods: {', '.join(mv.methods)}; {n} pinned requirement{'s' * (n != 1)})")
        if mv.stages:  # a graph: the version each stage runs (the unchanged ones kept theirs)
            print("stages: " + ", ".join(f"{stage}={ref}" for stage, ref in mv.stages.items()))
        print(
            f"runtime: {runtime}" + (f" (auto: {explain_once(why)})" if args.runtime in (None, runtimes.AUTO) else "")
        )
        if isinstance(result, ModelVersion):  # --no-start
            if runtimes.spec(runtime).builds_images:
                image = ws.build(mv, progress=False)  # built by prepare(): found again, not rebuilt
                print(f"built image {image.tag} ({image.size / 1e6:.0f} MB)")
            print(f"not started (--no-start): nbserve.serve({mv.id!r}) or the Start button of %nbserve panel starts it")
            _done(say, f"registered {mv.id}")
            return mv
        _done(say, f"{result.id} is serving {mv.id}")
        print(f"instance {result.id} is serving {mv.id} at {result.url}")
        if args.follow:
            self._follow(args, result)
        return result

    def _follow(self, args, inst) -> None:
        from .follow import follower

        if not args.target.isidentifier():
            raise UsageError(f"--follow follows a variable; {args.target!r} is an expression")
        sample = args.sample if args.sample and args.sample.isidentifier() else None
        follower(self.shell, default_workspace).follow(args.target, inst.id, sample)
        print(f"following {args.target}: after every cell that changes it, {inst.id} serves it in place")

    serve.__doc__ = f"{dedent(serve.__doc__ or '')}\n{SERVE_PARSER.format_help()}"
    serve.parser = SERVE_PARSER  # type: ignore[union-attr]

    @line_magic
    def nbserve(self, line):
        """Look after registered models and instances:

        %nbserve list                  registered models (latest version of each)
        %nbserve instances             instances, with the status their runtime reports now
        %nbserve stop REF              stop an instance, or every instance of model REF
        %nbserve start REF [--batch | --no-batch] [--max-batch N] [--max-latency-ms MS] / remove REF
        %nbserve logs REF [--tail N]   the server's log tail
        %nbserve metrics REF           requests, errors, p50/p99 latency per method (a DataFrame)
        %nbserve drift REF             each feature against the registration sample (a DataFrame)
        %nbserve panel                 the ipywidgets panel of models and instances
        %nbserve update ID MODEL       serve another version at the instance's URL, in place
        %nbserve rollback REF [--to MODEL]   the version served before, in place
        %nbserve split ID NAME:1=90 NAME:2=10 | split ID   share the URL between versions | end it
        %nbserve shadow ID MODEL [--share F] | comparison ID | promote ID | discard ID
        %nbserve traffic ID [-n N]     the last requests and answers (a DataFrame)
        %nbserve stages REF            a graph's stages: the version each runs, calls, errors, p50/p99 per stage
        %nbserve update-stage ID STAGE MODEL   serve another version of one stage of a graph, in place
        %nbserve graph NAME STAGE=MODEL ... [--edges A:B ...]   a graph of registered versions
        %nbserve push MODEL [--registry HOST:PORT/PREFIX]
        %nbserve deploy MODEL --replicas 3 [--target swarm|kubernetes] [--init-swarm] ...
        %nbserve deployments | deploy scale NAME N | update NAME MODEL | rollback NAME | remove NAME | logs NAME
        %nbserve deploy split NAME diabetes:1=90 diabetes:2=10 | deploy split NAME   share a deployment | end it
        """
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"{exc}; `%nbserve --help` lists the commands") from None
        if not words:
            raise UsageError("%nbserve COMMAND: `%nbserve --help` lists the commands")
        try:
            args = parse(NBSERVE_PARSER, words, "`%nbserve --help` lists the commands")
        except SystemExit:  # --help: argparse printed it
            return
        cmd = args.command
        ws = default_workspace()
        try:
            if cmd in ("list", "models"):
                self._list(ws)
            elif cmd == "instances":
                self._instances(ws)
            elif cmd in ("stop", "start", "remove"):
                for inst in ws.resolve_instances(args.ref):
                    if cmd == "stop":
                        print(f"stopped {inst.id} ({inst.model}): {ws.stop(inst.id).status}")
                    elif cmd == "start":
                        progress = self._progress(f"starting {inst.id}")
                        done = ws.start(inst.id, progress=progress, **cli.start_keywords(args))
                        print(f"started {done.id} ({done.model}) at {done.url}")
                    else:
                        ws.remove(inst.id)
                        print(f"removed {inst.id} ({inst.model})")
            elif cmd == "logs":
                for inst in ws.resolve_instances(args.ref):
                    print(f"--- {inst.id} ({inst.model}, {inst.runtime}, {inst.status}) ---")
                    print(ws.logs(inst.id, tail=args.tail).rstrip("\n") or "(no log lines yet)")
            elif cmd in ("metrics", "drift") and not args.json:
                from IPython.display import display

                for inst in ws.resolve_instances(args.ref):
                    print(f"{inst.id} ({inst.model})")
                    display(inst.metrics() if cmd == "metrics" else inst.drift())
            elif cmd == "traffic":
                from IPython.display import display

                display(ws.traffic(args.ref, n=args.n))
            elif cmd == "jobs" and not args.json and not args.cancel:
                from IPython.display import display

                for inst in ws.resolve_instances(args.ref):
                    print(f"{inst.id} ({inst.model})")
                    display(inst.jobs())
            elif cmd == "update":
                inst = ws.update(args.ref, args.model, progress=self._progress(f"updating {args.ref}"))
                print(f"{inst.id} serves {inst.model} at {inst.url}")
            elif cmd == "push":
                pushed = ws.push(args.model, registry=args.registry, progress=self._progress(f"pushing {args.model}"))
                print(pushed.reference)
            elif cmd == "deploy":
                from . import deploy_commands as commands

                reads = not args.words or args.words[0] in ("list", "logs")
                say = None if reads else self._progress(f"deploy {' '.join(args.words)}")
                print(commands.run(ws, args.words, say))
            elif cmd == "panel":
                from IPython.display import display  # looked up when called: the display hook of the moment

                from .widgets import panel  # ipywidgets is optional (the nbserve[notebook] extra)

                display(panel(ws))
            else:  # the console script's own output (versions, runtimes, serve, deployments, registry, ...)
                cli.run(ws, args)
        except NbserveError as exc:
            raise UsageError(error_text(exc)) from None

    # -- helpers -------------------------------------------------------------------------------

    def _lookup(self, name: str, what: str):
        if len(name) > 1 and name[0] == name[-1] and name[0] in "'\"":
            name = name[1:-1]  # IPython's argument splitting keeps the quotes around "X[:5, 0]"
        shell = self.shell
        assert shell is not None  # magics are registered with a shell
        ns = shell.user_ns
        if name in ns:
            return ns[name]
        if not name.isidentifier():
            try:
                return shell.ev(name)
            except Exception as exc:
                raise UsageError(f"cannot evaluate the {what} {name!r}: {type(exc).__name__}: {exc}") from None
        names = {n.lower(): n for n in user_names(self.shell)}  # 'Y' should suggest 'y'
        close = [names[n] for n in difflib.get_close_matches(name.lower(), list(names), n=3)]
        hint = (
            f"; did you mean {' or '.join(map(repr, close))}?"
            if close
            else "; define it first (run the cell that creates it), or check the spelling"
        )
        raise UsageError(f"no {what} named {name!r} in the notebook{hint}")

    def _progress(self, title: str):
        """A progress bar widget in a kernel with a frontend; printed lines in a terminal IPython."""
        if getattr(self.shell, "kernel", None) is None:
            return console_progress
        try:
            from .notebook_progress import ProgressView
        except ImportError:  # ipywidgets is optional (the nbserve[notebook] extra)
            return console_progress
        from IPython.display import display  # looked up when called: the display hook of the moment

        view = ProgressView(title)
        display(view)
        return view

    def _list(self, ws) -> None:
        models = ws.models()
        if not models:
            print("no models registered yet: `%serve VARIABLE` registers and serves one")
            return
        rows = [
            (m.name, m.version, len(ws.versions(m.name)), ",".join(m.methods), len(m.requirements), when(m.created))
            for m in models
        ]
        print(table(rows, ("MODEL", "LATEST", "VERSIONS", "METHODS", "REQUIREMENTS", "CREATED")))

    def _instances(self, ws) -> None:
        insts = ws.instances()
        if not insts:
            print("no instances: `%serve VARIABLE` starts one")
            return
        rows = [
            (i.id, i.model, i.runtime, i.status, (i.status == "running" and i.url) or "-", duration(i.uptime))
            for i in insts
        ]
        print(table(rows, ("ID", "MODEL", "RUNTIME", "STATUS", "URL", "UPTIME")))


# -- tab completion (IPython calls these as hooks: (shell, event)) ------------------------------


def _previous_and_position(event):
    before = event.text_until_cursor
    words = before.split()
    at_space = before.endswith((" ", "\t"))
    previous = words[-1] if at_space else (words[-2] if len(words) > 1 else "")
    return previous, len(words) if at_space else len(words) - 1


def complete_serve(shell, event):
    """Variables after %serve / --sample, runtime names after --runtime, option names after '-'."""
    previous, _ = _previous_and_position(event)
    if previous == "--runtime":
        return list(runtimes.CHOICES)
    if previous in (
        "--name",
        "--port",
        "--workers",
        "--methods",
        "--max-batch",
        "--max-latency-ms",
        "--default-method",
    ):
        return []
    if event.symbol.startswith("-"):
        return list(SERVE_OPTIONS)
    return sorted(user_names(shell))


def complete_nbserve(shell, event):
    """Subcommands, then instance ids and model names after stop/start/remove/logs."""
    _, position = _previous_and_position(event)
    words = event.text_until_cursor.split()
    start = next((i for i, w in enumerate(words) if w.endswith("%nbserve")), 0)
    position -= start
    if position <= 1:
        return list(NBSERVE_COMMANDS)
    if position == 2 and words[start + 1] in (
        "stop",
        "start",
        "remove",
        "logs",
        "rollback",
        "split",
        "shadow",
        "promote",
        "discard",
        "comparison",
        "traffic",
    ):
        insts = default_workspace().instances()
        return sorted({i.id for i in insts} | {i.name for i in insts})
    return []


def user_names(shell) -> list[str]:
    """The notebook's own variables: not IPython's (In, Out, get_ipython, ...), not _private."""
    hidden = shell.user_ns_hidden
    return [k for k in shell.user_ns if not k.startswith("_") and k not in hidden]


def _registered_since(ws, name: str, began: float) -> str | None:
    """The version a failed serve registered before it failed (a start that failed after it), if any."""
    try:
        latest = ws.get_model(name)
    except NbserveError:
        return None
    return latest.id if latest.created >= began else None


def _done(say, message: str) -> None:
    if hasattr(say, "done"):
        say.done(message)


def _fail(say, text: str) -> None:
    if hasattr(say, "fail"):
        say.fail(text.splitlines()[0], details="")  # the UsageError prints the whole text


def load_ipython_extension(ipython) -> None:
    from .workspace import warm_up

    warm_up()  # the first %serve adopts a server whose interpreter has started already
    magics = NbserveMagics(ipython)
    ipython.register_magics(magics)
    # Custom completers match on the text before the cursor, so `inst = %serve l<TAB>` works too.
    ipython.set_hook("complete_command", complete_serve, re_key=r".*%%?serve\s")
    ipython.set_hook("complete_command", complete_nbserve, re_key=r".*%nbserve\s")
