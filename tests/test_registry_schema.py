"""The registry's schema version and its migrations: each one tested from every earlier version, on SQLite and
on PostgreSQL, and from a registry.db made by nbserve before schema versions existed (tests/fixtures)."""

import shutil
from pathlib import Path

import pytest

from nbserve.store import migrations
from nbserve.store.sql import SQLMetadata, dialect_for
from nbserve.workspace import Workspace

FIXTURE = Path(__file__).parent / "fixtures" / "registry-v1"  # made by tests/fixtures/registry-v1-made-by.py


def _columns(meta, table):
    db = meta.dialect.connect()
    try:
        return [d[0] for d in db.execute(f"SELECT * FROM {table} WHERE 1=0").description]
    finally:
        meta.dialect.release(db)


def _at_version(url, version):
    """A database brought to ``version`` with a version row and an instance row as that version stores them."""
    dialect = dialect_for(url)
    db = dialect.connect()
    try:
        dialect.begin_write(db)
        migrations.migrate(db, dialect, target=version)
        if version >= 1:
            db.execute(
                "INSERT INTO versions (name, version, sha256, created, python) VALUES (?,?,?,?,?)",
                ("double", 1, "a" * 64, 1700000000.5, "/usr/bin/python3"),
            )
            db.execute(
                "INSERT INTO instances (id, name, version, runtime, host, port, desired, created) "
                "VALUES (?,?,?,?,?,?,?,?)",
                ("double-1", "double", 1, "process", "127.0.0.1", 8080, "stopped", 1.0),
            )
        dialect.commit(db)
    finally:
        dialect.release(db)


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request, tmp_path):
    if request.param == "sqlite":
        return lambda: f"sqlite:///{tmp_path / f'r{len(list(tmp_path.iterdir()))}.db'}"
    postgres = request.getfixturevalue("postgres")
    return postgres.new_database


@pytest.mark.parametrize("start", range(migrations.LATEST))
def test_every_migration_from_every_earlier_version_keeps_every_row(fresh_url, start):
    url = fresh_url()
    _at_version(url, start)
    meta = SQLMetadata(url)  # opening a registry migrates it to the latest version
    assert meta.schema_version() == migrations.LATEST
    assert {"registered_by", "registered_host"} <= set(_columns(meta, "versions"))
    assert "machine" in _columns(meta, "placements")
    if start >= 1:
        (row,) = meta.list_versions()
        assert (row.name, row.version, row.sha256, row.created, row.registered_by) == (
            "double",
            1,
            "a" * 64,
            1700000000.5,
            "",
        )
        assert meta.get_instance("double-1").port == 8080
    row, created = meta.add_version("double", "b" * 64, "python", "alice", "laptop")
    assert created and row.version == (2 if start >= 1 else 1) and meta.get_version("double").registered_by == "alice"
    assert SQLMetadata(url).schema_version() == migrations.LATEST  # opening it again changes nothing


def test_a_registry_newer_than_this_nbserve_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    SQLMetadata(url)
    meta = SQLMetadata(url)
    with meta.tx() as db:
        db.execute("UPDATE schema_version SET version=?", (migrations.LATEST + 1,))
    with pytest.raises(Exception, match="newer than this nbserve knows"):
        SQLMetadata(url)


def test_the_registry_on_disk_today_migrates_and_keeps_its_models(tmp_path, monkeypatch):
    """registry.db and artifacts as nbserve 0.1.0 left them: versions, numbers, artifacts and instances survive."""
    for key in ("NBSERVE_REGISTRY_URL", "NBSERVE_ARTIFACTS"):
        monkeypatch.delenv(key, raising=False)
    home = tmp_path / "home"
    shutil.copytree(FIXTURE, home)
    assert migrations.current_version(*_sqlite(home)) == 1
    ws = Workspace(home)
    assert ws.registry.describe()["schema_version"] == migrations.LATEST
    assert [m.id for m in ws.models()] == ["double:2", "triple:1"]
    assert [m.id for m in ws.versions("double")] == ["double:1", "double:2"]
    assert ws.get_model("double:1").load()([1, 2]) == [2, 4] and ws.get_model("triple").load()([1]) == [3]
    assert [m.registered_by for m in ws.models()] == ["", ""]  # not recorded then: unknown, not invented
    (inst,) = ws.registry.list_instances()
    assert (inst.id, inst.model, inst.desired) == ("double-abc123", "double:2", "stopped")

    def double(x):
        return [2 * v for v in x]

    mv = ws.register(double, name="double", sample=[1, 2], progress=False)
    assert mv.id == "double:3" and mv.registered_by


def _sqlite(home):
    import sqlite3

    from nbserve.store.sql import SQLiteDialect

    return sqlite3.connect(home / "registry.db"), SQLiteDialect(home / "registry.db")
