"""The data a user asked for, rendered by code from the tool results: exact figures, names and ids.

The model writes only the short narrative around it, so a ranking, a list of accounts or a
table of activities is never retyped by the 1.5B model (which regrouped digits of large
figures and dropped list items). Money is shown to the unit with thousands separators, shares
and probabilities as percentages with one decimal, as the tools computed them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import Any

from pydantic import BaseModel

from core.currency import amount
from knowledge.search import KnowledgeResults
from tools.accounts import AccountProfile, AccountTimeline
from tools.activities import ActivityScores
from tools.analysis.models import ValueChainAnalysis
from tools.churn.schemas import AccountChurnRisk, ChurnRiskResult
from tools.deals.score import DealScore
from tools.nba import NextBestActionResult
from tools.pipeline.health import PipelineHealth
from tools.ranking import RankResult
from tools.recommendations import ProposedRecommendation
from tools.service_queue.queue import ServiceQueue

MAX_ROWS = 20


CURRENCY: ContextVar[str] = ContextVar("answer_currency", default="USD")
"""ISO 4217 code of the CRM's amounts (`settings.currency`); the agent sets it for its turn."""


ASKED: ContextVar[str] = ContextVar("answer_question", default="")
"""The question being answered (the agent sets it for its turn): a ranking shows the descriptive
fields it names ("who owns it?" adds the owner column)."""

ASKED_FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("owner", ("owner", "owns", "owned", "account manager", "rep ")),
    ("owner_team", ("owner", "owns", "owned", "team")),
    ("segment", ("segment",)),
    ("region", ("region",)),
    ("industry", ("industry", "industries", "sector")),
    ("quadrant", ("quadrant",)),
    ("porter_category", ("category", "categories", "porter")),
)
"""Context fields of a ranking's items → words that ask for them."""


def asked_fields(question: str, context: dict[str, Any]) -> list[str]:
    """The descriptive (text) fields of `context` that `question` asks about, in `ASKED_FIELDS` order."""
    q = f" {question.lower()} "
    return [key for key, words in ASKED_FIELDS
            if isinstance(context.get(key), str) and any(w in q for w in words)]


def money(x: float | None) -> str:
    """An amount in the CRM's currency, whole units: $19,255,500."""
    return "–" if x is None else amount(x, CURRENCY.get())


def pct(x: float | None) -> str:
    return "–" if x is None else f"{x * 100:.1f}%"


def num(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:,.2f}" if abs(x) >= 1 else f"{x:.3f}"


