"""The report as a format-neutral document: sections of headings, paragraphs, tables and charts.

Markdown, HTML and PDF render the same `Document`, so the three formats carry the same
headings, tables and figures; only the charts differ (HTML and PDF draw them, Markdown lists
the figures they are drawn from).
"""

from __future__ import annotations

import re
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Literal

from core.currency import amount, symbol
from tools.analysis import ValueChainAnalysis
from tools.analysis.models import AreaMetric
from tools.analysis.report.charts import ChartKey, short_id

Align = Literal["left", "right"]

STEP_HEADINGS: tuple[str, ...] = (
    "1. Primary activities",
    "2. Support activities",
    "3. Costs and performance",
    "4. Opportunities",
    "5. Competitive advantage",
)
CRM_HEADING = "CRM functional areas"
NOTES_HEADING = "How it is computed"


@dataclass
class Paragraph:
    text: str
    muted: bool = False


@dataclass
class Subheading:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    align: list[Align]
    widths: list[float]  # relative column widths (PDF)
    caption: str = ""
    total_row: bool = False  # the last row is a total (bold)


@dataclass
class ChartBlock:
    key: ChartKey
    caption: str


Block = Paragraph | Subheading | Bullets | Table | ChartBlock


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Document:
    title: str
    subtitle: str
    sections: list[Section]


# ---------------------------------------------------------------------------- formatting


# the currency of the document being built (build_document sets it; ISO 4217 code)
_CURRENCY: ContextVar[str] = ContextVar("report_currency", default="USD")


def _symbol() -> str:
    return symbol(_CURRENCY.get())


def money(x: float | None) -> str:
    """An amount in the report's currency, whole units: $19,255,500."""
    if x is None:
        return "—"
    return amount(x, _CURRENCY.get())


def money_short(x: float) -> str:
    """A headline amount: $19.3M, $893.9k, $950."""
    a = abs(x)
    sign = "-" if x < 0 else ""
    if a >= 1e6:
        return f"{sign}{_symbol()}{a / 1e6:,.1f}M"
    if a >= 1e4:
        return f"{sign}{_symbol()}{a / 1e3:,.1f}k"
    return money(x)


_QUADRANT_WORDS = {
    "invest_and_scale": "invest and scale",
    "eliminate_or_restructure": "eliminate or restructure",
}
_SNAKE = re.compile(r"\b[a-z]+(?:_[a-z]+)+\b")
_AMOUNT = re.compile(r"(?<![\w.,$€£¥₹])\d{1,3}(?:,\d{3})+(?![\d,]*\s*%)(?!\.\d)")


def readable(text: str) -> str:
    """Tool text for a business reader: no formula shorthand, tool names or snake_case ids
    (the appendix, "How it is computed", keeps the formulas)."""
    text = text.replace(" Figures from score_activities and rank.", "")
    text = text.replace(" (AQ > SQ)", "")
    for key, label in _QUADRANT_WORDS.items():
        text = text.replace(key, label)
    text = _SNAKE.sub(lambda m: m.group(0).replace("_", " "), text)
    # the tool writes amounts as grouped whole numbers (19,255,500): the reader gets $19.3M
    return _AMOUNT.sub(lambda m: money_short(float(m.group(0).replace(",", ""))), text)


