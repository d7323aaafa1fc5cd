"""chat turns waiting for or holding the model, deployment-wide: `model_turns`

Revision ID: 0013
Revises: 0012

Issue #22 (team deployment): each API worker queued its chat turns in its own memory, so two
workers each let `CHAT_TURNS_AT_ONCE` turns at the one shared model endpoint and a waiting turn's
position counted only its own worker's queue. Turns now take their places in one table.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_turns",
        sa.Column("ticket", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("queued_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("ticket"),
        sa.UniqueConstraint("run_id"),
    )
    op.create_index("ix_model_turns_owner", "model_turns", ["owner"])


def downgrade() -> None:
    op.drop_index("ix_model_turns_owner", table_name="model_turns")
    op.drop_table("model_turns")
