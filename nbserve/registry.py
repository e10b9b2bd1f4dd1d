"""The local model registry: SQLite metadata plus a content-addressed artifact store.

Layout under the registry home::

    registry.db                 models, versions, instances (SQLite, WAL)
    artifacts/<sha256>/         model.pkl + manifest.json, written to a temp dir and renamed into place

The artifact address is the sha256 of ``manifest.json``, and the manifest records the sha256 of
``model.pkl``; so one hash covers both files, and an artifact is immutable once it is visible.
Several processes (kernels, the Jupyter server, the CLI) share one registry: versions are
allocated inside ``BEGIN IMMEDIATE`` transactions, so concurrent registers never collide.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ArtifactIntegrityError, InstanceNotFoundError, ModelNotFoundError, NbserveError

PICKLE = "model.pkl"
MANIFEST = "manifest.json"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    created REAL NOT NULL,
    python TEXT NOT NULL,
    PRIMARY KEY (name, version),
    UNIQUE (name, sha256)
);
CREATE TABLE IF NOT EXISTS instances (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    runtime TEXT NOT NULL,
    host TEXT NOT NULL,
    port INTEGER,
    desired TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    handle TEXT NOT NULL DEFAULT '{}',
    options TEXT NOT NULL DEFAULT '{}'
);
"""


def canonical_json(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_ref(ref: str, version: int | None = None) -> tuple[str, int | None]:
    """'diabetes' -> ('diabetes', None); 'diabetes:2' -> ('diabetes', 2)."""
    name = ref
    if ":" in ref:
        name, _, v = ref.rpartition(":")
        if not v.isdigit():
            raise ModelNotFoundError(f"{ref!r} is not a model reference; expected NAME or NAME:VERSION")
        if version is not None and int(v) != int(version):
            raise ModelNotFoundError(f"{ref!r} names version {v}, but version={version} was also given")
        version = int(v)
    return name, (int(version) if version is not None else None)


@dataclass
class VersionRow:
    name: str
    version: int
    sha256: str
    created: float
    python: str


@dataclass
class InstanceRow:
    id: str
    name: str
    version: int
    runtime: str
    host: str
    port: int | None
    desired: str
    created: float
    started: float | None
    handle: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict, repr=False)  # may hold the auth token: never in a repr

    @property
    def model(self) -> str:
        return f"{self.name}:{self.version}"


