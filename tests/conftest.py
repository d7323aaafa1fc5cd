"""Shared fixtures: a migrated database per test on SQLite, and on PostgreSQL when configured."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import factories as f
import pytest
from live_guard import LiveModelBlockedError
from pg_databases import drop_pg_database, fresh_pg_database
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.db import make_engine, make_sessionmaker
from crm.demo.generator import generate_demo
from crm.migrate import upgrade


def _sqlite_engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    path = tmp_path_factory.mktemp("db") / "test.db"
    return make_engine(f"sqlite:///{path}")


@pytest.fixture
def sqlite_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    engine = _sqlite_engine(tmp_path_factory)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def pg_engine() -> Iterator[Engine]:
    url, name = fresh_pg_database()
    engine = make_engine(url)
    upgrade(engine)
    yield engine
    engine.dispose()
    drop_pg_database(name)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """A freshly migrated database on each engine the machine offers."""
    if request.param == "sqlite":
        yield request.getfixturevalue("sqlite_engine")
    else:
        yield request.getfixturevalue("pg_engine")


@pytest.fixture
def engine(sqlite_engine: Engine) -> Engine:
    return sqlite_engine


@pytest.fixture(scope="session")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file with the 120-account demo company (seed 7): a template, copy before writing."""
    path = tmp_path_factory.mktemp("demo120") / "demo.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    generate_demo(engine, accounts=120, seed=7)
    engine.dispose()
    return path


@pytest.fixture
def demo_sessions(demo_db: Path, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    """Sessions on this test's own copy of the demo template."""
    copy = tmp_path / "run.db"
    shutil.copy(demo_db, copy)
    engine = make_engine(f"sqlite:///{copy}")
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with make_sessionmaker(engine)() as s:
        yield s


@pytest.fixture(autouse=True)
def _no_live_model(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any test that reaches a real model unless it is marked `live` or uses a cassette (`vcr`).

    The OpenAI client (so ChatOpenAI, whatever the endpoint) sends through httpx2's transports;
    they are replaced by a tripwire. Cassette tests are left to vcrpy, which serves recorded
    traffic and refuses requests it has no recording for (record mode "none" in CI).
    """
    if request.node.get_closest_marker("live") or request.node.get_closest_marker("vcr"):
        return
    import httpx2

    def tripwire(self: object, req: httpx2.Request, *args: object, **kwargs: object) -> None:
        raise LiveModelBlockedError(
            f"test tried to reach a live model at {req.url}; mark it `live` or record a cassette (vcr)"
        )

    async def atripwire(self: object, req: httpx2.Request, *args: object, **kwargs: object) -> None:
        tripwire(self, req)

    monkeypatch.setattr(httpx2.HTTPTransport, "handle_request", tripwire)
    monkeypatch.setattr(httpx2.AsyncHTTPTransport, "handle_async_request", atripwire)


@pytest.fixture
def golden_db_url(tmp_path: Path) -> str:
    """A migrated SQLite file with the golden activities, initiatives and accounts (CLI tests)."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    engine = make_engine(url)
    upgrade(engine)
    with make_sessionmaker(engine)() as s:
        f.golden_activities(s)
        f.golden_initiatives(s)
        f.golden_accounts(s)
        s.commit()
    engine.dispose()
    return url
