from __future__ import annotations

import datetime as dt

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from pg_databases import drop_pg_database as _drop_pg_database
from pg_databases import fresh_pg_database as _fresh_pg_database
from sqlalchemy import DateTime, Engine, bindparam, inspect, text
from sqlalchemy.exc import IntegrityError

from core.db import make_engine
from crm.migrate import alembic_config, current_revision, upgrade
from crm.models import Base

HEAD = "0014"


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


def _engine_at(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, revision: str
) -> Engine:
    """A database migrated only up to `revision`, on the engine named by the test parameter."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('db') / 'old.db'}")
    else:
        url, name = _fresh_pg_database()
        request.addfinalizer(lambda: _drop_pg_database(name))
        engine = make_engine(url)
    request.addfinalizer(engine.dispose)
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)
    return engine


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine_0001(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return _engine_at(request, tmp_path_factory, "0001")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine_0003(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return _engine_at(request, tmp_path_factory, "0003")


def test_models_and_migrations_agree(any_engine: Engine) -> None:
    with any_engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []


def test_0002_adds_indexes_and_expires_racing_pending_duplicates(engine_0001: Engine) -> None:
    at = dt.datetime(2026, 9, 1, 12, 0)
    with engine_0001.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO accounts (id, name, arr, status, attributes) VALUES ('A-1', 'A', 1.0, 'active', '{}')"
            )
        )
        for status in ("pending", "pending", "pending", "rejected", "rejected"):
            conn.execute(
                text(
                    "INSERT INTO recommendations (account_id, action, rationale, evidence, status, version, "
                    "content_hash, created_at, created_by) "
                    "VALUES ('A-1', 'call', 'why', '{}', :status, 1, 'h', :at, 'agent')"
                ).bindparams(bindparam("at", type_=DateTime())),
                {"status": status, "at": at},
            )
    upgrade(engine_0001)
    assert current_revision(engine_0001) == HEAD
    with engine_0001.connect() as conn:
        statuses = conn.execute(text("SELECT id, status, version FROM recommendations ORDER BY id")).all()
        events = conn.execute(
            text("SELECT recommendation_id, event, actor, reason_code FROM recommendation_events ORDER BY id")
        ).all()
    assert [tuple(r) for r in statuses] == [
        (1, "pending", 1),
        (2, "expired", 2),
        (3, "expired", 2),
        (4, "rejected", 1),
        (5, "rejected", 1),
    ]
    assert [tuple(r) for r in events] == [
        (2, "expired", "migration 0002", "duplicate_pending"),
        (3, "expired", "migration 0002", "duplicate_pending"),
    ]
    names = {ix["name"] for ix in inspect(engine_0001).get_indexes("usage_weekly")}
    assert "ix_usage_weekly_account_week_users" in names
    with engine_0001.begin() as conn, pytest.raises(IntegrityError):
        conn.execute(
            text(
                "INSERT INTO recommendations (account_id, action, rationale, evidence, status, version, "
                "content_hash, created_at, created_by) "
                "VALUES ('A-1', 'call', 'why', '{}', 'pending', 1, 'h', :at, 'agent')"
            ).bindparams(bindparam("at", type_=DateTime())),
            {"at": at},
        )


def test_0002_downgrades_and_upgrades_again(engine_0001: Engine) -> None:
    upgrade(engine_0001)
    cfg = alembic_config(engine_0001.url.render_as_string(hide_password=False))
    with engine_0001.begin() as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "0001")
    assert current_revision(engine_0001) == "0001"
    assert "uq_churn_scores_asof_model_account" not in {
        ix["name"] for ix in inspect(engine_0001).get_indexes("churn_scores")
    }
    upgrade(engine_0001)
    assert current_revision(engine_0001) == HEAD


def test_0003_adds_the_churn_feature_state_table_and_downgrades(engine_0001: Engine) -> None:
    upgrade(engine_0001)
    assert "churn_feature_state" in inspect(engine_0001).get_table_names()
    cfg = alembic_config(engine_0001.url.render_as_string(hide_password=False))
    with engine_0001.begin() as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "0002")
    assert "churn_feature_state" not in inspect(engine_0001).get_table_names()
    upgrade(engine_0001)
    assert current_revision(engine_0001) == HEAD


def _origins(engine: Engine, table: str) -> dict[str, str]:
    with engine.connect() as conn:
        return {r[0]: r[1] for r in conn.execute(text(f"SELECT id, origin FROM {table}"))}


def test_0004_marks_an_existing_demo_by_its_id_shapes_and_downgrades(engine_0003: Engine) -> None:
    """A database that got the demo before 0004: the generator's ids become `demo`, others `import`."""
    with engine_0003.begin() as conn:
        conn.execute(
            text("INSERT INTO app_meta (key, value) VALUES ('demo_seed', '7'), ('demo_accounts', '120')")
        )
        for account in ("ACME-0001", "BELA-0120", "ACME-0121", "7590-VHVEG", "ACME-001"):
            conn.execute(
                text(
                    "INSERT INTO accounts (id, name, arr, status, attributes) VALUES (:id, 'x', 1.0, 'active', '{}')"
                ),
                {"id": account},
            )
        for activity in ("OPS-HOSTING-2026", "ACT-OPS-01"):
            conn.execute(
                text(
                    "INSERT INTO value_chain_activities (id, name, kind, porter_category, systems, period, "
                    "annual_cost, value_score, enables) VALUES (:id, :id, 'primary', 'operations', '[]', "
                    "'2026', 1.0, 5.0, '[]')"
                ),
                {"id": activity},
            )
        for initiative, activity in (
            ("INI-001", "OPS-HOSTING-2026"),
            ("INI-002", "ACT-OPS-01"),
            ("INI-01", "ACT-OPS-01"),
        ):
            conn.execute(
                text(
                    "INSERT INTO initiatives (id, activity_id, description, type, est_cost, est_annual_benefit, "
                    "status) VALUES (:id, :activity, 'd', 'automate', 1.0, 2.0, 'proposed')"
                ),
                {"id": initiative, "activity": activity},
            )
    upgrade(engine_0003)
    assert current_revision(engine_0003) == HEAD
    assert _origins(engine_0003, "accounts") == {
        "ACME-0001": "demo",
        "BELA-0120": "demo",
        "ACME-0121": "import",  # beyond demo_accounts
        "7590-VHVEG": "import",
        "ACME-001": "import",  # not padded to the demo's id width
    }
    assert _origins(engine_0003, "value_chain_activities") == {
        "OPS-HOSTING-2026": "demo",
        "ACT-OPS-01": "import",
    }
    assert _origins(engine_0003, "initiatives") == {
        "INI-001": "demo",
        "INI-002": "import",
        "INI-01": "import",
    }

    cfg = alembic_config(engine_0003.url.render_as_string(hide_password=False))
    with engine_0003.begin() as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "0003")
    assert "origin" not in {c["name"] for c in inspect(engine_0003).get_columns("accounts")}
    upgrade(engine_0003)
    assert current_revision(engine_0003) == HEAD


