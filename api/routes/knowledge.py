"""Framework knowledge: cited search (any role) and document ingest (analyst role).

An upload with more than `knowledge.jobs.JOB_THRESHOLD_CHUNKS` new chunks to embed answers 202 with
a `knowledge_ingest` batch job (jobs/, kept in the `jobs` table): GET its progress, DELETE it to
cancel (nothing of it is kept)."""

from __future__ import annotations

import datetime as dt
import re
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, HTTPException, Query, Request, Response, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse

from api.deps import AUTH_RESPONSES, AnalystDep, ReaderDep, SessionDep, SettingsDep, get_knowledge_store
from api.metrics import observe_tool
from api.routes.jobs import get_job_queue, job_view, visible_job
from jobs import records
from jobs.kinds import document_params
from jobs.queue import JobQueue, submit
from knowledge import jobs as jobs_module
from knowledge.ingest import (
    CorpusSourceTaken,
    IngestReport,
    IngestTooLarge,
    check_source_ids,
    chunks_to_embed,
    claimed_corpus_sources,
    ingest_documents,
    load_documents,
)
from knowledge.jobs import FINISHED, IngestJobView
from knowledge.loaders import SUPPORTED_SUFFIXES, UnsupportedDocument
from knowledge.search import MAX_K, KnowledgeResults, search_knowledge
from tools.errors import ToolInputError

router = APIRouter(prefix="/api/v1/knowledge", tags=["knowledge"])

MAX_FILES = 20
MAX_NAME = 200
"""Longest file name accepted (a name is also a path component: most file systems stop at 255 bytes)."""
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")

# Typed as Any so importing this module does not load Chroma; the store is created on first use.
KnowledgeDep = Annotated[Any, Depends(get_knowledge_store)]

JobsDep = Annotated[JobQueue, Depends(get_job_queue)]
JobId = Annotated[str, PathParam(min_length=32, max_length=32, pattern="^[0-9a-f]{32}$",
                                 description="The job id the upload answered with")]


@router.get(
    "/search",
    response_model=KnowledgeResults,
    summary="Search the knowledge base; cited chunks (source, section), best first",
    responses={**AUTH_RESPONSES, 422: {"description": "Empty query or k out of range"}},
)
def search_route(
    store: KnowledgeDep,
    _user: ReaderDep,
    q: Annotated[
        str,
        Query(
            min_length=1,
            max_length=2000,
            description="Question or key phrase",
            examples=["what are the support activities"],
        ),
    ],
    k: Annotated[int, Query(ge=1, le=MAX_K, description="How many chunks")] = 5,
) -> KnowledgeResults:
    try:
        with observe_tool("search_knowledge"):
            return search_knowledge(store=store, query=q, k=k)
    except ToolInputError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None


def _safe_filename(name: str | None, index: int) -> str:
    base = Path(name or "").name
    stem, dot, suffix = base.rpartition(".")
    if not dot:
        stem, suffix = base, ""
    stem = _SAFE_NAME.sub("-", stem).strip("-.") or f"upload-{index}"
    return f"{stem}.{suffix.lower()}" if suffix else stem


def _too_large(detail: str) -> HTTPException:
    return HTTPException(status_code=413, detail=detail)


