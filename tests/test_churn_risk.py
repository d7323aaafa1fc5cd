"""The churn_risk tool: errors the model can fix, determinism, totals, score snapshots, CLI."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import typer
from churn_builders import AS_OF, build_history
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from core.db import make_engine, make_sessionmaker
from crm.migrate import upgrade
from crm.models import Account, ChurnScore
from tools.churn.model import load_active_model, train
from tools.churn.scoring import churn_risk, write_score_snapshot
from tools.errors import ToolInputError
from valuechain.cli import tools_churn

NOW = dt.datetime(2026, 10, 1)


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('risk') / 'risk.db'}")
    upgrade(engine)
    with make_sessionmaker(engine)() as session:
        build_history(session, accounts=300, seed=0)
        train(session, now=NOW)
        session.commit()
    return engine


def test_unknown_account_suggests_close_ids(db: Engine) -> None:
    with make_sessionmaker(db)() as session, pytest.raises(ToolInputError) as err:
        churn_risk(session=session, account_id="t-0001")
    assert "T-0001" in str(err.value)


def test_unknown_filter_lists_valid_ones(db: Engine) -> None:
    with make_sessionmaker(db)() as session, pytest.raises(ToolInputError) as err:
        churn_risk(session=session, filters={"colour": "red"})
    message = str(err.value)
    assert "colour" in message and "segment" in message and "region" in message


def test_bad_arguments_are_tool_errors(db: Engine) -> None:
    with make_sessionmaker(db)() as session:
        with pytest.raises(ToolInputError):
            churn_risk(session=session, limit=0)
        with pytest.raises(ToolInputError):
            churn_risk(session=session, account_id="T-0001", filters={"segment": "SMB"})


def test_same_db_same_args_byte_identical(db: Engine) -> None:
    factory = make_sessionmaker(db)
    with factory() as a, factory() as b:
        first = churn_risk(session=a, filters={"segment": ["SMB", "Enterprise"]}, limit=25).model_dump_json()
        second = churn_risk(session=b, filters={"segment": ["Enterprise", "SMB"]}, limit=25).model_dump_json()
        assert first == second
        one = churn_risk(session=a, account_id="T-0007").model_dump_json()
        assert one == churn_risk(session=b, account_id="T-0007").model_dump_json()


def test_ranked_list_consistent_with_single_account(db: Engine) -> None:
    with make_sessionmaker(db)() as session:
        ranked = churn_risk(session=session, limit=300)
        probs = [a.probability for a in ranked.accounts]
        assert probs == sorted(probs, reverse=True)
        for a, b in zip(ranked.accounts, ranked.accounts[1:], strict=False):
            if a.probability == b.probability:
                assert a.account_id < b.account_id  # ties by id
        assert ranked.matched == len(ranked.accounts) == sum(ranked.band_counts.values())
        assert all(a.status == "active" for a in ranked.accounts)
        assert ranked.total_arr_at_risk == pytest.approx(sum(a.arr_at_risk for a in ranked.accounts))
        top = ranked.accounts[0]
        single = churn_risk(session=session, account_id=top.account_id).accounts[0]
        assert single.probability == top.probability  # identical arithmetic alone or in a batch
        assert single.drivers == top.drivers
        for a in ranked.accounts[:20]:
            assert a.arr_at_risk == a.arr * a.probability
            assert a.health == pytest.approx(100 * (1 - a.probability))
            contributions = [d.contribution for d in a.drivers]
            assert contributions == sorted(contributions, reverse=True) and all(c > 0 for c in contributions)


def test_as_of_in_the_past_uses_that_date(db: Engine) -> None:
    with make_sessionmaker(db)() as session:
        earlier = churn_risk(session=session, as_of=dt.date(2026, 3, 31), limit=1)
        assert earlier.as_of == earlier.inputs.as_of == dt.date(2026, 3, 31)
        default = churn_risk(session=session, limit=1)
        assert default.as_of == AS_OF


def test_score_snapshot_keeps_rows_of_accounts_that_churn_later(session: Session) -> None:
    build_history(session, accounts=40, seed=8)
    day = dt.date(2026, 6, 30)
    first = write_score_snapshot(session, as_of=day)
    session.commit()
    active_then = first.accounts
    assert active_then > 0
    assert session.scalar(select(func.count()).select_from(ChurnScore)) == active_then
    # rerunning the same date and model replaces, never duplicates
    again = write_score_snapshot(session, as_of=day)
    session.commit()
    assert again.replaced == active_then
    assert session.scalar(select(func.count()).select_from(ChurnScore)) == active_then
    # an account churns afterwards: its snapshot row stays
    victim = session.scalars(select(ChurnScore.account_id).order_by(ChurnScore.account_id)).first()
    session.execute(
        update(Account).where(Account.id == victim).values(status="churned", churned_at=dt.date(2026, 9, 1))
    )
    session.commit()
    write_score_snapshot(session, as_of=AS_OF)
    session.commit()
    kept = session.scalars(select(ChurnScore).where(ChurnScore.account_id == victim)).all()
    assert [k.as_of for k in kept] == [day]
    assert kept[0].band in ("low", "medium", "high") and 0 <= kept[0].probability <= 1


def test_cli_churn_risk_json_and_errors(db: Engine) -> None:
    tools = typer.Typer()
    tools_churn.register(tools)
    runner = CliRunner()
    url = str(db.url)
    out = runner.invoke(tools, ["churn-risk", "T-0003", "--json", "--database-url", url])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert doc["accounts"][0]["account_id"] == "T-0003"
    listing = runner.invoke(
        tools, ["churn-risk", "--filter", "segment=SMB", "--limit", "5", "--database-url", url]
    )
    assert listing.exit_code == 0, listing.output
    assert "Scored" in listing.stdout and "T-0" in listing.stdout
    bad = runner.invoke(tools, ["churn-risk", "NOPE-1", "--database-url", url])
    assert bad.exit_code == 2
    nba = runner.invoke(tools, ["next-best-action", "T-0003", "--json", "--database-url", url])
    assert nba.exit_code == 0, nba.output
    assert json.loads(nba.stdout)["account_id"] == "T-0003"


def test_rank_metrics_registered_and_consistent(db: Engine) -> None:
    from tools.ranking import account_metrics, rank

    assert {"churn_probability", "arr_at_risk", "health"} <= set(account_metrics())
    with make_sessionmaker(db)() as session:
        risk = churn_risk(session=session, filters={"segment": "SMB"}, limit=10)
        ranked = rank(
            session=session,
            entity="accounts",
            metric="churn_probability",
            filters={"segment": "SMB"},
            limit=10,
        )
        assert [i.id for i in ranked.items] == [a.account_id for a in risk.accounts]
        assert [i.value for i in ranked.items] == [a.probability for a in risk.accounts]
        assert ranked.total_matching == risk.matched
        first = ranked.items[0].context
        assert first["band"] == risk.accounts[0].band
        assert first["top_driver"] == risk.accounts[0].drivers[0].phrase
        healthiest_last = rank(session=session, entity="accounts", metric="health", limit=3)
        # lowest health first, over all segments: no healthier than the riskiest SMB account
        assert healthiest_last.items[0].value is not None
        assert healthiest_last.items[0].value <= 100 * (1 - risk.accounts[0].probability) + 1e-9
        at_risk = rank(session=session, entity="accounts", metric="arr_at_risk", limit=5)
        values = [i.value for i in at_risk.items]
        assert values == sorted(values, reverse=True)
        assert at_risk.items[0].context["arr_at_risk"] == at_risk.items[0].value


def test_cli_churn_score_json(db: Engine) -> None:
    from valuechain.cli.main import app

    out = CliRunner().invoke(
        app, ["churn", "score", "--as-of", "2026-08-31", "--json", "--database-url", str(db.url)]
    )
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert doc["as_of"] == "2026-08-31"
    with make_sessionmaker(db)() as session:
        assert doc["method"] == load_active_model(session).method != "rule_based"
    assert doc["accounts"] == sum(doc["band_counts"].values()) > 0
    with make_sessionmaker(db)() as session:
        kept = session.scalar(
            select(func.count()).select_from(ChurnScore).where(ChurnScore.as_of == dt.date(2026, 8, 31))
        )
    assert kept == doc["accounts"]


def test_cli_churn_score_says_how_it_got_the_features(db: Engine) -> None:
    from valuechain.cli.main import app

    def score(day: str, *extra: str) -> str:
        out = CliRunner().invoke(
            app, ["churn", "score", "--as-of", day, *extra, "--database-url", str(db.url)]
        )
        assert out.exit_code == 0, out.output
        return out.stdout

    first = score("2026-09-01", "--rebuild")
    assert "features: read from the event tables; feature state kept for the next run (--rebuild)" in first
    assert "features: kept feature state moved on with the rows dated since it" in score("2026-09-08")
    assert "features: kept feature state already at this date" in score("2026-09-08")
    earlier = score("2026-09-01")  # a past date does not replace the newer kept state
    assert (
        "features: read from the event tables (the kept state is of 2026-09-08, after 2026-09-01)" in earlier
    )
    assert "features: kept feature state moved on with the rows dated since it" in score("2026-09-15")
