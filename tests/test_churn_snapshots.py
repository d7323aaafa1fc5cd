"""Kept churn-score snapshots: the batch writer, and rank / list-mode churn_risk reading them.

The snapshot path must give the same probabilities, order, totals and shown drivers as
computing every account; it must not be used when it would not cover the filtered accounts.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from churn_builders import AS_OF, build_history
from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.orm import Session

from core.db import make_engine, make_sessionmaker
from crm.migrate import upgrade
from crm.models import ChurnScore
from tools.churn.candidates import CANDIDATES
from tools.churn.features import AccountScope, active_on
from tools.churn.model import load_active_model, train
from tools.churn.schemas import Candidate
from tools.churn.scoring import assess, churn_risk, explain_rows, write_score_snapshot
from tools.ranking import rank

NOW = dt.datetime(2026, 10, 1)
METRICS = ("churn_probability", "arr_at_risk", "health")


def _trained(engine: Engine, accounts: int, candidates: tuple[Candidate, ...] = CANDIDATES) -> Engine:
    upgrade(engine)
    with make_sessionmaker(engine)() as session:
        build_history(session, accounts=accounts, seed=3)
        report = train(session, now=NOW, candidates=candidates)
        session.commit()
    assert report.method in candidates  # a trained model, not the rule-based fallback
    return engine


# every snapshot test runs once with each model family active
@pytest.fixture(scope="module", params=CANDIDATES)
def db(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('snap') / 'snap.db'}")
    yield _trained(engine, 300, (request.param,))
    engine.dispose()


def _comparable(doc: dict[str, Any]) -> dict[str, Any]:
    """A result without the fields that name the path taken."""
    return {k: v for k, v in doc.items() if k not in ("source", "explanation")}


def _both_paths(session: Session, call: Any) -> tuple[Any, Any]:
    session.execute(delete(ChurnScore))
    computed = call()
    write_score_snapshot(session)
    return computed, call()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"limit": 20},
        {"filters": {"segment": "SMB"}, "limit": 7},
        {"filters": {"plan": ["Growth", "Enterprise"]}, "limit": 1000, "band_thresholds": (0.1, 0.3)},
        {"limit": 5, "top_drivers": 0},
    ],
)
def test_churn_risk_list_same_from_snapshot(db: Engine, kwargs: dict[str, Any]) -> None:
    with make_sessionmaker(db)() as session:
        computed, kept = _both_paths(session, lambda: churn_risk(session=session, **kwargs))
        session.rollback()
    assert (computed.source, kept.source) == ("computed", "snapshot")
    assert "snapshot kept for" in kept.explanation
    assert _comparable(kept.model_dump(mode="json")) == _comparable(computed.model_dump(mode="json"))
    assert kept.matched > 0 and kept.accounts


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("order", [None, "asc"])
def test_rank_same_from_snapshot(db: Engine, metric: str, order: str | None) -> None:
    with make_sessionmaker(db)() as session:

        def call() -> Any:
            return rank(
                session=session,
                entity="accounts",
                metric=metric,
                filters={"segment": ["SMB", "Enterprise"]},
                limit=15,
                order=order,  # type: ignore[arg-type]
            )

        computed, kept = _both_paths(session, call)
        session.rollback()
    assert (computed.source, kept.source) == ("computed", "snapshot")
    assert _comparable(kept.model_dump(mode="json")) == _comparable(computed.model_dump(mode="json"))
    assert kept.missing_values == 0 and len(kept.items) == 15


def test_snapshot_path_is_deterministic(db: Engine) -> None:
    with make_sessionmaker(db)() as session:
        write_score_snapshot(session)
        a = churn_risk(session=session, limit=50).model_dump_json()
        b = churn_risk(session=session, limit=50).model_dump_json()
        r1 = rank(session=session, entity="accounts", metric="arr_at_risk", limit=30).model_dump_json()
        r2 = rank(session=session, entity="accounts", metric="arr_at_risk", limit=30).model_dump_json()
        session.rollback()
    assert a == b and '"source":"snapshot"' in a
    assert r1 == r2 and '"source":"snapshot"' in r1


def test_snapshot_not_used_when_it_does_not_cover_or_match(db: Engine) -> None:
    with make_sessionmaker(db)() as session:
        write_score_snapshot(session)
        # churned accounts are not in a snapshot of active accounts: computed
        assert churn_risk(session=session, filters={"status": "churned"}, limit=3).source == "computed"
        assert (
            rank(
                session=session, entity="accounts", metric="churn_probability", filters={"status": "churned"}
            ).source
            == "computed"
        )
        # another date has no snapshot
        assert churn_risk(session=session, as_of=dt.date(2026, 8, 31), limit=3).source == "computed"
        # one matching account lost its row: computed, for rank and for churn_risk
        victim = session.scalars(select(ChurnScore.account_id).order_by(ChurnScore.account_id)).first()
        session.execute(delete(ChurnScore).where(ChurnScore.account_id == victim))
        assert churn_risk(session=session, limit=3).source == "computed"
        assert rank(session=session, entity="accounts", metric="health").source == "computed"
        # a snapshot of another model version is never read
        session.execute(delete(ChurnScore))
        write_score_snapshot(session)
        session.execute(update(ChurnScore).values(model_version="lr-other"))
        assert churn_risk(session=session, limit=3).source == "computed"
        # one account never reads a snapshot
        assert churn_risk(session=session, account_id=victim).source == "computed"
        session.rollback()


def test_batch_rows_equal_the_tool_and_replace_earlier_ones(db: Engine) -> None:
    with make_sessionmaker(db)() as session:
        first = write_score_snapshot(session, chunk=37)  # several chunks
        again = write_score_snapshot(session, chunk=1000)
        assert again.replaced == first.accounts == again.accounts
        assert session.scalar(select(func.count()).select_from(ChurnScore)) == first.accounts
        model = load_active_model(session)
        result = assess(session, as_of=AS_OF, scope=AccountScope(where=active_on(AS_OF)), model=model)
        explained = explain_rows(model, result.table, 3)
        rows = {
            r.account_id: r
            for r in session.scalars(select(ChurnScore).where(ChurnScore.as_of == AS_OF)).all()
        }
        assert len(rows) == len(result.table)
        for i, account_id in enumerate(result.table.ids):
            row = rows[str(account_id)]
            assert row.probability == float(result.probability[i])
            assert row.drivers == [d.model_dump(mode="json") for d in explained[i][0]]
            assert row.model_version == model.version
        assert sum(first.band_counts.values()) == first.accounts
        assert first.band_counts == {
            band: sum(1 for r in rows.values() if r.band == band) for band in ("high", "medium", "low")
        }
        session.rollback()


def test_drivers_are_stored_as_plain_json(db: Engine) -> None:
    with make_sessionmaker(db)() as session:
        write_score_snapshot(session, top_drivers=2)
        text = session.connection().exec_driver_sql("SELECT drivers FROM churn_scores LIMIT 1").scalar()
        session.rollback()
    assert isinstance(text, str)
    drivers = json.loads(text)
    assert len(drivers) <= 2
    assert all(set(d) == {"feature", "value", "contribution", "unit", "phrase"} for d in drivers)


@pytest.mark.postgres
def test_snapshot_path_on_postgres(pg_engine: Engine) -> None:
    _trained(pg_engine, 200)
    with make_sessionmaker(pg_engine)() as session:
        computed, kept = _both_paths(session, lambda: churn_risk(session=session, limit=10))
        assert (computed.source, kept.source) == ("computed", "snapshot")
        assert _comparable(kept.model_dump(mode="json")) == _comparable(computed.model_dump(mode="json"))
        ranked = rank(session=session, entity="accounts", metric="arr_at_risk", limit=10)
        assert ranked.source == "snapshot"
        session.execute(delete(ChurnScore))
        assert _comparable(
            rank(session=session, entity="accounts", metric="arr_at_risk", limit=10).model_dump(mode="json")
        ) == _comparable(ranked.model_dump(mode="json"))
        session.rollback()
