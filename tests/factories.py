"""Test factories: small builders for CRM rows with plain defaults. The one place they live.

Each builder adds the row to the session, flushes (so integer ids are assigned) and returns
it. Override any column with a keyword argument.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from crm.models import (
    Account,
    AgentRun,
    AppMeta,
    Contact,
    Conversation,
    Initiative,
    Interaction,
    Invoice,
    NpsResponse,
    Opportunity,
    OpportunityStage,
    Recommendation,
    SalesAgent,
    Subscription,
    SupportTicket,
    UsageWeekly,
    ValueChainActivity,
)

D = dt.date
AS_OF = D(2026, 3, 31)


def _add(session: Session, row: Any) -> Any:
    session.add(row)
    session.flush()
    return row


def set_as_of(session: Session, day: dt.date = AS_OF) -> AppMeta:
    """Record the data's as-of date in app_meta."""
    meta = session.get(AppMeta, "as_of")
    if meta is None:
        return _add(session, AppMeta(key="as_of", value=day.isoformat()))
    meta.value = day.isoformat()
    session.flush()
    return meta


def account(session: Session, id: str = "ACME-0001", **kw: Any) -> Account:
    values: dict[str, Any] = {
        "name": f"{id} Inc",
        "segment": "SMB",
        "industry": "Software",
        "region": "EMEA",
        "plan": "Pro",
        "arr": 10_000.0,
        "created_at": D(2024, 1, 1),
        "owner": "alice",
        "status": "active",
        "churned_at": None,
        "attributes": {},
    }
    values.update(kw)
    return _add(session, Account(id=id, **values))


def subscription(session: Session, account_id: str = "ACME-0001", **kw: Any) -> Subscription:
    values: dict[str, Any] = {
        "plan": "Pro",
        "seats": 10,
        "mrr": 1_000.0,
        "start_date": D(2025, 6, 1),
        "renewal_date": D(2026, 6, 1),
        "discount": 0.0,
        "status": "active",
    }
    values.update(kw)
    return _add(session, Subscription(account_id=account_id, **values))


def contact(session: Session, account_id: str = "ACME-0001", **kw: Any) -> Contact:
    values: dict[str, Any] = {
        "name": "Dana Doe",
        "email": None,
        "role": "admin",
        "is_champion": False,
        "created_at": D(2024, 1, 1),
        "left_at": None,
    }
    values.update(kw)
    return _add(session, Contact(account_id=account_id, **values))


def ticket(session: Session, account_id: str = "ACME-0001", **kw: Any) -> SupportTicket:
    values: dict[str, Any] = {
        "priority": "medium",
        "category": "bug",
        "opened_at": D(2026, 3, 1),
        "closed_at": None,
        "csat": None,
    }
    values.update(kw)
    return _add(session, SupportTicket(account_id=account_id, **values))


def invoice(session: Session, account_id: str = "ACME-0001", **kw: Any) -> Invoice:
    values: dict[str, Any] = {
        "issued_at": D(2026, 1, 1),
        "due_date": D(2026, 1, 31),
        "paid_at": D(2026, 1, 20),
        "amount": 1_000.0,
        "status": "paid",
    }
    values.update(kw)
    return _add(session, Invoice(account_id=account_id, **values))


def interaction(session: Session, account_id: str = "ACME-0001", **kw: Any) -> Interaction:
    values: dict[str, Any] = {"type": "call", "occurred_at": D(2026, 3, 1), "sentiment": 0.5}
    values.update(kw)
    return _add(session, Interaction(account_id=account_id, **values))


def nps(session: Session, account_id: str = "ACME-0001", **kw: Any) -> NpsResponse:
    values: dict[str, Any] = {"contact_id": None, "responded_at": D(2026, 2, 1), "score": 8}
    values.update(kw)
    return _add(session, NpsResponse(account_id=account_id, **values))


def opportunity(session: Session, account_id: str = "ACME-0001", **kw: Any) -> Opportunity:
    values: dict[str, Any] = {
        "type": "upsell",
        "stage": "prospecting",
        "amount": 5_000.0,
        "created_at": D(2026, 2, 15),
        "close_date": D(2026, 5, 15),
    }
    values.update(kw)
    return _add(session, Opportunity(account_id=account_id, **values))


