"""get_account, list_accounts, account_timeline on the golden accounts (as of 2026-03-31)."""

from __future__ import annotations

import datetime as dt

import factories as f
import pytest
from sqlalchemy.orm import Session

from crm.models import AppMeta
from tools.accounts import account_timeline, get_account, list_accounts
from tools.common import data_as_of, period_end
from tools.errors import DataFault, ToolInputError

D = dt.date


@pytest.fixture
def golden(session: Session) -> Session:
    f.golden_accounts(session)
    a = "ACME-0001"
    champ = f.contact(session, a, name="Cara Champ", role="VP Ops", is_champion=True)
    f.contact(session, a, name="Lee Left", role="Director", is_champion=True, left_at=D(2026, 2, 14))
    f.contact(session, a, name="Future Left", is_champion=True, left_at=D(2026, 5, 1))  # after as_of
    f.contact(session, a, name="Ann User", role="user")
    f.nps(session, a, score=9, responded_at=D(2025, 11, 1), contact_id=champ.id)
    f.nps(session, a, score=4, responded_at=D(2026, 2, 20))
    f.nps(session, a, score=10, responded_at=D(2026, 4, 5))  # after as_of: ignored
    f.interaction(session, a, type="qbr", occurred_at=D(2026, 3, 11), sentiment=-0.25)
    f.interaction(session, a, type="email", occurred_at=D(2026, 1, 2), sentiment=None)
    f.invoice(session, a, issued_at=D(2026, 1, 1), due_date=D(2026, 1, 31), paid_at=None, status="failed")
    f.invoice(
        session, a, issued_at=D(2025, 12, 1), due_date=D(2025, 12, 31), paid_at=D(2026, 1, 20), status="late"
    )
    f.invoice(session, a, issued_at=D(2024, 12, 1), due_date=D(2024, 12, 31), paid_at=None, status="failed")
    f.invoice(session, a, issued_at=D(2026, 2, 1), due_date=D(2026, 3, 3), status="paid")
    f.opportunity(
        session, a, type="upsell", stage="closed_won", created_at=D(2026, 1, 10), close_date=D(2026, 3, 11)
    )
    f.usage(session, a, week_start=D(2026, 3, 16), active_users=12)
    f.usage(session, a, week_start=D(2026, 3, 23), active_users=15)
    session.commit()
    return session


def test_get_account_profile(golden: Session) -> None:
    p = get_account(session=golden, account_id="ACME-0001")
    assert p.as_of == D(2026, 3, 31)
    assert (p.id, p.segment, p.arr, p.status) == ("ACME-0001", "Enterprise", 120_000.0, "active")
    # Active subscription: the 2025-04-30 term (the 2024 term ended) → 2026-04-30 − 2026-03-31 = 30 days.
    assert p.subscription is not None and p.subscription.start_date == D(2025, 4, 30)
    assert p.days_to_renewal == 30 == p.subscription.days_to_renewal
    # Open on 03-31: the high (03-10) and urgent (03-20) tickets; the low one closed in January.
    assert p.open_tickets == 2
    assert p.open_tickets_by_priority == {"urgent": 1, "high": 1, "medium": 0, "low": 0}
    assert list(p.open_tickets_by_priority) == ["urgent", "high", "medium", "low"]
    # Failed/late with due date in (2025-03-31, 2026-03-31]: the Jan-31 failed and Dec-31 late = 2;
    # the 2024 failure is older than 365 days; the paid one does not count.
    assert p.failed_or_late_invoices_365d == 2
    # Last NPS on or before as_of: 4 on 2026-02-20 (the April response is in the future).
    assert p.last_nps is not None and (p.last_nps.score, p.last_nps.responded_at) == (4, D(2026, 2, 20))
    # Champions: Cara (active), Lee (left 02-14), Future (leaves after as_of → still active).
    assert (p.champions_active, p.champions_left, p.contacts) == (2, 1, 4)
    assert [c.name for c in p.champions] == ["Cara Champ", "Lee Left", "Future Left"]
    # Last interaction: the QBR on 03-11, 31 − 11 = 20 days before as_of.
    assert p.last_interaction is not None
    assert (p.last_interaction.type, p.last_interaction.days_ago) == ("qbr", 20)
    # Latest usage week 03-23: 15 active users of 20 seats = 0.75.
    assert p.latest_usage is not None and p.latest_usage.seat_utilisation == 0.75
    assert p.tenure_days == 1096
    assert "30 days" in p.explanation and "2 open tickets" in p.explanation


