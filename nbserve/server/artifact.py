"""Load a stored artifact: verify its hashes, then unpickle. Nothing is unpickled unverified."""

import hashlib
import json
from pathlib import Path


class ArtifactError(Exception):
    pass


def read_manifest(artifact_dir) -> dict:
    """The manifest, checked against the artifact's address (its directory name) when that is a sha256."""
    artifact_dir = Path(artifact_dir)
    data = (artifact_dir / "manifest.json").read_bytes()
    expected = artifact_dir.name
    if len(expected) == 64 and hashlib.sha256(data).hexdigest() != expected:
        raise ArtifactError(f"{artifact_dir}/manifest.json does not match its sha256 {expected[:12]}")
    return json.loads(data)


def load(artifact_dir, expected_sha256=None, loads=None):
    """Return (model object, manifest) after checking model.pkl against the manifest's hash.
    ``loads``: the unpickling function (default cloudpickle.loads; replay counts threads with its own)."""
    if loads is None:
        from cloudpickle import loads

    artifact_dir = Path(artifact_dir)
    manifest = read_manifest(artifact_dir)
    if expected_sha256 and len(artifact_dir.name) != 64:
        data = (artifact_dir / "manifest.json").read_bytes()
        if hashlib.sha256(data).hexdigest() != expected_sha256:
            raise ArtifactError(f"{artifact_dir}/manifest.json does not match sha256 {expected_sha256[:12]}")
    pkl = artifact_dir / "model.pkl"
    # hash and unpickle the very same bytes: reading the file twice would let them change in between
    data = pkl.read_bytes()
    if hashlib.sha256(data).hexdigest() != manifest["pickle_sha256"]:
        raise ArtifactError(f"{pkl} does not match its recorded sha256; refusing to unpickle it")
    return loads(data), manifest


def bind_methods(obj, manifest) -> dict:
    """Method name -> callable, resolved once at load time (never per request)."""
    table = {}
    for name in manifest["methods"]:
        if manifest.get("kind") == "function":
            table[name] = obj
        else:
            table[name] = getattr(obj, name)
    return table
