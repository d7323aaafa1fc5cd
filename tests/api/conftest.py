"""API test fixtures: a migrated database (SQLite, and PostgreSQL when configured) with the golden
accounts and activities, one API key per role, and a TestClient over `create_app`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path

import factories as f
import pytest
from apihelp import ROLES, settings_for, utcnow
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.auth import create_key
from core.db import make_sessionmaker
from core.settings import Settings
from tools.recommendations import propose_recommendation


@pytest.fixture
def db_engine(any_engine: Engine) -> Engine:
    """The golden accounts and activities on each engine."""
    with make_sessionmaker(any_engine)() as s:
        f.golden_accounts(s)
        f.golden_activities(s)
        f.golden_initiatives(s)
        s.commit()
    return any_engine


@pytest.fixture
def factory(db_engine: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(db_engine)


@pytest.fixture
def keys(factory: sessionmaker[Session]) -> dict[str, str]:
    """An API key per role (users viewer1, analyst1, approver1, admin1) plus approver2."""
    out: dict[str, str] = {}
    with factory() as s:
        for role in ROLES:
            out[role] = create_key(session=s, name=f"{role}1", role=role).key
        out["approver2"] = create_key(session=s, name="approver2", role="approver").key
        s.commit()
    return out


@pytest.fixture
def settings(db_engine: Engine, tmp_path: Path) -> Settings:
    return settings_for(db_engine, tmp_path)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture
def propose(factory: sessionmaker[Session]) -> Callable[..., int]:
    """File a pending recommendation through the real tool; returns its id."""

    def make(account_id: str = "ACME-0001", action: str = "exec_sponsor_call", **kw: object) -> int:
        kw.setdefault("now", utcnow() - dt.timedelta(hours=1))
        kw.setdefault("holdout_share", 0.0)  # review tests; the holdout is tested in test_outcomes*.py
        with factory() as s:
            rec = propose_recommendation(
                session=s,
                account_id=account_id,
                action=action,
                rationale="Two urgent tickets open and renewal in 30 days.",
                evidence={"open_tickets": 2, "churn_probability": 0.41},
                expected_value=4_500.0,
                **kw,  # type: ignore[arg-type]
            )
            s.commit()
            return rec.id

    return make
