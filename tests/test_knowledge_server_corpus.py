"""The product's corpus on a real Chroma server: the off-topic gate and the retrieval eval, same as embedded.

The corpus is embedded once, through the server (`ensure_corpus_index` into the eval's collection,
as `valuechain eval run retrieval` does with CHROMA_HOST set). The off-topic tests of
tests/test_knowledge_scope.py are imported and run on that collection. For the comparison the
server's rows (ids, vectors, texts, metadata, fingerprint) are copied into an embedded store in the
eval work folder, so both runs search identical contents without embedding the corpus twice, and
`valuechain eval run retrieval` must give the same metrics and the same ranked sources for every question not answered first.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from chroma_server import ChromaServer, running_chroma
from test_knowledge_scope import (  # noqa: F401  (pytest collects the imported tests here)
    test_every_retrieval_eval_question_is_on_topic,
    test_off_topic_questions_are_flagged,
)
from typer.testing import CliRunner

from core.settings import Settings, get_settings
from evals.fixtures import EVAL_CORPUS_COLLECTION, corpus_knowledge
from knowledge.store import KnowledgeStore
from valuechain.cli.main import app

pytestmark = pytest.mark.slow  # embeds the 230-chunk corpus once (~45 s on two busy cores)


@pytest.fixture(scope="module")
def chroma(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChromaServer]:
    with running_chroma(tmp_path_factory.mktemp("chroma-corpus")) as server:
        yield server


@pytest.fixture(scope="module")
def store(chroma: ChromaServer, tmp_path_factory: pytest.TempPathFactory) -> KnowledgeStore:
    """The eval corpus on the server (replaces test_knowledge_scope's embedded one)."""
    server = Settings(chroma_host=chroma.host, chroma_port=chroma.port)
    s = corpus_knowledge(tmp_path_factory.mktemp("unused"), server=server)
    assert s.collection_name == EVAL_CORPUS_COLLECTION and s.count() > 200
    return s


def copy_into_embedded(source: KnowledgeStore, path: Path) -> KnowledgeStore:
    """An embedded store with exactly `source`'s rows and metadata (no re-embedding)."""
    got: Any = source.collection.get(include=["embeddings", "documents", "metadatas"])
    target = KnowledgeStore.at_path(path)
    target.collection.upsert(ids=got["ids"], embeddings=np.asarray(got["embeddings"]),
                             documents=got["documents"], metadatas=got["metadatas"])
    target.collection.modify(metadata=source.metadata())
    return target


def eval_retrieval(tmp: Path, monkeypatch: pytest.MonkeyPatch, chroma: ChromaServer | None) -> dict[str, Any]:
    """`valuechain eval run retrieval --json` with or without CHROMA_HOST; its latest.json suite."""
    if chroma is None:
        monkeypatch.delenv("CHROMA_HOST", raising=False)
    else:
        monkeypatch.setenv("CHROMA_HOST", chroma.host)
        monkeypatch.setenv("CHROMA_PORT", str(chroma.port))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["eval", "run", "retrieval", "--json", "--out-dir", str(tmp / "out"),
                                          "--work-dir", str(tmp / "work")])
    finally:
        get_settings.cache_clear()
    assert result.exit_code in (0, 1), result.output  # 1: below a threshold, still a report
    report = json.loads((tmp / "out" / "latest.json").read_text())
    (suite,) = report["suites"]
    return dict(suite)


def missed_cases(suite: dict[str, Any]) -> dict[tuple[str, str], list[str]]:
    """Per mode, the questions whose first relevant chunk is not first, with their ranked sources."""
    return {(mode["mode"], case["id"]): case["retrieved"]
            for mode in suite["details"]["modes"] for case in mode["failures"]}


def test_retrieval_eval_on_the_server_equals_embedded(
    store: KnowledgeStore, chroma: ChromaServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_server = eval_retrieval(tmp_path / "server", monkeypatch, chroma)
    assert f"{store.count()} chunks" in on_server["summary"]
    assert not (tmp_path / "server" / "work" / "knowledge-corpus").exists()  # nothing embedded on the side

    copy_into_embedded(store, tmp_path / "embedded" / "work" / "knowledge-corpus")
    embedded = eval_retrieval(tmp_path / "embedded", monkeypatch, None)

    assert on_server["metrics"] == embedded["metrics"]
    assert on_server["metrics"]["recall_at_5"] >= 0.9 and on_server["cases"] == embedded["cases"] >= 90
    assert on_server["passed"] == embedded["passed"]
    assert missed_cases(on_server) == missed_cases(embedded)
