"""The off-topic gate of search_knowledge on the product's own corpus (docs/AGENT.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from knowledge.evaluate import load_suite
from knowledge.ingest import ensure_corpus_index
from knowledge.search import OFF_TOPIC_SIMILARITY, search_knowledge
from knowledge.store import KnowledgeStore

OFF_TOPIC = (
    "What's the weather in Paris tomorrow?",
    "Write me a poem about spring.",
    "What is the capital of Australia?",
    "Translate 'good morning' into German.",
    "Book me a flight to Berlin next Monday.",
    "Who won the football world cup in 2018?",
    "recipe for pancakes",
    "how to fix my car brakes",
)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> KnowledgeStore:
    s = KnowledgeStore.at_path(Path(tmp_path_factory.mktemp("scope")) / "chroma")
    ensure_corpus_index(s)
    return s


def test_every_retrieval_eval_question_is_on_topic(store: KnowledgeStore) -> None:
    cases = load_suite().cases
    assert len(cases) >= 90
    results = [search_knowledge(store=store, query=c.question, k=1) for c in cases]
    assert [(r.query, r.best_similarity) for r in results if not r.on_topic] == []


@pytest.mark.parametrize("question", OFF_TOPIC)
def test_off_topic_questions_are_flagged(store: KnowledgeStore, question: str) -> None:
    result = search_knowledge(store=store, query=question, k=3)
    assert result.on_topic is False
    assert result.best_similarity is not None and result.best_similarity < OFF_TOPIC_SIMILARITY
