"""The planner's exemplars: question → plan pairs, their checks, and retrieval of the nearest ones.

The planner prompt shows the k exemplars whose questions are most similar to the user's (cosine
similarity of the MiniLM embeddings the product ships, `knowledge.embeddings`), rendered as

    Q: which customers have the highest likelihood of cancelling? give me 7
    A: {"intent":"answer","steps":[{"tool":"rank","args":{"entity":"accounts",...}}]}

The exemplars live in `agent/exemplars/plans.yaml`. `validate` lists what is wrong with one:
arguments its tool does not declare or that do not validate, an unknown rank metric, a filter
key other than segment/region/plan/industry, a reference outside an id argument or to a step
that is not earlier, a filing without next_best_action first; and arguments the question does
not ground (an id, a year or a number the user did not write). Questions are compared with
their account ids masked (`id_blind`): which account is named says nothing about the plan.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.plan import Plan, Step, parse_ref
from tools.nba import load_playbook
from tools.ranking import MAX_LIMIT, metric_specs
from tools.registry import MODEL_TOOLS, ToolSpec

EXEMPLARS_FILE = Path(__file__).resolve().parent / "exemplars" / "plans.yaml"
DEFAULT_K = 6

FILTER_KEYS: tuple[str, ...] = ("segment", "region", "plan", "industry")
"""The filter keys a plan may use: only a segment, region, plan or industry the user named."""

REF_ARGS: tuple[str, ...] = ("account_id", "activity_id", "opportunity_id", "action")
"""The arguments that may hold a reference (`#N`, `#N.K`) to an earlier step's result."""

ID_LIKE = re.compile(r"\b[A-Za-z]{3,5}[-_]?[0-9]{2,5}\b")
"""Account-id-like tokens ("ACME-0042", "acme42", "CUST-12345"), masked before embedding."""
ID_PLACEHOLDER = "ABCD-0000"

_TOOLS: dict[str, ToolSpec[Any, Any]] = {t.name: t for t in MODEL_TOOLS}
_YEAR = re.compile(r"^[0-9]{4}$")
_ACTION_ID = re.compile(r"^[a-z][a-z0-9_]*$")
_NUMBER_WORDS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty",
)


class Exemplar(BaseModel):
    """A question as a business user asks it, and the plan that answers it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    q: str = Field(min_length=1)
    plan: Plan


class ExemplarFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1]
    exemplars: list[Exemplar]


# --------------------------------------------------------------------------- loading


def _stray_keys(raw: Any, where: str) -> list[str]:
    """Keys a plan or a step has beyond its fields (pydantic would drop them silently)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("plan"), dict):
        return []
    plan = raw["plan"]
    found = [f"{where}: plan key {k!r}" for k in plan if k not in Plan.model_fields]
    for n, step in enumerate(plan.get("steps") or [], start=1):
        if isinstance(step, dict):
            found += [f"{where}: step {n} key {k!r}" for k in step if k not in Step.model_fields]
    return found


@cache
def _load(path: Path) -> tuple[Exemplar, ...]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    items = data.get("exemplars") if isinstance(data, dict) else None
    stray = [p for i, raw in enumerate(items or [], start=1) for p in _stray_keys(raw, f"exemplar {i}")]
    if stray:
        raise ValueError(f"{path}: unknown keys: {'; '.join(stray)}")
    try:
        return tuple(ExemplarFile.model_validate(data).exemplars)
    except ValidationError as exc:
        raise ValueError(f"{path} is not a valid exemplar file: {exc}") from exc


def load_exemplars(path: Path = EXEMPLARS_FILE) -> list[Exemplar]:
    """The exemplars of `path` (the shipped `plans.yaml` by default), in file order; read once per path."""
    return list(_load(Path(path).resolve()))


# --------------------------------------------------------------------------- validation


@cache
def _playbook_actions() -> frozenset[str]:
    playbook, _, _ = load_playbook()
    return frozenset(a.id for a in playbook.actions)


def _squash(text: str) -> str:
    return re.sub(r"[\W_]+", "", text.casefold())


