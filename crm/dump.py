"""Canonical dump of the database content, for comparing two databases byte for byte."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

from sqlalchemy import Engine, select

from crm.models import Base

# Tables whose content is run history or wall-clock bound, not CRM data.
VOLATILE_TABLES = frozenset({"alembic_version"})


def _canonical(value: object) -> object:
    if isinstance(value, float):
        return repr(round(value, 9))
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def table_hashes(engine: Engine, tables: Iterable[str] | None = None) -> dict[str, tuple[int, str]]:
    """Row count and sha256 of each table's rows, ordered by primary key."""
    wanted = set(tables) if tables is not None else None
    out: dict[str, tuple[int, str]] = {}
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            if table.name in VOLATILE_TABLES or (wanted is not None and table.name not in wanted):
                continue
            digest = hashlib.sha256()
            count = 0
            order = list(table.primary_key.columns) or list(table.columns)
            result = conn.execution_options(yield_per=10_000).execute(select(table).order_by(*order))
            for row in result:
                record = [_canonical(v) for v in row]
                digest.update(json.dumps(record, sort_keys=True, default=str).encode())
                digest.update(b"\n")
                count += 1
            out[table.name] = (count, digest.hexdigest())
    return out


def combine(per_table: dict[str, tuple[int, str]]) -> str:
    """One sha256 over the per-table hashes."""
    digest = hashlib.sha256()
    for name, (count, h) in sorted(per_table.items()):
        digest.update(f"{name}:{count}:{h}\n".encode())
    return digest.hexdigest()


def database_hash(engine: Engine, tables: Iterable[str] | None = None) -> str:
    """One sha256 over every table's canonical dump."""
    return combine(table_hashes(engine, tables))
