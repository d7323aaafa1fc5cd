"""Put documents into the knowledge store, idempotently.

A chunk's id is the hash of its content, so re-ingesting an unchanged file embeds
nothing. When a source changes, its new chunks are added first and then the ones no
longer produced are deleted, so a search in between never finds the source empty.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path

from pydantic import BaseModel

from core.settings import Settings
from knowledge.chunking import CHUNKER_VERSION, Chunk, chunk_document
from knowledge.embeddings import MODEL_ID
from knowledge.loaders import SUPPORTED_SUFFIXES, Document, UnsupportedDocument, load_document
from knowledge.store import KnowledgeStore, Origin
from tools.errors import ToolInputError

log = logging.getLogger(__name__)

CORPUS_DIR = Path(__file__).resolve().parent / "corpus"
FINGERPRINT_KEY = "corpus_fingerprint"
EMBED_BATCH = 32

#: Called as progress(done, total) while chunks are embedded.
ProgressFn = Callable[[int, int], None]

SOURCE_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,199}")
"""A source id a user document may take: letters, digits, `.`, `_`, `-`; no path separators."""


class SourceIdInvalid(ToolInputError):
    """A document's source id (front-matter `id` or file name) is not a valid id."""


class CorpusSourceTaken(ToolInputError):
    """A user document claims the source id of a product corpus document."""

    def __init__(self, sources: Sequence[str]) -> None:
        shown = ", ".join(repr(s) for s in sources)
        super().__init__(
            f"source id {shown} belongs to the product's knowledge corpus; give your document another `id:` "
            "in its front matter (or another file name), or ask explicitly to replace the corpus document"
        )
        self.sources = list(sources)


class IngestCancelled(Exception):
    """An ingest stopped between embedding batches on request; the chunks it had added were removed."""

    def __init__(self, done: int, total: int) -> None:
        super().__init__(f"ingest cancelled after {done:,} of {total:,} chunks; nothing was kept")
        self.done = done
        self.total = total


class IngestTooLarge(ToolInputError):
    """An ingest would embed more chunks than its cap allows; nothing was written."""

    def __init__(self, chunks: int, cap: int) -> None:
        super().__init__(
            f"these documents make {chunks:,} new chunks to embed; at most {cap:,} are embedded per upload. "
            "Nothing was ingested: send fewer or smaller documents, or use `valuechain knowledge ingest`"
        )
        self.chunks = chunks
        self.cap = cap


def check_source_ids(docs: Sequence[Document]) -> None:
    """Refuse a document whose source id could pass for a path or a corpus id's look-alike."""
    for doc in docs:
        if not SOURCE_ID.fullmatch(doc.source):
            raise SourceIdInvalid(
                f"{doc.path or doc.source!r}: source id {doc.source[:80]!r} is not valid: use 1-200 letters, "
                "digits, '.', '_' or '-', not starting with '.' or '-' (no '/', no spaces)"
            )


def corpus_sources(store: KnowledgeStore, corpus_dir: Path = CORPUS_DIR) -> set[str]:
    """Source ids of the product corpus: those indexed and those on disk (indexed or not yet)."""
    on_disk = {load_document(f).source for f in corpus_files(corpus_dir)}
    return on_disk | set(store.ids_by_source("corpus"))


def claimed_corpus_sources(
    docs: Sequence[Document], *, store: KnowledgeStore, replace: bool = False, corpus_dir: Path = CORPUS_DIR
) -> list[str]:
    """Corpus source ids that `docs` claim; a `CorpusSourceTaken` unless `replace` says to take them."""
    taken = sorted({d.source for d in docs} & corpus_sources(store, corpus_dir))
    if taken and not replace:
        raise CorpusSourceTaken(taken)
    return taken


class SourceReport(BaseModel):
    """What one ingest did to one source."""

    source: str
    path: str
    title: str
    chunks: int
    added: int
    removed: int


class IngestReport(BaseModel):
    """What an ingest run did. `embedded` counts chunks sent through the model."""

    files: int
    chunks: int
    added: int
    removed: int
    unchanged: int
    embedded: int
    sources: list[SourceReport]


class CorpusIndexReport(BaseModel):
    """Result of `ensure_corpus_index`: whether it built, updated or reused the index."""

    status: str  # "built" | "updated" | "unchanged" | "empty"
    fingerprint: str
    documents: int
    chunks: int
    ingest: IngestReport | None = None


