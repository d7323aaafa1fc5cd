"""chat run events stored as they are sent, and worker heartbeats: `run_events`, `run_workers`

Revision ID: 0011
Revises: 0010

Issue #22 (team deployment): a chat run's events lived only in the memory of the API worker that
started it, so a reader landing on another worker could not follow it, and a worker killed
mid-run left its runs `running` until the next start. Each event is now stored (`run_events`,
one row per SSE `id:`), and each worker refreshes a heartbeat (`run_workers`); any worker marks a
run whose owner's heartbeat went stale `interrupted`. A Stop asked on a worker that does not hold
the run is stored (`run_stops`) for the worker holding it to carry out.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_events",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["agent_runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "seq"),
    )
    op.create_table(
        "run_workers",
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("owner"),
    )
    op.create_index("ix_run_workers_heartbeat_at", "run_workers", ["heartbeat_at"])
    op.create_table(
        "run_stops",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("requested_at", sa.DateTime(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["agent_runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id"),
    )


def downgrade() -> None:
    op.drop_table("run_stops")
    op.drop_index("ix_run_workers_heartbeat_at", table_name="run_workers")
    op.drop_table("run_workers")
    op.drop_table("run_events")
