"""The deterministic demo company generator (crm/demo) and `valuechain demo`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine, func, insert, select, text
from typer.testing import CliRunner

import crm.demo.generator as generator_module
from core.db import make_engine
from crm.demo import (
    DEFAULT_AS_OF,
    DemoDatabaseNotEmptyError,
    count_rows,
    generate_demo,
)
from crm.demo.checks import churn_rate_last_year, holdout_auc
from crm.dump import database_hash
from crm.migrate import upgrade
from crm.models import Account, AppMeta, ChurnFeatureState, Contact, Initiative, ValueChainActivity
from valuechain.cli.main import app

AS_OF = DEFAULT_AS_OF


def _fresh(tmp_path: Path, name: str) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / name}")
    upgrade(engine)
    return engine


@pytest.fixture(scope="module")
def demo300(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    """One 300-account demo database shared by the read-only tests of this module."""
    engine = _fresh(tmp_path_factory.mktemp("demo"), "demo300.db")
    generate_demo(engine, accounts=300, seed=11, as_of=AS_OF)
    return engine


def _scalar(engine: Engine, sql: str, **params: object) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql), params).scalar_one())


# ---------------------------------------------------------------- determinism


def test_same_seed_same_hash_and_other_seed_other_hash(tmp_path: Path) -> None:
    a, b, c = (_fresh(tmp_path, f"{n}.db") for n in "abc")
    generate_demo(a, accounts=200, seed=3, as_of=AS_OF)
    generate_demo(b, accounts=200, seed=3, as_of=AS_OF)
    generate_demo(c, accounts=200, seed=4, as_of=AS_OF)
    assert database_hash(a) == database_hash(b)
    assert database_hash(a) != database_hash(c)
    # Reference data does not depend on the seed.
    tables = ["value_chain_activities", "initiatives"]
    assert database_hash(a, tables) == database_hash(c, tables)


def test_first_accounts_do_not_depend_on_the_total(tmp_path: Path, demo300: Engine) -> None:
    small = _fresh(tmp_path, "small.db")
    generate_demo(small, accounts=120, seed=11, as_of=AS_OF)
    query = text("SELECT * FROM accounts")  # raw: the JSON column stays a hashable string
    with small.connect() as conn:
        few = set(conn.execute(query).all())
    with demo300.connect() as conn:
        many = set(conn.execute(query).all())
    assert len(few) == 120
    assert few <= many


def test_history_ends_at_as_of_and_meta_is_written(tmp_path: Path) -> None:
    engine = _fresh(tmp_path, "asof.db")
    as_of = dt.date(2025, 3, 31)
    generate_demo(engine, accounts=150, seed=1, as_of=as_of)
    checks = {
        "usage_weekly": "SELECT MAX(week_start) FROM usage_weekly",
        "support_tickets": "SELECT MAX(opened_at) FROM support_tickets",
        "invoices": "SELECT MAX(issued_at) FROM invoices",
        "interactions": "SELECT MAX(occurred_at) FROM interactions",
        "nps_responses": "SELECT MAX(responded_at) FROM nps_responses",
        "accounts": "SELECT MAX(created_at) FROM accounts",
        "paid": "SELECT MAX(paid_at) FROM invoices",
        "closed": "SELECT MAX(closed_at) FROM support_tickets",
    }
    with engine.connect() as conn:
        for name, sql in checks.items():
            latest = conn.execute(text(sql)).scalar_one()
            assert dt.date.fromisoformat(str(latest)) <= as_of, name
        meta = {k: v for k, v in conn.execute(select(AppMeta.key, AppMeta.value))}
        periods = set(conn.execute(select(ValueChainActivity.period).distinct()).scalars())
    assert meta["as_of"] == "2025-03-31"
    assert meta["demo_seed"] == "1"
    assert meta["demo_accounts"] == "150"
    assert meta["generator_version"]
    assert meta["demo_history"] == "full"
    assert periods == {"2024", "2025"}


# ---------------------------------------------------------------- plausibility


def test_row_counts_are_plausible(demo300: Engine) -> None:
    rows = count_rows(demo300)
    per_account = {name: count / 300 for name, count in rows.items()}
    assert rows["accounts"] == 300
    assert 2 <= per_account["contacts"] <= 10
    assert 1 <= per_account["subscriptions"] <= 4
    assert 30 <= per_account["usage_weekly"] <= 156
    assert 2 <= per_account["support_tickets"] <= 30
    assert 3 <= per_account["invoices"] <= 40
    assert 3 <= per_account["interactions"] <= 40
    assert 0.3 <= per_account["nps_responses"] <= 5
    assert 1.5 <= per_account["opportunities"] <= 6
    assert 14 <= rows["value_chain_activities"] / 2 <= 16
    assert 10 <= rows["initiatives"] <= 14


def test_accounts_have_the_documented_shape(demo300: Engine) -> None:
    with demo300.connect() as conn:
        accounts = conn.execute(select(Account.__table__)).mappings().all()
    ids = [a["id"] for a in accounts]
    assert len(set(ids)) == len(ids)
    assert len({a["name"] for a in accounts}) == len(accounts)
    assert all(len(i.split("-")[0]) == 4 and i.split("-")[1].isdigit() for i in ids)
    assert {a["segment"] for a in accounts} == {"SMB", "Mid-Market", "Enterprise"}
    assert {a["status"] for a in accounts} == {"active", "churned"}
    for a in accounts:
        assert (a["status"] == "churned") == (a["churned_at"] is not None)
        assert a["arr"] > 0 if a["status"] == "active" else a["arr"] == 0
        assert {"crm_tier", "csm", "lead_source", "employees"} <= set(a["attributes"])
    acme = next(a for a in accounts if a["id"] == "ACME-0042")
    assert acme["name"].startswith("Acme ")
    assert acme["segment"] == "Enterprise"


def test_churned_accounts_have_no_activity_after_churn(demo300: Engine) -> None:
    for table, column in (
        ("usage_weekly", "week_start"),
        ("invoices", "issued_at"),
        ("support_tickets", "opened_at"),
        ("interactions", "occurred_at"),
        ("nps_responses", "responded_at"),
    ):
        late = _scalar(
            demo300,
            f"SELECT COUNT(*) FROM {table} t JOIN accounts a ON a.id = t.account_id "
            f"WHERE a.churned_at IS NOT NULL AND t.{column} >= a.churned_at",
        )
        assert late == 0, table
    # ... and they did have activity before it.
    with_usage = _scalar(
        demo300,
        "SELECT COUNT(DISTINCT a.id) FROM accounts a JOIN usage_weekly u ON u.account_id = a.id "
        "WHERE a.status = 'churned'",
    )
    assert with_usage >= 0.9 * _scalar(demo300, "SELECT COUNT(*) FROM accounts WHERE status = 'churned'")


def test_value_ranges(demo300: Engine) -> None:
    bounds = {
        "SELECT MIN(discount), MAX(discount) FROM subscriptions": (0.0, 0.4),
        "SELECT MIN(csat), MAX(csat) FROM support_tickets": (1, 5),
        "SELECT MIN(score), MAX(score) FROM nps_responses": (0, 10),
        "SELECT MIN(sentiment), MAX(sentiment) FROM interactions": (-1.0, 1.0),
    }
    with demo300.connect() as conn:
        for sql, (lo, hi) in bounds.items():
            low, high = conn.execute(text(sql)).one()
            assert lo <= low <= high <= hi, sql
        assert (
            conn.execute(
                text(
                    "SELECT COUNT(*) FROM usage_weekly u JOIN subscriptions s ON s.account_id = u.account_id "
                    "AND u.week_start >= s.start_date AND u.week_start < s.renewal_date "
                    "WHERE u.active_users > s.seats"
                )
            ).scalar_one()
            == 0
        )
        kinds = {
            "priority": set(conn.execute(text("SELECT DISTINCT priority FROM support_tickets")).scalars()),
            "status": set(conn.execute(text("SELECT DISTINCT status FROM invoices")).scalars()),
            "type": set(conn.execute(text("SELECT DISTINCT type FROM interactions")).scalars()),
            "opp": set(conn.execute(text("SELECT DISTINCT type FROM opportunities")).scalars()),
        }
    assert kinds["priority"] == {"low", "medium", "high", "urgent"}
    assert kinds["status"] == {"paid", "late", "failed", "open"}
    assert kinds["type"] == {"email", "call", "meeting", "qbr"}
    assert kinds["opp"] == {"new", "upsell", "renewal"}


# ---------------------------------------------------------------- churn mechanism


def test_annual_churn_rate_is_believable(demo300: Engine) -> None:
    assert 0.08 <= churn_rate_last_year(demo300, AS_OF) <= 0.25


def test_churn_mostly_happens_near_renewal(demo300: Engine) -> None:
    """Every churn falls inside a subscription term; most within 30 days of its renewal date."""
    with demo300.connect() as conn:
        churned: dict[str, object] = dict(
            conn.execute(text("SELECT id, churned_at FROM accounts WHERE status = 'churned'")).all()
        )
        terms = conn.execute(text("SELECT account_id, start_date, renewal_date FROM subscriptions")).all()
    gap: dict[str, int] = {}
    for account_id, start, renewal in terms:
        if account_id in churned:
            day = dt.date.fromisoformat(str(churned[account_id]))
            if dt.date.fromisoformat(str(start)) < day <= dt.date.fromisoformat(str(renewal)):
                gap[account_id] = (dt.date.fromisoformat(str(renewal)) - day).days
    assert set(gap) == set(churned)
    near = sum(1 for days in gap.values() if days <= 30)
    assert near >= 0.65 * len(churned)


def test_usage_falls_before_churn(demo300: Engine) -> None:
    """Churners' usage in the 4 weeks before churn is well below their usage 8 weeks earlier."""
    with demo300.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT a.id, a.churned_at, u.week_start, u.active_users FROM accounts a "
                "JOIN usage_weekly u ON u.account_id = a.id WHERE a.status = 'churned'"
            )
        ).all()
    ratios = []
    by_account: dict[str, list[tuple[dt.date, int]]] = {}
    churn_day: dict[str, dt.date] = {}
    for account_id, churned_at, week, users in rows:
        by_account.setdefault(account_id, []).append((dt.date.fromisoformat(str(week)), users))
        churn_day[account_id] = dt.date.fromisoformat(str(churned_at))
    for account_id, weeks in by_account.items():
        end = churn_day[account_id]
        last = [u for w, u in weeks if end - dt.timedelta(days=35) <= w < end - dt.timedelta(days=7)]
        prev = [u for w, u in weeks if end - dt.timedelta(days=91) <= w < end - dt.timedelta(days=35)]
        if len(last) >= 3 and len(prev) >= 6 and np.mean(prev) > 0:
            ratios.append(np.mean(last) / np.mean(prev))
    assert len(ratios) >= 20
    assert np.median(ratios) < 0.85


