"""where each Slack question's run answers, to answer it again after a worker dies: `slack_questions`

Revision ID: 0014
Revises: 0013

Issue #22 (team deployment): a Slack answer ran only in the worker that took the event; killed or
restarted mid-answer, the run was marked interrupted and the thread heard nothing. The thread of
each Slack run is now kept, and another worker answers an interrupted one again, once.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "slack_questions",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("team", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("thread_ts", sa.String(length=64), nullable=False),
        sa.Column("user", sa.String(length=64), nullable=False),
        sa.Column("asked_at", sa.DateTime(), nullable=False),
        sa.Column("resumed_from", sa.String(length=64), nullable=True),
        sa.Column("resumed_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["agent_runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id"),
    )
    op.create_index("ix_slack_questions_asked_at", "slack_questions", ["asked_at"])


def downgrade() -> None:
    op.drop_index("ix_slack_questions_asked_at", table_name="slack_questions")
    op.drop_table("slack_questions")