def collect_files(paths: Iterable[Path]) -> list[Path]:
    """Supported files among `paths`; folders are searched recursively.

    Raises:
        FileNotFoundError: a path does not exist.
        UnsupportedDocument: a file named explicitly has an unsupported type.
    """
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(
                p
                for p in sorted(path.rglob("*"))
                if p.is_file()
                and p.suffix.lower() in SUPPORTED_SUFFIXES
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        elif path.is_file():
            if path.suffix.lower() not in SUPPORTED_SUFFIXES:
                raise UnsupportedDocument(
                    f"{str(path)!r}: unsupported file type {path.suffix or '(none)'!r}; "
                    f"supported: {', '.join(sorted(SUPPORTED_SUFFIXES))}"
                )
            files.append(path)
        else:
            raise FileNotFoundError(f"no such file or folder: {str(path)!r}")
    unique: dict[Path, Path] = {}
    for f in files:
        unique.setdefault(f.resolve(), f)
    return list(unique.values())


def load_documents(files: Sequence[Path], *, base: Path | None = None) -> list[Document]:
    """Load files; two files may not claim the same source id."""
    docs: list[Document] = []
    seen: dict[str, Path] = {}
    for f in files:
        shown = str(f.resolve().relative_to(base)) if base else str(f)
        doc = load_document(f, display_path=shown)
        if doc.source in seen:
            raise ToolInputError(
                f"{str(f)!r} and {str(seen[doc.source])!r} both have source id {doc.source!r}; "
                "give one an `id:` in its front matter or rename it"
            )
        seen[doc.source] = f
        docs.append(doc)
    return docs


Plan = list[tuple[Document, list[Chunk], list[Chunk], set[str]]]
"""Per document: (document, all its chunks, the chunks to embed, its stale chunk ids)."""


def _plan(docs: Sequence[Document], store: KnowledgeStore, origin: Origin) -> Plan:
    plans: Plan = []
    for doc in docs:
        chunks = chunk_document(doc)
        existing = store.ids_for_source(doc.source, origin)
        new_ids = {c.id for c in chunks}
        plans.append((doc, chunks, [c for c in chunks if c.id not in existing], existing - new_ids))
    return plans


def chunks_to_embed(docs: Sequence[Document], *, store: KnowledgeStore, origin: Origin = "user") -> int:
    """How many new chunks ingesting `docs` would embed (unchanged chunks cost nothing)."""
    return sum(len(new) for _, _, new, _ in _plan(docs, store, origin))


def ingest_documents(
    docs: Sequence[Document],
    *,
    store: KnowledgeStore,
    origin: Origin = "user",
    progress: ProgressFn | None = None,
    max_chunks: int | None = None,
    replace_corpus: Collection[str] = (),
    cancelled: Callable[[], bool] | None = None,
) -> IngestReport:
    """Bring the store in line with `docs`: add new chunks, drop each source's stale ones.

    `max_chunks` caps the chunks to embed: over it, an `IngestTooLarge` before anything is
    written. `replace_corpus` names corpus sources these (user) documents replace: their corpus
    chunks are deleted once the new ones are in, and the corpus index leaves them out from then on.
    `cancelled` is asked before each embedding batch and once after the last: when it says yes,
    the chunks this ingest added are deleted again and `IngestCancelled` is raised, so the store
    is as it was (stale chunks and corpus chunks are only deleted after the last batch).
    """
    plans = _plan(docs, store, origin)
    to_embed = [c for _, _, new, _ in plans for c in new]
    total = len(to_embed)
    if max_chunks is not None and total > max_chunks:
        raise IngestTooLarge(total, max_chunks)
    # ids another source already holds (identical content) must survive a cancelled ingest
    held = set(store.collection.get(ids=[c.id for c in to_embed], include=[])["ids"]) if cancelled and to_embed else set()
    added: list[str] = []
    if progress:
        progress(0, total)
    done = 0
    while True:
        if cancelled is not None and cancelled():
            store.delete_ids(cid for cid in added if cid not in held)
            raise IngestCancelled(done, total)
        if done >= total:
            break
        part = to_embed[done : done + EMBED_BATCH]
        store.add_chunks(part, store.embed([c.embed_text for c in part]), origin=origin)
        added.extend(c.id for c in part)
        done += len(part)
        if progress:
            progress(done, total)
    stale = [cid for _, _, _, old in plans for cid in old]
    for source in replace_corpus:
        stale.extend(store.ids_for_source(source, "corpus"))
    store.delete_ids(stale)
    if to_embed or stale:
        store.update_metadata()

    sources = [
        SourceReport(
            source=doc.source,
            path=doc.path,
            title=doc.title,
            chunks=len(chunks),
            added=len(new),
            removed=len(old),
        )
        for doc, chunks, new, old in plans
    ]
    all_chunks = sum(s.chunks for s in sources)
    return IngestReport(
        files=len(docs),
        chunks=all_chunks,
        added=len(to_embed),
        removed=len(stale),
        unchanged=all_chunks - len(to_embed),
        embedded=len(to_embed),
        sources=sources,
    )


def ingest(
    paths: Iterable[Path | str],
    *,
    store: KnowledgeStore,
    origin: Origin = "user",
    progress: ProgressFn | None = None,
) -> IngestReport:
    """Ingest Markdown, text, HTML and PDF files (folders recursively) into `store`.

    Idempotent: unchanged chunks are neither re-embedded nor rewritten; a changed
    source's stale chunks are deleted. The source id is the front-matter `id` or the
    file name without its extension, so re-ingesting an edited file replaces it.
    """
    files = collect_files(Path(p) for p in paths)
    return ingest_documents(load_documents(files), store=store, origin=origin, progress=progress)


def corpus_files(corpus_dir: Path = CORPUS_DIR) -> list[Path]:
    if not corpus_dir.is_dir():
        return []
    return collect_files([corpus_dir])


def corpus_fingerprint(files: Sequence[Path], corpus_dir: Path = CORPUS_DIR) -> str:
    """Hash of the corpus files, the chunker and the model: any change means re-index."""
    digest = hashlib.sha256(f"chunker={CHUNKER_VERSION};model={MODEL_ID}".encode())
    for f in sorted(files, key=lambda p: str(p.relative_to(corpus_dir))):
        digest.update(b"\x00" + str(f.relative_to(corpus_dir)).encode() + b"\x00")
        digest.update(f.read_bytes())
    return digest.hexdigest()


def ensure_corpus_index(
    store: KnowledgeStore | None = None,
    *,
    settings: Settings | None = None,
    corpus_dir: Path = CORPUS_DIR,
    progress: ProgressFn | None = None,
    force: bool = False,
) -> CorpusIndexReport:
    """Index the product's framework corpus: build on first start, reuse after.

    Compares a fingerprint of the corpus files (kept in the collection metadata) with
    the files on disk; only a difference (or `force`) triggers an ingest, which itself
    embeds only changed chunks. Without `store`, the store configured by `settings`
    (default: the environment) is used. Corpus documents that were deleted from disk are
    removed from the store; users' own documents are never touched.
    """
    store = store or KnowledgeStore.from_settings(settings)
    files = corpus_files(corpus_dir)
    fingerprint = corpus_fingerprint(files, corpus_dir)
    if not files:
        log.warning("knowledge corpus folder %r holds no documents", str(corpus_dir))
    stored = store.metadata().get(FINGERPRINT_KEY)
    if stored == fingerprint and not force:
        return CorpusIndexReport(
            status="unchanged",
            fingerprint=fingerprint,
            documents=len(files),
            chunks=sum(len(ids) for ids in store.ids_by_source("corpus").values()),
        )
    base = corpus_dir.resolve().parent.parent  # paths recorded relative to the repository
    docs = load_documents(files, base=base)
    replaced = {d.source for d in docs} & set(store.ids_by_source("user"))
    if replaced:  # a user document took the corpus id on purpose (claimed_corpus_sources): it stays
        log.warning("corpus documents replaced by users' documents are left out: %s", ", ".join(sorted(replaced)))
        docs = [d for d in docs if d.source not in replaced]
    report = ingest_documents(docs, store=store, origin="corpus", progress=progress)
    current = {d.source for d in docs}
    gone = [
        cid for source, ids in store.ids_by_source("corpus").items() if source not in current for cid in ids
    ]
    store.delete_ids(gone)
    report.removed += len(gone)
    store.update_metadata(**{FINGERPRINT_KEY: fingerprint})
    return CorpusIndexReport(
        status="empty" if not files else ("built" if stored is None else "updated"),
        fingerprint=fingerprint,
        documents=len(files),
        chunks=report.chunks,
        ingest=report,
    )