def test_point_in_time_churn_model_learns_the_mechanism(demo300: Engine) -> None:
    auc, n_test, positives = holdout_auc(demo300, AS_OF, months=18, test_months=6)
    assert positives >= 15 and n_test > positives
    assert auc > 0.75


def test_some_active_accounts_are_visibly_at_risk(demo300: Engine) -> None:
    with demo300.connect() as conn:
        at_risk = set(
            conn.execute(
                text(
                    "SELECT a.id FROM accounts a "
                    "JOIN subscriptions s ON s.account_id = a.id AND s.status = 'active' "
                    "JOIN support_tickets t ON t.account_id = a.id AND t.closed_at IS NULL "
                    "AND t.priority IN ('high', 'urgent') "
                    "WHERE a.status = 'active' AND s.renewal_date <= :soon"
                ),
                {"soon": AS_OF + dt.timedelta(days=90)},
            ).scalars()
        )
        acme = conn.execute(
            text(
                "SELECT week_start, active_users FROM usage_weekly WHERE account_id = 'ACME-0042' "
                "ORDER BY week_start DESC LIMIT 12"
            )
        ).all()
        acme_champion_left = conn.execute(
            select(func.count()).where(
                Contact.account_id == "ACME-0042", Contact.is_champion, Contact.left_at.is_not(None)
            )
        ).scalar_one()
    assert "ACME-0042" in at_risk
    assert len(at_risk) >= 3
    last4 = np.mean([u for _, u in acme[:4]])
    prev8 = np.mean([u for _, u in acme[4:]])
    assert last4 < 0.8 * prev8
    assert acme_champion_left >= 1