def _says_number(question: str, n: int) -> bool:
    if re.search(rf"(?<![0-9]){n}(?![0-9])", question):
        return True
    return n < len(_NUMBER_WORDS) and re.search(rf"\b{_NUMBER_WORDS[n]}\b", question, re.IGNORECASE) is not None


def _ref_target_ok(arg: str, target: Step) -> bool:
    """Whether step `target` returns the kind of id that `arg` takes."""
    if arg == "account_id":
        return (target.tool == "rank" and target.args.get("entity") == "accounts") or (
            target.tool == "churn_risk" and not target.args.get("account_id")
        )
    if arg == "activity_id":
        return (target.tool == "rank" and target.args.get("entity") == "activities") or (
            target.tool == "score_activities"
        )
    if arg == "opportunity_id":
        return target.tool == "pipeline_health"
    return target.tool == "next_best_action"


def _ids_returned(target: Step) -> int | None:
    """How many ids step `target` returns at most (its limit), if it has one."""
    spec = _TOOLS.get(target.tool)
    if spec is None or "limit" not in spec.params.model_fields:
        return None
    limit = target.args.get("limit", spec.params.model_fields["limit"].default)
    return limit if isinstance(limit, int) else None


def _reference_problems(arg: str, value: Any, n: int, steps: Sequence[Step]) -> list[str]:
    if not (isinstance(value, str) and value.strip().startswith("#")):
        return []
    ref = parse_ref(value)
    if ref is None:
        return [f"{arg}={value!r} is not a reference like '#1' or '#1.2'"]
    if arg not in REF_ARGS:
        return [f"{arg}={value!r}: references are allowed only in {', '.join(REF_ARGS)}"]
    target_n, k = ref
    if target_n >= n:
        return [f"{arg}={value!r} refers to step {target_n}, which is not an earlier step"]
    target = steps[target_n - 1]
    if not _ref_target_ok(arg, target):
        return [f"{arg}={value!r} refers to step {target_n} ({target.tool}), which returns no {arg} ids"]
    most = _ids_returned(target)
    if most is not None and k > most:
        return [f"{arg}={value!r} asks for id {k} of step {target_n}, which returns at most {most}"]
    return []


def _filter_problems(
    filters: Any, question: str, filter_values: Mapping[str, Collection[str]] | None,
    keys: tuple[str, ...] = FILTER_KEYS,
) -> list[str]:
    if not filters:
        return []
    if not isinstance(filters, dict):
        return [f"filters must be an object; got {filters!r}"]
    problems = []
    for key, value in filters.items():
        if key not in keys:
            problems.append(f"filter key {key!r} is not one of {', '.join(keys)}")
            continue
        if filter_values is not None and key in FILTER_KEYS and value not in filter_values.get(key, ()):
            known = ", ".join(sorted(filter_values.get(key, ())))
            problems.append(f"filter {key}={value!r} is not a known {key} ({known})")
        if _squash(str(value)) not in _squash(question):
            problems.append(f"filter {key}={value!r} is not named in the question")
    return problems


