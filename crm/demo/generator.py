"""Write the demo company into a migrated database: chunked, bulk Core inserts, one transaction per chunk."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from sqlalchemy import Connection, Engine, Table, delete, func, select, text

from crm.demo.deals import sales_agent_rows
from crm.demo.interventions import TRUE_EFFECTS_KEY, true_effects_json
from crm.demo.reference import activity_rows, initiative_rows
from crm.demo.simulate import (
    CHUNK,
    TRIM_EMAIL_KEEP,
    TRIM_EVENT_DAYS,
    TRIM_THRESHOLD,
    TRIM_USAGE_WEEKS,
    ChunkSpec,
    simulate_chunk,
)
from crm.demo.timeline import Timeline
from crm.models import DEMO_ORIGIN, Base

GENERATOR_VERSION = "5"  # 2: opportunities with owners, products, stage history and prospects (#20); 3: tickets' time of day (#20); 4: simulated interventions with true effects (#21); 5: simulated growth offers and their won deals, true effects in app_meta (#21, with interventions only)
BATCH = 10_000
DEFAULT_AS_OF = dt.date(2026, 9, 30)
META_KEYS = ("as_of", "demo_seed", "demo_accounts", "generator_version", "demo_history")
# Set by `valuechain demo remove`: `valuechain init` then does not load the demo again.
DEMO_REMOVED_KEY = "demo_removed"


def _t(name: str) -> Table:
    return Base.metadata.tables[name]


# Tables with an integer `id` the generator assigns itself.
_ID_TABLES = (
    "contacts",
    "subscriptions",
    "support_tickets",
    "invoices",
    "interactions",
    "nps_responses",
    "opportunities",
    "recommendations",
    "recommendation_events",
    "recommendation_holdouts",
)
# Written only when interventions are simulated (crm/demo/interventions.py).
_INTERVENTION_TABLES = ("recommendations", "recommendation_events", "recommendation_holdouts")
# Per-chunk tables in insert (foreign-key) order.
_CHUNK_TABLES = (
    "accounts",
    "contacts",
    "subscriptions",
    "usage_weekly",
    *_ID_TABLES[2:],
    "opportunity_stages",
)
# Everything the generator writes or that points at it; deleted by a reset, children first.
_RESET_ORDER = (
    "recommendation_holdouts",
    "recommendation_events",
    "recommendations",
    "churn_scores",
    "churn_feature_state",
    "churn_models",
    "deal_models",
    "nps_responses",
    "opportunity_stages",
    "opportunities",
    "sales_agents",
    "interactions",
    "invoices",
    "support_tickets",
    "usage_weekly",
    "subscriptions",
    "contacts",
    "accounts",
    "initiatives",
    "value_chain_activities",
)
_DATA_TABLES = ("accounts", "value_chain_activities", "initiatives", "contacts", "subscriptions")


class DemoDatabaseNotEmptyError(RuntimeError):
    """The target database already holds CRM data and no reset was asked for."""


@dataclass
class DemoSummary:
    """What a generation run wrote."""

    accounts: int
    seed: int
    as_of: dt.date
    trimmed: bool
    seconds: float = 0.0
    rows: dict[str, int] = field(default_factory=dict)
    churned: int = 0
    active: int = 0

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


def history_note(trimmed: bool) -> str:
    """The `demo_history` meta value: how deep per-account history goes."""
    if not trimmed:
        return "full"
    return (
        f"trimmed: usage last {TRIM_USAGE_WEEKS} weeks; tickets, invoices, interactions and NPS "
        f"last {TRIM_EVENT_DAYS} days; {int(TRIM_EMAIL_KEEP * 100)}% of emails"
    )


def database_has_data(engine: Engine) -> bool:
    """True when any table the generator fills already holds a row."""
    with engine.connect() as conn:
        for name in _DATA_TABLES:
            if conn.execute(select(_t(name).c[0]).limit(1)).first() is not None:
                return True
    return False


def reset_demo_data(engine: Engine) -> None:
    """Delete CRM data, value-chain data, recommendations, churn models and demo meta keys.

    Users, API keys and conversation logs are kept.
    """
    with engine.begin() as conn:
        for name in _RESET_ORDER:
            conn.execute(delete(_t(name)))
        meta = _t("app_meta")
        conn.execute(delete(meta).where(meta.c.key.in_(META_KEYS)))


def _insert(conn: Connection, table: Table, columns: dict[str, Any]) -> int:
    keys = list(columns)
    rows = [dict(zip(keys, values, strict=True)) for values in zip(*columns.values(), strict=True)]
    for start in range(0, len(rows), BATCH):
        conn.execute(table.insert(), rows[start : start + BATCH])
    return len(rows)


@contextmanager
def _progress_bar(enabled: bool, total: int, label: str) -> Iterator[Any]:
    if not enabled:
        yield None
        return
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("accounts"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def _fix_sequences(conn: Connection) -> None:
    """PostgreSQL: explicit ids do not advance serial sequences; move them past the max id."""
    for name in _ID_TABLES:
        conn.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                f"COALESCE((SELECT MAX(id) FROM {name}), 0) + 1, false)"
            )
        )


def generate_demo(
    engine: Engine,
    *,
    accounts: int,
    seed: int,
    as_of: dt.date = DEFAULT_AS_OF,
    progress: bool = False,
    reset: bool = False,
    interventions: bool = False,
) -> DemoSummary:
    """Generate the deterministic demo company into the migrated database behind `engine`.

    Same (accounts, seed, as_of) gives the same database content on any day and any engine.
    Refuses a database that already holds CRM data unless `reset` is set (which deletes it
    first, see `reset_demo_data`). Above `TRIM_THRESHOLD` accounts per-account history is
    trimmed (see docs/DEMO.md). With `interventions` the history also holds simulated
    recommendations, their decisions and executions, holdouts and the executed actions' stated
    true effects on churn (crm/demo/interventions.py, docs/OUTCOMES.md); the CLI and `init` set it.
    """
    if accounts < 1:
        raise ValueError(f"accounts must be at least 1, got {accounts!r}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if reset:
        reset_demo_data(engine)
    elif database_has_data(engine):
        raise DemoDatabaseNotEmptyError(
            f"database {engine.url.render_as_string(hide_password=True)!r} already holds CRM data; "
            "pass reset=True (CLI: --reset) to delete it and generate again"
        )
    began = time.perf_counter()
    trimmed = accounts > TRIM_THRESHOLD
    summary = DemoSummary(accounts=accounts, seed=seed, as_of=as_of, trimmed=trimmed)
    tl = Timeline.build(as_of)
    width = max(4, len(str(accounts)))
    sqlite = engine.dialect.name == "sqlite"
    with engine.begin() as conn:
        summary.rows["value_chain_activities"] = _insert(
            conn, _t("value_chain_activities"), _demo(_columns(activity_rows(as_of)))
        )
        summary.rows["initiatives"] = _insert(
            conn, _t("initiatives"), _demo(_columns(initiative_rows(as_of)))
        )
        summary.rows["sales_agents"] = _insert(
            conn, _t("sales_agents"), _demo(_columns(sales_agent_rows(accounts)))
        )
    next_id = dict.fromkeys(_ID_TABLES, 1)
    n_chunks = -(-accounts // CHUNK)
    with _progress_bar(progress, accounts, "generating demo company") as advance:
        for index in range(n_chunks):
            n_valid = min(CHUNK, accounts - index * CHUNK)
            spec = ChunkSpec(
                seed=seed, index=index, n_valid=n_valid, id_width=width, trimmed=trimmed,
                interventions=interventions,
            )
            data = simulate_chunk(tl, spec)
            summary.churned += data.churned
            summary.active += data.active
            with engine.begin() as conn:
                if sqlite:  # a bigger page cache keeps index inserts off the disk on big runs
                    conn.exec_driver_sql("PRAGMA cache_size=-262144")
                for name in _CHUNK_TABLES:
                    if name not in data.tables:  # the intervention tables, when not simulated
                        continue
                    columns = data.tables[name]
                    if name in ("accounts", "opportunities"):
                        columns = _demo(columns)
                    if name == "opportunities":
                        columns["external_id"] = [
                            opportunity_external_id(n)
                            for n in range(next_id[name], next_id[name] + len(columns["account_id"]))
                        ]
                    if name == "opportunity_stages":
                        first = next_id["opportunities"] - len(data.tables["opportunities"]["account_id"])
                        local = columns.pop("opportunity_local")
                        columns = {
                            "opportunity_id": [opportunity_external_id(first + i) for i in local],
                            **columns,
                        }
                    if name in next_id:
                        count = len(next(iter(columns.values())))
                        first = next_id[name]
                        columns = {"id": range(first, first + count), **columns}
                        if name == "nps_responses":
                            contact0 = next_id["contacts"] - len(data.tables["contacts"]["account_id"])
                            local = columns.pop("contact_local")
                            columns["contact_id"] = [contact0 + c for c in local]
                        if name == "recommendation_events":
                            rec0 = next_id["recommendations"] - len(data.tables["recommendations"]["account_id"])
                            local = columns.pop("recommendation_local")
                            columns = {"recommendation_id": [rec0 + i for i in local], **columns}
                        next_id[name] = first + count
                    summary.rows[name] = summary.rows.get(name, 0) + _insert(conn, _t(name), columns)
            if advance is not None:
                advance(n_valid)
    if interventions:  # written (maybe 0 rows) only when simulated; count_rows lists them either way
        for name in _INTERVENTION_TABLES:
            summary.rows.setdefault(name, 0)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            _fix_sequences(conn)
        meta = {
            "as_of": as_of.isoformat(),
            "demo_seed": str(seed),
            "demo_accounts": str(accounts),
            "generator_version": GENERATOR_VERSION,
            "demo_history": history_note(trimmed),
        }
        if interventions:  # the stated true effects, shown beside the estimates (docs/OUTCOMES.md)
            meta[TRUE_EFFECTS_KEY] = true_effects_json()
        table = _t("app_meta")
        conn.execute(delete(table).where(table.c.key.in_([*meta, DEMO_REMOVED_KEY, TRUE_EFFECTS_KEY])))
        conn.execute(table.insert(), [{"key": k, "value": v} for k, v in meta.items()])
    summary.rows["app_meta"] = len(meta)
    summary.seconds = time.perf_counter() - began
    return summary


_ID_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_ID_SPACE = 36**8
_ID_MULT = 2_654_435_761  # odd and not a multiple of 3: a permutation of the 8-character space


def opportunity_external_id(number: int) -> str:
    """The CRM-style id of the demo's `number`-th opportunity: 8 characters such as '4QX0T7ZM',
    unique (a fixed permutation of the numbers), the shape real exports have."""
    value = (number * _ID_MULT + 0x5EED) % _ID_SPACE
    out = []
    for _ in range(8):
        value, digit = divmod(value, 36)
        out.append(_ID_ALPHABET[digit])
    return "".join(reversed(out))


def _columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return {key: [row[key] for row in rows] for key in rows[0]}


def _demo(columns: dict[str, Any]) -> dict[str, Any]:
    """The columns with every row marked as the demo company's (`origin`, see crm/demo/removal.py)."""
    count = len(next(iter(columns.values())))
    return {**columns, "origin": [DEMO_ORIGIN] * count}


def count_rows(engine: Engine) -> dict[str, int]:
    """Row count of every table the generator writes."""
    out: dict[str, int] = {}
    with engine.connect() as conn:
        for name in (*_CHUNK_TABLES, "value_chain_activities", "initiatives", "sales_agents"):
            out[name] = conn.execute(select(func.count()).select_from(_t(name))).scalar_one()
    return {k: v for k, v in out.items() if v or k not in _INTERVENTION_TABLES}
