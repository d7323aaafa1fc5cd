from __future__ import annotations

from sqlalchemy import Engine, inspect

from crm.migrate import current_revision, upgrade
from crm.models import Base


def test_migration_creates_every_model_table(any_engine: Engine) -> None:
    tables = set(inspect(any_engine).get_table_names())
    assert {t.name for t in Base.metadata.sorted_tables} <= tables
    assert current_revision(any_engine) is not None


def test_upgrade_is_idempotent(any_engine: Engine) -> None:
    before = current_revision(any_engine)
    upgrade(any_engine)
    assert current_revision(any_engine) == before


def test_sqlite_runs_in_wal_mode_with_foreign_keys(sqlite_engine: Engine) -> None:
    with sqlite_engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