def _step_problems(
    step: Step, n: int, steps: Sequence[Step], question: str,
    filter_values: Mapping[str, Collection[str]] | None,
) -> list[str]:
    spec = _TOOLS.get(step.tool)
    if spec is None:
        return [f"unknown tool {step.tool!r}; the model may call {', '.join(_TOOLS)}"]
    args = step.args
    problems = [f"argument {a!r} is not declared by {step.tool}" for a in args if a not in spec.params.model_fields]
    try:
        spec.params.model_validate(args)
    except ValidationError as exc:
        problems += [f"{'.'.join(map(str, e['loc'])) or 'args'}: {e['msg']}" for e in exc.errors()]
    for arg, value in args.items():
        problems += _reference_problems(arg, value, n, steps)
        if arg in ("account_id", "activity_id") and parse_ref(value) is None:
            if not isinstance(value, str) or not value.strip():
                problems.append(f"{arg} must be a non-empty id; got {value!r}")
            elif value not in question:
                problems.append(f"{arg}={value!r} is not written in the question (never invent an id)")
    for arg in ("limit", "k"):
        value = args.get(arg)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_LIMIT:
            problems.append(f"{arg} must be an integer from 1 to {MAX_LIMIT}; got {value!r}")
        elif arg == "limit" and not _says_number(question, value):
            problems.append(f"limit={value} but the question gives no such number")
    if "period" in args and args["period"] is not None:
        period = args["period"]
        if not (isinstance(period, str) and _YEAR.match(period)):
            problems.append(f'period must be a year like "2026"; got {period!r}')
        elif period not in question:
            problems.append(f"period={period!r} is not a year the question names")
    if "filters" in args:
        problems += _filter_problems(args["filters"], question, filter_values, spec.filter_keys)
    if step.tool == "rank" and isinstance(args.get("entity"), str) and isinstance(args.get("metric"), str):
        entity, metric = args["entity"], args["metric"]
        if entity in ("accounts", "activities", "initiatives"):
            metrics = metric_specs(entity)
            if metric not in metrics:
                problems.append(f"metric {metric!r} is not rankable for {entity}; valid: {', '.join(metrics)}")
            if args.get("filters") and entity != "accounts":
                problems.append(f"filters apply to accounts only, not to {entity}")
    if step.tool == "churn_risk" and args.get("account_id") and args.get("filters"):
        problems.append("filters narrow a list; with an account_id they are dropped")
    if step.tool == "search_knowledge" and isinstance(args.get("query"), str) and not args["query"].strip():
        problems.append("query must not be empty")
    if step.tool == "propose_recommendation":
        problems += _propose_problems(args)
    return problems


def _propose_problems(args: Mapping[str, Any]) -> list[str]:
    account, activity, action = args.get("account_id"), args.get("activity_id"), args.get("action")
    problems = []
    if bool(account) == bool(activity):
        problems.append("give exactly one of account_id or activity_id")
    if not (isinstance(args.get("rationale"), str) and args["rationale"].strip()):
        problems.append("rationale must not be empty")
    if isinstance(action, str) and parse_ref(action) is None:
        if account and action not in _playbook_actions():
            problems.append(f"action {action!r} is not a playbook action ({', '.join(sorted(_playbook_actions()))})")
        elif not _ACTION_ID.match(action):
            problems.append(f"action {action!r} is not a short snake_case id")
    return problems


def _intent_problems(plan: Plan) -> list[str]:
    tools = [s.tool for s in plan.steps]
    if plan.intent in ("clarify", "off_topic"):
        return [f"intent {plan.intent!r} takes no steps"] if plan.steps else []
    if not plan.steps:
        return [f"intent {plan.intent!r} needs at least one step"]
    if plan.intent == "answer":
        return ["intent 'answer' must not file (propose_recommendation)"] if "propose_recommendation" in tools else []
    problems = []
    if "propose_recommendation" not in tools:
        problems.append("intent 'file' needs a propose_recommendation step")
    for n, step in enumerate(plan.steps, start=1):
        if step.tool != "propose_recommendation":
            continue
        account = step.args.get("account_id")
        if not account:
            continue  # an activity target: no next_best_action (its plays are for accounts)
        earlier = plan.steps[: n - 1]
        if not any(s.tool == "next_best_action" and s.args.get("account_id") == account for s in earlier):
            problems.append(f"step {n} files for {account!r} without next_best_action on it first")
        action = step.args.get("action")
        ref = parse_ref(action)
        if ref is not None and ref[0] < n and plan.steps[ref[0] - 1].args.get("account_id") != account:
            problems.append(f"step {n}: action {action!r} is next_best_action for another account")
    return problems


def validate(ex: Exemplar, *, filter_values: Mapping[str, Collection[str]] | None = None) -> list[str]:
    """What is wrong with `ex`, one message per problem (empty when it is a good exemplar).

    Args:
        ex: the exemplar.
        filter_values: if given, the valid values per filter key (e.g. the demo company's
            segments); a filter value outside them is a problem.
    """
    steps = ex.plan.steps
    problems = _intent_problems(ex.plan)
    for n, step in enumerate(steps, start=1):
        problems += [f"step {n} ({step.tool}): {p}" for p in _step_problems(step, n, steps, ex.q, filter_values)]
    return [f"{ex.q!r}: {p}" for p in problems]