@router.post(
    "/documents",
    response_model=IngestReport,
    summary="Ingest Markdown, text, HTML or PDF files (multipart `files`); idempotent by content hash",
    description="Bounded per request: at most `KNOWLEDGE_UPLOAD_MAX_BYTES` (10 MiB) for all files together "
    f"and `KNOWLEDGE_UPLOAD_MAX_CHUNKS` (200) new chunks to embed, {MAX_FILES} files, file names of at most "
    f"{MAX_NAME} characters; over a cap nothing is ingested. A document's source id (front-matter `id`, else "
    "the file name) is 1-200 letters, digits, `.`, `_` or `-`; the id of a product corpus document is refused "
    "unless an admin sends `replace_corpus=true`. Larger collections: `valuechain knowledge ingest`.",
    responses={
        **AUTH_RESPONSES,
        202: {"model": IngestJobView, "description": "More new chunks than one embedding batch (32): the ingest "
              "runs as a background job; follow it at the `Location` (GET), cancel it there (DELETE)"},
        403: {"description": "`replace_corpus=true` without the admin role"},
        409: {"description": "A document claims the source id of a product corpus document"},
        413: {"description": "Over the upload's size or chunk cap: nothing was ingested"},
        422: {"description": "Unsupported or unreadable file (e.g. broken front matter), invalid source id, "
              "file name too long, or no files"},
    },
)
def ingest_route(
    store: KnowledgeDep,
    settings: SettingsDep,
    user: AnalystDep,
    jobs: JobsDep,
    request: Request,
    files: Annotated[
        list[UploadFile],
        File(
            description="One or more .md, .markdown, .txt, .html, .htm or .pdf files; the source id is "
            "the front-matter `id` or the file name without its extension"
        ),
    ],
    replace_corpus: Annotated[
        bool, Query(description="Admin only: let a document replace the product corpus document of its id")
    ] = False,
) -> IngestReport | JSONResponse:
    if replace_corpus and not user.can("admin"):
        raise HTTPException(status_code=403, detail="only an admin may replace a corpus document (replace_corpus)")
    if not files:
        raise HTTPException(status_code=422, detail="no files: send one or more as multipart field 'files'")
    if len(files) > MAX_FILES:
        raise HTTPException(
            status_code=422, detail=f"at most {MAX_FILES} files per request; got {len(files)}"
        )
    cap = settings.knowledge_upload_max_bytes
    with tempfile.TemporaryDirectory(prefix="vcc-upload-") as tmp:
        paths: list[Path] = []
        names: set[str] = set()
        total = 0
        for i, upload in enumerate(files, start=1):
            given = upload.filename or ""
            if len(given) > MAX_NAME:
                raise HTTPException(
                    status_code=422,
                    detail=f"file name {given[:40]!r}... is {len(given)} characters long; at most {MAX_NAME}",
                )
            name = _safe_filename(given, i)
            suffix = Path(name).suffix.lower()
            if suffix not in SUPPORTED_SUFFIXES:
                raise HTTPException(
                    status_code=422,
                    detail=f"unsupported file type {suffix or '(none)'!r} for {upload.filename!r}; "
                    f"supported: {', '.join(sorted(SUPPORTED_SUFFIXES))}",
                )
            if name in names:
                raise HTTPException(status_code=422, detail=f"file name {name!r} is given twice")
            names.add(name)
            data = upload.file.read(cap - total + 1)
            total += len(data)
            if total > cap:
                raise _too_large(f"the files are larger than {cap / 2**20:g} MiB together; nothing was ingested")
            path = Path(tmp) / name
            path.write_bytes(data)
            paths.append(path)
        try:
            with observe_tool("ingest_documents"):
                # Paths are shown relative to the upload folder: the original file names.
                docs = load_documents(paths, base=Path(tmp).resolve())
                check_source_ids(docs)
                replaced = claimed_corpus_sources(docs, store=store, replace=replace_corpus)
                cap = settings.knowledge_upload_max_chunks
                pending = chunks_to_embed(docs, store=store)
                if pending > cap:
                    raise IngestTooLarge(pending, cap)
                if pending > jobs_module.JOB_THRESHOLD_CHUNKS:
                    job = submit(request.app.state.sessionmaker, jobs, "knowledge_ingest",
                                 {"documents": document_params(docs), "max_chunks": cap,
                                  "replace_corpus": sorted(replaced)}, created_by=user.name, total=pending)
                    view = _ingest_view(records.view(job))
                    return JSONResponse(status_code=202, content=view.model_dump(mode="json"),
                                        headers={"Location": f"{router.prefix}/jobs/{job.id}"})
                return ingest_documents(docs, store=store, max_chunks=cap, replace_corpus=replaced)
        except CorpusSourceTaken as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from None
        except IngestTooLarge as exc:
            raise _too_large(str(exc)) from None
        except (UnsupportedDocument, ToolInputError) as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None


def _ingest_view(job: records.JobView) -> IngestJobView:
    """A `knowledge_ingest` job in the shape this route has always answered with."""

    def utc(t: dt.datetime | None) -> dt.datetime | None:
        return None if t is None else t.replace(tzinfo=dt.UTC)

    return IngestJobView(id=job.id, state=job.state, done=job.done, total=job.total,
                         sources=job.params.get("sources", []), created_by=job.created_by,
                         created_at=utc(job.created_at) or job.created_at, finished_at=utc(job.finished_at),
                         cancel_requested=job.cancel_requested,
                         report=IngestReport.model_validate(job.result) if job.state == "done" and job.result
                         else None, error=job.error, retryable=job.retryable)


@router.get(
    "/jobs/{job_id}",
    response_model=IngestJobView,
    summary="Progress of an ingest job: state, chunks done of total, the report once done",
    responses={**AUTH_RESPONSES, 404: {"description": "No such job (or another user's)"}},
)
def job_route(job_id: JobId, request: Request, session: SessionDep, user: AnalystDep) -> IngestJobView:
    job = visible_job(request, session, job_id, user, kind="knowledge_ingest")
    return _ingest_view(job_view(request, job))


@router.delete(
    "/jobs/{job_id}",
    response_model=IngestJobView,
    status_code=202,
    summary="Cancel an ingest job: it stops before its next batch and removes what it added",
    responses={**AUTH_RESPONSES, 404: {"description": "No such job (or another user's)"},
               409: {"description": "The job has already finished"}},
)
def cancel_route(job_id: JobId, request: Request, session: SessionDep, user: AnalystDep,
                 response: Response) -> IngestJobView:
    job = visible_job(request, session, job_id, user, kind="knowledge_ingest")
    if job.state in FINISHED:
        raise HTTPException(status_code=409, detail=f"ingest job {job_id!r} has already finished ({job.state})")
    records.request_cancel(session, job_id)  # the job reads it from the row between batches, in any worker
    session.refresh(job)
    response.headers["Location"] = f"{router.prefix}/jobs/{job_id}"
    return _ingest_view(job_view(request, job))
