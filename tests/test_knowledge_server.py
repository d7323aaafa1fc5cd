"""The knowledge store against a real Chroma server (`chroma run`), as a team deployment runs it.

`CHROMA_HOST` switches `knowledge.store.make_client` to `chromadb.HttpClient`. The store tests of
tests/test_knowledge.py are imported here and run a second time with `store` bound to a collection
on a `chroma run` server, so the server path must pass the very same assertions as the embedded one
(same hits, same scores' order, same retrieval metrics). On top: a direct comparison of hits
between the two, the collection reopened by a fresh client without an embedding function (the
registered one is rebuilt, never Chroma's downloading default), and the model-mismatch fault.
The server is started once per module; each test gets its own collection.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import chromadb
import numpy as np
import pytest
from chroma_server import ChromaServer, running_chroma
from chromadb.utils.embedding_functions import onnx_mini_lm_l6_v2
from test_knowledge import (  # noqa: F401  (pytest collects the imported tests here)
    FIXTURES,
    test_corpus_index_builds_once_then_follows_changes,
    test_duplicate_source_ids_in_one_ingest_are_refused,
    test_empty_store_returns_no_results,
    test_ingest_is_idempotent,
    test_reingest_replaces_stale_chunks_only,
    test_retrieval_eval_metrics,
    test_search_returns_cited_chunks,
)

from core.settings import Settings
from knowledge.embeddings import EMBEDDING_FUNCTION_NAME
from knowledge.ingest import ingest
from knowledge.search import search_knowledge
from knowledge.store import KnowledgeStore, make_client
from tools.errors import DataFault


@pytest.fixture(scope="module")
def chroma(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChromaServer]:
    with running_chroma(tmp_path_factory.mktemp("chroma-server")) as server:
        yield server


@pytest.fixture(autouse=True)
def no_chroma_default_embedder(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chroma's default embedding function downloads a model: any call to it fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("Chroma's default (downloading) embedding function was used")

    monkeypatch.setattr(onnx_mini_lm_l6_v2.ONNXMiniLM_L6_V2, "__call__", refuse)
    monkeypatch.setattr(onnx_mini_lm_l6_v2.ONNXMiniLM_L6_V2, "_download_model_if_not_exists", refuse)


@pytest.fixture(name="docs")
def docs_copy(tmp_path: Path) -> Path:
    """A writable copy of the fixture documents (as test_knowledge's `docs`)."""
    target = tmp_path / "docs"
    shutil.copytree(FIXTURES, target, ignore=shutil.ignore_patterns("*.py"))
    return target


def server_settings(chroma: ChromaServer) -> Settings:
    return Settings(chroma_host=chroma.host, chroma_port=chroma.port)


@pytest.fixture
def collection_name() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def store(chroma: ChromaServer, collection_name: str) -> Iterator[KnowledgeStore]:
    """A store on the Chroma server through the CHROMA_HOST settings path (replaces test_knowledge's)."""
    s = KnowledgeStore.from_settings(server_settings(chroma), collection_name=collection_name)
    assert s.client.get_settings().chroma_api_impl.endswith("FastAPI")  # the HTTP client, not embedded
    yield s
    s.client.delete_collection(collection_name)


def test_server_store_is_on_the_server_not_on_disk(store: KnowledgeStore, chroma: ChromaServer,
                                                    tmp_path: Path) -> None:
    assert store.count() == 0
    direct = chromadb.HttpClient(host=chroma.host, port=chroma.port)
    assert store.collection_name in [c.name for c in direct.list_collections()]
    assert not (tmp_path / "chroma").exists()


QUERIES = (
    "how often should I descale the boiler?",
    "ridges of debris left by glaciers",
    "explosive steep ash cone",
    "starfish and hermit crabs",
    "which gear for climbing a hill",
    "Mauna Loa basalt lava",
)


def test_server_and_embedded_return_the_same_hits(store: KnowledgeStore, docs: Path, tmp_path: Path) -> None:
    embedded = KnowledgeStore.at_path(tmp_path / "embedded")
    a = ingest([docs], store=embedded)
    b = ingest([docs], store=store)
    assert (a.added, a.chunks) == (b.added, b.chunks) and store.count() == embedded.count()
    for mode in ("vector", "hybrid"):
        for query in QUERIES:
            here = embedded.search(query, 5, mode=mode)
            there = store.search(query, 5, mode=mode)
            assert [h.id for h in there] == [h.id for h in here], (mode, query)
            assert np.allclose([h.score for h in there], [h.score for h in here], atol=1e-4), (mode, query)


def test_server_collection_reopens_with_the_registered_embedding_function(
    store: KnowledgeStore, chroma: ChromaServer, docs: Path
) -> None:
    ingest([docs / "tidal-pools.md"], store=store)
    fresh = make_client(server_settings(chroma))  # as another worker would
    collection = fresh.get_collection(store.collection_name)  # no embedding function passed
    assert collection.configuration_json["embedding_function"]["name"] == EMBEDDING_FUNCTION_NAME
    res = collection.query(query_texts=["what do anemones do at low tide"], n_results=1)
    assert (res["metadatas"] or [[]])[0][0]["section"] == "Survival at low tide"
    hit = search_knowledge(store=KnowledgeStore(fresh, collection_name=store.collection_name),
                           query="starfish and hermit crabs", k=1).results[0]
    assert hit.source == "tidal-pools"


def test_server_collection_of_another_model_is_a_data_fault(chroma: ChromaServer, collection_name: str) -> None:
    import knowledge.embeddings

    settings = server_settings(chroma)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(knowledge.embeddings, "MODEL_ID", "another-model")
        assert KnowledgeStore.from_settings(settings, collection_name=collection_name).count() == 0
    try:
        with pytest.raises(DataFault, match=r"with .* model 'another-model'.*valuechain knowledge build"):
            KnowledgeStore.from_settings(settings, collection_name=collection_name).count()
    finally:
        make_client(settings).delete_collection(collection_name)