def test_get_account_without_subscription(golden: Session) -> None:
    p = get_account(session=golden, account_id="ACME-0003")
    assert p.subscription is None and p.days_to_renewal is None
    assert p.open_tickets == 1  # the 04-02 ticket is after as_of
    assert "no active subscription" in p.explanation


def test_get_account_unknown_id_suggests(golden: Session) -> None:
    with pytest.raises(ToolInputError) as exc:
        get_account(session=golden, account_id="ACME-0010")
    msg = str(exc.value)
    assert msg.startswith('no account "ACME-0010"; did you mean "ACME-')
    assert msg.count('"ACME-') == 4  # the unknown id + 3 suggestions


def test_get_account_wrong_case_suggests_the_stored_id(golden: Session) -> None:
    with pytest.raises(ToolInputError, match='did you mean "ACME-0002"'):
        get_account(session=golden, account_id=" acme-0002 ")


def test_search_treats_wildcards_literally(golden: Session) -> None:
    assert list_accounts(session=golden, search="%").total == 0
    assert list_accounts(session=golden, search="acme_").total == 0  # "_" is not "any character"
    assert list_accounts(session=golden, search="acme-").total == 4


def test_get_account_is_deterministic(golden: Session) -> None:
    a = get_account(session=golden, account_id="ACME-0001").model_dump_json()
    golden.expire_all()
    assert get_account(session=golden, account_id="ACME-0001").model_dump_json() == a


def test_list_accounts_defaults_to_active_by_id(golden: Session) -> None:
    r = list_accounts(session=golden)
    assert [a.id for a in r.items] == ["ACME-0001", "ACME-0002", "ACME-0003", "ACME-0005"]
    assert r.total == 4 and r.filters == {"status": ["active"]}


def test_list_accounts_filters_search_and_pages(golden: Session) -> None:
    r = list_accounts(session=golden, filters={"region": "emea", "status": ["active", "churned"]}, limit=2)
    assert r.filters == {"region": ["EMEA"], "status": ["active", "churned"]}
    assert r.total == 3 and [a.id for a in r.items] == ["ACME-0001", "ACME-0004"]
    page2 = list_accounts(
        session=golden, filters={"region": "EMEA", "status": ["active", "churned"]}, limit=2, offset=2
    )
    assert [a.id for a in page2.items] == ["ACME-0005"]
    assert [a.id for a in list_accounts(session=golden, search="GAMMA").items] == ["ACME-0003"]
    assert list_accounts(session=golden, search="nothing-like-this").total == 0


def test_list_accounts_errors(golden: Session) -> None:
    with pytest.raises(ToolInputError, match=r'valid region values: "EMEA", "NA"'):
        list_accounts(session=golden, filters={"region": "APAC"})
    with pytest.raises(ToolInputError, match="offset"):
        list_accounts(session=golden, offset=-1)


