"""Which pip distributions an artifact needs, pinned to the versions installed in the kernel.

Modules come from three places: the globals the pickle references, the modules the captured
functions use, and what a clean interpreter imported while loading the artifact and replaying the
sample (the proof). They are mapped to distributions with ``packages_distributions()``, then closed
over the distributions' own dependencies, so the list is a lock of the kernel's environment.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pickletools
import sys
import threading
import types
from collections.abc import Mapping
from importlib import metadata
from typing import Any

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from .. import config
from .pickling import _code_names, is_user_module

# never a model's requirement just because the capturing process had it loaded
_NEVER = {"nbserve", "__main__", "builtins", "_frozen_importlib", "_frozen_importlib_external"}


def modules_in_pickle(data: bytes) -> set[str]:
    """Top-level module names of the classes and functions a pickle references (GLOBAL, STACK_GLOBAL)."""
    found: set[str] = set()
    memo: dict[int, object] = {}
    recent: list[object] = []  # the last two values pushed, enough to read STACK_GLOBAL's operands
    arg: Any
    for op, arg, _pos in pickletools.genops(data):
        name = op.name
        if name == "GLOBAL":
            found.add(arg.split(" ", 1)[0].partition(".")[0])
            recent.append(None)
        elif name == "STACK_GLOBAL":
            if len(recent) >= 2 and isinstance(recent[-2], str):
                found.add(recent[-2].partition(".")[0])
            recent.append(None)
        elif name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"):
            recent.append(arg)
        elif name == "MEMOIZE":
            memo[len(memo)] = recent[-1] if recent else None
        elif name in ("BINGET", "LONG_BINGET", "GET"):
            recent.append(memo.get(int(arg)))
        elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
            memo[int(arg)] = recent[-1] if recent else None
        elif op.stack_after:
            recent.append(None)
        del recent[:-2]
    return found


def modules_used_by_functions(obj, _seen=None) -> set[str]:
    """Modules reachable from the globals of functions that will be pickled by value."""
    _seen = set() if _seen is None else _seen
    found: set[str] = set()
    if id(obj) in _seen:
        return found
    _seen.add(id(obj))
    if isinstance(obj, types.FunctionType):
        mod = sys.modules.get(obj.__module__)
        if mod is not None and not is_user_module(mod):
            return {obj.__module__.partition(".")[0]}
        g = obj.__globals__
        for name in _code_names(obj.__code__):
            value = g.get(name)
            if isinstance(value, types.ModuleType):
                found.add(value.__name__.partition(".")[0])
            elif value is not None:
                found |= _modules_of_value(value, _seen)
        for cell in obj.__closure__ or ():
            try:
                found |= _modules_of_value(cell.cell_contents, _seen)
            except ValueError:
                pass
    return found


def _modules_of_value(value, seen):
    if isinstance(value, types.FunctionType):
        return modules_used_by_functions(value, seen)
    if isinstance(value, types.ModuleType):
        return {value.__name__.partition(".")[0]}
    mod = getattr(type(value), "__module__", "") or ""
    return {mod.partition(".")[0]} if mod else set()


@functools.lru_cache(maxsize=1)
def _module_map() -> Mapping[str, list[str]]:
    """packages_distributions(), cached on disk: it reads every RECORD file (half a second in a data
    science environment), and its answer changes only when something is installed on sys.path."""
    stamp = []
    for entry in sys.path:
        try:
            stamp.append(f"{entry}:{os.stat(entry or '.').st_mtime_ns}")
        except OSError:
            continue
    key = hashlib.sha256("\n".join(stamp).encode()).hexdigest()[:16]
    cache = config.home() / "cache" / f"packages-{key}.json"
    try:
        return json.loads(cache.read_text())
    except (OSError, ValueError):
        pass
    mapping = metadata.packages_distributions()
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(mapping))
        os.replace(tmp, cache)
    except OSError:
        pass
    return mapping


def warm_up() -> None:
    """Compute the module map in a background thread (while a server process starts, say)."""
    threading.Thread(target=_module_map, name="nbserve-module-map", daemon=True).start()


def distributions_for(modules) -> set[str]:
    """Installed distribution names providing these top-level modules (stdlib and user code drop out)."""
    mapping = _module_map()
    dists = set()
    for mod in modules:
        if not mod or mod in _NEVER or mod in sys.stdlib_module_names or mod in sys.builtin_module_names:
            continue
        module = sys.modules.get(mod)
        if module is not None and is_user_module(module):
            continue
        for dist in mapping.get(mod, ()):
            if canonicalize_name(dist) not in own_distributions():
                dists.add(dist)
    return dists


def own_distributions() -> set[str]:
    """nbserve's own distribution names (whatever provides the ``nbserve`` package: "nbserve-ml", or an
    older editable install still named "nbserve"): never a requirement of a model."""
    return {canonicalize_name(d) for d in _module_map().get("nbserve", ())} | {"nbserve-ml"}


# importers whose imports are the artifact's own needs: unpickling, and code pickled by value
_DIRECT_IMPORTERS = {None, "__main__", "nbserve", "cloudpickle", "pickle", "_pickle", "copyreg"}


def needed_imports(importers: dict) -> set[str]:
    """From the proof's {module: importers}, the modules the artifact itself asked for.

    A library's import of something it does not declare as a dependency is optional
    (``try: import pandas``) and does not make the model need it; an import by unpickling or by
    code captured by value does.
    """
    mapping = _module_map()
    needed = set()
    for module, by in importers.items():
        for importer in by:
            top = importer.partition(".")[0] if importer else None
            if top in _DIRECT_IMPORTERS or (top not in mapping and top not in sys.stdlib_module_names):
                needed.add(module)
    return needed


@functools.lru_cache(maxsize=512)
def _dependencies(dist_name: str) -> tuple[str, ...]:
    try:
        requires = metadata.requires(dist_name) or []
    except metadata.PackageNotFoundError:
        return ()
    env: dict[str, Any] = dict(default_environment())
    out = []
    for line in requires:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if req.marker is not None and not req.marker.evaluate({**env, "extra": ""}):
            continue
        out.append(req.name)
    return tuple(out)


# GPU runtime libraries some packages declare on every Linux machine (xgboost: nvidia-nccl-cu12, ~200 MB):
# locked only when the proof imported them, so a CPU model's image goes without them
_GPU_RUNTIMES = ("nvidia-", "cuda-", "cupy-cuda")


def _imported_by_proof(dist_name: str, imported) -> bool:
    key = canonicalize_name(dist_name)
    return any(canonicalize_name(d) == key for module in imported for d in _module_map().get(module, ()))


def lock(dists, imported=None) -> list[str]:
    """``name==version`` for the distributions and everything they depend on, as installed here.
    ``imported``: the top-level modules the proof imported; GPU runtime dependencies it never imported are
    left out (declared, never needed by this model)."""
    pinned: dict[str, str] = {}
    todo = list(dists)
    initial = {canonicalize_name(d) for d in dists}
    while todo:
        name = todo.pop()
        key = canonicalize_name(name)
        if key in pinned or key in own_distributions():
            continue
        if (
            imported is not None
            and key not in initial
            and key.startswith(_GPU_RUNTIMES)
            and not _imported_by_proof(name, imported)
        ):
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional dependency that is not installed is not needed
        pinned[key] = f"{dist.metadata['Name']}=={dist.version}"
        todo.extend(_dependencies(name))
    return sorted(pinned.values(), key=str.lower)
