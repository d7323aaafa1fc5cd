"""Small synthetic CRM data for the churn and next-best-action tests.

`build_history` makes accounts with a known churn mechanism: in the ~10 weeks before an
account churns its usage falls, urgent tickets stay open, invoices fail, NPS drops and the
champion may leave. `build_attributes` makes an attribute-only export with a known signal.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

import numpy as np
from sqlalchemy import insert, update
from sqlalchemy.orm import Session

from crm.models import (
    Account,
    AppMeta,
    ChurnModel,
    Contact,
    Interaction,
    Invoice,
    NpsResponse,
    Subscription,
    SupportTicket,
    UsageWeekly,
)
from tools.churn.design import LinearModel

AS_OF = dt.date(2026, 9, 30)
SEGMENTS = ("SMB", "Mid-Market", "Enterprise")
PLANS = ("Starter", "Growth", "Enterprise")


def _monday(day: dt.date) -> dt.date:
    return day - dt.timedelta(days=day.weekday())


def build_history(
    session: Session, *, accounts: int = 300, seed: int = 0, as_of: dt.date = AS_OF, churn_rate: float = 0.45
) -> None:
    """Accounts over ~2 years with churn preceded by usage decline, tickets, failed invoices, low NPS."""
    rng = np.random.default_rng(seed)
    start = as_of - dt.timedelta(days=730)
    acc_rows: list[dict[str, Any]] = []
    usage: list[dict[str, Any]] = []
    subs: list[dict[str, Any]] = []
    tickets: list[dict[str, Any]] = []
    invoices: list[dict[str, Any]] = []
    nps: list[dict[str, Any]] = []
    contacts: list[dict[str, Any]] = []
    touches: list[dict[str, Any]] = []
    for i in range(accounts):
        aid = f"T-{i:04d}"
        created = start + dt.timedelta(days=int(rng.integers(0, 200)))
        churned_at: dt.date | None = None
        if rng.random() < churn_rate:
            churned_at = created + dt.timedelta(days=int(rng.integers(200, (as_of - created).days + 150)))
            if churned_at > as_of:
                churned_at = None
        seats = int(rng.integers(5, 60))
        arr = float(seats * 1200)
        acc_rows.append(
            {
                "id": aid,
                "name": f"Test Account {i}",
                "segment": SEGMENTS[i % 3],
                "industry": "Software",
                "region": "EMEA" if i % 2 else "NA",
                "plan": PLANS[i % 3],
                "arr": arr,
                "created_at": created,
                "owner": "owner",
                "status": "churned" if churned_at else "active",
                "churned_at": churned_at,
                "attributes": {
                    "employees": int(rng.integers(10, 5000)),
                    "tier": "gold" if i % 4 == 0 else "silver",
                },
            }
        )
        end = churned_at or as_of
        decline_from = (churned_at - dt.timedelta(days=70)) if churned_at else None
        week = _monday(created)
        base = seats * float(rng.uniform(0.5, 0.95))
        while week + dt.timedelta(days=6) <= end:
            level = base * float(rng.uniform(0.9, 1.1))
            if decline_from and week >= decline_from:
                level *= 0.45
            usage.append(
                {
                    "account_id": aid,
                    "week_start": week,
                    "active_users": round(level),
                    "sessions": round(level * 5),
                    "features_adopted": 3,
                }
            )
            week += dt.timedelta(days=7)
        term = created
        while term <= end:
            subs.append(
                {
                    "account_id": aid,
                    "plan": PLANS[i % 3],
                    "seats": seats,
                    "mrr": arr / 12,
                    "start_date": term,
                    "renewal_date": term + dt.timedelta(days=365),
                    "discount": 0.1 if i % 5 == 0 else 0.0,
                    "status": "active",
                }
            )
            term += dt.timedelta(days=365)
        month = created
        while month + dt.timedelta(days=30) <= end:
            due = month + dt.timedelta(days=30)
            bad = decline_from is not None and due >= decline_from and rng.random() < 0.6
            invoices.append(
                {
                    "account_id": aid,
                    "issued_at": month,
                    "due_date": due,
                    "paid_at": None if bad else due - dt.timedelta(days=2),
                    "amount": arr / 12,
                    "status": "failed" if bad else "paid",
                }
            )
            touches.append({"account_id": aid, "type": "email", "occurred_at": month, "sentiment": 0.2})
            month += dt.timedelta(days=30)
        for q in range(0, (end - created).days, 90):
            day = created + dt.timedelta(days=q + 10)
            if day > end:
                break
            low = decline_from is not None and day >= decline_from
            nps.append(
                {
                    "account_id": aid,
                    "responded_at": day,
                    "score": int(rng.integers(0, 5) if low else rng.integers(6, 11)),
                }
            )
        for _ in range(int(rng.integers(0, 4))):
            opened = created + dt.timedelta(days=int(rng.integers(0, max(1, (end - created).days))))
            tickets.append(
                {
                    "account_id": aid,
                    "priority": "low",
                    "category": "how-to",
                    "opened_at": opened,
                    "closed_at": opened + dt.timedelta(days=3),
                    "csat": int(rng.integers(3, 6)),
                }
            )
        if churned_at is not None and decline_from is not None:
            tickets.append(
                {
                    "account_id": aid,
                    "priority": "urgent",
                    "category": "bug",
                    "opened_at": decline_from + dt.timedelta(days=10),
                    "closed_at": None,
                    "csat": None,
                }
            )
        champion_left = churned_at - dt.timedelta(days=40) if churned_at and rng.random() < 0.5 else None
        contacts.append(
            {
                "account_id": aid,
                "name": f"Champion {i}",
                "email": None,
                "role": "admin",
                "is_champion": True,
                "created_at": created,
                "left_at": champion_left,
            }
        )
    session.execute(insert(Account), acc_rows)
    for model, rows in (
        (UsageWeekly, usage),
        (Subscription, subs),
        (SupportTicket, tickets),
        (Invoice, invoices),
        (NpsResponse, nps),
        (Contact, contacts),
        (Interaction, touches),
    ):
        if rows:
            session.execute(insert(model), rows)
    session.merge(AppMeta(key="as_of", value=as_of.isoformat()))
    session.commit()


def build_attributes(session: Session, *, accounts: int = 600, seed: int = 0) -> None:
    """An attribute-only export: churn depends on contract, tenure and monthly charges."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for i in range(accounts):
        contract = str(rng.choice(["Month-to-month", "One year", "Two year"], p=[0.5, 0.25, 0.25]))
        tenure = int(rng.integers(0, 72))
        charges = float(np.round(rng.uniform(20, 110), 2))
        logit = (
            -1.0 + (1.4 if contract == "Month-to-month" else -0.8) - 0.04 * tenure + 0.015 * (charges - 60)
        )
        churned = rng.random() < 1 / (1 + np.exp(-logit))
        attrs: dict[str, Any] = {
            "Contract": contract,
            "tenure": tenure,
            "MonthlyCharges": charges,
            "PaperlessBilling": str(rng.choice(["Yes", "No"])),
        }
        if tenure > 0:
            attrs["TotalCharges"] = round(charges * tenure, 2)
        rows.append(
            {
                "id": f"C-{i:05d}",
                "name": f"C-{i:05d}",
                "segment": "SMB",
                "arr": charges * 12,
                "status": "churned" if churned else "active",
                "attributes": attrs,
            }
        )
    session.execute(insert(Account), rows)
    session.commit()


