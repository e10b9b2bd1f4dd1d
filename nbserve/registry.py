"""The model registry: metadata (versions, instances, placements) plus a content-addressed artifact store.

By default both live under the registry home, as they always have::

    registry.db                 versions, instances, placements, schema_version (SQLite, WAL)
    artifacts/<sha256>/         model.pkl + manifest.json, written to a temp dir and renamed into place

A team shares one registry by pointing ``NBSERVE_REGISTRY_URL`` at PostgreSQL and ``NBSERVE_ARTIFACTS`` at an
S3-compatible bucket (see ``nbserve.store``); instances stay in the local ``registry.db``, and the shared
registry is told which versions run where. The artifact address is the sha256 of ``manifest.json``, and the
manifest records the sha256 of ``model.pkl``: one hash covers both files, checked on every read. Several
processes (kernels, the Jupyter server, the CLI, other machines) share one registry: versions are allocated
under the registry's write lock, so concurrent registers never collide.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Sequence
from pathlib import Path

from .errors import NbserveError
from .store import locations, scratch
from .store.artifacts import MANIFEST, PICKLE, LocalArtifacts, canonical_json, open_artifacts, pack, sha256_bytes
from .store.rows import InstanceRow, VersionRow
from .store.sql import SQLMetadata

__all__ = [
    "MANIFEST",
    "PICKLE",
    "InstanceRow",
    "Registry",
    "VersionRow",
    "canonical_json",
    "parse_ref",
    "require_name",
    "sha256_bytes",
]


MAX_VERSION = 2**63 - 1  # the largest number SQLite's INTEGER and PostgreSQL's BIGINT hold


def version_number(version) -> int:
    """``version`` as a registry's version number (1, 2, ...), else an NbserveError saying what one is."""
    try:
        number = int(version)
        whole = not isinstance(version, bool) and number == version if not isinstance(version, str) else True
    except (TypeError, ValueError, OverflowError):
        whole = False
    if not whole:
        raise NbserveError(f"a version is a whole number such as 1 or 2; got {version!r}")
    if not 1 <= number <= MAX_VERSION:
        raise NbserveError(f"version {number} is out of range: versions count up from 1 (at most {MAX_VERSION})")
    return number


def parse_ref(ref: str, version: int | str | None = None) -> tuple[str, int | None]:
    """'diabetes' -> ('diabetes', None); 'diabetes:2' -> ('diabetes', 2)."""
    from .errors import ModelNotFoundError

    name = ref
    if ":" in ref:
        name, _, v = ref.rpartition(":")
        if not v.isdigit():
            raise ModelNotFoundError(f"{ref!r} is not a model reference; expected NAME or NAME:VERSION")
        if version is not None and version_number(v) != version_number(version):
            raise ModelNotFoundError(f"{ref!r} names version {v}, but version={version} was also given")
        version = v
    return name, (version_number(version) if version is not None else None)


def whoami() -> tuple[str, str]:
    """(user, host) recorded with each version and each reported instance."""
    try:
        import getpass

        user = getpass.getuser()
    except Exception:  # no login name (a container with an unnamed uid): say so rather than fail a register
        user = f"uid {os.getuid()}"
    return user, socket.gethostname()


