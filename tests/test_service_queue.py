"""The service queue (issue #20): open tickets ranked by p_sla_breach × customer lifetime value.

Golden fixture (tests/factories.py `golden_service_queue`), as of 2026-03-31: the clock is the end
of that day, 2026-04-01 00:00. SLA hours (sla.yaml): urgent 48, high 120, medium 240, low 480.
Cells need min_resolved = 3 resolved tickets and min_at_risk = 2 still unresolved at the age.

History (opened in the 365 days before the clock), hours to resolution, `c` = still open (censored):
#1 high/bug 20c, #2 high/integration 32c, #3 medium/how_to 12c, #4 urgent/bug 87c, #5 high/bug 10,
#6 high/bug 50, #7 high/bug 150, #8 high/integration 30, #9 high/integration 100, #10 low/bug 300,
#11 low/bug 735c (churned SQ-4, opened 03-01 09:00). #12 (2025-01-10) is outside the window.

p_sla_breach = P(T > SLA | T > age) = Π over resolutions t in (age, SLA] of (1 − d/n), n = tickets
whose time is ≥ t:

* #1 high/bug, age 20 h (opened 03-31 04:00): cell high/bug has 3 resolved and 2 beyond 20 h (50, 150):
  used. In (20, 120]: t = 50, n = 2 (50, 150) → p = 1/2.
* #2 high/integration, age 32 h: the cell has 2 resolved (< 3), so priority high: 5 resolved,
  3 beyond 32 h (50, 100, 150). In (32, 120]: t = 50, n = 3 → 2/3; t = 100, n = 2 → 1/2; p = 1/3.
* #3 medium/how_to, no time of day (noon), age 12 h: no resolved medium ticket, so all tickets:
  in (12, 240]: t = 30, n = 8 (30, 32c, 50, 87c, 100, 150, 300, 735c) → 7/8; t = 50, n = 6 → 5/6;
  t = 100, n = 4 → 3/4; t = 150, n = 3 → 2/3. p = 7/8 · 5/6 · 3/4 · 2/3 = 35/96 = 0.364583.
* #4 urgent/bug, age 87 h > 48 h: breached 39 h ago, p = 1.

CLV = ARR × min(10, (90/365) / −ln(1 − p_churn)); no model is trained, so the documented rules give
p_churn: SQ-1 loses 10 (open urgent) + 5 (open high) health points → 0.15 → 0.246575 / 0.162519 =
1.517210 years → CLV 151,721.0; SQ-2 5 points → 0.05 → 0.246575 / 0.051293 = 4.807165 years →
CLV 961,433.1; SQ-3 0 points → p = 0 → the 10-year cap → CLV 300,000.

Scores: #2 961,433.1 / 3 = 320,477.7; #4 151,721.0; #3 35/96 × 300,000 = 109,375; #1 75,860.5.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

import factories as f
import numpy as np
import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from crm.importer.convert import ConversionError, parse_datetime
from crm.models import SupportTicket
from tools.errors import ToolInputError
from tools.registry import TOOLS_BY_NAME
from tools.service_queue import queue as q
from tools.service_queue.queue import ServiceQueue, expected_lifetime_years, service_queue, sla_table
from tools.service_queue.survival import Survival
from valuechain.cli.main import app


def golden_queue(session: Session, **kwargs: Any) -> ServiceQueue:
    """The queue with the golden fixture's minimum counts (3 resolved, 2 at risk)."""
    return service_queue(session=session, min_resolved=3, min_at_risk=2, **kwargs)


@pytest.fixture
def golden(session: Session) -> Session:
    f.golden_service_queue(session)
    return session


