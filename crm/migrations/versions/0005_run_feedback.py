"""feedback on chat answers: `run_feedback`

Revision ID: 0005
Revises: 0004

Issue #17: a user rates an answer thumbs up or down with an optional note; analysts read the
verdicts beside the run in the run log (`GET /api/v1/conversations/{id}`). One row per user and
run (a second verdict replaces the first). `agent_runs.status` gains two values, no schema
change: `stopped` (a user stopped the run) and `interrupted` (the server stopped first).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_feedback",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("rating", sa.String(length=8), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["agent_runs.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "user_id", name="uq_run_feedback_run_user"),
    )
    with op.batch_alter_table("run_feedback", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_run_feedback_run_id"), ["run_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("run_feedback", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_run_feedback_run_id"))
    op.drop_table("run_feedback")
