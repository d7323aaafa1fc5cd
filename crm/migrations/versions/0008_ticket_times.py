"""support tickets keep the time of day they were opened and closed

Revision ID: 0008
Revises: 0007

Issue #20 (service queue): an SLA is counted in hours, and `opened_at` / `closed_at` are
dates. `support_tickets` gains `opened_time` and `closed_time` (date and time, blank when the
export has only dates; the service queue then assumes noon of the day). Existing rows keep
their dates and get blank times.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("support_tickets", schema=None) as batch:
        batch.add_column(sa.Column("opened_time", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("closed_time", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("support_tickets", schema=None) as batch:
        batch.drop_column("closed_time")
        batch.drop_column("opened_time")