def test_the_golden_queue_matches_the_hand_worked_values(golden: Session) -> None:
    r = golden_queue(golden)
    assert [q.ticket_id for q in r.items] == [2, 4, 3, 1]
    by_id = {q.ticket_id: q for q in r.items}
    assert by_id[1].p_sla_breach == pytest.approx(1 / 2)
    assert (by_id[1].basis, by_id[1].basis_resolved, by_id[1].basis_at_risk) == ("priority_category", 3, 2)
    assert by_id[2].p_sla_breach == pytest.approx(1 / 3)
    assert (by_id[2].basis, by_id[2].basis_resolved, by_id[2].basis_at_risk) == ("priority", 5, 3)
    assert by_id[3].p_sla_breach == pytest.approx(35 / 96)
    assert (by_id[3].basis, by_id[3].time_known, by_id[3].age_hours) == ("all", False, 12.0)
    assert (by_id[4].p_sla_breach, by_id[4].breached, by_id[4].hours_left) == (1.0, True, -39.0)
    assert by_id[4].deadline == dt.datetime(2026, 3, 30, 9)
    assert by_id[1].clv == pytest.approx(151_721.0, abs=0.1)
    assert by_id[2].clv == pytest.approx(961_433.1, abs=0.1)
    assert by_id[3].clv == pytest.approx(300_000.0)
    assert [round(q.score, 1) for q in r.items] == [320_477.7, 151_721.0, 109_375.0, 75_860.5]
    assert (r.open_tickets, r.breached, r.likely_to_breach) == (4, 1, 1)
    assert r.inputs.clock == dt.datetime(2026, 4, 1)
    assert (r.inputs.history_tickets, r.inputs.history_resolved) == (11, 6)
    assert r.inputs.churn_method == "rule_based"
    assert by_id[4].why == (
        "breached 39 h ago (urgent SLA 48 h); Alpha's lifetime value 151,721 = ARR 100,000 × 1.5 years "
        "at 15% 90-day churn risk"
    )
    assert by_id[2].why.startswith(
        "3.7 days left of its high SLA of 120 h; of past high tickets still open at 32 h, 33% went past 120 h "
        "(Kaplan–Meier over 5 resolved)"
    )


def test_the_default_minimum_counts_fall_back_to_all_tickets_and_say_it_is_thin(golden: Session) -> None:
    r = service_queue(session=golden)
    assert {q.basis for q in r.items} == {"all", "breached"}
    assert "too few for a firm estimate" in next(q.why for q in r.items if q.ticket_id == 1)


def test_the_same_database_gives_the_same_bytes(golden: Session) -> None:
    first = golden_queue(golden).model_dump_json()
    assert golden_queue(golden).model_dump_json() == first


def test_filters_sla_override_limit_and_a_churned_account(golden: Session) -> None:
    r = golden_queue(golden, filters={"priority": "high"}, sla_hours={"high": 25})
    assert [(q.ticket_id, q.breached) for q in r.items] == [(2, True), (1, False)]
    assert r.inputs.sla_hours["high"] == 25.0 and r.inputs.sla_source == "sla.yaml with sla_hours"
    assert r.items[1].hours_left == pytest.approx(5.0)
    churned = golden_queue(golden, filters={"status": "churned"})
    assert [(q.ticket_id, q.clv, q.churn_probability) for q in churned.items] == [(11, 0.0, None)]
    assert "has churned" in churned.items[0].why
    assert golden_queue(golden, limit=1).open_tickets == 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"filters": {"priority": "critical"}}, 'valid priority values: "high", "low", "medium", "urgent"'),
        ({"filters": {"team": "x"}}, "unknown filter"),
        ({"sla_hours": {"critical": 4}}, 'sla_hours: unknown priority "critical"'),
        ({"sla_hours": {"urgent": 0}}, "sla_hours.urgent must be a positive number of hours"),
        ({"limit": 201}, "limit must be between 0 and 200"),
    ],
)
def test_mistakes_a_caller_can_fix_are_tool_input_errors(golden: Session, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ToolInputError, match=message.replace("(", r"\(")):
        service_queue(session=golden, **kwargs)


def test_kaplan_meier_counts_open_tickets_as_censored() -> None:
    """2, 4, 4c, 6, 8, 10c: S = 5/6, ·4/5, ·2/3, ·1/2 at 2, 4, 6, 8; P(T > 7 | T > 3) = (2/3 · 4/5 · 2/3) / ... ."""
    fit = Survival.fit(np.array([2, 4, 4, 6, 8, 10.0]), np.array([1, 1, 0, 1, 1, 0], dtype=bool))
    assert fit.survival(3) == pytest.approx(5 / 6)
    assert fit.survival(7) == pytest.approx(5 / 6 * 4 / 5 * 2 / 3)
    assert fit.breach_probability(3, 7) == pytest.approx(4 / 5 * 2 / 3)
    assert fit.breach_probability(9, 12) == pytest.approx(1.0)  # nothing resolved after 9 h
    assert fit.at_risk(4) == 3 and fit.resolved == 4
    done = Survival.fit(np.array([1.0, 2.0]), np.array([True, True]))
    assert done.breach_probability(3, 5) is None  # nobody outlasted 3 h: undefined


