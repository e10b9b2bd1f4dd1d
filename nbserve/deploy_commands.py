"""The words of ``nbserve deploy ...`` and ``%nbserve deploy ...``: one parser for both faces.

    deploy MODEL [--target swarm|kubernetes] [--replicas N] [--name NAME] [--registry HOST:PORT/PREFIX]
                 [--init-swarm] [--auth] [--output DIR] [--kserve [serverless]] [--context CTX] [--namespace NS]
    deploy list
    deploy scale NAME N | update NAME MODEL | rollback NAME | remove NAME | logs NAME [--tail N]
    deploy split NAME MODEL=WEIGHT MODEL=WEIGHT ... | deploy split NAME  (ends the split)

Each command is one call on the workspace; ``run`` returns the text to show.
"""

from __future__ import annotations

import argparse

from .errors import NbserveError
from .notebook_text import table

VERBS = ("list", "scale", "update", "rollback", "remove", "logs", "split")
USAGE = (
    "deploy MODEL [--target swarm|kubernetes] [--replicas N] [--name NAME] [--registry HOST:PORT/PREFIX] "
    "[--init-swarm] [--auth] [--output DIR] [--kserve [serverless]] [--context CTX] | deploy list | "
    "deploy scale NAME N | deploy update NAME MODEL | deploy rollback NAME | deploy remove NAME | "
    "deploy logs NAME [--tail N] | deploy split NAME MODEL=WEIGHT MODEL=WEIGHT [--registry R] (none: end it)"
)


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise NbserveError(f"{message}; usage: {USAGE}")


def _deploy_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="deploy", add_help=False)
    p.add_argument("model")
    p.add_argument("--target", default="swarm", choices=["swarm", "kubernetes"])
    p.add_argument("--replicas", type=int, default=1)
    p.add_argument("--name")
    p.add_argument("--registry")
    p.add_argument("--init-swarm", action="store_true")
    p.add_argument("--auth", action="store_true", help="require a bearer token (generated)")
    p.add_argument("--output", help="kubernetes: the directory for the manifests")
    p.add_argument(
        "--kserve",
        nargs="?",
        const=True,
        choices=[True, "serverless"],
        help="kubernetes: also a KServe InferenceService (RawDeployment; 'serverless': on Knative, canary splits)",
    )
    p.add_argument("--context", help="kubernetes: apply with this kubeconfig context")
    p.add_argument("--namespace")
    return p


def _served(dep) -> str:
    """What a deployment serves: its version, or its split ("diabetes:1 90% + diabetes:2 10%")."""
    split = dep.split_weights
    if not split:
        return dep.model
    total = sum(split.values())
    return " + ".join(f"{ref} {w / total:.0%}" for ref, w in split.items())


def rows(deployments) -> str:
    if not deployments:
        return "no deployments: `deploy MODEL --replicas N` makes one"
    return table(
        [
            (
                d.name,
                _served(d),
                d.target,
                f"{d.ready}/{d.replicas}",
                d.status,
                " ".join(d.endpoints) or d.directory or "-",
            )
            for d in deployments
        ],
        ("NAME", "MODEL", "TARGET", "READY", "STATUS", "ENDPOINTS"),
    )


def describe(dep) -> str:
    lines = [f"{dep.name}: {dep.model} on {dep.target}, {dep.ready}/{dep.replicas} ready ({dep.status})"]
    if dep.split_weights:
        lines.append(f"split: {_served(dep)}")
    if dep.endpoints:
        lines.append("endpoints: " + " ".join(dep.endpoints))
    if dep.directory:
        lines.append(f"manifests: {dep.directory}")
    if dep.notes:
        lines.append(f"note: {dep.notes}")
    if dep.auth_token:
        lines.append("requires a bearer token: dep.auth_token in Python")
    return "\n".join(lines)


def split(ws, name: str, words: list[str], progress):
    """``deploy split NAME diabetes:1=90 diabetes:2=10 [--registry R]``; no weights: end the split."""
    registry = None
    if "--registry" in words:
        at = words.index("--registry")
        if at + 1 >= len(words):
            raise NbserveError("usage: deploy split NAME MODEL=WEIGHT ... --registry HOST:PORT/PREFIX")
        registry, words = words[at + 1], words[:at] + words[at + 2 :]
    weights = {}
    for word in words:
        ref, _, weight = word.rpartition("=")
        try:
            weights[ref] = float(weight)
        except ValueError:
            ref = ""
        if not ref:
            raise NbserveError(f"{word!r} is not MODEL=WEIGHT; usage: deploy split NAME diabetes:1=90 diabetes:2=10")
    return ws.split_deployment(name, weights or None, registry=registry, progress=progress)


def run(ws, words: list[str], progress) -> str:
    if not words:
        raise NbserveError(f"usage: {USAGE}")
    verb, rest = words[0], words[1:]
    if verb == "list" and not rest:
        return rows(ws.deployments())
    if verb == "scale" and len(rest) == 2 and rest[1].isdigit():
        return describe(ws.scale_deployment(rest[0], int(rest[1]), progress=progress))
    if verb == "update" and len(rest) == 2:
        return describe(ws.update_deployment(rest[0], rest[1], progress=progress))
    if verb == "rollback" and len(rest) == 1:
        return describe(ws.rollback_deployment(rest[0], progress=progress))
    if verb == "remove" and len(rest) == 1:
        ws.remove_deployment(rest[0], progress=progress)
        return f"removed {rest[0]}"
    if verb == "logs" and rest:
        tail = 200
        if len(rest) == 3 and rest[1] == "--tail" and rest[2].isdigit():
            tail = int(rest[2])
        elif len(rest) != 1:
            raise NbserveError("usage: deploy logs NAME [--tail N]")
        return ws.deployment_logs(rest[0], tail=tail)
    if verb == "split" and rest:
        return describe(split(ws, rest[0], rest[1:], progress))
    if verb in VERBS:
        raise NbserveError(f"usage: {USAGE}")
    args = _deploy_parser().parse_args(words)
    options = {
        k: v for k, v in (("output", args.output), ("context", args.context), ("namespace", args.namespace)) if v
    }
    if args.target == "swarm" and args.init_swarm:
        options["init_swarm"] = True
    if args.kserve:
        options["kserve"] = args.kserve
    if args.auth:
        options["auth_token"] = True
    dep = ws.deploy(
        args.model,
        target=args.target,
        replicas=args.replicas,
        name=args.name,
        registry=args.registry,
        progress=progress,
        **options,
    )
    return describe(dep)
