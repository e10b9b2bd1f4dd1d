"""Pickle a live object with cloudpickle, user code by value, and explain failures by attribute path."""

from __future__ import annotations

import os
import site
import sys
import sysconfig
import types
from contextlib import contextmanager
from pathlib import Path

import cloudpickle

from ..errors import CaptureError


def _library_roots() -> tuple[str, ...]:
    roots = set(site.getsitepackages() + [site.getusersitepackages()])
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        roots.add(sysconfig.get_paths()[key])
    return tuple(str(Path(r).resolve()) + os.sep for r in roots if r)


def is_user_module(module) -> bool:
    """Code the served side cannot install with pip: the notebook itself and local .py files."""
    name = getattr(module, "__name__", "")
    if name == "__main__":
        return True
    top = name.partition(".")[0]
    if top == "nbserve" or top in sys.stdlib_module_names or top in sys.builtin_module_names:
        return False
    path = getattr(module, "__file__", None)
    if not path:
        # a namespace package (a folder of .py files without __init__.py, such as a project's src/) is the
        # user's where every folder of it lies outside the installed libraries
        folders = list(getattr(module, "__path__", None) or [])
        return bool(folders) and all(_outside_libraries(f) for f in folders)
    return _outside_libraries(path)


def _outside_libraries(path) -> bool:
    resolved = str(Path(path).resolve())
    if "site-packages" in resolved or "dist-packages" in resolved:
        return False
    return not resolved.startswith(_library_roots())


def user_packages() -> list:
    """Top-level user modules currently imported (``__main__`` is always pickled by value anyway)."""
    found = []
    for name, module in list(sys.modules.items()):
        if module is None or "." in name or name == "__main__":
            continue
        if is_user_module(module):
            found.append(module)
    return found


@contextmanager
def _by_value(modules):
    registered = []
    try:
        for module in modules:
            try:
                cloudpickle.register_pickle_by_value(module)
                registered.append(module)
            except ValueError:
                pass
        yield
    finally:
        for module in registered:
            cloudpickle.unregister_pickle_by_value(module)


def dump(obj, label: str = "model") -> bytes:
    """cloudpickle bytes of obj; a CaptureError naming the culprit's attribute path if it cannot be pickled."""
    with _by_value(user_packages()):
        try:
            return cloudpickle.dumps(obj, protocol=5)
        except Exception as exc:
            culprit = find_culprit(obj, label)
            where = f"{culprit[0]}: {culprit[1]}" if culprit else label
            reason = culprit[2] if culprit else f"{type(exc).__name__}: {exc}"
            raise CaptureError(
                f"cannot capture {label}: {where} cannot be pickled ({reason}). "
                f"Drop or recreate that attribute before serving, or serve a function that "
                f"builds it when first called."
            ) from exc


def _code_names(code) -> set:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def _children(obj, path):
    if isinstance(obj, dict):
        return [(f"{path}[{k!r}]", v) for k, v in obj.items()]
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [(f"{path}[{i}]", v) for i, v in enumerate(obj)]
    if isinstance(obj, types.FunctionType):
        out = []
        if obj.__closure__:
            for var, cell in zip(obj.__code__.co_freevars, obj.__closure__):
                try:
                    out.append((f"{path}.<closure {var}>", cell.cell_contents))
                except ValueError:
                    pass
        g = obj.__globals__
        out += [(name, g[name]) for name in sorted(_code_names(obj.__code__)) if name in g]
        return out
    if isinstance(obj, types.MethodType):
        return [(f"{path}.__self__", obj.__self__)]
    out = []
    if hasattr(obj, "__dict__") and isinstance(vars(obj), dict):
        out += [(f"{path}.{k}", v) for k, v in vars(obj).items()]
    for slot in getattr(type(obj), "__slots__", ()) or ():
        if isinstance(slot, str) and hasattr(obj, slot):
            out.append((f"{path}.{slot}", getattr(obj, slot)))
    return out


def find_culprit(obj, path, _seen=None, _depth=0):
    """(path, type name, reason) of the innermost object that fails to pickle, or None if obj pickles."""
    _seen = set() if _seen is None else _seen
    if id(obj) in _seen or _depth > 25:
        return None
    _seen.add(id(obj))
    try:
        cloudpickle.dumps(obj)
        return None
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
    if not isinstance(obj, types.ModuleType):
        for child_path, child in _children(obj, path):
            found = find_culprit(child, child_path, _seen, _depth + 1)
            if found:
                return found
    return path, type(obj).__name__, reason