def test_timeline_merges_and_sorts(golden: Session) -> None:
    t = account_timeline(session=golden, account_id="ACME-0001")
    got = [(e.date, e.kind) for e in t.events]
    assert got == [
        (D(2026, 3, 20), "ticket_opened"),
        (D(2026, 3, 11), "interaction"),  # same day: kinds in order, "interaction" < "opportunity_won"
        (D(2026, 3, 11), "opportunity_won"),
        (D(2026, 3, 10), "ticket_opened"),
        (D(2026, 2, 20), "nps_response"),
        (D(2026, 2, 14), "contact_left"),
        (D(2026, 1, 31), "invoice_failed"),
        (D(2026, 1, 10), "opportunity_created"),
        (D(2026, 1, 9), "ticket_closed"),
        (D(2026, 1, 5), "ticket_opened"),
        (D(2026, 1, 2), "interaction"),
        (D(2025, 12, 31), "invoice_late"),
        (D(2025, 11, 1), "nps_response"),
        (D(2025, 4, 30), "subscription_renewed"),
        (D(2024, 12, 31), "invoice_failed"),
        (D(2024, 4, 30), "subscription_started"),
        (D(2023, 3, 31), "account_created"),
    ]
    # Nothing after as_of: the 2026-04-05 NPS and the contact leaving 2026-05-01 are left out.
    assert t.total == 17
    assert t.counts["ticket_opened"] == 3
    late = next(e for e in t.events if e.kind == "invoice_late")
    assert late.data["days_late"] == 20  # paid 2026-01-20, due 2025-12-31


def test_timeline_same_day_same_kind_by_id(session: Session) -> None:
    f.golden_accounts(session)
    first = f.interaction(session, "ACME-0002", occurred_at=D(2026, 3, 1), type="call")
    second = f.interaction(session, "ACME-0002", occurred_at=D(2026, 3, 1), type="email")
    session.commit()
    t = account_timeline(session=session, account_id="ACME-0002", since=D(2026, 3, 1))
    assert [e.ref for e in t.events] == [f"interaction {first.id}", f"interaction {second.id}"]


def test_timeline_limit_and_since(golden: Session) -> None:
    t = account_timeline(session=golden, account_id="ACME-0001", limit=3, since=D(2026, 1, 1))
    assert len(t.events) == 3 and t.total == 11
    assert t.events[0].date == D(2026, 3, 20)
    with pytest.raises(ToolInputError, match="after the as-of date"):
        account_timeline(session=golden, account_id="ACME-0001", since=D(2027, 1, 1))
    with pytest.raises(ToolInputError, match="limit"):
        account_timeline(session=golden, account_id="ACME-0001", limit=0)


# ---------------------------------------------------------------------------- data_as_of


def test_data_as_of_prefers_app_meta(golden: Session) -> None:
    assert data_as_of(golden) == D(2026, 3, 31)


def test_data_as_of_falls_back_to_usage_and_invoices(session: Session) -> None:
    f.account(session)
    f.usage(session, week_start=D(2026, 3, 23))
    f.invoice(session, issued_at=D(2026, 3, 25))
    assert data_as_of(session) == D(2026, 3, 25)


def test_data_as_of_falls_back_to_activity_period(session: Session) -> None:
    f.activity(session, "Q", period="2026-Q1")
    f.activity(session, "Y", period="2025")
    assert data_as_of(session) == D(2026, 3, 31)


def test_data_as_of_empty_database(session: Session) -> None:
    with pytest.raises(ToolInputError, match="no dated data"):
        data_as_of(session)


def test_data_as_of_bad_meta_is_a_data_fault(session: Session) -> None:
    session.add(AppMeta(key="as_of", value="yesterday"))
    with pytest.raises(DataFault, match="not an ISO date: 'yesterday'; set it to a date") as exc:
        data_as_of(session)
    assert not isinstance(exc.value, ToolInputError)  # not the model's to fix


@pytest.mark.parametrize(
    ("label", "end"),
    [
        ("2026", D(2026, 12, 31)),
        ("FY2025", D(2025, 12, 31)),
        ("2026-Q1", D(2026, 3, 31)),
        ("2024 Q4", D(2024, 12, 31)),
        ("2026-H1", D(2026, 6, 30)),
        ("2024-02", D(2024, 2, 29)),
        ("spring", None),
        ("2026-13", None),
    ],
)
def test_period_end(label: str, end: dt.date | None) -> None:
    assert period_end(label) == end
