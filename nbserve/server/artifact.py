"""Load a stored artifact: verify its hashes, then unpickle. Nothing is unpickled unverified."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable


class ArtifactError(Exception):
    pass


def read_manifest(artifact_dir: str | os.PathLike[str]) -> dict:
    """The manifest, checked against the artifact's address (its directory name) when that is a sha256."""
    artifact_dir = Path(artifact_dir)
    data = (artifact_dir / "manifest.json").read_bytes()
    expected = artifact_dir.name
    if len(expected) == 64 and hashlib.sha256(data).hexdigest() != expected:
        raise ArtifactError(f"{artifact_dir}/manifest.json does not match its sha256 {expected[:12]}")
    return json.loads(data)


def verify(artifact_dir: str | os.PathLike[str], manifest: dict | None = None) -> None:
    """Check model.pkl against the manifest's hash without unpickling it (a master that leaves the loading
    to its workers still refuses a tampered artifact before it forks them)."""
    artifact_dir = Path(artifact_dir)
    manifest = read_manifest(artifact_dir) if manifest is None else manifest
    digest = hashlib.sha256()
    with open(artifact_dir / "model.pkl", "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != manifest["pickle_sha256"]:
        raise ArtifactError(f"{artifact_dir / 'model.pkl'} does not match its recorded sha256; refusing to unpickle it")


def load(
    artifact_dir: str | os.PathLike[str],
    expected_sha256: str | None = None,
    loads: Callable[[bytes], Any] | None = None,
) -> tuple[Any, dict]:
    """Return (model object, manifest) after checking model.pkl against the manifest's hash.
    ``loads``: the unpickling function (default cloudpickle.loads; replay counts threads with its own)."""
    if loads is None:
        import cloudpickle

        loads = cloudpickle.loads
    artifact_dir = Path(artifact_dir)
    manifest = read_manifest(artifact_dir)
    if expected_sha256 and len(artifact_dir.name) != 64:
        data = (artifact_dir / "manifest.json").read_bytes()
        if hashlib.sha256(data).hexdigest() != expected_sha256:
            raise ArtifactError(f"{artifact_dir}/manifest.json does not match sha256 {expected_sha256[:12]}")
    apply_environment(manifest)
    pkl = artifact_dir / "model.pkl"
    # hash and unpickle the very same bytes: reading the file twice would let them change in between
    data = pkl.read_bytes()
    if hashlib.sha256(data).hexdigest() != manifest["pickle_sha256"]:
        raise ArtifactError(f"{pkl} does not match its recorded sha256; refusing to unpickle it")
    return loads(data), manifest


def apply_environment(manifest: dict) -> None:
    """The environment variables captured with the version (KERAS_BACKEND...), set before unpickling imports
    the model's libraries; a variable the process was started with wins (a deployment's own setting)."""
    for key, value in (manifest.get("environment") or {}).items():
        os.environ.setdefault(key, value)


def bind_methods(obj: Any, manifest: dict) -> dict[str, Callable[..., Any]]:
    """Method name -> callable, resolved once at load time (never per request)."""
    table = {}
    for name in manifest["methods"]:
        if manifest.get("kind") in ("function", "graph"):  # a graph: its runner (server/graph.py)
            table[name] = obj
        elif manifest.get("kind") == "torch_module":
            schema = manifest.get("signature", {}).get(name, {}).get("input", {})
            table[name] = _torch_method(obj, obj if name == "predict" else getattr(obj, name), schema.get("dtype"))
        else:
            table[name] = getattr(obj, name)
    return table


def _torch_method(module: Any, fn: Callable[..., Any], dtype: str | None) -> Callable[[Any], Any]:
    """A torch module's method as a model method: eval mode, no gradients, numpy in (as the sample's
    dtype) and numpy out."""
    import numpy as np
    import torch

    def call(data: Any) -> Any:
        module.eval()
        with torch.no_grad():
            if isinstance(data, torch.Tensor):
                tensor = data
            else:
                tensor = torch.from_numpy(np.ascontiguousarray(np.asarray(data, dtype=dtype)))
            return _numpy(fn(tensor))

    call.__name__ = getattr(fn, "__name__", "predict")
    return call


def _numpy(value: Any) -> Any:
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    if isinstance(value, (list, tuple)):
        return type(value)(_numpy(v) for v in value)
    if isinstance(value, dict):
        return {k: _numpy(v) for k, v in value.items()}
    return value