# --------------------------------------------------------------------------- retrieval


class Embedder(Protocol):
    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def id_blind(text: str) -> str:
    """`text` with every account-id-like token replaced by one placeholder.

    Which account a question names says nothing about its plan, yet in a short question the id's
    word pieces weigh as much as its words: unmasked, "who is the account executive for POLA-0187?"
    came nearest to an exemplar about SOLA-0088's history rather than to the profile ones."""
    return ID_LIKE.sub(ID_PLACEHOLDER, text)


class ExemplarIndex:
    """The exemplars' questions embedded once (lazily, thread-safe), searched by cosine similarity.

    Questions are embedded `id_blind`, the exemplars' and the user's alike."""

    def __init__(self, exemplars: Sequence[Exemplar], *, embedder: Embedder | None = None) -> None:
        self.exemplars: tuple[Exemplar, ...] = tuple(exemplars)
        self._embedder = embedder
        self._vectors: np.ndarray | None = None
        self._lock = threading.Lock()

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            # [knowledge] extra: chromadb and onnxruntime (~0.4 s), loaded on the first embedding; the
            # product's one MiniLM, shared with the knowledge store (never a second copy)
            from knowledge.embeddings import shared_embedder

            self._embedder = shared_embedder()
        return self._embedder

    def embed(self, questions: Sequence[str]) -> np.ndarray:
        """Unit vectors of `questions` as the index compares them (ids masked), one row each."""
        return self.embedder.embed([id_blind(q) for q in questions])

    @property
    def vectors(self) -> np.ndarray:
        """Unit vectors of the exemplars' questions, one row per exemplar (computed on first use)."""
        if self._vectors is None:
            with self._lock:
                if self._vectors is None:
                    self._vectors = self.embed([ex.q for ex in self.exemplars])
        return self._vectors

    def scored(self, question: str, k: int = DEFAULT_K) -> list[tuple[Exemplar, float]]:
        """The `k` nearest exemplars with their cosine similarity, best first; ties by file order."""
        if k <= 0 or not self.exemplars:
            return []
        vectors = self.vectors
        sims = vectors @ self.embed([question])[0]
        # rounded so that float noise cannot reorder equal scores: ties then go by position
        order = sorted(range(len(sims)), key=lambda i: (-round(float(sims[i]), 6), i))
        return [(self.exemplars[i], float(sims[i])) for i in order[:k]]

    def nearest(self, question: str, k: int = DEFAULT_K) -> list[Exemplar]:
        """The `k` exemplars whose questions are most similar to `question`, best first."""
        return [ex for ex, _ in self.scored(question, k)]

    def _nearest_among(self, question: str, keep: Callable[[Exemplar], bool]) -> float | None:
        """Cosine similarity of `question` to the nearest exemplar that `keep` accepts (None: none does)."""
        mask = np.array([keep(ex) for ex in self.exemplars])
        if not mask.any():
            return None
        sims = self.vectors @ self.embed([question])[0]
        return float(np.where(mask, sims, -1.0).max())

    def data_similarity(self, question: str) -> float:
        """Cosine similarity of `question` to the nearest exemplar answered from data alone (its plan
        has steps and no knowledge search); -1 when there is none."""
        nearest = self._nearest_among(question, lambda ex: bool(ex.plan.steps) and ex.plan.intent in ("answer", "file")
                                      and all(s.tool != "search_knowledge" for s in ex.plan.steps))
        return -1.0 if nearest is None else nearest

    def in_scope_similarity(self, question: str) -> float:
        """Cosine similarity of `question` to the nearest exemplar the product answers (not off_topic)."""
        nearest = self._nearest_among(question, lambda ex: ex.plan.intent != "off_topic")
        return 1.0 if nearest is None else nearest


_default_lock = threading.Lock()
_default: ExemplarIndex | None = None


