"""Framework knowledge: cited search (any role) and document ingest (analyst role)."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, HTTPException, Query, UploadFile

from api.deps import AUTH_RESPONSES, AnalystDep, ReaderDep, get_knowledge_store
from api.metrics import observe_tool
from knowledge.ingest import IngestReport, ingest_documents, load_documents
from knowledge.loaders import SUPPORTED_SUFFIXES, UnsupportedDocument
from knowledge.search import MAX_K, KnowledgeResults, search_knowledge
from tools.errors import ToolInputError

router = APIRouter(prefix="/api/v1/knowledge", tags=["knowledge"])

#: Largest upload accepted, per file.
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_FILES = 20
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")

# Typed as Any so importing this module does not load Chroma; the store is created on first use.
KnowledgeDep = Annotated[Any, Depends(get_knowledge_store)]


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


@router.post(
    "/documents",
    response_model=IngestReport,
    summary="Ingest Markdown, text, HTML or PDF files (multipart `files`); idempotent by content hash",
    responses={
        **AUTH_RESPONSES,
        413: {"description": "A file is larger than 20 MiB"},
        422: {"description": "Unsupported file type, unreadable file or no files"},
    },
)
def ingest_route(
    store: KnowledgeDep,
    _user: AnalystDep,
    files: Annotated[
        list[UploadFile],
        File(
            description="One or more .md, .markdown, .txt, .html, .htm or .pdf files; the source id is "
            "the front-matter `id` or the file name without its extension"
        ),
    ],
) -> IngestReport:
    if not files:
        raise HTTPException(status_code=422, detail="no files: send one or more as multipart field 'files'")
    if len(files) > MAX_FILES:
        raise HTTPException(
            status_code=422, detail=f"at most {MAX_FILES} files per request; got {len(files)}"
        )
    with tempfile.TemporaryDirectory(prefix="vcc-upload-") as tmp:
        paths: list[Path] = []
        names: set[str] = set()
        for i, upload in enumerate(files, start=1):
            name = _safe_filename(upload.filename, i)
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
            data = upload.file.read(MAX_UPLOAD_BYTES + 1)
            if len(data) > MAX_UPLOAD_BYTES:
                raise HTTPException(
                    status_code=413,
                    detail=f"{upload.filename!r} is larger than {MAX_UPLOAD_BYTES // 2**20} MiB",
                )
            path = Path(tmp) / name
            path.write_bytes(data)
            paths.append(path)
        try:
            with observe_tool("ingest_documents"):
                # Paths are shown relative to the upload folder: the original file names.
                docs = load_documents(paths, base=Path(tmp).resolve())
                return ingest_documents(docs, store=store)
        except (UnsupportedDocument, ToolInputError) as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
