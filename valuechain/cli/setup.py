"""`valuechain init` and `valuechain status`."""

from __future__ import annotations

import datetime as dt

import typer
from rich.table import Table
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.auth import create_key
from core.db import session_scope
from core.runtime import get_engine, get_sessionmaker
from core.settings import Settings
from crm.demo import generate_demo
from crm.demo.generator import DEMO_REMOVED_KEY
from crm.migrate import current_revision, upgrade
from crm.models import DEMO_ORIGIN, Account, ApiKey, AppMeta, Base, ChurnModel
from tools.churn.model import train
from tools.errors import ToolInputError
from valuechain.cli.common import DatabaseUrlOption, JsonOption, console, print_json, settings_for

FIRST_ADMIN = "admin"
DEMO_HINT = (
    "this is the demo company; to work on your own data run `valuechain demo remove`, then "
    "`valuechain import accounts FILE --mapping M.yaml` (docs/IMPORT.md)"
)
MIXED_HINT = (
    "the database holds the demo company next to imported accounts (--keep-demo); churn training "
    "uses the imported ones only; `valuechain demo remove` deletes the demo"
)


def init(
    database_url: str | None = DatabaseUrlOption,
    first_key: bool = typer.Option(
        True,
        "--first-key/--no-first-key",
        help="When the database has no API key at all (first start), create an admin key and print it "
        "once (never with ENVIRONMENT=production)",
    ),
) -> None:
    """Migrate the database; on first start load the demo company, train the churn model,
    build the knowledge index and print a first admin API key. Every step is skipped when its
    result already exists."""
    settings = settings_for(database_url)
    engine = get_engine(settings)
    upgrade(engine)
    factory = get_sessionmaker(settings)
    with factory() as session:
        has_accounts = session.scalar(select(func.count()).select_from(Account)) or 0
        demo_accounts = session.scalar(select(func.count()).where(Account.origin == DEMO_ORIGIN)) or 0
        has_model = session.scalar(select(func.count()).select_from(ChurnModel).where(ChurnModel.active)) or 0
        demo_removed = session.get(AppMeta, DEMO_REMOVED_KEY)
    if has_accounts:
        console.print(f"database ready ({has_accounts:,} accounts)")
        if demo_accounts:
            console.print(DEMO_HINT if demo_accounts == has_accounts else MIXED_HINT)
    elif demo_removed is not None:
        console.print(
            f"empty database; the demo company was removed on {demo_removed.value[:10]} "
            "(`valuechain demo remove`), so it is not loaded again: import your data (docs/IMPORT.md), "
            "or load the demo with `valuechain demo`"
        )
    else:
        as_of = dt.date.fromisoformat(settings.demo_as_of)
        console.print(
            f"empty database: generating the demo company "
            f"({settings.demo_accounts:,} accounts, seed {settings.demo_seed}, as of {as_of})"
        )
        generate_demo(
            engine, accounts=settings.demo_accounts, seed=settings.demo_seed, as_of=as_of, interventions=True
        )
        has_accounts = settings.demo_accounts
        console.print(DEMO_HINT)
    if not has_model and has_accounts:
        _train_churn_model(factory)
    _build_knowledge_index(settings)
    if first_key:
        _first_admin_key(factory, settings)


def _train_churn_model(factory: sessionmaker[Session]) -> None:
    with session_scope(factory) as session:
        report = train(session, now=dt.datetime.now(dt.UTC).replace(tzinfo=None))
    auc = "n/a" if report.auc is None else f"{report.auc:.3f}"
    console.print(f"churn model {report.model_version}: {report.method} ({report.source}), AUC {auc}")
    if report.population_note:
        console.print(report.population_note)


def _build_knowledge_index(settings: Settings) -> None:
    # [knowledge] extra: knowledge.ingest loads Chroma (~0.3 s)
    from knowledge.ingest import ensure_corpus_index

    report = ensure_corpus_index(settings=settings)
    console.print(f"knowledge index {report.status}: {report.documents} documents, {report.chunks} chunks")


def _first_admin_key(factory: sessionmaker[Session], settings: Settings) -> None:
    """On first start (no API key, not even a revoked one) create an admin key and show it once,
    so the web UI can be signed into straight away; only its hash is stored."""
    with session_scope(factory) as session:
        if session.scalar(select(func.count()).select_from(ApiKey)):
            return
        if settings.environment == "production":
            console.print(
                "no API key yet: create one with `valuechain keys create --name NAME --role admin`"
            )
            return
        try:
            created = create_key(session=session, name=FIRST_ADMIN, role="admin")
        except ToolInputError as exc:  # a user "admin" with another role: leave it to the operator
            console.print(f"no first admin key created ({exc}); use `valuechain keys create`")
            return
    console.print(f"\n[bold]First start: admin API key for user {created.user!r}[/bold] (shown only now, stored hashed):")
    console.print(f"\n    {created.key}\n", highlight=False, markup=False, soft_wrap=True)
    console.print("Sign in to the web UI with it. More keys: `valuechain keys create --name NAME --role ROLE`.")
    console.print(f"Revoke it: `valuechain keys revoke {created.prefix}`.\n", highlight=False)


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
