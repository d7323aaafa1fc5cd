"""`valuechain init` and `valuechain status`."""

from __future__ import annotations

import datetime as dt

from rich.table import Table
from sqlalchemy import func, select

from crm.migrate import current_revision, upgrade
from crm.models import Account, AppMeta, Base
from valuechain.cli.common import DatabaseUrlOption, JsonOption, console, print_json, settings_for
from valuechain.runtime import get_engine, get_sessionmaker


def init(database_url: str | None = DatabaseUrlOption) -> None:
    """Migrate the database and, when it holds no accounts, generate the demo company."""
    from crm.demo import generate_demo

    settings = settings_for(database_url)
    engine = get_engine(settings)
    upgrade(engine)
    with get_sessionmaker(settings)() as session:
        has_accounts = session.scalar(select(func.count()).select_from(Account)) or 0
    if has_accounts:
        console.print(f"database ready ({has_accounts:,} accounts); nothing to load")
        return
    as_of = dt.date.fromisoformat(settings.demo_as_of)
    console.print(
        f"empty database: generating the demo company "
        f"({settings.demo_accounts:,} accounts, seed {settings.demo_seed}, as of {as_of})"
    )
    generate_demo(engine, accounts=settings.demo_accounts, seed=settings.demo_seed, as_of=as_of)
    console.print("demo company loaded")


def status(database_url: str | None = DatabaseUrlOption, as_json: bool = JsonOption) -> None:
    """Show the database URL, schema revision, row counts and data facts."""
    settings = settings_for(database_url)
    engine = get_engine(settings)
    revision = current_revision(engine)
    counts: dict[str, int] = {}
    meta: dict[str, str] = {}
    if revision is not None:
        with get_sessionmaker(settings)() as session:
            for table in Base.metadata.sorted_tables:
                counts[table.name] = session.scalar(select(func.count()).select_from(table)) or 0
            meta = {m.key: m.value for m in session.scalars(select(AppMeta))}
    payload = {
        "database_url": engine.url.render_as_string(hide_password=True),
        "schema_revision": revision,
        "rows": counts,
        "meta": meta,
        "llm": settings.llm_base_url or "embedded (not started by this command)",
    }
    if as_json:
        print_json(payload)
        return
    console.print(f"database: {payload['database_url']}  (revision {revision or 'none: run init'})")
    if counts:
        grid = Table("table", "rows")
        for name, count in counts.items():
            grid.add_row(name, f"{count:,}")
        console.print(grid)
    for key, value in sorted(meta.items()):
        console.print(f"{key}: {value}")