def _cell(text: object) -> str:
    return str(text).replace("|", "/").replace("\n", " ")


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _metric_value(r: RankResult, value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "–"
    if r.unit == "currency":
        return money(float(value))
    if r.unit in ("days", "count"):
        return f"{value:,.0f}"
    if r.unit == "probability" or r.metric == "performance_gap":  # a relative shortfall reads as a percentage
        return pct(float(value))
    return num(float(value))


def render_rank(r: RankResult) -> str:
    name = r.metric.replace("_", " ")
    scope = ", ".join(f"{k} {', '.join(v)}" for k, v in r.filters.items() if k != "status")
    title = f"**{r.entity.capitalize()} by {name}**" + (f" ({scope})" if scope else "")
    extra = "arr" if r.entity == "accounts" and r.metric != "arr" else None
    fields = asked_fields(ASKED.get(), r.items[0].context) if r.items else []
    header = ["#", "name (id)", name] + (["ARR"] if extra else []) + [f.replace("_", " ") for f in fields]
    rows = []
    for i in r.items[:MAX_ROWS]:
        row: list[object] = [i.rank, f"{i.name} ({i.id})", _metric_value(r, i.value)]
        if extra:
            arr = i.context.get("arr")
            row.append(money(float(arr)) if isinstance(arr, int | float) else "–")
        row += [i.context.get(f) or "–" for f in fields]
        rows.append(row)
    # the tool's own count, not a difference code computes: every figure shown traces to a result
    more = f"\n\nShowing {len(rows)} of {r.total_matching} that match." if r.total_matching > len(rows) else ""
    return f"{title}\n\n{table(header, rows)}{more}"


def _drivers(a: AccountChurnRisk) -> str:
    return "; ".join(d.phrase for d in a.drivers) or "no strong drivers"


def render_churn(r: ChurnRiskResult) -> str:
    if len(r.accounts) == 1 and r.matched == 1:
        a = r.accounts[0]
        return (f"**{a.name} ({a.account_id})**: churn probability {pct(a.probability)} ({a.band} risk), "
                f"ARR {money(a.arr)}, ARR at risk {money(a.arr_at_risk)}. Drivers: {_drivers(a)}.")
    rows = [[f"{a.name} ({a.account_id})", pct(a.probability), a.band, money(a.arr_at_risk), _drivers(a)]
            for a in r.accounts[:MAX_ROWS]]
    head = f"**Churn risk** ({r.matched} accounts matched, ARR at risk {money(r.total_arr_at_risk)})"
    return f"{head}\n\n{table(['account', 'probability', 'band', 'ARR at risk', 'drivers'], rows)}"


def render_nba(r: NextBestActionResult) -> str:
    head = f"**Next best actions for {r.name} ({r.account_id})** (churn probability {pct(r.p_churn)}, {r.band})"
    if not r.actions:
        why = "; ".join(f"{s.action}: {s.reason}" for s in r.suppressed) or "no playbook action fits now"
        return f"{head}: none ({why})."
    rows = [[a.action, a.kind, money(a.expected_value), money(a.cost),
             "; ".join(dict.fromkeys(e.phrase for e in a.evidence))] for a in r.actions]
    return f"{head}\n\n{table(['action', 'kind', 'expected value', 'cost', 'because'], rows)}"


def render_scores(r: ActivityScores) -> str:
    rows = [[f"{a.name} ({a.id})", money(a.annual_cost), pct(a.cost_share), pct(a.value_share),
             money(a.margin_leak), a.quadrant.replace("_", " ")] for a in r.activities[:MAX_ROWS]]
    head = (f"**Value-chain activities {r.period}** (total cost {money(r.total_cost)}, "
            f"margin leak {money(r.total_margin_leak)})")
    header = ["activity", "cost", "cost share", "value share", "margin leak", "quadrant"]
    return f"{head}\n\n{table(header, rows)}"


def render_account(r: AccountProfile) -> str:
    bits = [f"{r.segment or 'unsegmented'} {r.status} account", f"plan {r.plan or '–'}", f"ARR {money(r.arr)}",
            f"owner {r.owner or '–'}"]
    if r.days_to_renewal is not None:
        bits.append(f"renews in {r.days_to_renewal} days")
    bits.append(f"{r.open_tickets} open tickets")
    if r.last_nps:
        bits.append(f"last NPS {r.last_nps.score}")
    bits.append(f"{r.champions_active} active champions, {r.champions_left} left")
    return f"**{r.name} ({r.id})**: " + ", ".join(bits) + "."


def render_timeline(r: AccountTimeline) -> str:
    rows = [[e.date, e.kind.replace("_", " "), e.summary] for e in r.events[:MAX_ROWS]]
    return f"**{r.name} ({r.account_id}) — latest events**\n\n{table(['date', 'event', 'detail'], rows)}"


def render_analysis(r: ValueChainAnalysis) -> str:
    s3, s4 = r.step3_costs, r.step4_opportunities
    leak = ", ".join(f"{i.name} {money(i.margin_leak)}" for i in s3.margin_leak[:3]) or "none"
    best = ", ".join(f"{i.description} (ROI {num(i.roi)})" for i in s4.initiatives[:3]) or "none"
    return (f"**Value-chain analysis {r.period}** (total cost {money(r.total_cost)})\n\n"
            f"1. Primary activities: {r.step1_primary.summary}\n2. Support activities: {r.step2_support.summary}\n"
            f"3. Costs and performance: largest margin leaks {leak}.\n4. Opportunities: {s4.summary} Top by ROI: {best}.\n"
            f"5. Competitive advantage: {r.step5_advantage.narrative}")


def render_proposed(r: ProposedRecommendation) -> str:
    target = r.account_id or r.activity_id
    if r.duplicate_of is not None:
        return (f"An identical recommendation is already waiting: #{r.duplicate_of} ({r.action} for {target}), "
                "pending approval.")
    return f"Filed recommendation #{r.id}: {r.action} for {target}, pending a human's approval."


def hours(x: float) -> str:
    return f"{x:,.1f} h" if x >= 0 else f"breached {-x:,.1f} h ago"


def render_pipeline(r: PipelineHealth) -> str:
    t = r.total
    cover = f", coverage {num(t.coverage)}× of target {money(t.target)}" if t.coverage is not None else ""
    head = (f"**Pipeline health {r.inputs.quarter}** (as of {r.inputs.as_of}): {t.open_deals} open deals, "
            f"open pipeline {money(t.open_pipeline)}, weighted {money(t.weighted_pipeline)}, expected won "
            f"{money(t.expected_won_amount)}{cover}; {t.stale_deals} stale, {t.slipped_deals} slipped.")
    groups = [[g.key, g.open_deals, money(g.open_pipeline), money(g.weighted_pipeline), money(g.expected_won_amount),
               num(g.coverage) if g.coverage is not None else "–", g.stale_deals, g.slipped_deals]
              for g in r.groups[:MAX_ROWS]]
    by = r.inputs.group_by
    out = f"{head}\n\n{table([by, 'open deals', 'open', 'weighted', 'expected won', 'coverage', 'stale', 'slipped'], groups)}"
    if r.deals_at_risk:
        risky = [[d.opportunity_id, d.owner or "–", d.stage, money(d.amount), pct(d.probability), d.why]
                 for d in r.deals_at_risk[:MAX_ROWS]]
        out += f"\n\n**Deals at risk** ({r.at_risk_count})\n\n" + table(
            ["deal", "owner", "stage", "amount", "win probability", "why"], risky)
    return out


def render_deal(r: DealScore) -> str:
    drivers = "; ".join(f"{d.phrase} ({d.direction} it)" for d in r.drivers) or "no drivers"
    return (f"**Deal {r.opportunity_id}** ({r.stage}, {r.owner or 'no owner'}, amount {money(r.amount)}): "
            f"win probability {pct(r.probability)}. Drivers: {drivers}.")


def render_queue(r: ServiceQueue) -> str:
    head = (f"**Service queue** (as of {r.inputs.as_of}): {r.open_tickets} open tickets, {r.breached} past their SLA, "
            f"{r.likely_to_breach} likely to breach.")
    rows = [[q.rank, q.ticket_id, f"{q.account_name} ({q.account_id})", q.priority, hours(q.hours_left),
             pct(q.p_sla_breach), money(q.clv), money(q.score), q.why] for q in r.items[:MAX_ROWS]]
    header = ["#", "ticket", "account", "priority", "time left", "breach chance", "CLV", "score", "why"]
    return f"{head}\n\n{table(header, rows)}"


EXCERPT_CHARS = 280
"""Characters of the best passage quoted under an answer from the knowledge base (whole sentences)."""


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """The start of `text` in whole sentences, at most `limit` characters (or its first sentence cut
    at a word, with an ellipsis)."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = max(text.rfind(". ", 0, limit), text.rfind("? ", 0, limit), text.rfind("! ", 0, limit))
    if cut > 0:
        return text[: cut + 1]
    return text[: text.rfind(" ", 0, limit)].rstrip(",;:") + "…"


def render_sources(r: KnowledgeResults) -> str:
    """The passages cited, and the best one quoted: what the answer rests on, in the source's words."""
    if not r.on_topic or not r.results:
        return ""
    seen = dict.fromkeys(f"[{h.source} § {h.section}]" for h in r.results)
    best = r.results[0]
    return f"Sources: {', '.join(seen)}\n\nFrom [{best.source} § {best.section}]: “{excerpt(best.text)}”"


RENDERERS: dict[type[BaseModel], Callable[[Any], str]] = {
    RankResult: render_rank,
    ChurnRiskResult: render_churn,
    NextBestActionResult: render_nba,
    ActivityScores: render_scores,
    AccountProfile: render_account,
    AccountTimeline: render_timeline,
    ValueChainAnalysis: render_analysis,
    ProposedRecommendation: render_proposed,
    KnowledgeResults: render_sources,
    PipelineHealth: render_pipeline,
    DealScore: render_deal,
    ServiceQueue: render_queue,
}


def render(result: BaseModel) -> str:
    """The user-facing block for one tool result ('' for a result with nothing to show)."""
    fn = RENDERERS.get(type(result))
    return fn(result) if fn else ""