# ---------------------------------------------------------------- value chain reference data


def test_each_period_has_every_quadrant(demo300: Engine) -> None:
    with demo300.connect() as conn:
        activities = conn.execute(select(ValueChainActivity.__table__)).mappings().all()
        initiatives = conn.execute(select(Initiative.__table__)).mappings().all()
    with_initiative = {i["activity_id"] for i in initiatives}
    for period in {a["period"] for a in activities}:
        rows = [a for a in activities if a["period"] == period]
        n = len(rows)
        total_cost = sum(a["annual_cost"] for a in rows)
        total_value = sum(a["value_score"] for a in rows)
        quadrants: dict[str, list[str]] = {}
        for a in rows:
            high_cost = a["annual_cost"] / total_cost >= 1 / n
            high_value = a["value_score"] / total_value >= 1 / n
            quadrant = {
                (True, False): "invest_and_scale",
                (True, True): "optimize",
                (False, True): "eliminate_or_restructure",
                (False, False): "maintain",
            }[(high_value, high_cost)]
            quadrants.setdefault(quadrant, []).append(a["id"])
        assert set(quadrants) == {"invest_and_scale", "optimize", "eliminate_or_restructure", "maintain"}
        if period == str(AS_OF.year):
            untouched = [
                i
                for q in ("eliminate_or_restructure", "optimize")
                for i in quadrants[q]
                if i not in with_initiative
            ]
            assert untouched, "a costly activity without an initiative makes the demo interesting"
        assert {a["kind"] for a in rows} == {"primary", "support"}
        assert {a["porter_category"] for a in rows} >= {
            "inbound_logistics",
            "operations",
            "outbound_logistics",
            "marketing_sales",
            "service",
            "firm_infrastructure",
            "human_resources",
            "technology_development",
            "procurement",
        }
        with_driver = [a for a in rows if a["cost_driver"] is not None]
        assert 0.35 * n <= len(with_driver) <= 0.65 * n
        assert any(a["necessary"] is False and a["std_quantity"] == 0 for a in with_driver)
        for a in with_driver:
            assert a["actual_quantity"] * a["std_price"] == pytest.approx(a["annual_cost"])
        ids = {a["id"] for a in rows}
        for a in rows:
            assert a["id"].endswith(f"-{period}")
            assert 0 <= a["value_score"] <= 10
            assert (a["kind"] == "support") == bool(a["enables"])
            assert set(a["enables"]) <= ids


