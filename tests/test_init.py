"""`valuechain init` on a fresh data directory: demo, churn model, knowledge index; then idempotent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from core.db import make_engine, make_sessionmaker
from core.settings import get_settings
from crm.dump import database_hash
from crm.models import Account, ChurnModel
from valuechain.cli.main import app

runner = CliRunner()


@pytest.fixture
def fresh_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DEMO_ACCOUNTS", "150")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_init_loads_everything_once_then_changes_nothing(fresh_data_dir: Path) -> None:
    first = runner.invoke(app, ["init"])
    assert first.exit_code == 0, first.output
    assert "generating the demo company" in first.output
    assert "knowledge index built" in first.output

    engine = make_engine(f"sqlite:///{fresh_data_dir / 'valuechain.db'}")
    with make_sessionmaker(engine)() as session:
        assert session.scalar(select(func.count()).select_from(Account)) == 150
        assert session.scalar(select(func.count()).select_from(ChurnModel).where(ChurnModel.active)) == 1
    before = database_hash(engine)

    second = runner.invoke(app, ["init"])
    assert second.exit_code == 0, second.output
    assert "database ready (150 accounts)" in second.output
    assert "knowledge index unchanged" in second.output
    assert "generating" not in second.output
    assert database_hash(engine) == before
    engine.dispose()
