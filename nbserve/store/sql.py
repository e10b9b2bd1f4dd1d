"""Registry metadata in SQL: one implementation, two dialects (SQLite, the embedded default, and PostgreSQL).

The statements are written once, with ``?`` placeholders; a dialect connects, translates placeholders, and
says how a write transaction takes the registry's lock: SQLite's ``BEGIN IMMEDIATE`` (concurrent writers
queue), PostgreSQL's session advisory lock held for the transaction (concurrent writers on several machines
queue; the server drops the lock of a killed client with its connection). Both run the same migrations.
Plain DB-API rather than an ORM: the default path stays as fast as the SQLite registry was (no extra imports).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import InstanceNotFoundError, ModelNotFoundError, NbserveError
from . import migrations
from .rows import InstanceRow, VersionRow

VCOLS = "name, version, sha256, created, python, registered_by, registered_host"
ICOLS = "id, name, version, runtime, host, port, desired, created, started, handle, options"
PCOLS = "machine, instance, name, version, runtime, url, status, registered_by, reported"
_LOCK_KEY = 0x6E627376  # "nbsv": the one advisory lock every PostgreSQL writer of a registry takes


class SQLiteDialect:
    name = "sqlite"
    float_type = "REAL"

    def __init__(self, path: Path):
        self.path = Path(path)

    def describe(self) -> str:
        return f"sqlite:///{self.path}"

    def connect(self):
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def release(self, db) -> None:
        db.close()

    def begin_write(self, db) -> None:
        db.execute("BEGIN IMMEDIATE")

    def commit(self, db) -> None:
        db.execute("COMMIT")

    def rollback(self, db) -> None:
        db.execute("ROLLBACK")

    def has_table(self, db, table: str) -> bool:
        return bool(db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (table,)).fetchone())


class _Translating:
    """A psycopg connection that speaks ``?`` placeholders like sqlite3."""

    def __init__(self, conn):
        self.conn = conn

    def execute(self, sql, args=None):
        return self.conn.execute(sql.replace("?", "%s"), args) if args is not None else self.conn.execute(sql)


class PostgresDialect:
    name = "postgresql"
    float_type = "DOUBLE PRECISION"

    def __init__(self, url: str):
        self.url = url.replace("postgresql+psycopg://", "postgresql://", 1)
        self._conn: Any = None  # a psycopg connection (an optional dependency)
        self._pid: int | None = None
        self._lock = threading.RLock()

    def describe(self) -> str:
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(self.url)
        if parts.password:  # never print the password
            parts = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@"))
        return urlunsplit(parts)

    def connect(self):
        """One connection per process (reused: a PostgreSQL connect costs a round trip and authentication);
        a thread holds it for one statement or one transaction."""
        self._lock.acquire()
        try:
            if self._conn is None or self._pid != os.getpid() or self._conn.closed or self._conn.broken:
                try:
                    import psycopg
                except ImportError:
                    raise NbserveError(
                        "a PostgreSQL registry needs psycopg: pip install 'nbserve-ml[team]' (or 'psycopg[binary]')"
                    ) from None
                try:
                    self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
                except psycopg.OperationalError as exc:
                    raise NbserveError(f"cannot reach the registry at {self.describe()}: {exc}") from None
                self._pid = os.getpid()
            return _Translating(self._conn)
        except BaseException:
            self._lock.release()
            raise

    def release(self, db) -> None:
        self._lock.release()

    def begin_write(self, db) -> None:
        # the lock first, the transaction after: a transaction that starts once the lock is held sees the
        # catalog as the previous holder left it (a lock taken inside it could see tables through a stale cache)
        db.execute(f"SELECT pg_advisory_lock({_LOCK_KEY})")
        try:
            db.execute("BEGIN")
        except BaseException:
            self._unlock(db)
            raise

    def commit(self, db) -> None:
        try:
            db.execute("COMMIT")
        finally:
            self._unlock(db)

    def rollback(self, db) -> None:
        try:
            if not db.conn.broken:
                db.execute("ROLLBACK")
        finally:
            self._unlock(db)

    def _unlock(self, db) -> None:
        if not db.conn.broken:  # a broken connection has lost its session, and its lock with it
            db.execute(f"SELECT pg_advisory_unlock({_LOCK_KEY})")

    def has_table(self, db, table: str) -> bool:
        return db.execute("SELECT to_regclass(?) IS NOT NULL", (table,)).fetchone()[0]

    def close(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None


def dialect_for(url: str):
    if url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        return PostgresDialect(url.replace("postgres://", "postgresql://", 1))
    if url.startswith("sqlite:///"):
        return SQLiteDialect(Path(url[len("sqlite:///") :]).expanduser())
    raise NbserveError(f"registry URL {url!r}: expected postgresql://USER:PASSWORD@HOST/DB or sqlite:///PATH")


class SQLMetadata:
    """Versions, instances and placements, in one database of either dialect."""

    def __init__(self, url: str):
        self.dialect = dialect_for(url)
        self.url = url
        db = self.dialect.connect()
        try:
            version = migrations.current_version(db, self.dialect)
        finally:
            self.dialect.release(db)
        if version != migrations.LATEST:
            with self.tx() as db:  # under the write lock: two first openers do not both migrate
                migrations.migrate(db, self.dialect)

    def describe(self) -> str:
        return self.dialect.describe()

    def schema_version(self) -> int:
        return self.query("SELECT version FROM schema_version")[0][0]

    @contextmanager
    def tx(self):
        """A write transaction that holds the registry's lock from its start: writers queue, never deadlock."""
        d = self.dialect
        db = d.connect()
        try:
            d.begin_write(db)
            try:
                yield db
            except BaseException:
                d.rollback(db)
                raise
            d.commit(db)
        finally:
            d.release(db)

    def query(self, sql, args=()):
        db = self.dialect.connect()
        try:
            return db.execute(sql, args).fetchall()
        finally:
            self.dialect.release(db)

    # -- versions ------------------------------------------------------------------------------

    def add_version(self, name, sha, python, by="", host=""):
        """Record (name, artifact) as the next version; the same artifact twice returns the existing one."""

        with self.tx() as db:
            row = db.execute(f"SELECT {VCOLS} FROM versions WHERE name=? AND sha256=?", (name, sha)).fetchone()
            if row:
                return VersionRow(*row), False
            (last,) = db.execute("SELECT COALESCE(MAX(version), 0) FROM versions WHERE name=?", (name,)).fetchone()
            row = (name, last + 1, sha, time.time(), python, by, host)
            db.execute(f"INSERT INTO versions ({VCOLS}) VALUES (?,?,?,?,?,?,?)", row)
            return VersionRow(*row), True

    def import_version(self, row) -> str:
        """Copy a version as it is (same number, artifact and provenance): 'copied', 'present', or an error."""
        with self.tx() as db:
            same = db.execute(
                "SELECT sha256 FROM versions WHERE name=? AND version=?", (row.name, row.version)
            ).fetchone()
            if same and same[0] == row.sha256:
                return "present"
            other = db.execute(
                "SELECT version FROM versions WHERE name=? AND sha256=?", (row.name, row.sha256)
            ).fetchone()
            if same or other:
                clash = (
                    f"{row.name}:{row.version} is another artifact there" if same else f"it is {row.name}:{other[0]}"
                )
                raise NbserveError(f"cannot copy {row.name}:{row.version} ({row.sha256[:12]}): {clash}")
            db.execute(
                f"INSERT INTO versions ({VCOLS}) VALUES (?,?,?,?,?,?,?)",
                (row.name, row.version, row.sha256, row.created, row.python, row.registered_by, row.registered_host),
            )
            return "copied"

    def get_version(self, name, version=None):

        if version is None:
            rows = self.query(f"SELECT {VCOLS} FROM versions WHERE name=? ORDER BY version DESC LIMIT 1", (name,))
        else:
            rows = self.query(f"SELECT {VCOLS} FROM versions WHERE name=? AND version=?", (name, int(version)))
        if not rows:
            known = [r[0] for r in self.query("SELECT DISTINCT name FROM versions ORDER BY name")]
            if version is not None and name in known:
                raise ModelNotFoundError(f"model {name!r} has no version {version}")
            hint = f"; registered models: {', '.join(known)}" if known else "; no model is registered yet"
            raise ModelNotFoundError(f"no model named {name!r}{hint}")
        return VersionRow(*rows[0])

    def list_versions(self, name=None):

        if name is None:
            rows = self.query(f"SELECT {VCOLS} FROM versions ORDER BY name, version")
        else:
            rows = self.query(f"SELECT {VCOLS} FROM versions WHERE name=? ORDER BY version", (name,))
        return [VersionRow(*r) for r in rows]

    def latest_versions(self):

        cols = ", ".join(f"v.{c.strip()}" for c in VCOLS.split(","))
        rows = self.query(
            f"SELECT {cols} FROM versions v "
            "JOIN (SELECT name, MAX(version) AS m FROM versions GROUP BY name) l "
            "ON v.name=l.name AND v.version=l.m ORDER BY v.name"
        )
        return [VersionRow(*r) for r in rows]

    # -- instances (per machine: always in the local database) ---------------------------------

    def _irow(self, r):

        id, name, version, runtime, host, port, desired, created, started = r[:9]
        return InstanceRow(
            id, name, version, runtime, host, port, desired, created, started, json.loads(r[9]), json.loads(r[10])
        )

    def add_instance(self, row) -> None:
        with self.tx() as db:
            db.execute(
                f"INSERT INTO instances ({ICOLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
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

    def update_instance(self, id, **fields) -> None:
        if not fields:
            return
        for key in ("handle", "options"):
            if key in fields:
                fields[key] = json.dumps(fields[key])
        sets = ", ".join(f"{k}=?" for k in fields)
        with self.tx() as db:
            db.execute(f"UPDATE instances SET {sets} WHERE id=?", (*fields.values(), id))

    def get_instance(self, id):
        rows = self.query(f"SELECT {ICOLS} FROM instances WHERE id=?", (id,))
        if not rows:
            raise InstanceNotFoundError(f"no instance with id {id!r}; `nbserve.instances()` lists them")
        return self._irow(rows[0])

    def list_instances(self):
        return [self._irow(r) for r in self.query(f"SELECT {ICOLS} FROM instances ORDER BY created")]

    def delete_instance(self, id) -> None:
        with self.tx() as db:
            db.execute("DELETE FROM instances WHERE id=?", (id,))

    # -- placements: which versions run where, as each workspace reports its instances -----------

    def report(self, machine: str, placements: list[dict], gone: Sequence[str] = ()) -> None:
        with self.tx() as db:
            for p in placements:
                db.execute(
                    f"INSERT INTO placements ({PCOLS}) VALUES (?,?,?,?,?,?,?,?,?) "
                    "ON CONFLICT (machine, instance) DO UPDATE SET url=excluded.url, status=excluded.status, "
                    "version=excluded.version, reported=excluded.reported",
                    (
                        machine,
                        p["instance"],
                        p["name"],
                        p["version"],
                        p["runtime"],
                        p["url"],
                        p["status"],
                        p["registered_by"],
                        time.time(),
                    ),
                )
            for instance in gone:
                db.execute("DELETE FROM placements WHERE machine=? AND instance=?", (machine, instance))

    def placements(self) -> list[dict]:
        keys = [c.strip() for c in PCOLS.split(",")]
        rows = self.query(f"SELECT {PCOLS} FROM placements ORDER BY name, version, machine, instance")
        return [dict(zip(keys, r)) for r in rows]