def test_initiatives_cover_types_and_advantages(demo300: Engine) -> None:
    with demo300.connect() as conn:
        rows = conn.execute(select(Initiative.__table__)).mappings().all()
    assert {r["type"] for r in rows} == {"automate", "streamline", "renegotiate", "invest", "eliminate"}
    assert {r["advantage"] for r in rows} == {"cost", "differentiation", None}
    assert all(r["id"].startswith("INI-") and r["est_cost"] > 0 for r in rows)


# ---------------------------------------------------------------- engines, reset, trimming


def test_generates_the_same_content_on_every_engine(any_engine: Engine, tmp_path: Path) -> None:
    summary = generate_demo(any_engine, accounts=120, seed=5, as_of=AS_OF)
    assert count_rows(any_engine) == {k: v for k, v in summary.rows.items() if k != "app_meta"}
    reference = _fresh(tmp_path, "reference.db")
    generate_demo(reference, accounts=120, seed=5, as_of=AS_OF)
    assert database_hash(any_engine) == database_hash(reference)
    with pytest.raises(DemoDatabaseNotEmptyError, match="reset"):
        generate_demo(any_engine, accounts=120, seed=5, as_of=AS_OF)
    # After the run, the database can take new rows without id clashes (PostgreSQL sequences).
    with any_engine.begin() as conn:
        new_id = conn.execute(
            insert(Contact).values(account_id="ACME-0042", name="New Person").returning(Contact.id)
        ).scalar_one()
    assert new_id > summary.rows["contacts"]


