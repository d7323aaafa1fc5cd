"""The planner's exemplars: enough of each kind, every one valid, retrievable, and never an eval case.

An exemplar that copies or lightly rephrases an eval question would let the evals grade the
library instead of the planner, so every eval question (selection, agent_dev, task turns,
faithfulness, retrieval) is compared with every exemplar: by normalised text, by MiniLM cosine
similarity (the embeddings retrieval itself uses), and by the account ids they mention.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.exemplar_library import (
    EXEMPLARS_FILE,
    Exemplar,
    ExemplarIndex,
    default_index,
    default_retriever,
    load_exemplars,
    render,
    validate,
)
from agent.plan import Plan, refs_of
from crm.demo.names import INDUSTRIES
from crm.demo.simulate import PLANS, REGIONS, SEGMENTS
from evals import faithfulness, selection, tasks
from knowledge import evaluate as retrieval
from tools.registry import MODEL_TOOLS

CASES_DIR = Path(selection.__file__).resolve().parent / "cases"
DEMO_FILTER_VALUES = {"segment": SEGMENTS, "region": REGIONS, "plan": PLANS, "industry": INDUSTRIES}

NEAR_DUPLICATE = 0.92
"""Cosine similarity at or above which an exemplar counts as a rephrased eval question.

With all-MiniLM-L6-v2, two short questions at ≥ 0.92 are the same request reworded; distinct
requests for the same tool (another filter, metric or number) sit around 0.75–0.89. Compared
id-blind too: "what should we do with <id>?" is a rewording of "What should we do next with
<other id>?" even though the ids alone pull the plain similarity down to ~0.8."""

ACCOUNT_ID = re.compile(r"\b[A-Za-z]{4}-[0-9]{4}\b")
DO_NOT_FILE = re.compile(r"(?i)\b(do not|don'?t|no need to|hold off|no filing|nothing goes to)\b")


def squash(text: str) -> str:
    return re.sub(r"[\W_]+", "", text.casefold())


def eval_questions() -> list[tuple[str, str]]:
    """(source, question) for every question the evals ask, read with the evals' own loaders."""
    out: list[tuple[str, str]] = []
    for name in ("selection.yaml", "agent_dev.yaml"):
        out += [(f"{name} {c.id}", c.question) for c in selection.load_cases(CASES_DIR / name)]
    for task in tasks.load_tasks(CASES_DIR / "tasks.yaml"):
        out += [(f"tasks.yaml {task.id}", turn) for turn in task.turns]
    out += [(f"faithfulness.yaml {c.id}", c.question)
            for c in faithfulness.load_cases(CASES_DIR / "faithfulness.yaml")]
    out += [(f"retrieval.yaml {c.id}", c.question)
            for c in retrieval.load_suite(CASES_DIR / "retrieval.yaml").cases]
    return out


@pytest.fixture(scope="module")
def exemplars() -> list[Exemplar]:
    return load_exemplars()


@pytest.fixture(scope="module")
def index() -> ExemplarIndex:
    return default_index()


@pytest.fixture(scope="module")
def eval_similarity(
    exemplars: list[Exemplar], index: ExemplarIndex
) -> tuple[list[tuple[str, str]], np.ndarray]:
    """Eval questions, and their cosine similarity to every exemplar (rows × exemplars): the larger
    of the index's own, id-blind comparison and the plain one of the unmasked texts."""
    questions = eval_questions()
    texts = [q for _, q in questions]
    blind = index.embed(texts) @ index.vectors.T
    plain = index.embedder.embed(texts) @ index.embedder.embed([ex.q for ex in exemplars]).T
    return questions, np.maximum(blind, plain)


# --------------------------------------------------------------------------- kinds


def has_reference(plan: Plan) -> bool:
    return any(refs_of(s) for s in plan.steps)


def is_parallel(plan: Plan) -> bool:
    """An answer with at least two steps that depend on nothing (they run side by side)."""
    return plan.intent == "answer" and sum(not refs_of(s) for s in plan.steps) >= 2


def tools_of(plan: Plan) -> set[str]:
    return {s.tool for s in plan.steps}


def is_do_not_file(ex: Exemplar) -> bool:
    return bool(DO_NOT_FILE.search(ex.q)) and "next_best_action" in tools_of(ex.plan)


