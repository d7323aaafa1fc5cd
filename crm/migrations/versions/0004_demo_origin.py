"""mark the demo company's rows: `origin` on accounts, value-chain activities and initiatives

Revision ID: 0004
Revises: 0003

Issue #16: the demo company and imported accounts ended up in one churn model. Each account,
value-chain activity and initiative now says where it came from: `demo` (written by the demo
generator) or `import` (everything else, the server default). Imports refuse a database that
holds demo rows unless told to keep them, `valuechain demo remove` deletes them, and the
churn trainer never mixes the two populations.

Existing databases that hold the demo (`app_meta` has `demo_seed`) are backfilled by the
generator's id shapes, since nothing else records which rows it wrote: accounts `ABCD-0042`
(4 capitals, a dash, the number padded to `max(4, digits(demo_accounts))`, at most
`demo_accounts`); activities `<code>-<4-digit period>` with the generator's 16 codes;
initiatives `INI-001`... on such an activity. A row imported before this migration whose id has
exactly that shape is marked demo too (the Telco export's `7590-VHVEG` ids are not).
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLES = ("accounts", "value_chain_activities", "initiatives")
# The demo generator's activity codes (crm/demo/reference.py) when this migration was written.
DEMO_ACTIVITY_CODES = (
    "INB-DATAINTAKE",
    "OPS-HOSTING",
    "OPS-RELEASE",
    "OUT-ONBOARD",
    "OUT-PROVISION",
    "MKT-CAMPAIGNS",
    "MKT-EVENTS",
    "SAL-DIRECT",
    "SRV-SUPPORT",
    "SRV-CSM",
    "INF-BILLING",
    "INF-CRMDATA",
    "HR-RECRUIT",
    "HR-ENABLE",
    "TEC-RND",
    "PRC-VENDORS",
)
_CHUNK = 500


def upgrade() -> None:
    for table in TABLES:  # a plain ADD COLUMN on both engines: no table copy on SQLite
        op.add_column(
            table, sa.Column("origin", sa.String(length=16), nullable=False, server_default="import")
        )
    op.create_index("ix_accounts_origin", "accounts", ["origin"], unique=False)
    _backfill(op.get_bind())


def downgrade() -> None:
    op.drop_index("ix_accounts_origin", table_name="accounts")
    for table in reversed(TABLES):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("origin")


def _mark(conn: sa.Connection, table: str, ids: list[str]) -> None:
    t = sa.table(table, sa.column("id", sa.String), sa.column("origin", sa.String))
    for start in range(0, len(ids), _CHUNK):
        conn.execute(sa.update(t).where(t.c.id.in_(ids[start : start + _CHUNK])).values(origin="demo"))


def _backfill(conn: sa.Connection) -> None:
    meta = dict(
        conn.execute(
            sa.text("SELECT key, value FROM app_meta WHERE key IN ('demo_seed', 'demo_accounts')")
        ).all()
    )
    if "demo_seed" not in meta:
        return
    try:
        demo_accounts = int(meta.get("demo_accounts", "0"))
    except ValueError:
        demo_accounts = 0
    width = max(4, len(str(demo_accounts)))
    account_id = re.compile(rf"[A-Z]{{4}}-(\d{{{width}}})")
    ids = conn.execute(sa.text("SELECT id FROM accounts")).scalars().all()
    demo = [
        i
        for i in ids
        if (m := account_id.fullmatch(i)) is not None and (not demo_accounts or int(m[1]) <= demo_accounts)
    ]
    if len(demo) == len(ids):  # the usual case: only the demo; one statement
        conn.execute(sa.text("UPDATE accounts SET origin = 'demo'"))
    else:
        _mark(conn, "accounts", demo)
    activity_id = re.compile(rf"(?:{'|'.join(DEMO_ACTIVITY_CODES)})-\d{{4}}")
    rows = conn.execute(sa.text("SELECT id FROM value_chain_activities")).scalars()
    activities = [i for i in rows if activity_id.fullmatch(i)]
    _mark(conn, "value_chain_activities", activities)
    demo_activities = set(activities)
    initiatives = [
        i
        for i, activity in conn.execute(sa.text("SELECT id, activity_id FROM initiatives")).all()
        if re.fullmatch(r"INI-\d{3}", i) and activity in demo_activities
    ]
    _mark(conn, "initiatives", initiatives)
