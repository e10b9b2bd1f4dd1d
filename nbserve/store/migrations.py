"""The registry's schema, as a list of migrations: the same on SQLite and PostgreSQL.

``schema_version`` holds one row, the number of migrations applied. A registry made before this table existed
(nbserve up to 0.1.0: ``versions`` and ``instances`` only) is version 1. Each migration is a small function
that takes a write transaction (``db``, with ``?`` placeholders) and its dialect; it must never lose a row.
Add a migration by appending a function: never edit one that has shipped.
"""

from __future__ import annotations


def _v1_versions_and_instances(db, dialect):
    """The schema nbserve 0.1.0 created (and left without a version number)."""
    real = dialect.float_type
    db.execute(
        f"""CREATE TABLE IF NOT EXISTS versions (
            name TEXT NOT NULL,
            version INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            created {real} NOT NULL,
            python TEXT NOT NULL,
            PRIMARY KEY (name, version),
            UNIQUE (name, sha256))"""
    )
    db.execute(
        f"""CREATE TABLE IF NOT EXISTS instances (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            version INTEGER NOT NULL,
            runtime TEXT NOT NULL,
            host TEXT NOT NULL,
            port INTEGER,
            desired TEXT NOT NULL,
            created {real} NOT NULL,
            started {real},
            handle TEXT NOT NULL DEFAULT '{{}}',
            options TEXT NOT NULL DEFAULT '{{}}')"""
    )


def _v2_who_and_where(db, dialect):
    """Who registered each version (user, host), and which versions run where (reported by each workspace)."""
    db.execute("ALTER TABLE versions ADD COLUMN registered_by TEXT NOT NULL DEFAULT ''")
    db.execute("ALTER TABLE versions ADD COLUMN registered_host TEXT NOT NULL DEFAULT ''")
    db.execute(
        f"""CREATE TABLE placements (
            machine TEXT NOT NULL,
            instance TEXT NOT NULL,
            name TEXT NOT NULL,
            version INTEGER NOT NULL,
            runtime TEXT NOT NULL,
            url TEXT,
            status TEXT NOT NULL,
            registered_by TEXT NOT NULL,
            reported {dialect.float_type} NOT NULL,
            PRIMARY KEY (machine, instance))"""
    )


MIGRATIONS = [_v1_versions_and_instances, _v2_who_and_where]
LATEST = len(MIGRATIONS)


def current_version(db, dialect) -> int:
    if dialect.has_table(db, "schema_version"):
        row = db.execute("SELECT version FROM schema_version").fetchone()
        return row[0] if row else 0
    return 1 if dialect.has_table(db, "versions") else 0


def migrate(db, dialect, target: int = LATEST) -> int:
    """Bring the schema from its version to ``target``, inside the caller's write transaction."""
    found = current_version(db, dialect)
    if found > LATEST:
        from ..errors import NbserveError

        raise NbserveError(
            f"this registry has schema version {found}, newer than this nbserve knows ({LATEST}): upgrade nbserve"
        )
    for number in range(found + 1, target + 1):
        MIGRATIONS[number - 1](db, dialect)
    if target > found:
        if not dialect.has_table(db, "schema_version"):
            db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        db.execute("DELETE FROM schema_version")
        db.execute("INSERT INTO schema_version (version) VALUES (?)", (target,))
    return max(found, target)