def test_reset_regenerates_the_same_content(tmp_path: Path) -> None:
    engine = _fresh(tmp_path, "reset.db")
    generate_demo(engine, accounts=100, seed=2, as_of=AS_OF)
    first = database_hash(engine)
    with engine.begin() as conn:  # a churn feature state describes the old data: it goes too
        conn.execute(insert(ChurnFeatureState).values(key="history", as_of=AS_OF, payload=b"x"))
    generate_demo(engine, accounts=100, seed=2, as_of=AS_OF, reset=True)
    assert database_hash(engine) == first
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ChurnFeatureState)).scalar_one() == 0


def test_large_runs_trim_history_to_a_subset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    full = _fresh(tmp_path, "full.db")
    generate_demo(full, accounts=150, seed=9, as_of=AS_OF)
    monkeypatch.setattr(generator_module, "TRIM_THRESHOLD", 100)
    trimmed = _fresh(tmp_path, "trimmed.db")
    generate_demo(trimmed, accounts=150, seed=9, as_of=AS_OF)
    cut = AS_OF - dt.timedelta(days=52 * 7 + 6)
    year_ago = AS_OF - dt.timedelta(days=480)
    with trimmed.connect() as conn:
        assert conn.execute(text("SELECT MIN(week_start) FROM usage_weekly")).scalar_one() >= str(cut)
        assert conn.execute(text("SELECT MIN(issued_at) FROM invoices")).scalar_one() >= str(year_ago)
        meta = conn.execute(select(AppMeta.value).where(AppMeta.key == "demo_history")).scalar_one()
        usage_trimmed = set(conn.execute(text("SELECT * FROM usage_weekly")).all())
    with full.connect() as conn:
        usage_full = set(
            conn.execute(text("SELECT * FROM usage_weekly WHERE week_start >= :c"), {"c": cut}).all()
        )
    assert meta.startswith("trimmed")
    assert usage_trimmed == usage_full  # trimming drops history; it never changes what is kept
    with pytest.raises(ValueError, match="accounts"):
        generate_demo(trimmed, accounts=0, seed=9, as_of=AS_OF)


# ---------------------------------------------------------------- CLI


def test_cli_generates_refuses_non_empty_and_resets(tmp_path: Path) -> None:
    runner = CliRunner()
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    args = ["demo", "--accounts", "80", "--seed", "4", "--database-url", url]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "80 accounts" in first.output
    engine = make_engine(url)
    before = database_hash(engine)

    refused = runner.invoke(app, args)
    assert refused.exit_code == 1
    assert "already holds CRM data" in refused.output
    assert "--reset" in refused.output
    assert database_hash(engine) == before

    again = runner.invoke(app, [*args, "--reset", "--json"])
    assert again.exit_code == 0, again.output
    assert '"accounts": 80' in again.output
    assert database_hash(engine) == before
    engine.dispose()


def test_cli_rejects_a_bad_date(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["demo", "--as-of", "30/09/2026", "--database-url", f"sqlite:///{tmp_path / 'x.db'}"]
    )
    assert result.exit_code == 1
    assert "--as-of" in result.output