def default_index() -> ExemplarIndex:
    """The index over the shipped exemplars, built once per process (embedded on first search)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = ExemplarIndex(load_exemplars())
    return _default


def render(exemplars: Sequence[Exemplar]) -> str:
    """The exemplars as prompt lines: `Q: <question>` then `A: <compact plan JSON>` for each."""
    return "\n".join(f"Q: {ex.q}\nA: {ex.plan.compact()}" for ex in exemplars)


def default_retriever(k: int = DEFAULT_K) -> Callable[[str], str]:
    """question → the `k` nearest shipped exemplars, rendered (the planner's `retrieve`); '' for k ≤ 0."""

    def retrieve(question: str) -> str:
        return render(default_index().nearest(question, k)) if k > 0 else ""

    return retrieve


def nearest_last(k: int = DEFAULT_K) -> Callable[[str], str]:
    """Like `default_retriever`, with the most similar exemplar last (next to the question)."""

    def retrieve(question: str) -> str:
        return render(default_index().nearest(question, k)[::-1])

    return retrieve


OFF_TOPIC_BELOW = 0.33
"""In-scope similarity under which a question is off-topic without asking the model. Measured on
the exemplars (leave-one-out: all 249 answerable ones ≥ 0.350, 21 of 28 off-topic ones < 0.33) and
the dev questions (answerable ≥ 0.449, off-topic 0.13–0.30); the held-out suites were not used.
Above it the planner decides (the 1.5B model planned a knowledge search for 16 of 16 held-out
off-topic questions, so without this gate it almost never abstains)."""


def in_scope(question: str) -> bool:
    """Whether `question` is near enough to anything the product answers to be planned."""
    return default_index().in_scope_similarity(question) >= OFF_TOPIC_BELOW


KNOWLEDGE_IN_SCOPE_AT = 0.30
"""Cosine similarity to the nearest knowledge passage at which a question far from every exemplar is
still planned: framework questions come in phrasings no exemplar has ("how can I tell whether an
initiative is just decorative?" is 0.32 from the nearest exemplar, 0.34 from a passage). Chosen on
the dev questions (off-topic ones ≤ 0.18 from any passage) and the exemplars; it errs toward asking
the planner, which may still plan no tool — a wrong decline costs the user an answer, a wrong pass
one model call."""


def knowledge_gate(knowledge: Callable[[], Any]) -> Callable[[str], bool]:
    """The planner's gate: `in_scope`, or else near enough to a passage of `knowledge()` (a store with
    `vector_search`; opened only for questions the exemplars alone would decline)."""

    nearest_passage = passage_similarity(knowledge)

    def gate(question: str) -> bool:
        if in_scope(question):
            return True
        best = nearest_passage(question)
        return best is not None and best >= KNOWLEDGE_IN_SCOPE_AT

    return gate


DEFINITION_MARGIN = -0.05
"""How much nearer the question may be to the nearest data-only exemplar than to the nearest knowledge
passage for the framework to be searched as well. Chosen on the exemplars, leave-one-out: at -0.05,
59 of 64 knowledge-only exemplars (92 %) are at or above it and 30 of 213 data-only exemplars (14 %);
at -0.10 the data share doubles (27 %) for no gain; at 0, knowledge falls to 84 %. The held-out
suites were not used to choose it."""


def definition_asked(knowledge: Callable[[], Any]) -> Callable[[str], bool]:
    """Whether a question the planner answered from data alone also asks how something is defined or
    works: it is about as near a passage of `knowledge()` as it is to any data-only exemplar
    ("How is ROI defined there?" beside a ranking; "Which play should we run?"). The pipeline then
    adds a knowledge search, so the answer can say how, and cite where."""

    nearest_passage = passage_similarity(knowledge)

    def asked(question: str) -> bool:
        best = nearest_passage(question)
        return best is not None and best - default_index().data_similarity(question) >= DEFINITION_MARGIN

    return asked


def passage_similarity(knowledge: Callable[[], Any]) -> Callable[[str], float | None]:
    """query → cosine similarity of the nearest passage of `knowledge()` (None: the store is empty)."""

    def similarity(query: str) -> float | None:
        hits = knowledge().vector_search(query, 1)
        return hits[0].score if hits else None

    return similarity
