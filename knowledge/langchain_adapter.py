"""LangChain `Embeddings` over the packaged offline MiniLM model.

Kept apart from `knowledge.embeddings` because langchain-core comes with the `llm`
extra, while the knowledge store itself needs only the `knowledge` extra.
"""

from __future__ import annotations

from langchain_core.embeddings import Embeddings

from knowledge.embeddings import DEFAULT_BATCH_SIZE, DEFAULT_THREADS, MiniLMEmbedder, shared_embedder


class ValueChainEmbeddings(Embeddings):
    """all-MiniLM-L6-v2 int8 embeddings for LangChain, computed locally (no network)."""

    def __init__(
        self,
        *,
        embedder: MiniLMEmbedder | None = None,
        threads: int = DEFAULT_THREADS,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        self.embedder = embedder or shared_embedder(threads)
        self.batch_size = batch_size

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embedder.embed(texts, batch_size=self.batch_size).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]