def test_the_library_has_enough_of_every_kind(exemplars: list[Exemplar]) -> None:
    questions = [squash(ex.q) for ex in exemplars]
    repeated = [q for q, n in Counter(questions).items() if n > 1]
    assert not repeated, f"questions repeated (after normalisation): {repeated}"
    intents = Counter(ex.plan.intent for ex in exemplars)
    per_tool = Counter(tool for ex in exemplars for tool in tools_of(ex.plan))
    kinds = {
        "exemplars": len(exemplars),
        "multi-step with a reference": sum(has_reference(ex.plan) for ex in exemplars),
        "parallel": sum(is_parallel(ex.plan) for ex in exemplars),
        "file": intents["file"],
        "do not file": sum(is_do_not_file(ex) for ex in exemplars),
        "off_topic": intents["off_topic"],
        "clarify": intents["clarify"],
    }
    print(f"\nexemplar counts: {kinds}; intents {dict(intents)}; per tool {dict(per_tool)}")
    minimum = {"exemplars": 170, "multi-step with a reference": 15, "parallel": 12, "file": 10,
               "do not file": 5, "off_topic": 12, "clarify": 6}
    short = {k: (kinds[k], n) for k, n in minimum.items() if kinds[k] < n}
    assert not short, f"too few (have, need): {short}"
    assert set(intents) == {"answer", "file", "clarify", "off_topic"}
    rare = {t.name: per_tool[t.name] for t in MODEL_TOOLS if per_tool[t.name] < 8}
    assert not rare, f"tools in fewer than 8 exemplars: {rare}"


def test_rank_covers_every_entity_with_and_without_filters_and_limits(exemplars: list[Exemplar]) -> None:
    ranks = [s.args for ex in exemplars for s in ex.plan.steps if s.tool == "rank"]
    seen = {(a["entity"], a["metric"]) for a in ranks}
    described = {("accounts", m) for m in ("churn_probability", "arr_at_risk", "arr", "days_to_renewal",
                                           "open_tickets", "health")}
    described |= {("activities", m) for m in ("margin_leak", "value_cost_index", "performance_gap", "cost")}
    described |= {("initiatives", m) for m in ("roi", "net_benefit")}
    assert described <= seen, f"metrics of the rank description without an exemplar: {described - seen}"
    for entity in ("accounts", "activities", "initiatives"):
        of = [a for a in ranks if a["entity"] == entity]
        assert any("limit" in a for a in of) and any("limit" not in a for a in of), entity
    assert {k for a in ranks if a.get("filters") for k in a["filters"]} == set(DEMO_FILTER_VALUES)


def test_advice_only_questions_never_file(exemplars: list[Exemplar]) -> None:
    filed = [ex.q for ex in exemplars if DO_NOT_FILE.search(ex.q) and ex.plan.intent != "answer"]
    assert not filed


# --------------------------------------------------------------------------- validity


def test_every_exemplar_is_valid(exemplars: list[Exemplar]) -> None:
    problems = [p for ex in exemplars for p in validate(ex, filter_values=DEMO_FILTER_VALUES)]
    assert not problems, "\n".join(problems)


def _ex(q: str, intent: str, *steps: tuple[str, dict[str, object]]) -> Exemplar:
    return Exemplar(q=q, plan=Plan.model_validate({"intent": intent,
                                                   "steps": [{"tool": t, "args": a} for t, a in steps]}))


