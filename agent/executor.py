"""Run a plan in code: check every step, resolve references, run independent steps in parallel.

Checks and repairs before anything runs (each noted on the turn):
- a tool the model is not offered, or arguments its schema refuses: the step fails with the
  message (a fixable error: the planner may replan once);
- an account or activity id that neither the user wrote nor a CRM tool returned in an id field
  (this turn or the last few; never a note, a ticket text or a knowledge passage, see
  `agent.provenance`): the step fails ("never invent ids");
- a filter value the user never named: dropped (it would only narrow the answer wrongly); a
  period they never wrote that the data does not hold either: dropped (the latest is used); a
  target, a staleness threshold or a quarter they never stated: dropped (the tool's default);
- a knowledge search: run on the user's question and the planner's query together;
- the filing rule: `propose_recommendation` runs only when the plan's intent is to file and the
  plan uses every id the user named (never a proposal for another account), and
  only after `next_best_action` for that account ran in this plan (added when missing); its
  action must be one that next_best_action returned; a missing rationale is written from that
  action's own evidence.

Steps run in waves: a step runs once the steps it references have; the steps of a wave run
concurrently (each in its own session). A writing step runs alone.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from agent.coverage import add_asked_steps, replan_feedback
from agent.deps import RunContext, ToolFixableError
from agent.intent import settle_filing
from agent.middleware import named_by_user, squash
from agent.numbers import numbers_in, traceable
from agent.plan import ACCOUNT_ID, NAMED_ID, Plan, Step, asked_count, ignored_ids, parse_ref, refs_of
from agent.provenance import objects_in, tool_ids
from tools.accounts import AccountList, AccountProfile, AccountTimeline, scope_values
from tools.activities import ActivityScores
from tools.analysis.models import ValueChainAnalysis
from tools.churn.schemas import ChurnRiskResult
from tools.common import activity_periods
from tools.deals.score import DealScore
from tools.filters import FilterColumn, column_values
from tools.nba import NextBestActionResult
from tools.pipeline.deals import FILTER_COLUMNS as PIPELINE_COLUMNS
from tools.pipeline.health import PipelineHealth
from tools.ranking import MAX_LIMIT, RankResult
from tools.registry import FILTER_KEYS, MODEL_TOOLS, TOOLS_BY_NAME
from tools.service_queue.queue import FILTER_COLUMNS as QUEUE_COLUMNS
from tools.service_queue.queue import ServiceQueue

ID_ARGS = ("account_id", "activity_id", "opportunity_id")
GOAL_ARGS = ("target", "stale_days")
"""Numbers a tool has a default for that only the user may set (see `Executor._drop_unsaid_goals`)."""
SCOPED_COLUMNS: dict[str, Mapping[str, FilterColumn]] = {
    "pipeline_health": PIPELINE_COLUMNS, "service_queue": QUEUE_COLUMNS}
"""The tools whose filters are not the account filters, and the data columns of their fields."""
OFFERED = {t.name for t in MODEL_TOOLS}


@dataclass
class StepRun:
    """One step as it ran: its final arguments, result or error."""

    index: int
    """1-based position in the plan (what `#N` refers to)."""
    tool: str
    args: dict[str, Any]
    result: BaseModel | None = None
    error: str | None = None
    fixable: bool = True
    added: bool = False
    """Added by the executor (the filing rule), not by the model."""
    seconds: float = 0.0


@dataclass
class Execution:
    steps: list[StepRun] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[StepRun]:
        return [s for s in self.steps if s.error is not None]


OnEvent = Callable[[str, StepRun], Awaitable[None]]
"""Called with ("tool_start" | "tool_end", step)."""


def ids_in(result: BaseModel | None, arg: str) -> list[str]:
    """The ids a result offers for `arg` (account_id, activity_id or action), in order."""
    if arg == "action":
        return [a.action for a in result.actions] if isinstance(result, NextBestActionResult) else []
    if arg == "opportunity_id":
        if isinstance(result, PipelineHealth):
            return [d.opportunity_id for d in result.deals_at_risk]
        return [result.opportunity_id] if isinstance(result, DealScore) else []
    if arg == "account_id":
        if isinstance(result, ServiceQueue):
            return list(dict.fromkeys(q.account_id for q in result.items))
        if isinstance(result, PipelineHealth):
            return list(dict.fromkeys(d.account_id for d in result.deals_at_risk if d.account_id))
        if isinstance(result, DealScore):
            return [result.account_id] if result.account_id else []
        if isinstance(result, RankResult):
            return [i.id for i in result.items] if result.entity == "accounts" else []
        if isinstance(result, ChurnRiskResult):
            return [a.account_id for a in result.accounts]
        if isinstance(result, AccountList):
            return [a.id for a in result.items]
        if isinstance(result, NextBestActionResult | AccountTimeline):
            return [result.account_id]
        if isinstance(result, AccountProfile):
            return [result.id]
        return []
    if arg == "activity_id":
        if isinstance(result, RankResult):
            return [i.id for i in result.items] if result.entity == "activities" else []
        if isinstance(result, ActivityScores):
            return [a.id for a in result.activities]
        if isinstance(result, ValueChainAnalysis):
            return [i.id for i in result.step3_costs.margin_leak]
    return []


ACTION_FIELDS = ("quadrant", "activity_quadrant", "type")
"""Fields of a result row about an activity that name what to do with it."""


def activity_actions(activity: str, results: list[Any]) -> set[str]:
    """What the results say may be done with `activity`: its quadrant and the words in it
    ("eliminate_or_restructure" → eliminate, restructure), initiative types and ids."""
    target, found = activity.strip().upper(), set[str]()
    for value in objects_in(results):
        own = str(value.get("id") or "").upper() == target
        linked = str(value.get("activity_id") or "").upper() == target
        if not (own or linked):
            continue
        for key in ACTION_FIELDS:
            if isinstance(value.get(key), str):
                found |= {value[key], *value[key].replace("_and_", "_or_").split("_or_")}
        if linked and not own and value.get("id"):
            found.add(str(value["id"]))  # an initiative of the activity
    return found


class Executor:
    """Checks and runs one plan for one turn."""

    def __init__(self, ctx: RunContext, *, said: str, known: str, asked: str = "",
                 on_event: OnEvent | None = None) -> None:
        self.ctx = ctx
        self.asked = asked
        """This turn's question as the user wrote it."""
        self.said = said
        """What the user wrote this conversation, squashed (see `agent.middleware.user_text`)."""
        self.known = known
        """What the user wrote and the ids CRM tools returned in earlier turns, upper-cased (`agent.provenance.known_text`)."""
        self.on_event = on_event
        self._values: dict[str, set[str]] | None = None
        self._tool_values: dict[str, dict[str, set[str]]] = {}
        self._known_periods: set[str] | None = None
        self.last = Execution()
        """The execution running or last run (what a fault report names)."""
        self.done: dict[str, StepRun] = {}
        self.inflight: dict[str, asyncio.Future[StepRun]] = {}  # identical reads in one wave share one call
        """Successful runs by (tool, args) key, kept across a replan so nothing runs twice."""
        self.core_errors: list[tuple[str, str]] = []
        """(tool, message) of the tool errors the core raised this turn (their suggested ids are usable)."""

    # ------------------------------------------------------------------ preparing
    def prepare(self, plan: Plan, ex: Execution) -> list[StepRun]:
        """The plan's steps after the checks and repairs above (failures carry their error)."""
        steps = [StepRun(i + 1, s.tool, dict(s.args)) for i, s in enumerate(plan.steps)]
        unused = ignored_ids(self.asked, plan) if plan.intent == "file" else []
        if plan.intent != "file" or unused:
            dropped = [s for s in steps if s.tool == "propose_recommendation"]
            if dropped:
                ex.notes.append(f"not filed: the plan does not use {', '.join(unused)}, which the user named"
                                if unused else "not filed: the user did not ask to file a recommendation")
                steps = self._without(steps, dropped)
        else:
            self._named_targets(steps, ex)
            steps = self._filing(steps, ex)
        self._count_from_question(steps, ex)
        self._search_users_words(steps, ex)
        for s in steps:
            if s.error is None:
                s.error = self._problem(s, steps, ex)
        return steps

    def _count_from_question(self, steps: list[StepRun], ex: Execution) -> None:
        """The number the user asked for on the first list step that has no limit ("Which 5 accounts
        ..." planned without one lists 10)."""
        n = asked_count(self.asked)
        first = next((s for s in steps if s.tool in ("rank", "churn_risk") and not s.args.get("account_id")), None)
        if n is not None and first is not None and first.args.get("limit") is None and 1 <= n <= MAX_LIMIT:
            first.args["limit"] = n
            ex.notes.append(f"limit {n} on {first.tool}: the number the user asked for")

    def _search_users_words(self, steps: list[StepRun], ex: Execution) -> None:
        """A knowledge search runs on the user's question followed by the planner's query: the small
        model's query loses the user's terms ("what is" for "What types of improvement initiatives
        can we choose from?"), the question alone loses a follow-up's context ("And the support
        ones?"). A query the question already contains runs as planned. Measured on the retrieval
        suite (docs/AGENT.md)."""
        asked = " ".join(self.asked.split())
        if not asked:
            return
        for s in steps:
            query = s.args.get("query")
            if s.tool != "search_knowledge" or not isinstance(query, str):
                continue
            if squash(query) in squash(asked):
                continue
            s.args["query"] = f"{asked} {query.strip()}"
            ex.notes.append(f"knowledge searched with the user's words beside {query.strip()!r}")

    @staticmethod
    def _without(steps: list[StepRun], dropped: list[StepRun]) -> list[StepRun]:
        """`steps` minus `dropped`; references renumbered, a reference to a dropped step fails."""
        gone = {s.index for s in dropped}
        kept = [s for s in steps if s.index not in gone]
        return Executor._renumber(kept)

    @staticmethod
    def _renumber(steps: list[StepRun]) -> list[StepRun]:
        new_of = {s.index: i + 1 for i, s in enumerate(steps)}
        for s in steps:
            for k, v in list(s.args.items()):
                ref = parse_ref(v)
                if ref is None:
                    continue
                if ref[0] not in new_of:
                    s.error = f"{k} refers to step {ref[0]}, which was dropped"
                else:
                    s.args[k] = f"#{new_of[ref[0]]}" + (f".{ref[1]}" if ref[1] != 1 else "")
        for s in steps:
            s.index = new_of[s.index]
        return steps

    def _named_targets(self, steps: list[StepRun], ex: Execution) -> None:
        """A proposal for another account (activity) than the one the user named gets the named one:
        "MKT-EVENTS-2026 leaks margin. File a recommendation to restructure that activity" planned as
        a proposal for the top-scored activity (`#1`) files for MKT-EVENTS-2026. Only when the user
        named exactly one id of that kind in this turn."""
        named = list(dict.fromkeys(m.group(0).upper() for m in NAMED_ID.finditer(self.asked)))
        kinds = {"account_id": [i for i in named if ACCOUNT_ID.match(i)],
                 "activity_id": [i for i in named if not ACCOUNT_ID.match(i)]}
        for s in steps:
            if s.tool != "propose_recommendation":
                continue
            for key, ids in kinds.items():
                value = s.args.get(key)
                if value and len(ids) == 1 and str(value).upper() != ids[0]:
                    ex.notes.append(f"proposal for {ids[0]}, which the user named, not {value}")
                    s.args[key] = ids[0]

    def _filing(self, steps: list[StepRun], ex: Execution) -> list[StepRun]:
        """Make sure next_best_action for a proposal's account runs before it (added when missing);
        a proposal whose action refers to no earlier step takes that step's best action."""
        out: list[StepRun] = []
        nba_of: dict[int, StepRun] = {}
        for s in steps:
            if s.tool == "propose_recommendation" and s.args.get("account_id"):
                target = s.args["account_id"]
                nba = next((o for o in out if o.tool == "next_best_action" and o.args.get("account_id") == target),
                           None)
                if nba is None:
                    nba = StepRun(0, "next_best_action", {"account_id": target}, added=True)
                    out.append(nba)
                    ex.notes.append(f"added next_best_action for {target} before filing")
                nba_of[id(s)] = nba
            out.append(s)
        if any(o.added for o in out):  # renumber: references shift by the inserted steps
            old_to_new = {o.index: n for n, o in enumerate(out, start=1) if not o.added}
            for o in out:
                for k, v in list(o.args.items()):
                    ref = parse_ref(v)
                    if ref is not None and ref[0] in old_to_new:
                        o.args[k] = f"#{old_to_new[ref[0]]}" + (f".{ref[1]}" if ref[1] != 1 else "")
            for i, o in enumerate(out):
                o.index = i + 1
        if not any(o.tool == "propose_recommendation" for o in out):
            # intent "file" with no proposal (the 1.5B model planned next_best_action only in live filing
            # tasks): file the best action of the last next_best_action, as the intent says
            last = next((o for o in reversed(out) if o.tool == "next_best_action"), None)
            if last is not None:
                proposal = StepRun(len(out) + 1, "propose_recommendation",
                                   {"account_id": last.args.get("account_id"), "action": f"#{last.index}",
                                    "rationale": ""}, added=True)
                out.append(proposal)
                nba_of[id(proposal)] = last
                ex.notes.append("added propose_recommendation: the plan's intent is to file")
        for s in out:
            nba = nba_of.get(id(s))
            if nba is None:
                continue
            ref = parse_ref(s.args.get("action"))
            if not s.args.get("action") or (ref is not None and ref[0] >= s.index):
                s.args["action"] = f"#{nba.index}"
        return out

    def _problem(self, s: StepRun, steps: list[StepRun], ex: Execution) -> str | None:
        if s.tool not in OFFERED:
            return f"there is no tool {s.tool!r}; the tools are: {', '.join(sorted(OFFERED))}"
        for k, v in s.args.items():
            ref = parse_ref(v)
            if ref is not None and ref[0] >= s.index:
                return f"{k} refers to step {ref[0]}, which does not come before step {s.index}"
        filters = s.args.get("filters")
        if isinstance(filters, dict) and filters:
            kept = {k: v for k, v in filters.items() if v in (None, "", [], {}) or named_by_user(v, self.said)}
            if len(kept) != len(filters):
                dropped = [f"{k}={v!r}" for k, v in filters.items() if k not in kept]
                ex.notes.append(f"dropped filters the user never named: {', '.join(dropped)}")
            if kept and (s.tool == "churn_risk" or s.args.get("entity") == "accounts"):
                kept = self._rekeyed(kept, ex)
            elif kept and s.tool in SCOPED_COLUMNS:
                kept = self._rekeyed(kept, ex, tool=s.tool)
            s.args["filters"] = kept or None
        self._drop_unsaid_goals(s, ex)
        period = s.args.get("period")
        if period not in (None, "") and squash(str(period)) not in self.said and str(period) not in self._periods():
            ex.notes.append(f"dropped period {period!r}: the user never wrote it and the data has no such period")
            s.args.pop("period")
        for arg in ID_ARGS:
            value = s.args.get(arg)
            if (isinstance(value, str) and value.strip() and parse_ref(value) is None
                    and value.strip().upper() not in self.known
                    and value.strip().upper() not in self._returned_ids()):
                return (f"{arg} {value!r} was not given by the user nor returned by a step; never invent ids: "
                        "find accounts with rank or churn_risk first, or ask the user")
        return None

    def _returned_ids(self) -> set[str]:
        """The ids this turn's finished steps returned in their id fields (a replan may use them)."""
        done = [(x.tool, x.result.model_dump(mode="json")) for x in self.done.values() if x.result is not None]
        return tool_ids([*done, *self.core_errors])

    def _rekeyed(self, filters: dict[str, Any], ex: Execution, *, tool: str | None = None) -> dict[str, Any]:
        """Filters with a value moved to the one field that holds it ("industry": "Mid-Market" is a
        segment; "APAC team" is a team): the 1.5B model mixes up the field a named scope belongs to.

        Account filters by default; `tool`'s own filter fields for the pipeline and service tools,
        where a value held by several fields stays where the model put it unless the user named
        another of them beside it."""
        keys = TOOLS_BY_NAME[tool].filter_keys if tool else FILTER_KEYS
        known = self._scoped_values(tool) if tool else self._filter_values()
        out: dict[str, Any] = {}
        for key, value in filters.items():
            text = str(value).casefold()
            homes = [k for k in keys if text in known.get(k, set())] if isinstance(value, str) else []
            if len(homes) > 1:
                home = self._named_field(value, homes, default=key if tool and key in homes else None)
                if home != key and home not in out:
                    ex.notes.append(f"filter {key}={value!r}: {value!r} is also a {home}, the one the user meant: moved")
                    out[home] = value
                else:
                    out[key] = value
                continue
            if not isinstance(value, str) or text in known.get(key, set()):
                out[key] = value
                continue
            if len(homes) == 1 and homes[0] not in out:
                ex.notes.append(f"filter {key}={value!r} is a {homes[0]}: moved")
                out[homes[0]] = value
            else:
                out[key] = value  # the tool says which values are valid
        return out

    def _named_field(self, value: str, homes: list[str], default: str | None = None) -> str:
        """The field a value held by several fields belongs to: the one the user named beside it
        ("Enterprise plan", "the Enterprise tier", "the APAC team"), else `default`, else the first
        in FILTER_KEYS order (segment before plan: "Enterprise accounts" is the segment)."""
        v = squash(value)
        for home in homes:
            words = (home, "tier") if home == "plan" else (home,)
            if any(v + w in self.said or w + v in self.said for w in words):
                return home
        return default or homes[0]

    def _scoped_values(self, tool: str) -> dict[str, set[str]]:
        """The values each of `tool`'s filter fields holds in the data, case-folded."""
        if tool not in self._tool_values:
            columns = SCOPED_COLUMNS[tool]
            with self.ctx.sessions() as session:
                found = column_values(session, columns, [k for k in TOOLS_BY_NAME[tool].filter_keys if k in columns])
            self._tool_values[tool] = {key: {v.casefold() for v in values} for key, values in found.items()}
        return self._tool_values[tool]

    def _drop_unsaid_goals(self, s: StepRun, ex: Execution) -> None:
        """Drop a goal or threshold the user never stated (a `target`, a `stale_days`, a `quarter`
        when they named none): the 1.5B model fills them in ("target": 100), and an invented target
        gives an invented coverage. The tool's default (the quotas, the current quarter) applies."""
        for arg in GOAL_ARGS:
            value = s.args.get(arg)
            if value in (None, ""):
                continue
            if isinstance(value, int | float) and not isinstance(value, bool):
                if any(traceable(token, [float(value)]) for token in numbers_in(self.asked)):
                    continue
                if arg == "stale_days" and re.search(r"\b(days?|weeks?|fortnight|months?)\b", self.asked, re.I):
                    continue  # "quiet for two weeks": a span in words is the user's
                ex.notes.append(f"dropped {arg}={value!r}: the user never stated it (the default applies)")
                s.args.pop(arg)
        quarter = s.args.get("quarter")
        if isinstance(quarter, str) and quarter.strip():
            named = re.search(r"\bq[1-4]\b|\d{4}-?q[1-4]", self.asked, re.IGNORECASE)
            current = re.fullmatch(r"(this|the current|current)( quarter)?", quarter.strip(), re.IGNORECASE)
            if current or not (named or "quarter" in self.asked.casefold()):
                ex.notes.append(f"dropped quarter {quarter!r}: the user named no other quarter (the current one applies)")
                s.args.pop("quarter")

    def _periods(self) -> set[str]:
        if self._known_periods is None:
            with self.ctx.sessions() as session:
                self._known_periods = set(activity_periods(session))
        return self._known_periods

    def _filter_values(self) -> dict[str, set[str]]:
        if self._values is None:
            with self.ctx.sessions() as session:
                found = scope_values(session=session, keys=FILTER_KEYS, limit=10_000)
            self._values = {key: {v.casefold() for v in values} for key, values in found.items()}
        return self._values

    # ------------------------------------------------------------------ running
    def _resolve(self, s: StepRun, steps: list[StepRun]) -> str | None:
        """Replace references by ids from earlier results; the error when one cannot be resolved."""
        by_index = {x.index: x for x in steps}
        proposal = s.tool == "propose_recommendation"
        # a proposal's account first: the action the user named (if any) is looked up for it
        for k, v in sorted(s.args.items(), key=lambda kv: proposal and kv[0] == "action"):
            ref = parse_ref(v)
            if ref is None:
                continue
            if proposal and k == "action" and self._named_action(s, steps) is not None:
                continue  # _check_proposal puts the named action in
            source = by_index.get(ref[0])
            if source is None or source.result is None:
                return f"{k} refers to step {ref[0]}, which returned nothing"
            ids = ids_in(source.result, k)
            if len(ids) < ref[1]:
                return f"{k} refers to item {ref[1]} of step {ref[0]}, which returned {len(ids)}"
            s.args[k] = ids[ref[1] - 1]
        if s.tool == "propose_recommendation":
            return self._check_proposal(s, steps)
        return None

    def _nba_for(self, account: Any, steps: list[StepRun]) -> NextBestActionResult | None:
        """The latest next_best_action result of this plan for `account`."""
        return next((x.result for x in reversed(steps) if isinstance(x.result, NextBestActionResult)
                     and x.result.account_id.upper() == str(account).upper()), None)

    def _named_action(self, s: StepRun, steps: list[StepRun]) -> str | None:
        """The one action next_best_action listed for the proposal's account (eligible or suppressed)
        that the user named in this turn's question ("File a champion_rebuild for ..."), if any."""
        nba = self._nba_for(s.args.get("account_id"), steps)
        if nba is None:
            return None
        asked = squash(self.asked)
        listed = dict.fromkeys([*(a.action for a in nba.actions), *(x.action for x in nba.suppressed),
                                *(h.action for h in nba.held_out)])
        named = [a for a in listed if squash(a) in asked]
        return named[0] if len(named) == 1 else None

    def _check_proposal(self, s: StepRun, steps: list[StepRun]) -> str | None:
        account = s.args.get("account_id")
        if not account:
            return self._check_activity_proposal(s, steps)
        nba = self._nba_for(account, steps)
        if nba is None:
            return f"not filed: next_best_action for {account!r} did not run"
        actions = {a.action: a for a in nba.actions}
        suppressed = nba.suppressed
        named = self._named_action(s, steps)
        if named is not None:  # the action the user named wins over the plan's
            s.args["action"] = named
        action = s.args.get("action")
        waiting = next((x for x in suppressed if x.action == action and x.status == "pending"), None)
        if waiting is not None:  # already awaiting approval: the core's duplicate guard returns that one
            if not str(s.args.get("rationale") or "").strip():
                s.args["rationale"] = waiting.reason
            return None
        if any(h.action == action for h in nba.held_out):
            return None  # the core refuses it and records the account as a control unit of the action
        if action not in actions:
            return (f"not filed: {action!r} is not among the actions next_best_action found for {account!r}: "
                    f"{', '.join(actions) or 'none'}")
        if not str(s.args.get("rationale") or "").strip():
            option = actions[action]
            s.args["rationale"] = f"{option.rationale} ({option.formula})"
        return None

    def _check_activity_proposal(self, s: StepRun, steps: list[StepRun]) -> str | None:
        """An activity's action must be one the user named or one this plan's results give that
        activity (its quadrant, an initiative's type or id, a suggested initiative): never one the
        model made up (issue #19, item 5: `shut_down_hosting_now` was filed for an activity)."""
        activity, action = str(s.args.get("activity_id") or ""), str(s.args.get("action") or "")
        if not squash(action) or parse_ref(action) is not None:
            return "not filed: an activity's proposal needs the action by name (next_best_action is for accounts)"
        if len(squash(action)) >= 4 and squash(action) in squash(self.asked):
            return None  # the user named it
        known = activity_actions(activity, [x.result.model_dump(mode="json") for x in steps
                                            if x.index < s.index and x.result is not None])
        if any(squash(k) in squash(action) for k in known if len(squash(k)) >= 4):
            return None
        offered = ", ".join(sorted(known)) or "none (score or analyse the activity first, or name the action)"
        return f"not filed: {action!r} is neither an action the user named nor one the results give {activity!r}: {offered}"

    async def run(self, plan: Plan, on_event: OnEvent | None = None) -> Execution:
        """Check and run `plan`; failures are on the steps (`Execution.failed`), never raised."""
        if on_event is not None:
            self.on_event = on_event
        ex = Execution()
        self.last = ex
        steps = self.prepare(plan, ex)
        ex.steps = steps
        pending = [s for s in steps if s.error is None]
        for s in steps:
            if s.error is not None:
                s.fixable = True
                await self._event("tool_end", s)
        while pending:
            ready = [s for s in pending if all(self._finished(steps, r) for r in refs_of(Step(tool=s.tool, args=s.args)))]
            if not ready:  # a reference to a failed step
                for s in pending:
                    s.error = "an earlier step it needs failed"
                    await self._event("tool_end", s)
                break
            # a writing step runs alone, after every step before it (a proposal needs the
            # next_best_action it names even when it does not reference that step)
            writers = [s for s in ready if TOOLS_BY_NAME[s.tool].writes]
            writer = next((w for w in writers if all(self._finished(steps, i) for i in range(1, w.index))), None)
            readers = [s for s in ready if not TOOLS_BY_NAME[s.tool].writes]
            wave = [writer] if writer is not None else readers
            if not wave:  # only writers whose earlier steps cannot finish: run the first anyway
                wave = writers[:1]
            await asyncio.gather(*(self._run_step(s, steps) for s in wave))
            pending = [s for s in pending if s not in wave]
        return ex

    @staticmethod
    def _finished(steps: list[StepRun], index: int) -> bool:
        target = next((x for x in steps if x.index == index), None)
        return target is None or target.result is not None or target.error is not None

    async def _run_step(self, s: StepRun, steps: list[StepRun]) -> None:
        problem = self._resolve(s, steps)
        await self._event("tool_start", s)
        if problem is not None:
            s.error = problem
            await self._event("tool_end", s)
            return
        key = step_key(s)
        reads = not TOOLS_BY_NAME[s.tool].writes
        if reads and key in self.done:
            s.result = self.done[key].result
            await self._event("tool_end", s)
            return
        if reads and key in self.inflight:  # the same call is running in this wave: share its outcome
            twin = await asyncio.shield(self.inflight[key])
            s.result, s.error, s.fixable = twin.result, twin.error, twin.fixable
            await self._event("tool_end", s)
            return
        shared: asyncio.Future[StepRun] = asyncio.get_running_loop().create_future()
        if reads:
            self.inflight[key] = shared
        t0 = time.perf_counter()
        try:
            await asyncio.to_thread(self.ctx.call, TOOLS_BY_NAME[s.tool], s.args, call_id=f"step-{s.index}")
        except ToolFixableError as exc:
            s.error = str(exc)
            self.core_errors.append((s.tool, s.error))
        except Exception as exc:  # a fault: logged on the step, then it ends the turn
            s.error, s.fixable = f"{type(exc).__name__}: {exc}", False
            s.seconds = time.perf_counter() - t0
            shared.set_exception(exc)
            shared.exception()  # retrieved here: a lone fault has no twin waiting on it
            self.inflight.pop(key, None)
            await self._event("tool_end", s)
            raise
        else:
            outcome = self.ctx.outcome_of(f"step-{s.index}")
            s.result = outcome.result if outcome is not None else None
            if reads:
                self.done[key] = s
        shared.set_result(s)
        self.inflight.pop(key, None)
        s.seconds = time.perf_counter() - t0
        await self._event("tool_end", s)

    async def _event(self, kind: str, s: StepRun) -> None:
        if self.on_event is not None:
            await self.on_event(kind, s)


def step_key(s: StepRun) -> str:
    """One key per distinct call: the tool and its resolved arguments."""
    return s.tool + repr(sorted(s.args.items()))


def prepared_plan(plan: Plan, question: str, sessions: Any) -> tuple[Plan, str | None]:
    """What the executor would start running for `plan` as the only turn asking `question`: the
    intent settled by the user's words, then the checks and repairs above; steps that fail them
    left out (no tool runs; for grading plans as the product runs them). Also the feedback the
    planner would get to replan (an id the user named that no step uses, or the steps' errors),
    None when the product would run this plan as it is."""
    plan = add_asked_steps(question, settle_filing(question, plan)[0])[0]
    replan = replan_feedback(question, plan)  # before anything runs, as the pipeline asks it
    ctx = RunContext(sessions=sessions, knowledge=lambda: None, run_id="prepare", conversation_id="prepare")
    executor = Executor(ctx, said=squash(question), known=question.upper(), asked=question)
    steps = executor.prepare(plan, Execution())
    feedback = replan or (
        "; ".join(f"step {s.index} {s.tool}: {s.error}" for s in steps if s.error is not None) or None)
    return Plan(intent=plan.intent, steps=[Step(tool=s.tool, args=s.args) for s in steps if s.error is None]), feedback
