"""follow-up after approval and holdouts: `recommendations.owner/due_date/executed_at`,
`recommendation_holdouts`

Revision ID: 0010
Revises: 0009

Issue #21: an approved recommendation gets an owner, a due date and a status (in_progress,
executed, abandoned); the time it was executed is what its outcome is measured from. Accounts
held out of an action (the control group) are recorded in `recommendation_holdouts` with the
time they were held out, so their outcome is measured the same way. Existing rows get blanks.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("recommendations", schema=None) as batch:
        batch.add_column(sa.Column("owner", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("due_date", sa.Date(), nullable=True))
        batch.add_column(sa.Column("executed_at", sa.DateTime(), nullable=True))
    op.create_table(
        "recommendation_holdouts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("share", sa.Float(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["run_id"], ["agent_runs.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_recommendation_holdouts_account_action", "recommendation_holdouts", ["account_id", "action"]
    )
    op.create_index("ix_recommendation_holdouts_action", "recommendation_holdouts", ["action"])


def downgrade() -> None:
    op.drop_index("ix_recommendation_holdouts_action", table_name="recommendation_holdouts")
    op.drop_index("ix_recommendation_holdouts_account_action", table_name="recommendation_holdouts")
    op.drop_table("recommendation_holdouts")
    with op.batch_alter_table("recommendations", schema=None) as batch:
        batch.drop_column("executed_at")
        batch.drop_column("due_date")
        batch.drop_column("owner")