class Registry:
    def __init__(self, home: Path, url: str | None = None, artifacts: str | None = None):
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        found_url, found_artifacts = locations(self.home)
        self.db_path = self.home / "registry.db"
        self.local = SQLMetadata(f"sqlite:///{self.db_path}")  # instances: always per machine
        url = url or found_url
        self.meta = self.local if url == f"sqlite:///{self.db_path}" else SQLMetadata(url)
        self.artifacts = open_artifacts(artifacts or found_artifacts, self.home)
        self._sweep_leftovers()

    def describe(self) -> dict:
        return {
            "metadata": self.meta.describe(),
            "artifacts": str(self.artifacts),
            "schema_version": self.meta.schema_version(),
            "instances": self.local.describe(),
        }

    def _sweep_leftovers(self, older_than: float = 3600.0) -> None:
        """A register or serve killed mid-way leaves scratch directories (never visible as an artifact or
        a version): staged drafts and proof directories of owners that are gone (store/scratch.py), and
        the artifact store's temp dirs old enough that no live writer can still own them."""
        scratch.sweep_all(self.home)
        cutoff = time.time() - older_than
        local = self.artifacts if isinstance(self.artifacts, LocalArtifacts) else self.artifacts.cache
        for path in local.root.glob(".tmp-*"):
            try:
                if path.stat().st_mtime < cutoff:
                    shutil.rmtree(path, ignore_errors=True)
            except OSError:
                pass

    # -- artifacts -----------------------------------------------------------------------------

    def store_artifact(self, pickle_bytes: bytes, manifest: dict) -> str:
        """Write the artifact (atomically, once); return its address."""
        sha, manifest_bytes = pack(pickle_bytes, manifest)
        self.artifacts.put(sha, pickle_bytes, manifest_bytes)
        return sha

    def artifact_dir(self, sha: str) -> Path:
        """A local directory holding the artifact (for a bucket: the local cache, fetched and verified once)."""
        return self.artifacts.directory(sha)

    def read_manifest(self, sha: str) -> dict:
        return self.artifacts.manifest(sha)

    def verify_artifact(self, sha: str) -> dict:
        """Check both files against their hashes; return the manifest."""
        self.artifacts.pickle(sha)
        return self.artifacts.manifest(sha)

    def verified_pickle(self, sha: str) -> bytes:
        """model.pkl's bytes, checked against the manifest's hash: the caller unpickles exactly these
        (hashing the file and then opening it again would let the bytes change in between)."""
        return self.artifacts.pickle(sha)

    # -- versions ------------------------------------------------------------------------------

    def add_version(self, name: str, sha: str, python: str) -> tuple[VersionRow, bool]:
        """Record (name, artifact) as the next version; the same artifact twice returns the existing one."""
        return self.meta.add_version(name, sha, python, *whoami())

    def get_version(self, name: str, version: int | None = None) -> VersionRow:
        return self.meta.get_version(name, version)

    def list_versions(self, name: str | None = None) -> list[VersionRow]:
        return self.meta.list_versions(name)

    def latest_versions(self) -> list[VersionRow]:
        return self.meta.latest_versions()

    # -- instances (this machine's) ---------------------------------------------------------------

    def add_instance(self, row: InstanceRow) -> None:
        self.local.add_instance(row)

    def update_instance(self, id: str, **fields) -> None:
        self.local.update_instance(id, **fields)

    def get_instance(self, id: str) -> InstanceRow:
        return self.local.get_instance(id)

    def list_instances(self) -> list[InstanceRow]:
        return self.local.list_instances()

    def delete_instance(self, id: str) -> None:
        self.local.delete_instance(id)

    # -- placements: which versions run where (the team's view) -----------------------------------

    def report(self, placements: list[dict], gone: Sequence[str] = ()) -> None:
        """Tell the (possibly shared) registry what this machine's instances are doing."""
        if not placements and not gone:
            return
        user, host = whoami()
        self.meta.report(host, [dict(p, registered_by=user) for p in placements], gone)

    def placements(self) -> list[dict]:
        return self.meta.placements()

    # -- copy into another registry -------------------------------------------------------------

    def copy_to(self, target: Registry, say=None) -> dict:
        """Copy every version (same numbers, artifacts and provenance) into ``target``; idempotent. Each
        artifact is verified here before it is written and read back from the target after."""
        done = {"copied": 0, "present": 0, "artifacts_verified": 0}
        for row in self.meta.list_versions():
            pickle_bytes, manifest_bytes = self.artifacts.raw(row.sha256)
            target.artifacts.put(row.sha256, pickle_bytes, manifest_bytes)
            if target.artifacts.raw(row.sha256) != (pickle_bytes, manifest_bytes):
                raise NbserveError(f"{row.name}:{row.version}: the copy in {target.artifacts} differs")
            done["artifacts_verified"] += 1
            outcome = target.meta.import_version(row)
            done[outcome] += 1
            if say:
                say(f"{row.name}:{row.version} {row.sha256[:12]} {outcome}")
        return done


def require_name(name: str) -> str:
    """Model names end up in URLs, image tags and file names: keep them to a safe alphabet."""
    import re

    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", name):
        raise NbserveError(
            f"invalid model name {name!r}: use letters, digits, '_', '.' or '-' "
            f"(starting with a letter or digit, at most 100 characters)"
        )
    return name