def test_0004_leaves_a_database_without_the_demo_as_imported(engine_0003: Engine) -> None:
    with engine_0003.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO accounts (id, name, arr, status, attributes) VALUES ('ACME-0001', 'x', 1.0, 'active', '{}')"
            )
        )
    upgrade(engine_0003)
    assert _origins(engine_0003, "accounts") == {"ACME-0001": "import"}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine_0005(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return _engine_at(request, tmp_path_factory, "0005")


def test_0007_keeps_opportunities_lets_them_be_blank_and_downgrades(engine_0005: Engine) -> None:
    """Issue #20: existing deals survive with their ids; a demo account's deals become `demo`."""
    with engine_0005.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO accounts (id, name, arr, status, attributes, origin) VALUES "
                "('ACME-0001', 'x', 1.0, 'active', '{}', 'demo'), ('7590-VHVEG', 'y', 1.0, 'active', '{}', 'import')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO opportunities (id, account_id, type, stage, amount, created_at, close_date) VALUES "
                "(4, 'ACME-0001', 'upsell', 'closed_won', 10.0, '2026-01-01', '2026-02-01'), "
                "(9, '7590-VHVEG', 'new', 'proposal', 20.0, '2026-01-05', '2026-03-01')"
            )
        )
    upgrade(engine_0005)
    assert current_revision(engine_0005) == HEAD
    with engine_0005.begin() as conn:
        rows = conn.execute(text("SELECT id, origin, external_id, stage FROM opportunities ORDER BY id")).all()
        assert [tuple(r) for r in rows] == [(4, "demo", None, "closed_won"), (9, "import", None, "proposal")]
        conn.execute(  # an open prospect: no account, amount, dates or type
            text("INSERT INTO opportunities (external_id, stage, attributes) VALUES ('9ME3374G', 'prospecting', '{}')")
        )
        conn.execute(
            text("INSERT INTO opportunity_stages (opportunity_id, stage, entered_at) VALUES ('9ME3374G', 'prospecting', '2026-05-01')")
        )
        with pytest.raises(IntegrityError), conn.begin_nested():  # the CRM's id is unique
            conn.execute(
                text("INSERT INTO opportunities (external_id, stage, attributes) VALUES ('9ME3374G', 'won', '{}')")
            )

    cfg = alembic_config(engine_0005.url.render_as_string(hide_password=False))
    with engine_0005.begin() as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "0005")
    with engine_0005.connect() as conn:
        assert conn.execute(text("SELECT id FROM opportunities ORDER BY id")).scalars().all() == [4, 9]
    assert "opportunity_stages" not in inspect(engine_0005).get_table_names()
    upgrade(engine_0005)
    assert current_revision(engine_0005) == HEAD


def test_0008_adds_ticket_times_keeps_tickets_and_downgrades(engine_0005: Engine) -> None:
    """Issue #20: tickets keep their dates, gain blank times; a downgrade drops only the times."""
    upgrade(engine_0005)
    cfg = alembic_config(engine_0005.url.render_as_string(hide_password=False))
    with engine_0005.begin() as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "0007")
    with engine_0005.begin() as conn:
        conn.execute(
            text("INSERT INTO accounts (id, name, arr, status, attributes, origin) "
                 "VALUES ('A-1', 'x', 1.0, 'active', '{}', 'import')")
        )
        conn.execute(
            text("INSERT INTO support_tickets (id, account_id, priority, opened_at, closed_at) "
                 "VALUES (3, 'A-1', 'high', '2026-05-01', '2026-05-03')")
        )
    upgrade(engine_0005)
    assert current_revision(engine_0005) == HEAD
    with engine_0005.begin() as conn:
        row = conn.execute(text("SELECT id, opened_at, opened_time, closed_time FROM support_tickets")).one()
        assert (row[0], str(row[1]), row[2], row[3]) == (3, "2026-05-01", None, None)
        conn.execute(
            text("UPDATE support_tickets SET opened_time = :t WHERE id = 3").bindparams(
                bindparam("t", type_=DateTime())
            ),
            {"t": dt.datetime(2026, 5, 1, 9, 30)},
        )
    with engine_0005.begin() as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "0007")
    assert "opened_time" not in {c["name"] for c in inspect(engine_0005).get_columns("support_tickets")}
    with engine_0005.connect() as conn:
        assert conn.execute(text("SELECT id FROM support_tickets")).scalars().all() == [3]
