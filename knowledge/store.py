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

import chromadb
import numpy as np
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection
from chromadb.config import Settings as ChromaSettings

from core.settings import Settings, get_settings
from knowledge.bm25 import BM25Index
from knowledge.chunking import Chunk, embed_text
from knowledge.embeddings import ValueChainEmbeddingFunction, check_embedding_config

SearchMode = Literal["vector", "hybrid"]
SEARCH_MODES: tuple[SearchMode, ...] = get_args(SearchMode)
Origin = Literal["corpus", "user"]

COLLECTION_NAME = "valuechain_knowledge"
# Chosen on the retrieval eval (docs/KNOWLEDGE.md); `knowledge eval --mode both` re-measures.
DEFAULT_MODE: SearchMode = "hybrid"
# Weight of the (min-max scaled) cosine against the (max-scaled) BM25 score in hybrid
# ranking. The eval is flat between 0.5 and 0.7 (docs/KNOWLEDGE.md); 0.6 is its middle.
HYBRID_VECTOR_WEIGHT = 0.6
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
        self._lexical: _LexicalView | None = None
        self._lexical_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **kwargs: Any) -> KnowledgeStore:
        return cls(make_client(settings), **kwargs)

    @classmethod
    def at_path(cls, path: Path | str, **kwargs: Any) -> KnowledgeStore:
        """An embedded store in folder `path` (tests, benchmarks)."""
        Path(path).mkdir(parents=True, exist_ok=True)
        return cls(chromadb.PersistentClient(path=str(path), settings=_chroma_settings()), **kwargs)

    # -- the collection ---------------------------------------------------------

    @property
    def collection(self) -> Collection:
        """The collection (created on first use); a `DataFault` when it was embedded with
        another function or model than this build's."""
        if self._collection is None:
            try:
                collection = self.client.get_or_create_collection(
                    self.collection_name,
                    configuration={"hnsw": {"space": "cosine"}},
                    embedding_function=self.embedding_function,  # type: ignore[arg-type]
                )
            except ValueError:
                # Chroma refuses a stored embedding function of another name; say which, and what to do
                stored = self.client.get_collection(self.collection_name).configuration_json
                check_embedding_config(stored.get("embedding_function"), collection=self.collection_name)
                raise
            check_embedding_config(
                collection.configuration_json.get("embedding_function"), collection=self.collection_name
            )
            self._collection = collection
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
        return self._vector_hits(self.embed([query]), k)

    def _vector_hits(self, vector: np.ndarray, k: int) -> list[Hit]:
        n = min(k, self.count())
        if n <= 0:
            return []
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
        """Best chunks by BM25 over title, section and text (score: BM25 / best BM25)."""
        view = self._lexical_index()
        top = view.index.top(query, k)
        best = top[0][1] if top else 1.0
        return [_with_score(view.hits[i], score / best) for i, score in top]

    def hybrid_search(self, query: str, k: int, *, depth: int | None = None) -> list[Hit]:
        """Weighted fusion of cosine similarity and BM25 over both rankings' candidates.

        Candidates are the top `depth` chunks of each ranking. Each gets
        HYBRID_VECTOR_WEIGHT x its cosine min-max scaled over the candidates plus the
        rest x its BM25 divided by the query's best BM25, so the score lies in [0, 1].
        Chosen over reciprocal rank fusion on the retrieval eval (docs/KNOWLEDGE.md):
        RRF drops a chunk that is first by BM25 but absent from the vector list below
        chunks that are mediocre in both.
        """
        depth = depth or max(4 * k, 40)
        vector = self.embed([query])
        by_id = {h.id: h for h in self._vector_hits(vector, depth)}
        cosine = {cid: h.score for cid, h in by_id.items()}
        view = self._lexical_index()
        bm25 = {view.hits[i].id: score for i, score in view.index.scores(query).items()}
        for cid, _ in sorted(bm25.items(), key=lambda kv: (-kv[1], kv[0]))[:depth]:
            by_id.setdefault(cid, view.hits[view.position[cid]])
        missing = [cid for cid in by_id if cid not in cosine]
        if missing:
            got = self.collection.get(ids=missing, include=["embeddings"])
            embeddings = np.asarray(got["embeddings"], dtype=np.float32)
            for cid, similarity in zip(got["ids"], embeddings @ vector[0], strict=True):
                cosine[cid] = float(similarity)
        if not by_id:
            return []
        lo, hi = min(cosine.values()), max(cosine.values())
        best_bm25 = max(bm25.values(), default=0.0) or 1.0
        fused = {
            cid: HYBRID_VECTOR_WEIGHT * ((cosine[cid] - lo) / (hi - lo) if hi > lo else 1.0)
            + (1 - HYBRID_VECTOR_WEIGHT) * bm25.get(cid, 0.0) / best_bm25
            for cid in by_id
        }
        order = sorted(fused, key=lambda cid: (-fused[cid], cid))[:k]
        return [_with_score(by_id[cid], fused[cid]) for cid in order]

    def _lexical_index(self) -> _LexicalView:
        """The BM25 view of the collection, rebuilt when its revision or size changed."""
        revision = f"{self.metadata().get('revision', '')}:{self.count()}"
        with self._lexical_lock:
            if self._lexical is None or self._lexical.revision != revision:
                got = self.collection.get(include=["documents", "metadatas"])
                hits = [
                    _hit(cid, doc, meta, 0.0)
                    for cid, doc, meta in zip(
                        got["ids"], got["documents"] or [], got["metadatas"] or [], strict=True
                    )
                ]
                index = BM25Index([embed_text(h.title, h.section, h.text) for h in hits])
                self._lexical = _LexicalView(revision, index, hits, {h.id: i for i, h in enumerate(hits)})
            return self._lexical


@dataclass(frozen=True)
class _LexicalView:
    revision: str
    index: BM25Index
    hits: list[Hit]
    position: dict[str, int]  # chunk id -> index in `hits`


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
