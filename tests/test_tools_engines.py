"""The same data on SQLite and PostgreSQL gives byte-identical tool results."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import factories as f
import pytest
from pydantic import BaseModel
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from core.db import make_sessionmaker
from tools.accounts import account_timeline, get_account, list_accounts
from tools.activities import score_activities
from tools.ranking import rank

D = dt.date


def _fill(session: Session) -> None:
    f.golden_activities(session)
    f.golden_initiatives(session)
    f.golden_accounts(session)
    a = "ACME-0001"
    f.contact(session, a, name="Cara", is_champion=True)
    f.contact(session, a, name="Lee", is_champion=True, left_at=D(2026, 2, 14))
    f.nps(session, a, score=4, responded_at=D(2026, 2, 20))
    f.interaction(session, a, type="qbr", occurred_at=D(2026, 3, 11), sentiment=-0.25)
    f.invoice(session, a, due_date=D(2026, 1, 31), paid_at=None, status="failed")
    f.opportunity(session, a, stage="closed_lost", close_date=D(2026, 3, 1))
    f.usage(session, a, week_start=D(2026, 3, 23), active_users=15)
    session.commit()


CALLS: dict[str, Callable[[Session], BaseModel]] = {
    "score_activities": lambda s: score_activities(session=s),
    "rank accounts days_to_renewal": lambda s: rank(session=s, entity="accounts", metric="days_to_renewal"),
    "rank accounts open_tickets": lambda s: rank(session=s, entity="accounts", metric="open_tickets"),
    "rank accounts tenure_days": lambda s: rank(
        session=s, entity="accounts", metric="tenure_days", filters={"status": ["active", "churned"]}
    ),
    "rank activities value_cost_index": lambda s: rank(
        session=s, entity="activities", metric="value_cost_index"
    ),
    "rank initiatives roi": lambda s: rank(session=s, entity="initiatives", metric="roi"),
    "get_account": lambda s: get_account(session=s, account_id="ACME-0001"),
    "list_accounts": lambda s: list_accounts(session=s, filters={"region": "emea"}),
    "account_timeline": lambda s: account_timeline(session=s, account_id="ACME-0001"),
}


@pytest.mark.postgres
def test_sqlite_and_postgres_agree_byte_for_byte(sqlite_engine: Engine, pg_engine: Engine) -> None:
    outputs: list[dict[str, str]] = []
    for engine in (sqlite_engine, pg_engine):
        with make_sessionmaker(engine)() as s:
            _fill(s)
            outputs.append({name: call(s).model_dump_json() for name, call in CALLS.items()})
    sqlite_out, pg_out = outputs
    for name in CALLS:
        assert sqlite_out[name] == pg_out[name], name


@pytest.mark.postgres
def test_the_revenue_and_service_tools_agree_on_sqlite_and_postgres(sqlite_engine: Engine, pg_engine: Engine) -> None:
    """pipeline_health and service_queue read dates as text for speed (a CAST, since PostgreSQL's
    driver returns dates where SQLite returns the stored text): the demo company gives the same
    results on both engines."""
    from crm.demo.generator import generate_demo
    from tools.deals.score import deal_score
    from tools.pipeline.deals import load_open_deals, pipeline_as_of
    from tools.pipeline.health import pipeline_health
    from tools.service_queue.queue import service_queue

    outputs: list[dict[str, str]] = []
    for engine in (sqlite_engine, pg_engine):
        generate_demo(engine, accounts=120, seed=7)
        with make_sessionmaker(engine)() as s:
            deal = load_open_deals(s, [], pipeline_as_of(s))[0].ref
            outputs.append({
                "pipeline by team": pipeline_health(session=s, group_by="team").model_dump_json(),
                "pipeline by quarter": pipeline_health(session=s, group_by="quarter").model_dump_json(),
                "service_queue": service_queue(session=s, limit=10).model_dump_json(),
                "deal_score": deal_score(session=s, opportunity_id=deal).model_dump_json(),
            })
    sqlite_out, pg_out = outputs
    assert sqlite_out["service_queue"].count('"ticket_id"') == 10
    for name in sqlite_out:
        assert sqlite_out[name] == pg_out[name], name
