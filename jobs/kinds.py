"""What each kind of job does, and the parameters it accepts (checked before anything is queued).

Each kind is a function `(ctx, params) -> result` that reports progress through `ctx` and raises
to fail. The work itself lives where it always did (tools/churn, knowledge/ingest); a job only
runs it in a transaction of its own and reports how far it got.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.db import session_scope
from knowledge.ingest import ingest_documents
from knowledge.loaders import Document, Section
from tools.churn.candidates import CANDIDATES
from tools.churn.model import train
from tools.churn.scoring import write_score_snapshot

if TYPE_CHECKING:
    from jobs.run import JobContext

SCORE_CHUNK = 1000
"""Scores written per step of a scoring job: one progress update each."""


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChurnScoreParams(_Params):
    as_of: dt.date | None = Field(default=None, description="Score date; default: the data's as-of date")
    rebuild: bool = Field(default=False, description="Rebuild the kept churn feature state from the event tables")


class ChurnTrainParams(_Params):
    source: Literal["history", "attributes"] | None = Field(
        default=None, description="Training data; default: detected from what the database holds")
    as_of: dt.date | None = None
    c: float = Field(default=0.1, gt=0, le=1e6, description="Inverse L2 strength of the logistic candidate")
    candidates: list[Literal["logistic_regression", "gradient_boosting"]] = Field(
        default_factory=list, max_length=2, description="Model families to evaluate; default: both")
    exclude_attributes: list[str] = Field(default_factory=list, max_length=200)


class SectionIn(_Params):
    heading: str
    text: str
    level: int = 2


class DocumentIn(_Params):
    source: str
    title: str
    path: str
    sections: list[SectionIn]
    topic: str = ""
    doc_hash: str = ""
    extra: dict[str, Any] = Field(default_factory=dict)


class KnowledgeIngestParams(_Params):
    documents: list[DocumentIn] = Field(min_length=1)
    max_chunks: int | None = Field(default=None, ge=1)
    replace_corpus: list[str] = Field(default_factory=list)


def document_params(docs: list[Document]) -> list[dict[str, Any]]:
    """Loaded documents as job parameters (JSON): the worker that runs the job may be another process."""
    return [{"source": d.source, "title": d.title, "path": d.path, "topic": d.topic, "doc_hash": d.doc_hash,
             "extra": d.extra, "sections": [{"heading": s.heading, "text": s.text, "level": s.level}
                                            for s in d.sections]} for d in docs]


def _documents(params: KnowledgeIngestParams) -> list[Document]:
    return [Document(source=d.source, title=d.title, path=d.path, topic=d.topic, doc_hash=d.doc_hash,
                     extra=dict(d.extra), sections=[Section(s.heading, s.text, s.level) for s in d.sections])
            for d in params.documents]


def run_churn_score(ctx: JobContext, params: BaseModel) -> dict[str, Any]:
    assert isinstance(params, ChurnScoreParams)

    def progress(done: int, total: int) -> None:
        ctx.progress(done, total, f"scored {done:,}/{total:,} accounts")

    ctx.progress(0, 0, "reading churn features")
    with session_scope(ctx.sessions) as session:
        result = write_score_snapshot(session, as_of=params.as_of, rebuild=params.rebuild, chunk=SCORE_CHUNK,
                                      progress=progress)
        ctx.progress(result.accounts, result.accounts, f"committing {result.accounts:,} scores")
    ctx.progress(result.accounts, result.accounts, f"kept {result.accounts:,} scores as of {result.as_of}")
    return result.model_dump(mode="json")


def run_churn_train(ctx: JobContext, params: BaseModel) -> dict[str, Any]:
    assert isinstance(params, ChurnTrainParams)
    ctx.progress(0, 1, "training and evaluating the candidates")
    with session_scope(ctx.sessions) as session:
        report = train(session, now=dt.datetime.now(dt.UTC).replace(tzinfo=None), source=params.source,
                       as_of=params.as_of, c=params.c, exclude_attributes=params.exclude_attributes,
                       candidates=tuple(params.candidates) or CANDIDATES)
    ctx.progress(1, 1, f"trained {report.model_version} ({report.method})")
    return report.model_dump(mode="json")


def run_knowledge_ingest(ctx: JobContext, params: BaseModel) -> dict[str, Any]:
    assert isinstance(params, KnowledgeIngestParams)

    def progress(done: int, total: int) -> None:
        ctx.progress(done, total, f"embedded {done:,}/{total:,} chunks")

    report = ingest_documents(_documents(params), store=ctx.knowledge(), max_chunks=params.max_chunks,
                              replace_corpus=params.replace_corpus, progress=progress, cancelled=ctx.cancelled)
    return report.model_dump(mode="json")


@dataclass(frozen=True)
class Kind:
    params: type[BaseModel]
    run: Callable[[JobContext, BaseModel], dict[str, Any]]
    summary: str
    api: bool = True
    """Submittable through POST /api/v1/jobs (an ingest comes through the upload route, which checks it)."""


KINDS: dict[str, Kind] = {
    "churn_score": Kind(ChurnScoreParams, run_churn_score,
                        "Score every active account and keep the snapshot (`valuechain churn score`)"),
    "churn_train": Kind(ChurnTrainParams, run_churn_train,
                        "Train churn model candidates and activate the chosen one (`valuechain churn train`)"),
    "knowledge_ingest": Kind(KnowledgeIngestParams, run_knowledge_ingest,
                             "Embed uploaded documents (POST /api/v1/knowledge/documents)", api=False),
}
