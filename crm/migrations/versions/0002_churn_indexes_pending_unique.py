"""churn feature indexes, one score per account per snapshot, one pending recommendation per target

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 20:30:00

Covering indexes for the point-in-time churn feature queries (tools/churn/features.py):
each grouped query reads an index instead of the table (about 2x less SQL time on a
100k-account demo on SQLite; the usage query at 1M accounts 5 s instead of 9 s).
`usage_weekly` gets (account_id, week_start, active_users) rather than a week_start index:
on SQLite a plain week_start index makes the grouped usage query slower (it sorts rows
fetched from the table), and a covering week-first one is no faster on the demo while every
account-by-account insert lands somewhere else in it.

Cost, measured on the demo (SQLite): the database grows by about half (1M accounts:
4.9 GiB -> 7.3 GiB, built in 46 s on an existing database; the usage index is half of it),
and generating a 100k demo into an empty database takes ~40 % longer (47-51 s -> 68-71 s),
since the generator inserts into the indexes as it goes.

`churn_scores` gets a unique (as_of, model_version, account_id) index, which is also how
`rank` and `churn_risk` read a kept snapshot.

`recommendations` gets partial unique indexes so that at most one *pending* recommendation
exists per (account_id, action) and per (activity_id, action): the duplicate check in
`propose_recommendation` could race between two writers. Pending duplicates that such a race
left behind are expired first (the earliest one stays pending, as the check would have
returned it), with an audit event.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

PENDING = sa.text("status = 'pending'")

FEATURE_INDEXES: tuple[tuple[str, str, list[str]], ...] = (
    ("ix_usage_weekly_account_week_users", "usage_weekly", ["account_id", "week_start", "active_users"]),
    ("ix_interactions_account_occurred", "interactions", ["account_id", "occurred_at"]),
    (
        "ix_support_tickets_account_open",
        "support_tickets",
        ["account_id", "opened_at", "closed_at", "priority"],
    ),
    ("ix_support_tickets_closed_csat", "support_tickets", ["closed_at", "account_id", "csat"]),
    (
        "ix_invoices_account_due",
        "invoices",
        ["account_id", "due_date", "issued_at", "status", "paid_at"],
    ),
    ("ix_contacts_left_at", "contacts", ["left_at"]),
    (
        "ix_subscriptions_account_latest",
        "subscriptions",
        ["account_id", "start_date", "id", "seats", "discount", "renewal_date", "plan"],
    ),
    ("ix_nps_responses_account_latest", "nps_responses", ["account_id", "responded_at", "id", "score"]),
)


def _expire_pending_duplicates(target: str) -> None:
    """Expire all but the earliest pending recommendation per (target, action), with an event."""
    conn = op.get_bind()
    rows = conn.execute(
        sa.text(
            f"SELECT r.id FROM recommendations r WHERE r.status = 'pending' AND r.{target} IS NOT NULL "
            f"AND EXISTS (SELECT 1 FROM recommendations o WHERE o.status = 'pending' "
            f"AND o.{target} = r.{target} AND o.action = r.action AND o.id < r.id) ORDER BY r.id"
        )
    ).all()
    if not rows:
        return
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    for (rec_id,) in rows:
        conn.execute(
            sa.text("UPDATE recommendations SET status = 'expired', version = version + 1 WHERE id = :id"),
            {"id": rec_id},
        )
        conn.execute(
            sa.text(
                "INSERT INTO recommendation_events (recommendation_id, event, actor, at, reason_code, note, data) "
                "VALUES (:id, 'expired', 'migration 0002', :at, 'duplicate_pending', :note, :data)"
            ).bindparams(sa.bindparam("at", type_=sa.DateTime()), sa.bindparam("data", type_=sa.JSON())),
            {
                "id": rec_id,
                "at": now,
                "note": "an earlier identical pending recommendation exists for the same target and action",
                "data": {},
            },
        )


def upgrade() -> None:
    for name, table, columns in FEATURE_INDEXES:
        op.create_index(name, table, columns, unique=False)
    op.create_index(
        "uq_churn_scores_asof_model_account",
        "churn_scores",
        ["as_of", "model_version", "account_id"],
        unique=True,
    )
    _expire_pending_duplicates("account_id")
    _expire_pending_duplicates("activity_id")
    op.create_index(
        "uq_recommendations_pending_account_action",
        "recommendations",
        ["account_id", "action"],
        unique=True,
        sqlite_where=PENDING,
        postgresql_where=PENDING,
    )
    op.create_index(
        "uq_recommendations_pending_activity_action",
        "recommendations",
        ["activity_id", "action"],
        unique=True,
        sqlite_where=PENDING,
        postgresql_where=PENDING,
    )


def downgrade() -> None:
    op.drop_index("uq_recommendations_pending_activity_action", table_name="recommendations")
    op.drop_index("uq_recommendations_pending_account_action", table_name="recommendations")
    op.drop_index("uq_churn_scores_asof_model_account", table_name="churn_scores")
    for name, table, _ in reversed(FEATURE_INDEXES):
        op.drop_index(name, table_name=table)