def test_validation_reports_bad_exemplars() -> None:
    cases: list[tuple[Exemplar, str]] = [
        (_ex("top accounts by vibes", "answer", ("rank", {"entity": "accounts", "metric": "vibes"})),
         "metric 'vibes' is not rankable for accounts"),
        (_ex("arr by continent Europe", "answer",
             ("rank", {"entity": "accounts", "metric": "arr", "filters": {"continent": "Europe"}})),
         "filter key 'continent'"),
        (_ex("file champion_rebuild for HALO-0131", "file",
             ("propose_recommendation", {"account_id": "HALO-0131", "action": "champion_rebuild",
                                         "rationale": "Champion left."})),
         "without next_best_action on it first"),
        (_ex("riskiest account and what to do", "answer",
             ("next_best_action", {"account_id": "#2"}),
             ("rank", {"entity": "accounts", "metric": "churn_probability"})),
         "refers to step 2, which is not an earlier step"),
        (_ex("how is margin leak computed", "answer", ("search_knowledge", {"query": "#1"})),
         "references are allowed only in"),
        (_ex("tell me about HALO-0131", "answer", ("get_account", {"account_id": "HALO-0131", "verbose": True})),
         "argument 'verbose' is not declared"),
        (_ex("the riskiest accounts", "answer",
             ("rank", {"entity": "accounts", "metric": "churn_probability", "limit": 5})),
         "limit=5 but the question gives no such number"),
        (_ex("what should we do next?", "answer", ("next_best_action", {"account_id": "HALO-0131"})),
         "not written in the question"),
        (_ex("weather in Rome?", "off_topic", ("search_knowledge", {"query": "weather"})),
         "intent 'off_topic' takes no steps"),
        (_ex("what would you do for HALO-0131", "answer",
             ("next_best_action", {"account_id": "HALO-0131"}),
             ("propose_recommendation", {"account_id": "HALO-0131", "action": "#1", "rationale": "Best."})),
         "intent 'answer' must not file"),
        (_ex("file the best action for HALO-0131", "file",
             ("next_best_action", {"account_id": "HALO-0131"}),
             ("propose_recommendation", {"account_id": "HALO-0131", "action": "free_pizza", "rationale": "x"})),
         "is not a playbook action"),
        (_ex("score activities for 2024", "answer", ("score_activities", {"period": "2025"})),
         "not a year the question names"),
        (_ex("segment smb churn", "answer", ("churn_risk", {"filters": {"segment": "smb"}})),
         "is not a known segment"),
    ]
    missed = []
    for ex, expected in cases:
        problems = validate(ex, filter_values=DEMO_FILTER_VALUES)
        if not any(expected in p for p in problems):
            missed.append(f"{ex.q!r}: expected {expected!r} in {problems}")
    assert not missed, "\n".join(missed)


