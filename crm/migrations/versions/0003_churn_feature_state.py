"""churn feature state kept between batch scoring runs

Revision ID: 0003
Revises: 0002

`churn_feature_state` holds the per-account parts of the churn history features as of a
date (tools/churn/state.py), so `valuechain churn score` reads only the rows dated after
it instead of every event table from the start. Reading "the rows dated after it" needs
date-leading indexes on the large event tables (usage weeks, interactions, tickets opened,
invoices due);
the account-leading ones of 0002 would make each such read a scan of the whole index.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


DELTA_INDEXES: tuple[tuple[str, str, list[str]], ...] = (
    ("ix_usage_weekly_week_account_users", "usage_weekly", ["week_start", "account_id", "active_users"]),
    ("ix_interactions_occurred_account", "interactions", ["occurred_at", "account_id"]),
    (
        "ix_support_tickets_opened_account",
        "support_tickets",
        ["opened_at", "account_id", "priority", "closed_at"],
    ),
    (
        "ix_invoices_due_account",
        "invoices",
        ["due_date", "account_id", "issued_at", "status", "paid_at"],
    ),
)


def upgrade() -> None:
    for name, table, columns in DELTA_INDEXES:
        op.create_index(name, table, columns, unique=False)
    op.create_table(
        "churn_feature_state",
        sa.Column("key", sa.String(length=32), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    op.drop_table("churn_feature_state")
    for name, table, _ in DELTA_INDEXES:
        op.drop_index(name, table_name=table)
