"""The knowledge store: one Chroma collection plus an in-memory BM25 view of it.

Embedded (`PersistentClient` at `settings.resolved_chroma_path`) by default; a Chroma
server (`HttpClient`) when `CHROMA_HOST` is set. Vectors come from the packaged
offline model (`knowledge.embeddings`), never from Chroma's downloading default.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection
from chromadb.config import Settings as ChromaSettings

from knowledge.bm25 import BM25Index
from knowledge.chunking import Chunk, embed_text
from knowledge.embeddings import ValueChainEmbeddingFunction
from valuechain.config import Settings, get_settings

SearchMode = Literal["vector", "hybrid"]
SEARCH_MODES: tuple[SearchMode, ...] = get_args(SearchMode)
Origin = Literal["corpus", "user"]

COLLECTION_NAME = "valuechain_knowledge"
# Chosen on the retrieval eval (docs/KNOWLEDGE.md); `knowledge eval --mode both` re-measures.
DEFAULT_MODE: SearchMode = "hybrid"
RRF_K = 60
_WRITE_BATCH = 256


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk. `score` is in [0, 1], higher is better; its meaning depends
    on the mode (cosine similarity for vector, fused rank score for hybrid)."""

    id: str
    source: str
    title: str
    section: str
    text: str
    score: float


def _chroma_settings() -> ChromaSettings:
    return ChromaSettings(anonymized_telemetry=False)


def make_client(settings: Settings | None = None) -> ClientAPI:
    """A Chroma client from settings: server when `chroma_host` is set, else embedded."""
    import chromadb

    settings = settings or get_settings()
    if settings.chroma_host:
        return chromadb.HttpClient(
            host=settings.chroma_host, port=settings.chroma_port, settings=_chroma_settings()
        )
    path = Path(settings.resolved_chroma_path)
    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=_chroma_settings())