class Registry:
    def __init__(self, home: Path):
        self.home = Path(home)
        self.artifacts = self.home / "artifacts"
        self.artifacts.mkdir(parents=True, exist_ok=True)
        self.db_path = self.home / "registry.db"
        db = self._connect()
        try:
            db.executescript(_SCHEMA)
        finally:
            db.close()
        self._sweep_leftovers()

    def _sweep_leftovers(self, older_than: float = 3600.0) -> None:
        """A register or serve killed mid-way leaves a temp dir (never visible as an artifact or a
        version); remove those old enough that no live writer can still own them."""
        cutoff = time.time() - older_than
        for parent, pattern in ((self.artifacts, ".tmp-*"), (self.home / "staging", "*")):
            for path in parent.glob(pattern):
                try:
                    if path.stat().st_mtime < cutoff:
                        shutil.rmtree(path, ignore_errors=True)
                except OSError:
                    pass

    # -- connections ---------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    @contextmanager
    def _tx(self):
        """A write transaction taken up front, so concurrent writers queue instead of deadlocking."""
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()

    def _query(self, sql, args=()):
        db = self._connect()
        try:
            return db.execute(sql, args).fetchall()
        finally:
            db.close()

    # -- artifacts -----------------------------------------------------------------------------

    def store_artifact(self, pickle_bytes: bytes, manifest: dict) -> str:
        """Write the artifact atomically; return its address. Storing the same content twice is a no-op."""
        manifest = dict(manifest, pickle_sha256=sha256_bytes(pickle_bytes))
        manifest_bytes = canonical_json(manifest)
        sha = sha256_bytes(manifest_bytes)
        final = self.artifacts / sha
        if final.is_dir():
            return sha
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.artifacts))
        try:
            for fname, data in ((PICKLE, pickle_bytes), (MANIFEST, manifest_bytes)):
                with open(tmp / fname, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
            try:
                os.rename(tmp, final)
            except OSError:
                if not final.is_dir():  # lost a race to an identical writer: fine; anything else is not
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return sha

    def artifact_dir(self, sha: str) -> Path:
        return self.artifacts / sha

    def read_manifest(self, sha: str) -> dict:
        path = self.artifacts / sha / MANIFEST
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ArtifactIntegrityError(f"artifact {sha[:12]} is missing from {self.artifacts}") from None
        if sha256_bytes(data) != sha:
            raise ArtifactIntegrityError(
                f"artifact {sha[:12]}: manifest.json does not match its sha256; "
                f"the registry at {self.home} was modified on disk"
            )
        return json.loads(data)

    def verify_artifact(self, sha: str) -> dict:
        """Check both files against their hashes; return the manifest."""
        self.verified_pickle(sha)
        return self.read_manifest(sha)

    def verified_pickle(self, sha: str) -> bytes:
        """model.pkl's bytes, checked against the manifest's hash: the caller unpickles exactly these
        (hashing the file and then opening it again would let the bytes change in between)."""
        manifest = self.read_manifest(sha)
        data = (self.artifacts / sha / PICKLE).read_bytes()
        if sha256_bytes(data) != manifest["pickle_sha256"]:
            raise ArtifactIntegrityError(
                f"artifact {sha[:12]}: model.pkl does not match its sha256; "
                f"refusing to unpickle bytes that changed on disk"
            )
        return data

    # -- versions ------------------------------------------------------------------------------

    def add_version(self, name: str, sha: str, python: str) -> tuple[VersionRow, bool]:
        """Record (name, artifact) as the next version; the same artifact twice returns the existing one."""
        with self._tx() as db:
            row = db.execute(
                "SELECT name, version, sha256, created, python FROM versions WHERE name=? AND sha256=?", (name, sha)
            ).fetchone()
            if row:
                return VersionRow(*row), False
            (last,) = db.execute("SELECT COALESCE(MAX(version), 0) FROM versions WHERE name=?", (name,)).fetchone()
            row = (name, last + 1, sha, time.time(), python)
            db.execute("INSERT INTO versions VALUES (?,?,?,?,?)", row)
            return VersionRow(*row), True

    def get_version(self, name: str, version: int | None = None) -> VersionRow:
        if version is None:
            rows = self._query(
                "SELECT name, version, sha256, created, python FROM versions WHERE name=? "
                "ORDER BY version DESC LIMIT 1",
                (name,),
            )
        else:
            rows = self._query(
                "SELECT name, version, sha256, created, python FROM versions WHERE name=? AND version=?",
                (name, int(version)),
            )
        if not rows:
            known = [r[0] for r in self._query("SELECT DISTINCT name FROM versions ORDER BY name")]
            if version is not None and name in known:
                raise ModelNotFoundError(f"model {name!r} has no version {version}")
            hint = f"; registered models: {', '.join(known)}" if known else "; no model is registered yet"
            raise ModelNotFoundError(f"no model named {name!r}{hint}")
        return VersionRow(*rows[0])

    def list_versions(self, name: str | None = None) -> list[VersionRow]:
        if name is None:
            rows = self._query("SELECT name, version, sha256, created, python FROM versions ORDER BY name, version")
        else:
            rows = self._query(
                "SELECT name, version, sha256, created, python FROM versions WHERE name=? ORDER BY version", (name,)
            )
        return [VersionRow(*r) for r in rows]

    def latest_versions(self) -> list[VersionRow]:
        rows = self._query(
            "SELECT v.name, v.version, v.sha256, v.created, v.python FROM versions v "
            "JOIN (SELECT name, MAX(version) AS m FROM versions GROUP BY name) l "
            "ON v.name=l.name AND v.version=l.m ORDER BY v.name"
        )
        return [VersionRow(*r) for r in rows]

    # -- instances -----------------------------------------------------------------------------

    _ICOLS = "id, name, version, runtime, host, port, desired, created, started, handle, options"

    def _irow(self, r) -> InstanceRow:
        return InstanceRow(*r[:9], handle=json.loads(r[9]), options=json.loads(r[10]))

    def add_instance(self, row: InstanceRow) -> None:
        with self._tx() as db:
            db.execute(
                f"INSERT INTO instances ({self._ICOLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    row.id,
                    row.name,
                    row.version,
                    row.runtime,
                    row.host,
                    row.port,
                    row.desired,
                    row.created,
                    row.started,
                    json.dumps(row.handle),
                    json.dumps(row.options),
                ),
            )

    def update_instance(self, id: str, **fields) -> None:
        if not fields:
            return
        for key in ("handle", "options"):
            if key in fields:
                fields[key] = json.dumps(fields[key])
        sets = ", ".join(f"{k}=?" for k in fields)
        with self._tx() as db:
            db.execute(f"UPDATE instances SET {sets} WHERE id=?", (*fields.values(), id))

    def get_instance(self, id: str) -> InstanceRow:
        rows = self._query(f"SELECT {self._ICOLS} FROM instances WHERE id=?", (id,))
        if not rows:
            raise InstanceNotFoundError(f"no instance with id {id!r}; `nbserve.instances()` lists them")
        return self._irow(rows[0])

    def list_instances(self) -> list[InstanceRow]:
        rows = self._query(f"SELECT {self._ICOLS} FROM instances ORDER BY created")
        return [self._irow(r) for r in rows]

    def delete_instance(self, id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM instances WHERE id=?", (id,))


def require_name(name: str) -> str:
    """Model names end up in URLs, image tags and file names: keep them to a safe alphabet."""
    import re

    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", name):
        raise NbserveError(
            f"invalid model name {name!r}: use letters, digits, '_', '.' or '-' "
            f"(starting with a letter or digit, at most 100 characters)"
        )
    return name
