"""Issue #16: the demo company and imported data are kept apart.

Imports refuse a database that holds the demo (unless --keep-demo), `valuechain demo remove`
deletes the demo in one transaction and keeps imported rows, and churn training never learns
from both populations at once.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from core.db import make_engine, make_sessionmaker
from core.settings import get_settings
from crm.demo import generate_demo, remove_demo
from crm.dump import database_hash
from crm.importer import ImportReport, import_csv, load_mapping
from crm.models import (
    DEMO_ORIGIN,
    Account,
    AppMeta,
    ChurnModel,
    ChurnScore,
    Contact,
    Initiative,
    Interaction,
    Invoice,
    NpsResponse,
    Opportunity,
    OpportunityStage,
    Recommendation,
    RecommendationEvent,
    SalesAgent,
    Subscription,
    SupportTicket,
    UsageWeekly,
    ValueChainActivity,
)
from tools.churn.model import load_model_report, train
from tools.churn.scoring import write_score_snapshot
from tools.recommendations import propose_recommendation
from valuechain.cli import setup as setup_cmd
from valuechain.cli.main import app

ROOT = Path(__file__).resolve().parent.parent
TELCO = ROOT / "tests" / "fixtures" / "csv" / "telco-sample.csv"
MAPPINGS = ROOT / "examples" / "mappings"
DATA = ROOT / "examples" / "data"
TELCO_MAPPING = MAPPINGS / "telco-accounts.yaml"
NOW = dt.datetime(2026, 10, 1, 9, 0)
DEMO_ACCOUNTS = 120
TELCO_ACCOUNTS = 40  # rows of the fixture

REFUSAL = (
    "this database holds the demo company (120 demo accounts, 32 demo value-chain activities and "
    "13 demo initiatives); importing your own data next to it would mix two populations (the churn "
    "model would learn from both). Remove the demo first with `valuechain demo remove`, or import "
    "next to it anyway with --keep-demo; nothing was written"
)
ACCOUNT_TABLES: tuple[Any, ...] = (
    Contact,
    Subscription,
    UsageWeekly,
    SupportTicket,
    Invoice,
    Interaction,
    NpsResponse,
    Opportunity,
    ChurnScore,
)

runner = CliRunner()


@pytest.fixture
def demo_engine(any_engine: Engine) -> Engine:
    """The 120-account demo company on each engine the machine offers."""
    generate_demo(any_engine, accounts=DEMO_ACCOUNTS, seed=7)
    return any_engine


@pytest.fixture
def sqlite_demo(sqlite_engine: Engine) -> Engine:
    """The demo on SQLite, for the CLI tests: the CLI keeps one engine per URL for the whole
    process (core.runtime), which a throw-away PostgreSQL database would outlive."""
    generate_demo(sqlite_engine, accounts=DEMO_ACCOUNTS, seed=7)
    return sqlite_engine


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def _import(engine: Engine, table: str, path: Path, mapping: Path, **kw: Any) -> ImportReport:
    return import_csv(
        engine, table=table, path=path, mapping=load_mapping(mapping), mapping_name=mapping.name, **kw
    )


def _count(session: Session, model: Any, *where: Any) -> int:
    return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def _imported_accounts(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        query = text("SELECT * FROM accounts WHERE origin = 'import' ORDER BY id")
        return [tuple(r) for r in conn.execute(query)]


# --------------------------------------------------------------------------- marking and refusal


def test_the_demo_generator_marks_every_row_it_writes(demo_engine: Engine) -> None:
    with Session(demo_engine) as s:
        for model, total in ((Account, DEMO_ACCOUNTS), (ValueChainActivity, 32), (Initiative, 13)):
            assert _count(s, model) == _count(s, model, model.origin == DEMO_ORIGIN) == total


def test_an_import_into_the_demo_is_refused_before_reading_and_changes_nothing(demo_engine: Engine) -> None:
    before = database_hash(demo_engine)
    for dry_run in (False, True):  # a dry run says the same: the real import would be refused
        report = _import(demo_engine, "accounts", TELCO, TELCO_MAPPING, dry_run=dry_run)
        assert not report.ok and report.demo_refused
        assert (report.rows_read, report.rows_inserted, report.demo_accounts) == (0, 0, DEMO_ACCOUNTS)
        assert [e.message for e in report.errors] == [REFUSAL]
    # child tables too: the tickets would hang off accounts that are not there yet anyway
    assert _import(demo_engine, "tickets", DATA / "tickets.csv", MAPPINGS / "tickets.yaml").demo_refused
    assert database_hash(demo_engine) == before


def test_the_cli_refusal_names_both_ways_on(sqlite_demo: Engine) -> None:
    args = [
        "import",
        "accounts",
        str(TELCO),
        "--mapping",
        str(TELCO_MAPPING),
        "--database-url",
        _url(sqlite_demo),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert " ".join(result.stderr.split()) == f"import refused: {REFUSAL}"
    as_json = runner.invoke(app, [*args, "--json"])
    assert as_json.exit_code == 1
    payload = json.loads(as_json.stdout)
    assert payload["demo_refused"] is True and payload["ok"] is False
    assert payload["errors"] == [{"line": None, "column": None, "message": REFUSAL}]
    with Session(sqlite_demo) as s:
        assert _count(s, Account) == DEMO_ACCOUNTS


# --------------------------------------------------------------------------- --keep-demo and training


def test_keep_demo_import_then_train_learns_from_the_imported_accounts_only(demo_engine: Engine) -> None:
    report = _import(demo_engine, "accounts", TELCO, TELCO_MAPPING, keep_demo=True)
    assert report.ok and report.rows_inserted == TELCO_ACCOUNTS
    assert (report.keep_demo, report.demo_accounts, report.demo_refused) == (True, DEMO_ACCOUNTS, False)
    with Session(demo_engine) as s:
        assert _count(s, Account, Account.origin == "import") == TELCO_ACCOUNTS
        trained = train(s, now=NOW)
        s.commit()
        stored = load_model_report(s)
    # the demo's event history is not used: the imported accounts have attributes only
    assert (trained.population, trained.source, trained.n_train) == ("imported", "attributes", TELCO_ACCOUNTS)
    assert trained.positives == 12  # the fixture's churned rows, no demo churners
    assert trained.population_note is not None
    assert trained.population_note.startswith(
        "trained on the 40 imported accounts only; the 120 demo-company accounts in the same database were left out"
    )
    assert stored == trained  # what `churn report` shows says so too


def test_cli_keep_demo_import_then_train_says_so(sqlite_demo: Engine) -> None:
    url = _url(sqlite_demo)
    args = ["import", "accounts", str(TELCO), "--mapping", str(TELCO_MAPPING), "--database-url", url]
    imported = runner.invoke(app, [*args, "--keep-demo"])
    assert imported.exit_code == 0, imported.output
    assert "kept next to the demo company (120 demo accounts)" in " ".join(imported.stdout.split())
    trained = runner.invoke(app, ["churn", "train", "--json", "--database-url", url])
    assert trained.exit_code == 0, trained.output
    report = json.loads(trained.stdout)
    assert (report["population"], report["n_train"]) == ("imported", TELCO_ACCOUNTS)
    assert report["population_note"].startswith("trained on the 40 imported accounts only")
    shown = runner.invoke(app, ["churn", "report", "--database-url", url])
    assert "population" in shown.stdout and "imported accounts only" in " ".join(shown.stdout.split())


def test_training_on_the_demo_alone_says_demo_and_leaves_nothing_out(demo_engine: Engine) -> None:
    with Session(demo_engine) as s:
        report = train(s, now=NOW)
        s.commit()
    assert (report.population, report.population_note, report.source) == ("demo", None, "history")


# --------------------------------------------------------------------------- demo remove


def _propose(session: Session, **target: str) -> None:
    propose_recommendation(
        session=session, action="exec_sponsor_call", rationale="why", evidence={"x": 1}, now=NOW, **target
    )


def _setup_both(engine: Engine) -> dict[str, int]:
    """A demo-trained model and its scores, then real data next to the demo (--keep-demo), a model
    trained on it and its scores, and recommendations on both sides. Returns the demo's row counts."""
    with Session(engine) as s:
        demo_model = train(s, now=NOW)  # the demo alone
        s.commit()
    for table, path, mapping in [
        ("accounts", TELCO, TELCO_MAPPING),
        ("tickets", DATA / "tickets.csv", MAPPINGS / "tickets.yaml"),
        ("activities", DATA / "activities.csv", MAPPINGS / "activities.yaml"),
        ("initiatives", DATA / "initiatives.csv", MAPPINGS / "initiatives.yaml"),
    ]:
        report = _import(engine, table, path, mapping, keep_demo=True)
        assert report.ok, (table, report.errors)
    with Session(engine) as s:
        write_score_snapshot(s, as_of=dt.date(2026, 9, 30))  # the demo model scores both sides
        s.commit()
        imported_model = train(s, now=NOW + dt.timedelta(hours=1))
        s.commit()
        assert imported_model.population == "imported"
        assert imported_model.model_version != demo_model.model_version
        # the imported tickets make it the history path; its snapshots hold the 28 active Telco
        # accounts only (the 12 churned ones have no churn date), not the demo's customers
        assert imported_model.source == "history"
        assert imported_model.n_train == 28 * len(imported_model.snapshots) > 0
        write_score_snapshot(s, as_of=dt.date(2026, 9, 30))
        demo_account = s.scalars(select(Account.id).where(Account.origin == DEMO_ORIGIN).limit(1)).one()
        demo_activity = s.scalars(
            select(ValueChainActivity.id).where(ValueChainActivity.origin == DEMO_ORIGIN).limit(1)
        ).one()
        _propose(s, account_id=demo_account)
        _propose(s, activity_id=demo_activity)
        _propose(s, account_id="7590-VHVEG")
        s.commit()
        demo_ids = select(Account.id).where(Account.origin == DEMO_ORIGIN)
        counts = {
            model.__tablename__: _count(s, model, model.account_id.in_(demo_ids)) for model in ACCOUNT_TABLES
        }
        counts["churn_scores"] += _count(
            s,
            ChurnScore,
            ChurnScore.model_version == demo_model.model_version,
            ~ChurnScore.account_id.in_(demo_ids),
        )
        # the demo's prospects (deals without an account) and its sales team go with it (#20)
        counts["opportunities"] += _count(s, Opportunity, Opportunity.account_id.is_(None))
        counts["sales_agents"] = _count(s, SalesAgent)
        counts["opportunity_stages"] = _count(s, OpportunityStage)
    return counts