def store_model(
    session: Session,
    model: LinearModel,
    *,
    version: str | None = None,
    source: str = "history",
    attribute_kinds: dict[str, str] | None = None,
    as_of: dt.date | None = AS_OF,
) -> None:
    """Make a hand-set logistic model the active churn model (version: "hand-" + params hash)."""
    params = {**model.to_params(), "attribute_kinds": attribute_kinds or {}}
    version = (
        version or "hand-" + hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    )
    session.execute(update(ChurnModel).values(active=False))
    session.add(
        ChurnModel(
            version=version,
            created_at=dt.datetime(2026, 10, 1),
            method="logistic_regression",
            source=source,
            as_of=as_of,
            active=True,
            params=params,
            metrics={"auc": None},
        )
    )
    session.commit()


def constant_model(probability_logit: float = 0.0) -> LinearModel:
    """A model with no features: every account gets sigmoid(intercept) (0.5 for 0.0)."""
    return LinearModel(
        columns=(),
        means=np.zeros(0),
        scales=np.ones(0),
        coefs=np.zeros(0),
        intercept=probability_logit,
    )


SURNAMES = tuple(f"Surname{k:04d}" for k in range(3000))


def build_interaction_attributes(session: Session, *, accounts: int = 1200, seed: int = 0) -> None:
    """A bank-like export where churn is a threshold interaction no straight line can draw:
    churned iff 45 ≤ Age ≤ 60 and NumOfProducts ≥ 3, with 5 % of labels flipped.

    Also carries a 0/1 flag, a unique CustomerId and a high-cardinality Surname (both must be
    excluded from the features) and a pure-noise number.
    """
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for i in range(accounts):
        age = int(rng.integers(18, 81))
        products = int(rng.integers(1, 5))
        churned = 45 <= age <= 60 and products >= 3
        if rng.random() < 0.05:
            churned = not churned
        rows.append(
            {
                "id": f"B-{i:05d}",
                "name": f"B-{i:05d}",
                "segment": "SMB",
                "arr": 1000.0,
                "status": "churned" if churned else "active",
                "attributes": {
                    "Age": age,
                    "NumOfProducts": products,
                    "HasCrCard": int(rng.integers(0, 2)),
                    "Noise": float(np.round(rng.normal(), 3)),
                    "CustomerId": 15_600_000 + int(rng.permutation(10)[0]) + 10 * i,
                    "Surname": str(rng.choice(SURNAMES)),
                },
            }
        )
    session.execute(insert(Account), rows)
    session.commit()