def usage(session: Session, account_id: str = "ACME-0001", **kw: Any) -> UsageWeekly:
    values: dict[str, Any] = {
        "week_start": D(2026, 3, 23),
        "active_users": 8,
        "sessions": 40,
        "features_adopted": 5,
    }
    values.update(kw)
    return _add(session, UsageWeekly(account_id=account_id, **values))


def activity(session: Session, id: str = "ACT-1", **kw: Any) -> ValueChainActivity:
    values: dict[str, Any] = {
        "name": f"Activity {id}",
        "kind": "primary",
        "porter_category": "operations",
        "owner_team": "Ops",
        "systems": [],
        "period": "2026",
        "annual_cost": 100.0,
        "value_score": 5.0,
        "perf_metric": None,
        "perf_actual": None,
        "perf_target": None,
        "perf_direction": None,
        "enables": [],
        "cost_driver": None,
        "std_quantity": None,
        "actual_quantity": None,
        "std_price": None,
        "necessary": None,
    }
    values.update(kw)
    return _add(session, ValueChainActivity(id=id, **values))


def initiative(session: Session, id: str = "INI-1", activity_id: str = "ACT-1", **kw: Any) -> Initiative:
    values: dict[str, Any] = {
        "description": f"Initiative {id}",
        "type": "automate",
        "advantage": "cost",
        "est_cost": 100.0,
        "est_annual_benefit": 200.0,
        "owner": "bob",
        "due": D(2026, 12, 31),
        "status": "proposed",
    }
    values.update(kw)
    return _add(session, Initiative(id=id, activity_id=activity_id, **values))


def recommendation(session: Session, **kw: Any) -> Recommendation:
    values: dict[str, Any] = {
        "account_id": "ACME-0001",
        "activity_id": None,
        "action": "exec_sponsor_call",
        "rationale": "r",
        "evidence": {},
        "expected_value": None,
        "status": "pending",
        "version": 1,
        "content_hash": "0" * 64,
        "created_at": dt.datetime(2026, 3, 1, 12, 0),
        "created_by": "agent",
        "run_id": None,
    }
    values.update(kw)
    return _add(session, Recommendation(**values))


def agent_run(session: Session, id: str = "run-1", **kw: Any) -> AgentRun:
    """An agent run (and its conversation), for recommendations that cite a run id."""
    if session.get(Conversation, "conv-1") is None:
        _add(session, Conversation(id="conv-1", created_at=dt.datetime(2026, 3, 1), channel="cli"))
    values: dict[str, Any] = {
        "conversation_id": "conv-1",
        "started_at": dt.datetime(2026, 3, 1, 12, 0),
        "question": "q",
        "status": "ok",
    }
    values.update(kw)
    return _add(session, AgentRun(id=id, **values))


# ---------------------------------------------------------------------------- golden data
# Small data sets with round numbers whose expected tool outputs are worked out by hand in
# the tests (tests/test_tools_*.py). Change a number here and the hand arithmetic there.