def test_expected_lifetime_is_the_constant_hazard_mean_capped() -> None:
    assert expected_lifetime_years(0.0) == 10.0
    assert expected_lifetime_years(1.0) == 0.0
    assert expected_lifetime_years(0.2) == pytest.approx((90 / 365) / -math.log(0.8))
    assert expected_lifetime_years(0.01) == 10.0  # 24.5 years, capped
    assert expected_lifetime_years(0.01, cap=50) == pytest.approx(24.5340, abs=1e-4)


def test_the_shipped_sla_table_covers_every_priority() -> None:
    assert sla_table() == {"urgent": 48.0, "high": 120.0, "medium": 240.0, "low": 480.0}


def test_registered_offered_to_the_planner_and_served_by_the_cli(golden: Session, engine: Engine) -> None:
    spec = TOOLS_BY_NAME["service_queue"]
    assert spec.offered and "priority" in spec.filter_keys  # issue #20: the plan agent may call it
    golden.commit()
    url = engine.url.render_as_string(hide_password=False)
    runner = CliRunner()
    result = runner.invoke(app, ["tools", "call", "service_queue", "-a", "limit=2", "--json", "--database-url", url])
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    assert got == service_queue(session=golden, limit=2).model_dump(mode="json")
    view = spec.view(service_queue(session=golden, limit=2))
    assert set(view["items"][0]) >= {"ticket_id", "deadline", "hours_left", "p_sla_breach", "clv", "score", "why"}


def test_importer_reads_times_of_day() -> None:
    assert parse_datetime("2026-03-02T09:14:00+02:00") == dt.datetime(2026, 3, 2, 7, 14)
    assert parse_datetime("03/02/2026 9:14", ["%m/%d/%Y %H:%M"]) == dt.datetime(2026, 3, 2, 9, 14)
    assert parse_datetime("2026/03/02 9:14:30") == dt.datetime(2026, 3, 2, 9, 14, 30)
    with pytest.raises(ConversionError, match="no time of day"):
        parse_datetime("2026-03-02")


def test_tickets_import_a_timestamp_as_time_and_day(engine: Engine, tmp_path: Path) -> None:
    from sqlalchemy.orm import sessionmaker

    with sessionmaker(engine)() as s:
        f.account(s, "SQ-1")
        s.commit()
    csv = tmp_path / "t.csv"
    csv.write_text("Ticket,Customer,Priority,Created,Solved\n7,SQ-1,P2,2026-03-02 09:14,2026-03-04T17:00:00Z\n"
                   "8,SQ-1,P4,2026-03-05 10:00,\n", encoding="utf-8")
    mapping = tmp_path / "m.yaml"
    mapping.write_text("table: tickets\ncolumns: {Ticket: id, Customer: account_id, Priority: priority, "
                       "Created: opened_time, Solved: closed_time}\nvalues: {priority: {P2: high, P4: low}}\n",
                       encoding="utf-8")
    url = engine.url.render_as_string(hide_password=False)
    result = CliRunner().invoke(app, ["import", "tickets", str(csv), "--mapping", str(mapping), "--database-url", url])
    assert result.exit_code == 0, result.output
    with engine.connect() as conn:
        rows = conn.execute(select(SupportTicket.id, SupportTicket.opened_at, SupportTicket.opened_time,
                                   SupportTicket.closed_at, SupportTicket.closed_time).order_by(SupportTicket.id)).all()
    assert [tuple(r) for r in rows] == [
        (7, dt.date(2026, 3, 2), dt.datetime(2026, 3, 2, 9, 14), dt.date(2026, 3, 4), dt.datetime(2026, 3, 4, 17)),
        (8, dt.date(2026, 3, 5), dt.datetime(2026, 3, 5, 10), None, None),
    ]


def test_a_ticket_mapping_without_any_opening_column_is_refused(tmp_path: Path) -> None:
    from crm.importer.mapping import check_mapping, load_mapping
    from crm.importer.tables import table_spec

    path = tmp_path / "m.yaml"
    path.write_text("table: tickets\ncolumns: {Customer: account_id, Priority: priority}\n", encoding="utf-8")
    problems = check_mapping(load_mapping(path), table_spec("tickets"))
    assert any("'opened_at' is required" in p and "'opened_time'" in p for p in problems), problems


def test_demo_tickets_have_times_within_their_days(demo_db: Path) -> None:
    from core.db import make_engine

    engine = make_engine(f"sqlite:///{demo_db}")
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT opened_at, opened_time, closed_at, closed_time FROM support_tickets")
        ).all()
    engine.dispose()
    assert rows and all(r[1] is not None for r in rows)
    for opened_at, opened_time, closed_at, closed_time in rows:
        assert opened_time[:10] == opened_at
        assert (closed_time is None) == (closed_at is None)
        if closed_time is not None:
            assert closed_time[:10] == closed_at and closed_time > opened_time


