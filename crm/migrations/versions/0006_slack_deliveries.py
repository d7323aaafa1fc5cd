"""Slack deliveries answered once: `slack_deliveries`

Revision ID: 0006
Revises: 0005

Issue #19 item 3: a retried Slack event was always dropped, a replayed event or slash command
was answered again. Each event (by `event_id`) and slash command (by a fingerprint) is now
claimed by inserting its key here before it is answered; the primary key makes exactly one of
several copies win, also when they arrive at the same moment. Rows older than a day are
deleted as new ones arrive (Slack refuses to sign anything older than five minutes).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "slack_deliveries",
        sa.Column("key", sa.String(length=80), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("retry_num", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    with op.batch_alter_table("slack_deliveries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_slack_deliveries_received_at"), ["received_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("slack_deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_slack_deliveries_received_at"))
    op.drop_table("slack_deliveries")
