"""The knowledge retrieval tool core, shared by the agent, the API, the CLI and evals."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from tools.errors import ToolInputError

if TYPE_CHECKING:  # the store loads chromadb (~0.8 s); the tool registry imports this module
    from knowledge.store import KnowledgeStore

MAX_K = 20
OFF_TOPIC_SIMILARITY = 0.28
"""Best raw cosine similarity below which no chunk is about the query. Measured with the
packaged MiniLM on the corpus: the 95 retrieval-eval questions have a best similarity of
0.33–0.96 (5th percentile 0.42); 14 off-topic questions (weather, recipes, trivia, travel...)
0.04–0.23 (docs/AGENT.md)."""


class KnowledgeHit(BaseModel):
    """A retrieved chunk to cite as `source` § `section`."""

    source: str = Field(description="Document id to cite")
    title: str = Field(description="Document title")
    section: str = Field(description="Section heading within the document")
    text: str = Field(description="The chunk text")
    score: float = Field(description="Relevance in [0, 1]; higher is better")


class KnowledgeResults(BaseModel):
    """Chunks retrieved for a query, best first."""

    query: str
    results: list[KnowledgeHit]
    best_similarity: float | None = Field(
        default=None, description="Cosine similarity of the closest chunk (absolute, unlike `score`)"
    )
    on_topic: bool = Field(
        default=True, description=f"False when best_similarity < {OFF_TOPIC_SIMILARITY}: nothing here is about the query"
    )


KNOWLEDGE_CHARS = 600
"""Characters of each passage the model reads."""
OFF_TOPIC_NOTE = (
    "Nothing in the knowledge base is about this. The question is outside what this "
    "assistant covers (value chains, CRM accounts, churn): say so, and do not answer it from memory."
)


def project_knowledge(r: KnowledgeResults) -> dict[str, Any]:
    """What the model reads of `search_knowledge`: source, section and the start of each passage."""
    if not r.on_topic:
        return {"results": [], "note": OFF_TOPIC_NOTE}
    return {
        "results": [{"source": h.source, "section": h.section, "text": h.text[:KNOWLEDGE_CHARS]} for h in r.results]
    }


def search_knowledge(*, store: KnowledgeStore, query: str, k: int = 5) -> KnowledgeResults:
    """Search the value-chain framework knowledge base and return passages to cite.

    Covers Porter's value chain (primary and support activities), the steps of
    value-chain analysis, cost-vs-value quadrants, opportunity identification, value
    chain vs supply chain and clusters, CRM's functional areas, churn drivers,
    playbook actions and how each analysis tool computes its figures. Cite results
    by `source` and `section`.

    Args:
        query: A question or key phrase in plain language, e.g. "what are the support
            activities in Porter's value chain".
        k: How many passages to return (1-20, default 5).

    Raises:
        ToolInputError: the query is empty.
    """
    query = query.strip()
    if not query:
        raise ToolInputError("query is empty: pass a question or key phrase to search for")
    k = max(1, min(int(k), MAX_K))
    hits = store.search(query, k)
    nearest = store.vector_search(query, 1)
    best = round(nearest[0].score, 4) if nearest else None
    return KnowledgeResults(
        query=query,
        best_similarity=best,
        on_topic=best is not None and best >= OFF_TOPIC_SIMILARITY,
        results=[
            KnowledgeHit(
                source=h.source,
                title=h.title,
                section=h.section,
                text=h.text,
                score=round(h.score, 4),
            )
            for h in hits
        ],
    )