def golden_activities(session: Session) -> None:
    """Period "2026": four activities, one per quadrant; period "2025": one activity.

    id    cost  value  perf (actual/target/direction)   driver (SQ, AQ, SP, necessary)
    A1    400   2      90 / 100 / higher_is_better      orders: 80, 100, 4, True
    A2    300   6      30 / 24 / lower_is_better        tickets: 100, 60, 5, True  (unused capacity)
    A3    200   8      12 / 10 / higher_is_better       none
    A4    100   4      none                             reconciliations: None, 50, 2, False
    P1    500   5      (period 2025)                    none
    """
    activity(
        session,
        "A1",
        name="Order fulfilment",
        kind="primary",
        porter_category="operations",
        owner_team="Ops",
        annual_cost=400.0,
        value_score=2.0,
        perf_metric="on-time rate",
        perf_actual=90.0,
        perf_target=100.0,
        perf_direction="higher_is_better",
        cost_driver="orders",
        std_quantity=80.0,
        actual_quantity=100.0,
        std_price=4.0,
        necessary=True,
    )
    activity(
        session,
        "A2",
        name="Customer support",
        kind="primary",
        porter_category="service",
        owner_team="Support",
        annual_cost=300.0,
        value_score=6.0,
        perf_metric="first response hours",
        perf_actual=30.0,
        perf_target=24.0,
        perf_direction="lower_is_better",
        cost_driver="tickets",
        std_quantity=100.0,
        actual_quantity=60.0,
        std_price=5.0,
        necessary=True,
    )
    activity(
        session,
        "A3",
        name="Product development",
        kind="support",
        porter_category="technology_development",
        owner_team="R&D",
        annual_cost=200.0,
        value_score=8.0,
        perf_metric="releases",
        perf_actual=12.0,
        perf_target=10.0,
        perf_direction="higher_is_better",
    )
    activity(
        session,
        "A4",
        name="Manual reconciliation",
        kind="support",
        porter_category="firm_infrastructure",
        owner_team="Finance",
        annual_cost=100.0,
        value_score=4.0,
        cost_driver="reconciliations",
        actual_quantity=50.0,
        std_price=2.0,
        necessary=False,
    )
    activity(session, "P1", name="Order fulfilment", period="2025", annual_cost=500.0, value_score=5.0)


def golden_initiatives(session: Session) -> None:
    """Four initiatives on the golden activities (needs `golden_activities`).

    id     activity  type        cost  benefit  status
    INI-1  A1        automate    100   250      proposed
    INI-2  A2        invest      400   600      approved
    INI-3  A4        eliminate    50   100      proposed
    INI-4  A3        streamline    0    80      proposed
    """
    initiative(
        session, "INI-1", "A1", type="automate", advantage="cost", est_cost=100.0, est_annual_benefit=250.0
    )
    initiative(
        session,
        "INI-2",
        "A2",
        type="invest",
        advantage="differentiation",
        est_cost=400.0,
        est_annual_benefit=600.0,
        status="approved",
    )
    initiative(
        session, "INI-3", "A4", type="eliminate", advantage="cost", est_cost=50.0, est_annual_benefit=100.0
    )
    initiative(
        session, "INI-4", "A3", type="streamline", advantage=None, est_cost=0.0, est_annual_benefit=80.0
    )


def golden_accounts(session: Session) -> None:
    """Five accounts as of 2026-03-31 (app_meta "as_of").

    id         status   segment     region  arr      created     active renewal  open tickets at as_of
    ACME-0001  active   Enterprise  EMEA    120,000  2023-03-31  2026-04-30      2 (high, urgent)
    ACME-0002  active   SMB         NA       20,000  2025-03-31  2026-06-29      0
    ACME-0003  active   Enterprise  NA      120,000  2026-01-01  none            1 (+1 opened after as_of)
    ACME-0004  churned  Mid-Market  EMEA     50,000  2024-12-31  none (churned 2025-12-31)
    ACME-0005  active   Mid-Market  EMEA     50,000  2025-12-31  2026-03-21      1 (closed after as_of)
    """
    set_as_of(session, AS_OF)
    account(
        session,
        "ACME-0001",
        name="Acme Alpha",
        segment="Enterprise",
        region="EMEA",
        arr=120_000.0,
        created_at=D(2023, 3, 31),
        owner="alice",
        plan="Enterprise",
    )
    account(
        session,
        "ACME-0002",
        name="Acme Beta",
        segment="SMB",
        region="NA",
        arr=20_000.0,
        created_at=D(2025, 3, 31),
        owner="bob",
        plan="Starter",
    )
    account(
        session,
        "ACME-0003",
        name="Acme Gamma",
        segment="Enterprise",
        region="NA",
        arr=120_000.0,
        created_at=D(2026, 1, 1),
        owner="alice",
        plan="Enterprise",
    )
    account(
        session,
        "ACME-0004",
        name="Acme Delta",
        segment="Mid-Market",
        region="EMEA",
        arr=50_000.0,
        created_at=D(2024, 12, 31),
        status="churned",
        churned_at=D(2025, 12, 31),
        owner="bob",
    )
    account(
        session,
        "ACME-0005",
        name="Acme Epsilon",
        segment="Mid-Market",
        region="EMEA",
        arr=50_000.0,
        created_at=D(2025, 12, 31),
        owner="carol",
    )
    # ACME-0001: an ended first term, then the active one; the renewal 30 days after as_of.
    subscription(session, "ACME-0001", start_date=D(2024, 4, 30), renewal_date=D(2025, 4, 30), status="ended")
    subscription(session, "ACME-0001", start_date=D(2025, 4, 30), renewal_date=D(2026, 4, 30), seats=20)
    subscription(session, "ACME-0002", start_date=D(2025, 6, 29), renewal_date=D(2026, 6, 29))
    subscription(
        session, "ACME-0004", start_date=D(2024, 12, 31), renewal_date=D(2025, 12, 31), status="ended"
    )
    subscription(session, "ACME-0005", start_date=D(2025, 3, 21), renewal_date=D(2026, 3, 21))
    ticket(session, "ACME-0001", priority="high", opened_at=D(2026, 3, 10))
    ticket(session, "ACME-0001", priority="urgent", opened_at=D(2026, 3, 20))
    ticket(session, "ACME-0001", priority="low", opened_at=D(2026, 1, 5), closed_at=D(2026, 1, 9), csat=4)
    ticket(session, "ACME-0003", priority="medium", opened_at=D(2026, 3, 31))
    ticket(session, "ACME-0003", priority="medium", opened_at=D(2026, 4, 2))
    ticket(session, "ACME-0005", priority="low", opened_at=D(2026, 3, 1), closed_at=D(2026, 4, 10))