class KnowledgeStore:
    """Chunks of framework knowledge and users' documents, searchable by meaning and words."""

    def __init__(
        self,
        client: ClientAPI,
        *,
        collection_name: str = COLLECTION_NAME,
        mode: SearchMode = DEFAULT_MODE,
        embedding_function: ValueChainEmbeddingFunction | None = None,
    ) -> None:
        if mode not in SEARCH_MODES:
            raise ValueError(f"unknown search mode {mode!r}; valid: {', '.join(SEARCH_MODES)}")
        self.client = client
        self.collection_name = collection_name
        self.mode: SearchMode = mode
        self.embedding_function = embedding_function or ValueChainEmbeddingFunction()
        self._collection: Collection | None = None
        self._lexical: tuple[str, BM25Index, list[Hit]] | None = None
        self._lexical_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **kwargs: Any) -> KnowledgeStore:
        return cls(make_client(settings), **kwargs)

    @classmethod
    def at_path(cls, path: Path | str, **kwargs: Any) -> KnowledgeStore:
        """An embedded store in folder `path` (tests, benchmarks)."""
        import chromadb

        Path(path).mkdir(parents=True, exist_ok=True)
        return cls(chromadb.PersistentClient(path=str(path), settings=_chroma_settings()), **kwargs)

    # -- the collection ---------------------------------------------------------

    @property
    def collection(self) -> Collection:
        if self._collection is None:
            self._collection = self.client.get_or_create_collection(
                self.collection_name,
                configuration={"hnsw": {"space": "cosine"}},
                embedding_function=self.embedding_function,  # type: ignore[arg-type]
            )
        return self._collection

    def count(self) -> int:
        return self.collection.count()

    def metadata(self) -> dict[str, Any]:
        """The collection's metadata as stored now (another process may have changed it)."""
        if self._collection is None:
            return dict(self.collection.metadata or {})  # fetched (or created) just now
        fresh = self.client.get_collection(
            self.collection_name,
            embedding_function=self.embedding_function,  # type: ignore[arg-type]
        )
        return dict(fresh.metadata or {})

    def update_metadata(self, **values: str) -> None:
        """Merge `values` into the collection metadata and mark the contents changed."""
        merged = {**self.metadata(), **values, "revision": uuid.uuid4().hex}
        self.collection.modify(metadata=merged)

    # -- writing ------------------------------------------------------------------

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.embedding_function.embedder.embed(
            list(texts), batch_size=self.embedding_function.batch_size
        )

    def ids_by_source(self, origin: Origin | None = None) -> dict[str, set[str]]:
        """Chunk ids grouped by source (optionally only those ingested with `origin`)."""
        where: Any = {"origin": origin} if origin else None
        got = self.collection.get(where=where, include=["metadatas"])
        out: dict[str, set[str]] = {}
        for cid, meta in zip(got["ids"], got["metadatas"] or [], strict=True):
            out.setdefault(str(meta.get("source", "")), set()).add(cid)
        return out

    def ids_for_source(self, source: str, origin: Origin) -> set[str]:
        """Chunk ids of `source` ingested with `origin` (corpus and user ids never mix)."""
        where: Any = {"$and": [{"source": source}, {"origin": origin}]}
        return set(self.collection.get(where=where, include=[])["ids"])

    def add_chunks(self, chunks: Sequence[Chunk], vectors: np.ndarray, *, origin: Origin) -> None:
        """Store chunks with their precomputed vectors (upsert: re-adding is harmless)."""
        for start in range(0, len(chunks), _WRITE_BATCH):
            part = chunks[start : start + _WRITE_BATCH]
            self.collection.upsert(
                ids=[c.id for c in part],
                embeddings=vectors[start : start + len(part)],
                documents=[c.text for c in part],
                metadatas=[{**c.metadata(), "origin": origin} for c in part],
            )

    def delete_ids(self, ids: Iterable[str]) -> None:
        batch = list(ids)
        for start in range(0, len(batch), _WRITE_BATCH):
            self.collection.delete(ids=batch[start : start + _WRITE_BATCH])

    # -- reading ------------------------------------------------------------------

    def search(self, query: str, k: int, *, mode: SearchMode | None = None) -> list[Hit]:
        """The `k` best chunks for `query` in `mode` (default: the store's mode)."""
        mode = mode or self.mode
        if mode == "vector":
            return self.vector_search(query, k)
        if mode == "hybrid":
            return self.hybrid_search(query, k)
        raise ValueError(f"unknown search mode {mode!r}; valid: {', '.join(SEARCH_MODES)}")

    def vector_search(self, query: str, k: int) -> list[Hit]:
        """Nearest chunks by cosine similarity of the embeddings."""
        n = min(k, self.count())
        if n <= 0:
            return []
        vector = self.embedding_function.embedder.embed([query])
        res = self.collection.query(
            query_embeddings=vector, n_results=n, include=["documents", "metadatas", "distances"]
        )
        hits = []
        for cid, doc, meta, dist in zip(
            res["ids"][0],
            (res["documents"] or [[]])[0],
            (res["metadatas"] or [[]])[0],
            (res["distances"] or [[]])[0],
            strict=True,
        ):
            hits.append(_hit(cid, doc, meta, max(0.0, 1.0 - float(dist))))
        return hits

    def lexical_search(self, query: str, k: int) -> list[Hit]:
        """Best chunks by BM25 over title, section and text."""
        index, hits = self._lexical_index()
        top = index.top(query, k)
        best = top[0][1] if top else 1.0
        return [_with_score(hits[i], score / best) for i, score in top]

    def hybrid_search(self, query: str, k: int, *, depth: int | None = None) -> list[Hit]:
        """Reciprocal rank fusion of the vector and BM25 rankings.

        The score is the fused value divided by its maximum (first in both lists), so
        1.0 means both rankings put the chunk first.
        """
        depth = depth or max(4 * k, 20)
        vector = self.vector_search(query, depth)
        lexical = self.lexical_search(query, depth)
        fused: dict[str, float] = {}
        by_id: dict[str, Hit] = {}
        for ranking in (vector, lexical):
            for rank, hit in enumerate(ranking, start=1):
                fused[hit.id] = fused.get(hit.id, 0.0) + 1.0 / (RRF_K + rank)
                by_id.setdefault(hit.id, hit)
        best = 2.0 / (RRF_K + 1)
        order = sorted(fused, key=lambda cid: (-fused[cid], cid))[:k]
        return [_with_score(by_id[cid], fused[cid] / best) for cid in order]

    def _lexical_index(self) -> tuple[BM25Index, list[Hit]]:
        revision = f"{self.metadata().get('revision', '')}:{self.count()}"
        with self._lexical_lock:
            if self._lexical is None or self._lexical[0] != revision:
                got = self.collection.get(include=["documents", "metadatas"])
                hits = [
                    _hit(cid, doc, meta, 0.0)
                    for cid, doc, meta in zip(
                        got["ids"], got["documents"] or [], got["metadatas"] or [], strict=True
                    )
                ]
                index = BM25Index([embed_text(h.title, h.section, h.text) for h in hits])
                self._lexical = (revision, index, hits)
            return self._lexical[1], self._lexical[2]


def _hit(cid: str, doc: str | None, meta: Any, score: float) -> Hit:
    meta = meta or {}
    return Hit(
        id=cid,
        source=str(meta.get("source", "")),
        title=str(meta.get("title", "")),
        section=str(meta.get("section", "")),
        text=doc or "",
        score=score,
    )


def _with_score(hit: Hit, score: float) -> Hit:
    return Hit(hit.id, hit.source, hit.title, hit.section, hit.text, round(score, 4))
