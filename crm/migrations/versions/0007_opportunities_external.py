"""opportunities that hold real CRM exports; stage history; sales agents

Revision ID: 0007
Revises: 0006

Issue #20: a public opportunities export could not be imported — its ids are strings
('9ME3374G'), open deals have no amount or close date, prospects no account, and there was
nowhere for the owner or the product. Now:

* `opportunities` keeps its integer `id` as the internal key and gains `external_id` (the
  CRM's id, unique; the importer's key), `expected_close_date`, `owner`, `product`,
  `last_activity_date`, `attributes` (JSON, like accounts) and `origin` (demo / import, as in
  0004); `account_id`, `type`, `amount`, `created_at` and `close_date` may be blank.
* `opportunity_stages`: the stage history (deal, stage, date entered), when the export has it.
* `sales_agents`: owner → manager, team (regional office) and an optional quarterly quota.
* `deal_models`: trained deal (win) models, versioned, one active (tools/deals).

Existing opportunities of demo accounts are marked `origin = 'demo'`.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_NOW_BLANKABLE = (
    ("account_id", sa.String(length=64)),
    ("type", sa.String(length=16)),
    ("amount", sa.Float()),
    ("created_at", sa.Date()),
    ("close_date", sa.Date()),
)


def upgrade() -> None:
    with op.batch_alter_table("opportunities", schema=None) as batch:
        for name, type_ in _NOW_BLANKABLE:
            batch.alter_column(name, existing_type=type_, nullable=True)
        batch.add_column(sa.Column("external_id", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("expected_close_date", sa.Date(), nullable=True))
        batch.add_column(sa.Column("owner", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("product", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("last_activity_date", sa.Date(), nullable=True))
        batch.add_column(sa.Column("attributes", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("origin", sa.String(length=16), nullable=False, server_default="import"))
        batch.create_unique_constraint("uq_opportunities_external_id", ["external_id"])
        batch.create_index("ix_opportunities_stage_owner", ["stage", "owner"], unique=False)
    op.execute("UPDATE opportunities SET attributes = '{}'")
    with op.batch_alter_table("opportunities", schema=None) as batch:
        batch.alter_column("attributes", existing_type=sa.JSON(), nullable=False)
    op.execute(
        "UPDATE opportunities SET origin = 'demo' "
        "WHERE account_id IN (SELECT id FROM accounts WHERE origin = 'demo')"
    )
    op.create_table(
        "opportunity_stages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("opportunity_id", sa.String(length=64), nullable=False),
        sa.Column("stage", sa.String(length=32), nullable=False),
        sa.Column("entered_at", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(["opportunity_id"], ["opportunities.external_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("opportunity_id", "entered_at", "stage", name="uq_opportunity_stages_entry"),
    )
    with op.batch_alter_table("opportunity_stages", schema=None) as batch:
        batch.create_index(batch.f("ix_opportunity_stages_opportunity_id"), ["opportunity_id"], unique=False)
    op.create_table(
        "sales_agents",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("manager", sa.String(length=100), nullable=True),
        sa.Column("team", sa.String(length=100), nullable=True),
        sa.Column("quarterly_quota", sa.Float(), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("origin", sa.String(length=16), nullable=False, server_default="import"),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "deal_models",
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("version"),
    )


def downgrade() -> None:
    op.drop_table("deal_models")
    op.drop_table("sales_agents")
    with op.batch_alter_table("opportunity_stages", schema=None) as batch:
        batch.drop_index(batch.f("ix_opportunity_stages_opportunity_id"))
    op.drop_table("opportunity_stages")
    op.execute("DELETE FROM opportunities WHERE account_id IS NULL")
    with op.batch_alter_table("opportunities", schema=None) as batch:
        batch.drop_index("ix_opportunities_stage_owner")
        batch.drop_constraint("uq_opportunities_external_id", type_="unique")
        for name in (
            "origin",
            "attributes",
            "last_activity_date",
            "product",
            "owner",
            "expected_close_date",
            "external_id",
        ):
            batch.drop_column(name)
    # open deals without an amount or dates cannot go back into the old shape
    op.execute(
        "DELETE FROM opportunities WHERE type IS NULL OR amount IS NULL OR created_at IS NULL "
        "OR close_date IS NULL"
    )
    with op.batch_alter_table("opportunities", schema=None) as batch:
        for name, type_ in _NOW_BLANKABLE:
            batch.alter_column(name, existing_type=type_, nullable=False)