def pct(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{x:.{digits}%}"


def num(x: float | None, digits: int = 2) -> str:
    return "—" if x is None else f"{x:,.{digits}f}"


def plain(x: float | None) -> str:
    """A performance figure as recorded: no thousands grouping surprises, trailing zeros cut."""
    if x is None:
        return "—"
    return f"{x:,.4f}".rstrip("0").rstrip(".")


def words(name: str) -> str:
    return name.replace("_", " ")


def metric_value(m: AreaMetric) -> str:
    if m.value is None:
        return "—"
    if m.unit == "currency":
        return money(m.value)
    if m.unit == "ratio":
        return pct(m.value)
    if m.unit == "days":
        return f"{m.value:,.1f} days"
    if m.unit == "points":
        return f"{m.value:+.1f}"
    if m.unit == "score":
        return num(m.value)
    return f"{m.value:,.0f}"


def _direction(d: str | None) -> str:
    return {"higher_is_better": "↑", "lower_is_better": "↓"}.get(d or "", "")


# ---------------------------------------------------------------------------- sections


def _summary(r: ValueChainAnalysis) -> Section:
    s3, s4, s5 = r.step3_costs, r.step4_opportunities, r.step5_advantage
    rows = [
        [
            "Activities",
            f"{r.n_activities} ({len(r.step1_primary.activities)} primary, {len(r.step2_support.activities)} support)",
        ],
        ["Total cost", money_short(r.total_cost)],
        ["Margin leak", f"{money_short(s3.total_margin_leak)} ({pct(s3.margin_leak_share_of_cost)} of cost)"],
        ["Activities behind target", str(len(s3.bottlenecks))],
        [
            "Non-value-added cost (driver data)",
            f"{money(s3.total_non_value_added_cost + s3.total_unused_capacity_cost)} "
            f"({pct(s3.driver_cost_coverage, 0)} of cost has driver data)",
        ],
        [
            "Open initiatives",
            f"{s4.open_initiatives}: {money(s4.open_est_annual_benefit)} a year for {money(s4.open_est_cost)}",
        ],
        ["Likely decorative initiatives", str(len(s5.decorative))],
        ["Suggested new initiatives", str(len(s4.suggestions))],
    ]
    return Section(
        "Summary",
        [
            Table(["Figure", "Value"], rows, ["left", "left"], [1.2, 2.0]),
            Paragraph(readable(s5.narrative)),
        ],
    )


def _step1(r: ValueChainAnalysis) -> Section:
    s1 = r.step1_primary
    blocks: list[Block] = [Paragraph(readable(s1.summary))]
    rows = [
        [
            words(a.porter_category),
            f"{a.name} ({short_id(a.id, r.period)})",
            a.owner_team or "—",
            ", ".join(a.systems) or "—",
            money(a.annual_cost),
            num(a.value_score, 1),
        ]
        for a in s1.activities
    ]
    rows.append(["Total", "", "", "", money(s1.total_cost), ""])
    blocks.append(
        Table(
            ["Category", "Activity", "Owner team", "Systems", "Annual cost", "Value (0–10)"],
            rows,
            ["left", "left", "left", "left", "right", "right"],
            [1.1, 1.9, 1.2, 1.9, 0.9, 0.7],
            caption="Primary activities by Porter category: who owns them, what they run on, cost and value score.",
            total_row=True,
        )
    )
    perf = [
        [
            a.name,
            a.performance_metric or "—",
            f"{plain(a.performance_actual)}",
            f"{plain(a.performance_target)} {_direction(a.performance_direction)}".strip(),
            pct(a.performance_gap),
            {"below_target": "below target", "on_or_above_target": "on target", "no_data": "no data"}[
                a.performance_status
            ],
        ]
        for a in s1.activities
    ]
    blocks.append(
        Table(
            ["Activity", "Performance metric", "Actual", "Target", "Gap", "Status"],
            perf,
            ["left", "left", "right", "right", "right", "left"],
            [1.9, 2.2, 0.8, 0.9, 0.7, 0.9],
            caption="Performance against target (gap > 0 = behind; ↑ higher is better, ↓ lower is better).",
        )
    )
    if s1.missing_categories:
        blocks.append(
            Paragraph(
                "No primary activity recorded in: "
                + ", ".join(words(c) for c in s1.missing_categories)
                + ".",
                muted=True,
            )
        )
    return Section(STEP_HEADINGS[0], blocks)


def _step2(r: ValueChainAnalysis) -> Section:
    s2 = r.step2_support
    by_id = {a.id: a.name for a in r.step1_primary.activities}
    rows = [
        [
            words(a.porter_category),
            a.name,
            a.owner_team or "—",
            money(a.annual_cost),
            num(a.value_score, 1),
            ", ".join(e.name for e in a.enables) or "—",
        ]
        for a in s2.activities
    ]
    blocks: list[Block] = [
        Paragraph(readable(s2.summary)),
        Table(
            ["Category", "Support activity", "Owner team", "Annual cost", "Value (0–10)", "Enables"],
            rows,
            ["left", "left", "left", "right", "right", "left"],
            [1.2, 1.7, 1.1, 0.9, 0.7, 2.8],
            caption="Support activities and the primary activities each one enables.",
        ),
    ]
    support_names = {a.id: a.name for a in s2.activities}
    blocks.append(
        Table(
            ["Primary activity", "Enabled by"],
            [
                [by_id.get(p, p), ", ".join(support_names.get(s, s) for s in sups) or "— (none recorded)"]
                for p, sups in s2.enablement.items()
            ],
            ["left", "left"],
            [1.5, 3.5],
            caption="The same map read from the primary side.",
        )
    )
    unresolved = [(a.name, a.unresolved_enables) for a in s2.activities if a.unresolved_enables]
    if unresolved:
        blocks.append(
            Bullets([f"{name}: enables unknown id(s) {', '.join(ids)}" for name, ids in unresolved])
        )
    return Section(STEP_HEADINGS[1], blocks)


def _step3(r: ValueChainAnalysis) -> Section:
    s3 = r.step3_costs
    blocks: list[Block] = [
        Paragraph(readable(s3.summary)),
        ChartBlock(
            "quadrants",
            "Each activity's cost share against its share of customer value. Below the dotted diagonal an "
            "activity costs more than the value it adds; the dashed lines at 1/n split the four quadrants.",
        ),
        Table(
            ["Quadrant", "Activities"],
            [[words(q), str(c)] for q, c in s3.quadrant_counts.items()],
            ["left", "right"],
            [2, 1],
        ),
        Subheading("Where margin is lost"),
        ChartBlock(
            "margin_leak", "Margin leak: what an activity costs beyond its share of customer value; colour = quadrant."
        ),
        Table(
            ["#", "Activity", "Margin leak", "Share of leak", "Cost share", "Value share", "Quadrant"],
            [
                [
                    str(x.rank),
                    f"{x.name} ({short_id(x.id, r.period)})",
                    money(x.margin_leak),
                    pct(x.share_of_total_leak),
                    pct(x.cost_share),
                    pct(x.value_share),
                    words(x.quadrant),
                ]
                for x in s3.margin_leak
            ]
            + [["", "Total", money(s3.total_margin_leak), pct(1.0 if s3.margin_leak else 0.0), "", "", ""]],
            ["right", "left", "right", "right", "right", "right", "left"],
            [0.4, 2.2, 1.0, 0.9, 0.8, 0.8, 1.5],
            total_row=True,
        ),
        Subheading("Bottlenecks: largest performance gaps"),
    ]
    if s3.bottlenecks:
        blocks.append(
            Table(
                ["#", "Activity", "Metric", "Actual", "Target", "Gap"],
                [
                    [
                        str(b.rank),
                        b.name,
                        b.performance_metric or "—",
                        plain(b.performance_actual),
                        f"{plain(b.performance_target)} {_direction(b.performance_direction)}".strip(),
                        pct(b.performance_gap),
                    ]
                    for b in s3.bottlenecks
                ],
                ["right", "left", "left", "right", "right", "right"],
                [0.4, 2.1, 2.3, 0.8, 0.9, 0.7],
            )
        )
    else:
        blocks.append(Paragraph("No activity is behind its target."))
    if s3.activities_without_performance_data:
        blocks.append(
            Paragraph(
                "No performance data: " + ", ".join(s3.activities_without_performance_data) + ".", muted=True
            )
        )
    blocks.append(Subheading("Value-added and non-value-added cost (activity-based)"))
    if s3.activity_based:
        rows = [
            [
                x.name,
                x.cost_driver or "—",
                money(x.annual_cost),
                money(x.value_added_cost),
                money(x.non_value_added_cost),
                money(x.unused_capacity_cost),
            ]
            for x in s3.activity_based
        ]
        rows.append(
            [
                "Total",
                f"{pct(s3.driver_cost_coverage, 0)} of cost",
                money(sum(x.annual_cost for x in s3.activity_based)),
                money(s3.total_value_added_cost),
                money(s3.total_non_value_added_cost),
                money(s3.total_unused_capacity_cost),
            ]
        )
        blocks.append(
            Table(
                [
                    "Activity",
                    "Cost driver",
                    "Annual cost",
                    "Value-added",
                    "Non-value-added",
                    "Unused capacity",
                ],
                rows,
                ["left", "left", "right", "right", "right", "right"],
                [1.7, 1.6, 0.9, 0.9, 1.3, 1.1],
                caption="Value-added: the cost of the driver volume the activity should need at the standard price; "
                "non-value-added: the cost of the volume used above that standard (all of it for an activity marked "
                "unnecessary); unused capacity: committed volume paid for but not used. Formulas: How it is computed.",
                total_row=True,
            )
        )
    else:
        blocks.append(Paragraph("No activity carries cost-driver data in this period."))
    return Section(STEP_HEADINGS[2], blocks)


def _step4(r: ValueChainAnalysis) -> Section:
    s4 = r.step4_opportunities
    blocks: list[Block] = [Paragraph(readable(s4.summary))]
    if s4.initiatives:
        blocks.append(
            ChartBlock("initiative_roi", "ROI of each initiative; colour = the advantage it is tied to.")
        )
        blocks.append(
            Table(
                [
                    "#",
                    "Initiative",
                    "Activity",
                    "Type",
                    "Owner",
                    "Status, due",
                    "Cost",
                    "Benefit / yr",
                    "ROI",
                    "Net",
                ],
                [
                    [
                        str(i.roi_rank),
                        f"{i.id} {i.description}",
                        i.activity_name,
                        i.type,
                        i.owner or "—",
                        f"{words(i.status)}, due {i.due.isoformat() if i.due else '—'}",
                        money(i.est_cost),
                        money(i.est_annual_benefit),
                        "—" if i.roi is None else f"{i.roi:.1f}×",
                        f"{money(i.net_benefit)} (#{i.net_benefit_rank})",
                    ]
                    for i in s4.initiatives
                ],
                ["right", "left", "left", "left", "left", "left", "right", "right", "right", "right"],
                [0.3, 2.0, 1.3, 1.0, 1.1, 1.1, 0.8, 1.0, 0.65, 1.0],
                caption="Ranked by ROI = benefit per year / cost (#); net = benefit − cost in the first year, "
                "with its own rank in brackets.",
            )
        )
    if s4.truncated:
        blocks.append(Paragraph("Only the first 1,000 initiatives by ROI are listed.", muted=True))
    blocks.append(Subheading("Suggested initiatives"))
    if s4.suggestions:
        blocks.append(
            Table(
                ["Activity", "Quadrant", "Type", "Owner", "Due", "Addressable / yr", "Why"],
                [
                    [
                        x.activity_name,
                        words(x.quadrant),
                        x.type,
                        x.owner or "—",
                        x.due.isoformat() if x.due else "—",
                        money(x.addressable_cost),
                        readable(x.rule),
                    ]
                    for x in s4.suggestions
                ],
                ["left", "left", "left", "left", "left", "right", "left"],
                [1.5, 1.2, 0.85, 1.0, 0.85, 1.1, 2.3],
                caption="Activities in the optimize or eliminate-or-restructure quadrant with no initiative. "
                "Addressable = margin leak or non-value-added cost, whichever is larger: a ceiling, not an estimate.",
            )
        )
    else:
        blocks.append(Paragraph("Every optimize and eliminate-or-restructure activity has an initiative."))
    return Section(STEP_HEADINGS[3], blocks)


def _step5(r: ValueChainAnalysis) -> Section:
    s5 = r.step5_advantage
    labels = {
        "cost": "Cost advantage",
        "differentiation": "Differentiation",
        "none": "None (likely decorative)",
    }
    blocks: list[Block] = [
        Table(
            ["Advantage", "Open initiatives", "Cost", "Benefit / yr", "Share of benefit"],
            [
                [
                    labels[t.advantage],
                    str(t.initiatives),
                    money(t.est_cost),
                    money(t.est_annual_benefit),
                    pct(t.share_of_benefit),
                ]
                for t in s5.totals
            ],
            ["left", "right", "right", "right", "right"],
            [1.8, 1.0, 1.0, 1.0, 1.0],
        ),
        Table(
            ["Initiative", "Activity", "Advantage", "Benefit / yr", "Flag"],
            [
                [
                    f"{x.initiative_id} {x.description}",
                    x.activity_name,
                    x.advantage or "—",
                    money(x.est_annual_benefit),
                    "likely decorative" if x.decorative else "",
                ]
                for x in s5.links
            ],
            ["left", "left", "left", "right", "left"],
            [2.6, 1.6, 1.0, 0.9, 1.0],
            caption="Each initiative tied to the competitive advantage it builds; one tied to neither is flagged.",
        ),
        Subheading("Narrative"),
        Paragraph(readable(s5.narrative)),
    ]
    return Section(STEP_HEADINGS[4], blocks)


def _crm(r: ValueChainAnalysis) -> Section:
    v = r.crm_view
    blocks: list[Block] = [
        Paragraph(
            f"Which CRM functional area contributes to which value-chain activity, with account metrics "
            f"from {v.window_start} to {v.window_end}."
        ),
        Table(
            ["CRM area", "Contributes", "Activities", "Cost", "Margin leak"],
            [
                [
                    a.label,
                    a.contribution,
                    ", ".join(x.name for x in a.activities) or "— (none recorded)",
                    money(a.annual_cost),
                    money(a.margin_leak),
                ]
                for a in v.areas
            ],
            ["left", "left", "left", "right", "right"],
            [0.9, 2.4, 2.2, 0.8, 0.8],
        ),
    ]
    for a in v.areas:
        blocks.append(Subheading(f"{a.label}: account metrics"))
        blocks.append(
            Table(
                ["Metric", "Value", "Definition"],
                [[WIN_RATE_LABEL if m.name == "win_rate" else m.label, metric_value(m), m.description]
                 for m in a.metrics],
                ["left", "right", "left"],
                [1.5, 0.9, 3.6],
            )
        )
    if v.unmapped_activities:
        blocks.append(
            Paragraph(
                "In no CRM area (logistics, operations, HR, procurement): "
                + ", ".join(short_id(i, r.period) for i in v.unmapped_activities)
                + ".",
                muted=True,
            )
        )
    if any(m.name == "win_rate" for a in v.areas for m in a.metrics):
        blocks.append(Paragraph(WIN_RATE_NOTE, muted=True))
    blocks.append(Paragraph(readable(v.convention), muted=True))
    return Section(CRM_HEADING, blocks)


WIN_RATE_LABEL = "Win rate (CRM opportunities)"
WIN_RATE_NOTE = (
    "The report's win rate is the CRM one: opportunities won ÷ opportunities closed (won + lost), by count, "
    "closing in the window. A \"Win rate\" among the activities' performance metrics is that team's own "
    "recorded figure against its target, not computed from the CRM."
)


def _notes(r: ValueChainAnalysis) -> Section:
    return Section(
        NOTES_HEADING,
        [
            Bullets(
                [
                    "Margin leak = max(0, cost − total cost × value share).",
                    "Activity-based costing with a cost driver: SQ = standard quantity of the driver the output "
                    "should need, AQ = actual quantity used, SP = standard price per unit. Value-added = SQ·SP "
                    "(AQ·SP when capacity is left unused); non-value-added = (AQ − SQ)·SP, or all of the cost for "
                    "an unnecessary activity; unused committed capacity = (SQ − AQ)·SP.",
                    "ROI = estimated benefit per year / estimated cost; net benefit = benefit − cost in the first "
                    "year.",
                    "Win rate (CRM) = closed-won / (closed-won + closed-lost) opportunities closing in the window, "
                    "by count.",
                    f"Amounts are in {_CURRENCY.get()}.",
                    "Cost share = cost / total cost; value share = value score / total value score; "
                    "value/cost index = value share / cost share.",
                    "Quadrants: high means a share ≥ 1/n. Invest and scale = high value, low cost; optimize = "
                    "high value, high cost; eliminate or restructure = low value, high cost; maintain = low, low.",
                    "Every figure comes from the score_activities and rank tools over the same database; the "
                    "same data gives the same report.",
                    "Value scores and initiative estimates are human inputs: better inputs, better analysis.",
                ]
            ),
            Paragraph(r.explanation, muted=True),
        ],
    )


def build_document(result: ValueChainAnalysis, *, currency: str = "USD") -> Document:
    """The report for one analysis result, amounts in `currency` (ISO 4217 code)."""
    token = _CURRENCY.set(currency)
    try:
        return _document(result)
    finally:
        _CURRENCY.reset(token)


def _document(result: ValueChainAnalysis) -> Document:
    return Document(
        title=f"Value-chain analysis {result.period}",
        subtitle=(
            f"{result.n_activities} activities, total cost {money_short(result.total_cost)}; "
            f"data as of {result.as_of}"
        ),
        sections=[
            _summary(result),
            _step1(result),
            _step2(result),
            _step3(result),
            _step4(result),
            _step5(result),
            _crm(result),
            _notes(result),
        ],
    )