def test_demo_remove_deletes_every_demo_row_in_one_transaction_and_keeps_imported_rows(
    demo_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    demo_counts = _setup_both(demo_engine)
    imported_before = _imported_accounts(demo_engine)

    # One transaction: a failure at the last step leaves every row where it was.
    before = database_hash(demo_engine)

    def broken(conn: Any) -> None:
        raise RuntimeError("disk full")

    with monkeypatch.context() as m, pytest.raises(RuntimeError, match="disk full"):
        m.setattr("crm.demo.removal._keep_a_model_active", broken)
        remove_demo(demo_engine, now=NOW)
    assert database_hash(demo_engine) == before

    removal = remove_demo(demo_engine, now=NOW)
    rows = removal.rows
    assert rows["accounts"] == DEMO_ACCOUNTS
    assert (rows["value_chain_activities"], rows["initiatives"]) == (32, 13)
    assert {name: rows[name] for name in demo_counts} == demo_counts
    assert demo_counts["usage_weekly"] > 0 and demo_counts["churn_scores"] > DEMO_ACCOUNTS
    assert (rows["recommendations"], rows["recommendation_events"], rows["churn_models"]) == (2, 2, 1)

    with Session(demo_engine) as s:
        for model in (Account, ValueChainActivity, Initiative):
            assert _count(s, model, model.origin == DEMO_ORIGIN) == 0
        telco = set(s.scalars(select(Account.id)))
        assert len(telco) == TELCO_ACCOUNTS
        for model in ACCOUNT_TABLES:
            assert set(s.scalars(select(model.account_id).distinct())) <= telco, model.__tablename__
        assert _count(s, SupportTicket) > 0  # the imported tickets stay
        assert _count(s, ValueChainActivity) > 0 and _count(s, Initiative) > 0  # imported ones stay
        assert [r.account_id for r in s.scalars(select(Recommendation))] == ["7590-VHVEG"]
        assert _count(s, RecommendationEvent) == 1
        models = s.scalars(select(ChurnModel)).all()
        assert [(m.metrics["population"], m.active) for m in models] == [("imported", True)]
        assert removal.active_model == models[0].version
        assert set(s.scalars(select(ChurnScore.model_version).distinct())) == {models[0].version}
        meta = {m.key: m.value for m in s.scalars(select(AppMeta))}
        assert meta["demo_removed"] == "2026-10-01T09:00:00"
        assert not {"demo_seed", "demo_accounts", "as_of"} & set(meta)
    assert _imported_accounts(demo_engine) == imported_before

    # Now real imports go through without --keep-demo, and a second remove has nothing to do.
    assert _import(demo_engine, "accounts", TELCO, TELCO_MAPPING, upsert=True).ok
    assert remove_demo(demo_engine, now=NOW).rows == {}


def test_cli_demo_remove_asks_then_reports_what_it_deleted(sqlite_demo: Engine) -> None:
    url = _url(sqlite_demo)
    before = database_hash(sqlite_demo)
    declined = runner.invoke(app, ["demo", "remove", "--database-url", url], input="n\n")
    assert declined.exit_code == 1 and "Delete 120 demo accounts" in declined.output
    unasked = runner.invoke(app, ["demo", "remove", "--json", "--database-url", url])
    assert unasked.exit_code == 2 and "add --yes" in unasked.stderr
    assert database_hash(sqlite_demo) == before

    result = runner.invoke(app, ["demo", "remove", "--yes", "--json", "--database-url", url])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["removed"] is True and payload["total"] == sum(payload["rows"].values())
    assert (payload["rows"]["accounts"], payload["rows"]["value_chain_activities"]) == (DEMO_ACCOUNTS, 32)
    with Session(sqlite_demo) as s:
        assert _count(s, Account) == 0
    table = runner.invoke(app, ["demo", "remove", "--yes", "--database-url", url])
    assert table.exit_code == 0 and "no demo company" in table.stdout


# --------------------------------------------------------------------------- make start (init)


def test_init_points_at_demo_remove_and_does_not_load_the_demo_again_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DEMO_ACCOUNTS", "60")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    # the knowledge index is test_init.py's business (and slow); this test is about the demo
    monkeypatch.setattr(setup_cmd, "_build_knowledge_index", lambda settings: None)
    get_settings.cache_clear()
    try:
        first = runner.invoke(app, ["init", "--no-first-key"])
        assert first.exit_code == 0, first.output
        assert setup_cmd.DEMO_HINT in " ".join(first.stdout.split())
        removed = runner.invoke(app, ["demo", "remove", "--yes"])
        assert removed.exit_code == 0, removed.output
        again = runner.invoke(app, ["init", "--no-first-key"])
        assert again.exit_code == 0, again.output
        assert "so it is not loaded again" in " ".join(again.stdout.split())
    finally:
        get_settings.cache_clear()
    engine = make_engine(f"sqlite:///{tmp_path / 'valuechain.db'}")
    with make_sessionmaker(engine)() as s:
        assert _count(s, Account) == 0 and _count(s, ChurnModel) == 0
    engine.dispose()