def test_a_help_desk_export_with_times_imports_and_queues(engine: Engine) -> None:
    """The sample export (Telco accounts + examples/data/tickets.csv with times): ticket 1003, urgent,
    opened 2026-03-05 07:45 and still open; with no app_meta the clock is the end of the latest
    ticket day, 2026-03-10: 5 days 16 h 15 min = 136.25 h old, 88.25 h past its 48 h SLA. Its account
    (3668-QPYBK) churned, so the default queue (active accounts) is empty and status=churned shows it
    with no lifetime value left."""
    root = Path(__file__).resolve().parents[1]
    url = engine.url.render_as_string(hide_password=False)
    for table, path, mapping in (
        ("accounts", root / "tests/fixtures/csv/telco-sample.csv", root / "examples/mappings/telco-accounts.yaml"),
        ("tickets", root / "examples/data/tickets.csv", root / "examples/mappings/tickets-with-times.yaml"),
    ):
        result = CliRunner().invoke(app, ["import", table, str(path), "--mapping", str(mapping), "--database-url", url])
        assert result.exit_code == 0, result.output
    from sqlalchemy.orm import sessionmaker

    with sessionmaker(engine)() as s:
        assert service_queue(session=s).open_tickets == 0
        r = service_queue(session=s, filters={"status": "churned"})
    assert r.inputs.as_of == dt.date(2026, 3, 10) and r.open_tickets == 1
    q = r.items[0]
    assert (q.ticket_id, q.priority, q.time_known, q.opened) == (1003, "urgent", True, dt.datetime(2026, 3, 5, 7, 45))
    assert q.age_hours == pytest.approx(136.25) and q.hours_left == pytest.approx(-88.25) and q.breached
    assert (q.clv, q.score) == (0.0, 0.0)


def test_cli_service_queue_prints_a_table_or_one_json_document(golden: Session, engine: Engine) -> None:
    golden.commit()
    url = engine.url.render_as_string(hide_password=False)
    as_json = CliRunner().invoke(app, ["tools", "service-queue", "-n", "2", "--json", "--database-url", url])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout) == service_queue(session=golden, limit=2).model_dump(mode="json")
    table = CliRunner().invoke(app, ["tools", "service-queue", "--sla", '{"high": 25}', "--database-url", url])
    assert table.exit_code == 0 and "4 open tickets" in " ".join(table.stdout.split())
    bad = CliRunner().invoke(app, ["tools", "service-queue", "--sla", "[1]", "--database-url", url])
    assert bad.exit_code == 2


def test_the_history_hours_equal_the_row_by_row_reading(demo_sessions: sessionmaker[Session]) -> None:
    """_load_history parses the stored times with numpy; the reference reads each ticket as
    Python datetimes (the implementation before, docs/SERVICE_QUEUE.md, Performance): the same
    floats, in the same order, on the demo (times of day recorded) and for other windows."""
    with demo_sessions() as s:
        s.execute(text("UPDATE support_tickets SET opened_time = NULL, closed_time = NULL WHERE id % 3 = 0"))
        for as_of, days in ((dt.date(2026, 9, 30), 365), (dt.date(2026, 3, 31), 90), (dt.date(2025, 12, 1), 30)):
            clock = dt.datetime.combine(as_of + dt.timedelta(days=1), dt.time())
            rows = s.execute(
                select(
                    SupportTicket.priority, SupportTicket.category, SupportTicket.opened_at,
                    SupportTicket.opened_time, SupportTicket.closed_at, SupportTicket.closed_time,
                )
                .where(SupportTicket.opened_at <= as_of, SupportTicket.opened_at > as_of - dt.timedelta(days=days))
                .order_by(SupportTicket.id)
            ).all()
            hours, resolved = [], []
            for _, _, opened_at, opened_time, closed_at, closed_time in rows:
                opened = q._moment(opened_at, opened_time)
                done = closed_at is not None and closed_at <= as_of
                end = q._moment(closed_at, closed_time) if closed_at is not None and done else clock
                hours.append(max(0.0, q._hours(end - opened)))
                resolved.append(done)
            h = q._load_history(s, as_of, clock, days)
            assert len(rows) > 20 and any(resolved) and not all(resolved)
            assert h.hours.tolist() == hours and h.resolved.tolist() == resolved
            assert h.priority.tolist() == [r[0] for r in rows]
            assert h.category.tolist() == [r[1] if r[1] is not None else "" for r in rows]
