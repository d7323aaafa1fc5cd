"""Fixture databases the evals run on, built deterministically into a work folder.

* ``golden`` (tools suite): the rows of `evals/fixtures/golden.yaml` on a migrated SQLite file —
  a handful of accounts, activities and initiatives with round numbers, so every expected output
  in `evals/cases/tools.yaml` can be worked out by hand.
* ``demo`` (tasks and faithfulness suites): the demo company ``generate_demo(accounts=120,
  seed=7)`` (the same one the agent-loop and cassette tests use) plus the rows of
  `evals/fixtures/demo_overlay.yaml` (a pending and a rejected recommendation, for the safety tasks).

Each is built once per work folder and keyed by a fingerprint of its inputs, so a changed
fixture file or generator version rebuilds it. Every agent trial runs on its own copy.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from core.db import make_engine, make_sessionmaker
from crm import models
from crm.demo.generator import GENERATOR_VERSION, generate_demo
from crm.migrate import upgrade

if TYPE_CHECKING:
    from core.settings import Settings
    from knowledge.store import KnowledgeStore

FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures"
GOLDEN_FILE = FIXTURES_DIR / "golden.yaml"
DEMO_OVERLAY_FILE = FIXTURES_DIR / "demo_overlay.yaml"
KNOWLEDGE_FIXTURE_DIR = FIXTURES_DIR / "knowledge"
DEMO_ACCOUNTS = 120
DEMO_SEED = 7
FixtureName = Literal["golden", "demo"]

TABLES: dict[str, type[models.Base]] = {
    "app_meta": models.AppMeta,
    "accounts": models.Account,
    "contacts": models.Contact,
    "subscriptions": models.Subscription,
    "usage_weekly": models.UsageWeekly,
    "support_tickets": models.SupportTicket,
    "invoices": models.Invoice,
    "interactions": models.Interaction,
    "nps_responses": models.NpsResponse,
    "opportunities": models.Opportunity,
    "value_chain_activities": models.ValueChainActivity,
    "initiatives": models.Initiative,
    "recommendations": models.Recommendation,
    "recommendation_events": models.RecommendationEvent,
}
"""Tables a fixture file may fill, in insertion order (parents first)."""

RUN_LOG_TABLES = frozenset({"conversations", "agent_runs", "messages", "llm_calls", "tool_calls"})
"""What an agent run writes about itself; never part of an end state."""


def load_rows(path: Path) -> dict[str, list[dict[str, Any]]]:
    """The `tables:` mapping of a fixture file (YAML dates and datetimes are parsed by YAML)."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    tables = doc.get("tables") or {}
    unknown = sorted(set(tables) - set(TABLES))
    if unknown:
        raise ValueError(f"{path.name}: unknown table(s) {unknown}; valid: {', '.join(TABLES)}")
    return {name: list(tables.get(name) or []) for name in TABLES if tables.get(name)}


def insert_rows(session: Session, rows: dict[str, list[dict[str, Any]]]) -> None:
    for name, model in TABLES.items():
        for row in rows.get(name, []):
            if name == "app_meta":
                row = {"key": row["key"], "value": str(row["value"])}
            session.add(model(**row))
        session.flush()


def _fingerprint(name: FixtureName) -> str:
    digest = hashlib.sha256(f"{name};schema={_schema_head()}".encode())
    if name == "golden":
        digest.update(GOLDEN_FILE.read_bytes())
    else:
        digest.update(f"demo={DEMO_ACCOUNTS},{DEMO_SEED},{GENERATOR_VERSION}".encode())
        digest.update(DEMO_OVERLAY_FILE.read_bytes())
    return digest.hexdigest()[:16]


def _schema_head() -> str:
    versions = sorted((Path(models.__file__).parent / "migrations" / "versions").glob("*.py"))
    return ",".join(p.stem for p in versions)


def build(name: FixtureName, path: Path) -> Path:
    """Build fixture `name` into the SQLite file `path` (replaced if present)."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    engine = make_engine(f"sqlite:///{path}")
    try:
        upgrade(engine)
        if name == "demo":
            generate_demo(engine, accounts=DEMO_ACCOUNTS, seed=DEMO_SEED)
        rows = load_rows(GOLDEN_FILE if name == "golden" else DEMO_OVERLAY_FILE)
        with make_sessionmaker(engine)() as session:
            insert_rows(session, rows)
            session.commit()
        with engine.connect() as conn:  # one self-contained file, so a plain copy is a snapshot
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        engine.dispose()
    return path


def fixture_db(name: FixtureName, work_dir: Path) -> Path:
    """The fixture's SQLite file in `work_dir`, built if missing or out of date."""
    work_dir.mkdir(parents=True, exist_ok=True)
    path = work_dir / f"fixture-{name}-{_fingerprint(name)}.db"
    if not path.is_file():
        tmp = path.with_suffix(".building")
        build(name, tmp)
        tmp.replace(path)
    return path


def fresh_copy(source: Path, target: Path) -> Engine:
    """A private copy of a fixture file and an engine on it (one per trial)."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return make_engine(f"sqlite:///{target}")


def fixture_knowledge(work_dir: Path) -> KnowledgeStore:
    """A store holding only `evals/fixtures/knowledge` (tools suite: 3 documents, 6 chunks)."""
    # [knowledge] extra: chromadb (~0.5 s); only the tools and retrieval suites need a store
    from knowledge.ingest import ensure_corpus_index
    from knowledge.store import KnowledgeStore

    digest = hashlib.sha256()
    for f in sorted(KNOWLEDGE_FIXTURE_DIR.glob("*.md")):
        digest.update(f.name.encode() + b"\0" + f.read_bytes())
    store = KnowledgeStore.at_path(work_dir / f"knowledge-fixture-{digest.hexdigest()[:12]}")
    ensure_corpus_index(store, corpus_dir=KNOWLEDGE_FIXTURE_DIR)
    return store


# The eval's corpus on a Chroma server: a collection of its own, so users' documents in the
# product's collection never move the numbers (and the eval never writes into that one).
EVAL_CORPUS_COLLECTION = "valuechain_eval_corpus"


def corpus_knowledge(work_dir: Path, *, server: Settings | None = None) -> KnowledgeStore:
    """A store holding exactly the product's corpus (no users' documents), so runs are reproducible.

    Embedded in `work_dir` by default; on the Chroma server of `server` (its `chroma_host`) when
    given, which is how `valuechain eval run` measures a deployment's server (docs/DEPLOY.md).
    """
    # [knowledge] extra: chromadb (~0.5 s); only the suites that search need a store
    from knowledge.ingest import ensure_corpus_index
    from knowledge.store import KnowledgeStore

    if server is not None and server.chroma_host:
        store = KnowledgeStore.from_settings(server, collection_name=EVAL_CORPUS_COLLECTION)
    else:
        store = KnowledgeStore.at_path(work_dir / "knowledge-corpus")
    ensure_corpus_index(store)
    return store