def golden_pipeline(session: Session) -> None:
    """The pipeline fixture of tests/test_pipeline_health.py, as of 2026-05-15 (hand-worked there).

    agents  team  manager  quota     open deals (stage, amount, expected close)        won
    Ann     East  Mia      100,000   D1 proposal 40,000 06-20; D2 negotiation 20,000    W1 30,000 04-20, W3 8,000
                                     04-30 (no account, last activity 03-16)
    Bob     East  Mia       50,000   D3 qualification 10,000 08-10 (ACME-0001)          W2 50,000 (2025)
    Cy      West  Raj       -        D4 prospecting, no amount, no expected close       L1 lost
    """
    set_as_of(session, D(2026, 5, 15))
    account(session, "ACME-0001")
    interaction(session, "ACME-0001", occurred_at=D(2026, 5, 10))
    for name, team, manager, quota in (
        ("Ann", "East", "Mia", 100_000.0),
        ("Bob", "East", "Mia", 50_000.0),
        ("Cy", "West", "Raj", None),
    ):
        _add(session, SalesAgent(name=name, team=team, manager=manager, quarterly_quota=quota, attributes={}))
    deals: list[dict[str, Any]] = [
        {"external_id": "OPP-D1", "owner": "Ann", "product": "Core", "stage": "proposal", "amount": 40_000.0,
         "created_at": D(2026, 3, 1), "expected_close_date": D(2026, 6, 20)},
        {"external_id": "OPP-D2", "owner": "Ann", "product": "Core", "stage": "negotiation", "amount": 20_000.0,
         "created_at": D(2026, 1, 10), "expected_close_date": D(2026, 4, 30),
         "last_activity_date": D(2026, 3, 16)},
        {"external_id": "OPP-D3", "owner": "Bob", "product": "Analytics", "stage": "qualification",
         "amount": 10_000.0, "created_at": D(2026, 5, 1), "expected_close_date": D(2026, 8, 10),
         "account_id": "ACME-0001"},
        {"external_id": "OPP-D4", "owner": "Cy", "product": "Core", "stage": "prospecting", "amount": None,
         "created_at": D(2026, 5, 5)},
        {"external_id": "OPP-W1", "owner": "Ann", "product": "Core", "stage": "closed_won", "amount": 30_000.0,
         "created_at": D(2026, 3, 1), "close_date": D(2026, 4, 20)},
        {"external_id": "OPP-W2", "owner": "Bob", "product": "Core", "stage": "closed_won", "amount": 50_000.0,
         "created_at": D(2025, 9, 1), "close_date": D(2025, 11, 2)},
        {"external_id": "OPP-W3", "owner": "Ann", "product": "Analytics", "stage": "closed_won",
         "amount": 8_000.0, "created_at": D(2026, 1, 5), "close_date": D(2026, 2, 10)},
        {"external_id": "OPP-L1", "owner": "Cy", "product": "Core", "stage": "closed_lost", "amount": None,
         "created_at": D(2026, 2, 1), "close_date": D(2026, 3, 30)},
    ]
    for values in deals:
        values = {"account_id": None, "type": "new", "close_date": None, "attributes": {}, **values}
        _add(session, Opportunity(**values))
    for ref, stage, day in (
        ("OPP-D1", "qualification", D(2026, 3, 1)),
        ("OPP-D1", "proposal", D(2026, 5, 1)),
        ("OPP-D2", "negotiation", D(2026, 3, 16)),
        ("OPP-W1", "qualification", D(2026, 3, 1)),
        ("OPP-W1", "proposal", D(2026, 3, 20)),
        ("OPP-W1", "negotiation", D(2026, 4, 5)),
        ("OPP-W1", "closed_won", D(2026, 4, 20)),
    ):
        _add(session, OpportunityStage(opportunity_id=ref, stage=stage, entered_at=day))


