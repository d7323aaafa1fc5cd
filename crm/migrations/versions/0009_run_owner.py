"""chat runs name the process answering them: `agent_runs.owner`

Revision ID: 0009
Revises: 0008

Issue #19 item 7: a run whose process dies (kill -9, a crash, the OOM killer) stayed `running`
for ever. Each run now records the process answering it (host, pid, process start), so the
next start of the server or of a terminal chat can tell a run whose process has ended from one
still being answered, and marks it `interrupted`. Existing rows get a blank owner (treated as
before: a server start interrupts its channels' runs).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("agent_runs", schema=None) as batch:
        batch.add_column(sa.Column("owner", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("agent_runs", schema=None) as batch:
        batch.drop_column("owner")