def test_a_step_key_the_plan_does_not_know_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plans.yaml"
    path.write_text("version: 1\nexemplars:\n  - {q: top ARR, plan: {intent: answer, steps: "
                    "[{tool: rank, args: {entity: accounts, metric: arr}, limit: 5}]}}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="step 1 key 'limit'"):
        load_exemplars(path)


def test_the_shipped_file_is_package_data() -> None:
    assert EXEMPLARS_FILE.is_file() and EXEMPLARS_FILE.parent.joinpath("__init__.py").is_file()
    assert load_exemplars() == load_exemplars(EXEMPLARS_FILE)


# --------------------------------------------------------------------------- no eval case


def test_no_exemplar_is_an_eval_question(
    exemplars: list[Exemplar], eval_similarity: tuple[list[tuple[str, str]], np.ndarray],
) -> None:
    questions, sims = eval_similarity
    assert len(questions) > 300  # every suite was read
    copies = {squash(ex.q) for ex in exemplars} & {squash(q) for _, q in questions}
    assert not copies, f"exemplars that are eval questions: {copies}"

    flat = np.argsort(-sims, axis=None, kind="stable")
    def pair(i: int) -> str:
        e, x = divmod(int(i), sims.shape[1])
        return f"{sims[e, x]:.3f}  exemplar {exemplars[x].q!r}  ~  {questions[e][0]}: {questions[e][1]!r}"
    nearest = [pair(i) for i in flat[:5]]
    report = "5 nearest exemplar/eval pairs:\n" + "\n".join(nearest)
    print("\n" + report)
    too_close = [pair(i) for i in flat if sims.flat[i] >= NEAR_DUPLICATE]
    assert not too_close, f"exemplars within {NEAR_DUPLICATE} of an eval question:\n" + "\n".join(too_close) + \
        "\n" + report


def test_no_exemplar_uses_an_eval_account_id(exemplars: list[Exemplar]) -> None:
    eval_text = "\n".join(p.read_text(encoding="utf-8") for p in sorted(CASES_DIR.glob("*.yaml")))
    eval_ids = {i.upper() for i in ACCOUNT_ID.findall(eval_text)}
    eval_ids |= {i.upper() for _, q in eval_questions() for i in ACCOUNT_ID.findall(q)}
    used = {i.upper(): ex.q for ex in exemplars for i in ACCOUNT_ID.findall(ex.q + ex.plan.compact())}
    shared = {i: q for i, q in used.items() if i in eval_ids}
    assert not shared, f"eval account ids in exemplars: {shared}"


# --------------------------------------------------------------------------- retrieval

HELD_IN: list[tuple[str, str | None, str]] = [
    # (a paraphrase of an exemplar with an id no exemplar has, the tool its plan starts with, its intent)
    ("order our improvement initiatives by how quickly they pay back", "rank", "answer"),
    ("what are the odds that MAVI-0301 cancels on us?", "churn_risk", "answer"),
    ("give me the history of events for KEST-0222", "account_timeline", "answer"),
    ("who is the account executive for POLA-0187?", "get_account", "answer"),
    ("is it going to rain in Madrid on Saturday?", None, "off_topic"),
    ("recipe for a chocolate cake", None, "off_topic"),
    ("send the best next action for TORQ-0076 to a manager for approval", "next_best_action", "file"),
    ("explain what the invest and scale quadrant means", "search_knowledge", "answer"),
    ("carry out the complete value chain analysis for fiscal 2025", "value_chain_analysis", "answer"),
    ("rank our activities by how much margin they leak", "rank", "answer"),
    ("what's the risk level of this client?", None, "clarify"),
    ("what would you do about BEXL-0419? advice only, don't file anything", "next_best_action", "answer"),
]


@pytest.mark.parametrize(("question", "tool", "intent"), HELD_IN, ids=[q for q, _, _ in HELD_IN])
def test_the_nearest_exemplar_has_the_right_plan(
    index: ExemplarIndex, question: str, tool: str | None, intent: str
) -> None:
    best = index.nearest(question, k=1)[0]
    first = best.plan.steps[0].tool if best.plan.steps else None
    assert (first, best.plan.intent) == (tool, intent), f"nearest to {question!r}: {best.q!r}"


def test_nearest_is_best_first_and_deterministic(index: ExemplarIndex) -> None:
    scored = index.scored("which accounts have the most open tickets in EMEA", k=6)
    assert len(scored) == 6
    sims = [s for _, s in scored]
    assert sims == sorted(sims, reverse=True)
    assert index.nearest("which accounts have the most open tickets in EMEA") == [ex for ex, _ in scored]
    assert index.nearest("anything", k=0) == []


class _FixedEmbedder:
    """Every text maps to a vector picked by its first word: ties are exact."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        table = {"a": [1.0, 0.0], "b": [0.0, 1.0]}
        return np.array([table.get(t.split()[0], [0.6, 0.8]) for t in texts], dtype=np.float32)


def test_ties_break_by_file_order() -> None:
    plan = Plan(intent="off_topic")
    exs = [Exemplar(q=q, plan=plan) for q in ("b one", "a two", "a three", "b four")]
    index = ExemplarIndex(exs, embedder=_FixedEmbedder())
    assert [ex.q for ex in index.nearest("a question", k=3)] == ["a two", "a three", "b one"]


class _CountingEmbedder(_FixedEmbedder):
    def __init__(self) -> None:
        self.batches: list[int] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.batches.append(len(texts))
        return super().embed(texts)


def test_concurrent_searches_embed_the_exemplars_once() -> None:
    embedder = _CountingEmbedder()
    exs = [Exemplar(q=f"{w} {i}", plan=Plan(intent="off_topic")) for i, w in enumerate("abab")]
    index = ExemplarIndex(exs, embedder=embedder)
    with ThreadPoolExecutor(max_workers=8) as pool:
        found = list(pool.map(lambda _: index.nearest("a question", k=1)[0].q, range(32)))
    assert found == ["a 0"] * 32
    assert embedder.batches.count(len(exs)) == 1 and embedder.batches.count(1) == 32


def test_render_shows_question_and_compact_plan(exemplars: list[Exemplar]) -> None:
    shown = exemplars[:3]
    lines = render(shown).split("\n")
    assert len(lines) == 6
    for ex, q_line, a_line in zip(shown, lines[::2], lines[1::2], strict=True):
        assert q_line == f"Q: {ex.q}"
        assert a_line == f"A: {ex.plan.compact()}"
        assert Plan.model_validate_json(a_line.removeprefix("A: ")) == ex.plan
    assert render([]) == ""


def test_the_default_retriever_renders_the_nearest_shipped_exemplars() -> None:
    question = "which accounts have the most open tickets in EMEA"
    assert default_retriever(2)(question) == render(default_index().nearest(question, 2))
    assert default_retriever(0)(question) == ""


def test_the_off_topic_gate_passes_every_answerable_exemplar_question() -> None:
    from agent.exemplar_library import OFF_TOPIC_BELOW, default_index

    index = default_index()
    weakest = min(index.in_scope_similarity(ex.q) for ex in index.exemplars if ex.plan.intent != "off_topic")
    assert weakest >= OFF_TOPIC_BELOW  # each is its own nearest: the gate never blocks a known question
    assert index.in_scope_similarity("Write me a limerick about the weather") < OFF_TOPIC_BELOW


@pytest.fixture(scope="module")
def corpus_store(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from evals.fixtures import corpus_knowledge

    return corpus_knowledge(tmp_path_factory.mktemp("corpus"))


def test_every_knowledge_document_is_reached_by_some_exemplar_search(corpus_store: Any) -> None:
    """Each shipped corpus document is the best hit of at least one exemplar's knowledge query, so
    the planner has seen a question about every part of the framework and the product (documents
    without one were answered with data tools instead of a search)."""
    corpus = Path(__file__).resolve().parent.parent / "knowledge" / "corpus"
    documents = {p.stem for p in corpus.glob("*.md")}
    reached = {corpus_store.search(str(step.args["query"]), 1)[0].source
               for ex in default_index().exemplars for step in ex.plan.steps if step.tool == "search_knowledge"}
    assert documents - reached == set()


def test_the_gate_plans_a_framework_question_no_exemplar_is_near_and_still_declines_small_talk(corpus_store: Any) -> None:
    """A question the exemplars alone would decline is planned when a knowledge passage is near it;
    unrelated questions stay declined; in-scope questions never open the store."""
    from agent.exemplar_library import OFF_TOPIC_BELOW, default_index, in_scope, knowledge_gate
    opened: list[int] = []

    def knowledge() -> Any:
        opened.append(1)
        return corpus_store

    gate = knowledge_gate(knowledge)
    cluster = "What does a cluster of wine makers have to do with competitiveness?"
    assert default_index().in_scope_similarity(cluster) < OFF_TOPIC_BELOW and not in_scope(cluster)
    assert gate(cluster)
    assert not gate("Who painted the Mona Lisa?")
    assert not gate("Write me a limerick about the weather")
    opened.clear()
    assert gate("Which 5 accounts are most likely to churn?") and opened == []


def test_the_definition_margin_separates_knowledge_from_data_exemplars_leave_one_out(corpus_store: Any) -> None:
    """`definition_asked`'s margin, measured as its docstring says: each exemplar against the others.
    Knowledge-only questions clear it, data-only questions mostly do not."""
    from agent.exemplar_library import DEFINITION_MARGIN

    index = default_index()
    vectors = index.vectors
    data = np.array([bool(e.plan.steps) and e.plan.intent in ("answer", "file")
                     and all(s.tool != "search_knowledge" for s in e.plan.steps) for e in index.exemplars])
    cleared: dict[str, list[bool]] = {"knowledge": [], "data": []}
    for i, ex in enumerate(index.exemplars):
        tools = {s.tool for s in ex.plan.steps}
        kind = "knowledge" if tools == {"search_knowledge"} else "data" if data[i] else None
        if kind is None:
            continue
        sims = vectors @ vectors[i]
        sims[i] = -1.0
        nearest_data = float(np.where(data, sims, -1.0).max())
        cleared[kind].append(corpus_store.vector_search(ex.q, 1)[0].score - nearest_data >= DEFINITION_MARGIN)
    knowledge_rate = sum(cleared["knowledge"]) / len(cleared["knowledge"])
    data_rate = sum(cleared["data"]) / len(cleared["data"])
    assert knowledge_rate >= 0.9 and data_rate <= 0.2, (knowledge_rate, data_rate)


def test_definition_asked_on_a_data_question_and_a_how_is_it_defined_question(corpus_store: Any) -> None:
    from agent.exemplar_library import definition_asked

    asked = definition_asked(lambda: corpus_store)
    assert asked("How is the ROI of an initiative defined, and how does the rank tool use it?")
    assert not asked("Show me the 10 riskiest accounts in LATAM.")