def golden_service_queue(session: Session) -> None:
    """The service-queue fixture of tests/test_service_queue.py, as of 2026-03-31 (hand-worked there).

    account  ARR      open tickets (priority/category, opened)           rule points → p_churn
    SQ-1     100,000  #1 high/bug 03-31 04:00; #4 urgent/bug 03-28 09:00  5 + 10 → 0.15
    SQ-2     200,000  #2 high/integration 03-30 16:00                    5 → 0.05
    SQ-3      30,000  #3 medium/how_to 03-31 (no time: noon)             0 → 0
    SQ-4      50,000  churned; #11 low/bug open since 03-01              (not in the default queue)
    Resolved (SQ-3): #5 high/bug 10 h, #6 high/bug 50 h, #7 high/bug 150 h, #8 high/integration 30 h,
    #9 high/integration 100 h, #10 low/bug 300 h; #12 opened 2025-01-10, outside the 365-day history.
    """
    set_as_of(session, AS_OF)
    for ref, name, arr in (("SQ-1", "Alpha", 100_000.0), ("SQ-2", "Beta", 200_000.0), ("SQ-3", "Gamma", 30_000.0)):
        account(session, ref, name=name, arr=arr)
    account(session, "SQ-4", name="Delta", arr=50_000.0, status="churned", churned_at=D(2026, 3, 15))
    T = dt.datetime

    def add(id: int, account_id: str, priority: str, category: str, opened: dt.date, hours: float | None) -> None:
        at = opened if isinstance(opened, dt.datetime) else None
        day = opened.date() if isinstance(opened, dt.datetime) else opened
        closed = None if hours is None or at is None else at + dt.timedelta(hours=hours)
        ticket(session, account_id, id=id, priority=priority, category=category, opened_at=day, opened_time=at,
               closed_at=closed.date() if closed else None, closed_time=closed)

    add(1, "SQ-1", "high", "bug", T(2026, 3, 31, 4), None)
    add(2, "SQ-2", "high", "integration", T(2026, 3, 30, 16), None)
    add(3, "SQ-3", "medium", "how_to", D(2026, 3, 31), None)
    add(4, "SQ-1", "urgent", "bug", T(2026, 3, 28, 9), None)
    for id, priority, category, hours in ((5, "high", "bug", 10), (6, "high", "bug", 50), (7, "high", "bug", 150),
                                          (8, "high", "integration", 30), (9, "high", "integration", 100),
                                          (10, "low", "bug", 300)):
        add(id, "SQ-3", priority, category, T(2026, 1, 5 + id, 9), hours)
    add(11, "SQ-4", "low", "bug", T(2026, 3, 1, 9), None)
    add(12, "SQ-3", "urgent", "bug", T(2025, 1, 10, 9), 1)
