"""The report's charts, drawn with matplotlib's Agg/SVG backends (no pyplot, no global state).

Each chart is built from the analysis result only. SVG output is byte-stable (fixed hash
salt, no date in the metadata) so the same result gives the same HTML.
"""

from __future__ import annotations

import io
import textwrap
from dataclasses import dataclass
from typing import Any, Literal

import matplotlib

matplotlib.use("Agg")  # headless; must come before anything imports pyplot

from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FuncFormatter, PercentFormatter

from tools.analysis import ValueChainAnalysis
from tools.analysis.models import PrimaryActivity, SupportActivity

ChartKey = Literal["quadrants", "margin_leak", "initiative_roi"]
ImageFormat = Literal["svg", "png"]

QUADRANT_COLOURS = {
    "invest_and_scale": "#2e7d32",
    "optimize": "#1565c0",
    "eliminate_or_restructure": "#c62828",
    "maintain": "#757575",
}
ADVANTAGE_COLOURS = {"cost": "#1565c0", "differentiation": "#6a1b9a", None: "#bdbdbd"}
_RC: dict[Any, Any] = {
    "svg.hashsalt": "valuechain-report",
    "svg.fonttype": "none",  # text stays text: smaller, selectable
    "font.family": "DejaVu Sans",
    "font.size": 8.5,  # the smallest text in any chart: 11 px where the report shows charts at their own size
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titleweight": "bold",
    "axes.titlesize": 10,
}


SMALL = 8.5  # points: labels, legends and values are no smaller than the axis text


@dataclass(frozen=True)
class Chart:
    key: ChartKey
    title: str
    alt: str


def short_id(activity_id: str, period: str) -> str:
    """`OPS-HOSTING-2026` → `OPS-HOSTING` for labels (ids that do not end with the period stay)."""
    suffix = f"-{period}"
    return activity_id[: -len(suffix)] if activity_id.endswith(suffix) else activity_id


def _money_axis(x: float, _pos: object) -> str:
    if abs(x) >= 1e6:
        return f"{x / 1e6:.1f}M"
    if abs(x) >= 1e3:
        return f"{x / 1e3:.0f}k"
    return f"{x:.0f}"


def _wrap(text: str, width: int) -> str:
    """Full text on lines of at most `width` characters (labels are never cut short)."""
    return "\n".join(textwrap.wrap(text, width, break_on_hyphens=False)) or text


def _place_labels(ax: Axes, points: list[tuple[float, float, str]], fontsize: float) -> None:
    """Annotate points with their (wrapped) full names where a label overlaps no other label, no
    point and stays inside the axes: eight places around each point, then farther out."""
    char_w, line_h = fontsize * 0.6, fontsize * 1.15  # points; DejaVu Sans is about this wide
    scale = ax.figure.dpi / 72.0
    ax.figure.canvas.draw()  # the axes' final position (constrained layout) before measuring
    (x0, y0), (x1, y1) = ax.transAxes.transform((0, 0)) / scale, ax.transAxes.transform((1, 1)) / scale
    centres = [tuple(ax.transData.transform((x, y)) / scale) for x, y, _ in points]
    placed: list[tuple[float, float, float, float]] = [(cx - 4, cy - 4, cx + 4, cy + 4) for cx, cy in centres]

    def free(box: tuple[float, float, float, float]) -> bool:
        inside = box[0] >= x0 and box[2] <= x1 and box[1] >= y0 and box[3] <= y1
        return inside and all(box[2] < b[0] or box[0] > b[2] or box[3] < b[1] or box[1] > b[3] for b in placed)

    for x, y, text in sorted(points, key=lambda p: (-p[1], p[0], p[2])):
        px, py = ax.transData.transform((x, y)) / scale
        lines = text.split("\n")
        width, height = char_w * max(len(line) for line in lines), line_h * len(lines)
        options = []
        for reach in (1, 2, 3):
            g = 4 * reach
            options += [(g, g, width, height), (g, -g - height, width, height), (-g - width, g, width, height),
                        (-g - width, -g - height, width, height), (-width / 2, g + 2, width, height),
                        (-width / 2, -g - 2 - height, width, height), (g + 2, -height / 2, width, height),
                        (-g - 2 - width, -height / 2, width, height)]
        chosen = next(((px + dx, py + dy, px + dx + w, py + dy + h) for dx, dy, w, h in options
                       if free((px + dx, py + dy, px + dx + w, py + dy + h))), None)
        if chosen is None:  # nowhere free: right of the point, inside the axes
            left = min(px + 4, x1 - width)
            chosen = (left, py + 4, left + width, py + 4 + height)
        placed.append(chosen)
        ax.annotate(
            text,
            (x, y),
            xytext=(chosen[0] - px, chosen[1] - py),
            textcoords="offset points",
            ha="left",
            va="bottom",
            fontsize=fontsize,
            color="#212121",
            fontweight="bold" if len(text) <= 3 else "normal",
            linespacing=1.0,
        )


def _quadrants(fig: Figure, r: ValueChainAnalysis) -> None:
    ax = fig.add_subplot()
    acts: list[PrimaryActivity | SupportActivity] = [*r.step1_primary.activities, *r.step2_support.activities]
    n = r.n_activities
    x_top = max([0.05, *(a.cost_share for a in acts)]) * 1.15
    y_top = max([0.05, *(a.value_share for a in acts)]) * 1.25
    if n:
        ax.axvline(1 / n, color="#9e9e9e", lw=0.8, ls="--")
        ax.axhline(1 / n, color="#9e9e9e", lw=0.8, ls="--")
    edge = min(x_top, y_top)
    ax.plot([0, edge], [0, edge], color="#bdbdbd", lw=0.8, ls=":")
    ax.annotate(
        "value share = cost share",
        (edge * 0.92, edge * 0.92),
        xytext=(6, -4),
        textcoords="offset points",
        ha="left",
        va="top",
        fontsize=SMALL,
        color="#616161",  # AA contrast (6:1) on white
    )
    handles = []
    for q, colour in QUADRANT_COLOURS.items():
        pts = [a for a in acts if a.quadrant == q]
        handles.append(
            Line2D(
                [],
                [],
                marker="o",
                ls="",
                color=colour,
                markersize=6,
                label=f"{q.replace('_', ' ')} ({len(pts)})",
            )
        )
        if pts:
            ax.scatter(
                [a.cost_share for a in pts],
                [a.value_share for a in pts],
                s=[30 + 400 * a.cost_share for a in pts],
                color=colour,
                alpha=0.85,
                edgecolors="white",
                linewidths=0.6,
                zorder=3,
            )
    ax.set_xlim(0, x_top)
    ax.set_ylim(0, y_top)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_xlabel("cost share of the chain (dashed lines: 1/n; bubble size: cost)")
    ax.set_ylabel("share of customer value")
    ax.set_title(f"Cost share vs value share, {r.period}")
    # legends outside the axes, so that no point or label hides behind them: the quadrant colours
    # above, and under the chart the numbered key with every activity's full name (as the text
    # names it); the points carry their numbers, which fit where full names would pile up
    fig.legend(handles=handles, loc="outside upper center", ncol=4, fontsize=SMALL, frameon=False,
               handletextpad=0.2, columnspacing=1.2)
    ranked = sorted(acts, key=lambda a: (-a.cost_share, a.name))
    key = [Line2D([], [], marker="o", ls="", color=QUADRANT_COLOURS.get(a.quadrant, "#757575"), markersize=6,
                  label=f"{i}. {a.name}") for i, a in enumerate(ranked, 1)]
    fig.legend(handles=key, loc="outside lower center", ncol=2, fontsize=SMALL, frameon=False,
               handletextpad=0.2, columnspacing=1.5, labelspacing=0.35)
    _place_labels(ax, [(a.cost_share, a.value_share, str(i)) for i, a in enumerate(ranked, 1)], SMALL)


def _bar_label(ax: Axes, bar: Rectangle, text: str) -> None:
    # An offset in points, not a leading space: browsers collapse spaces in inline SVG text.
    ax.annotate(
        text,
        (bar.get_width(), bar.get_y() + bar.get_height() / 2),
        xytext=(3, 0),
        textcoords="offset points",
        va="center",
        fontsize=SMALL,
    )


def _margin_leak(fig: Figure, r: ValueChainAnalysis) -> None:
    ax = fig.add_subplot()
    items = r.step3_costs.margin_leak
    if not items:
        ax.text(0.5, 0.5, "No activity spends above its share of value", ha="center", va="center")
        ax.set_axis_off()
        return
    labels = [_wrap(i.name, 40) for i in items][::-1]
    values = [i.margin_leak for i in items][::-1]
    colours = [QUADRANT_COLOURS[i.quadrant] for i in items][::-1]
    bars = ax.barh(labels, values, color=colours)
    for bar, item in zip(bars, items[::-1], strict=True):
        _bar_label(ax, bar, f"{item.margin_leak:,.0f} ({item.share_of_total_leak:.0%})")
    ax.set_xlim(0, max(values) * 1.35)
    ax.xaxis.set_major_formatter(FuncFormatter(_money_axis))
    ax.set_xlabel("margin leak: spend above the activity's share of customer value")
    shown = [q for q in QUADRANT_COLOURS if any(i.quadrant == q for i in items)]  # what the colours mean
    fig.legend(handles=[Patch(color=QUADRANT_COLOURS[q], label=q.replace("_", " ")) for q in shown],
               loc="outside lower center", ncol=len(shown), fontsize=SMALL, frameon=False)
    ax.set_title(f"Where margin is lost, {r.period} (total {r.step3_costs.total_margin_leak:,.0f})")


def _initiative_roi(fig: Figure, r: ValueChainAnalysis) -> None:
    ax = fig.add_subplot()
    items = [i for i in r.step4_opportunities.initiatives if i.roi is not None and i.roi > 0]
    if not items:
        ax.text(0.5, 0.5, "No initiative with a positive ROI", ha="center", va="center")
        ax.set_axis_off()
        return
    labels = [_wrap(f"{i.id} {i.description}", 40) for i in items][::-1]
    values = [float(i.roi or 0.0) for i in items][::-1]
    colours = [ADVANTAGE_COLOURS.get(i.advantage, ADVANTAGE_COLOURS[None]) for i in items][::-1]
    bars = ax.barh(labels, values, color=colours)
    for bar, item in zip(bars, items[::-1], strict=True):
        _bar_label(ax, bar, f"{item.roi:.1f}×, net {item.net_benefit:,.0f}")
    log = max(values) / min(values) > 20
    if log:
        ax.set_xscale("log")
        ax.set_xlim(min(min(values), 1.0) / 1.5, max(values) * 12)
    else:
        ax.set_xlim(0, max(values) * 1.45)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: f"{x:g}×"))
    ax.axvline(1.0, color="#9e9e9e", lw=0.8, ls="--")
    scale = "log scale; " if log else ""
    ax.set_xlabel(f"ROI = benefit per year / cost ({scale}dashed line: 1×)")
    ax.set_title(f"Initiatives by ROI, {r.period}")
    handles = [
        Patch(color=ADVANTAGE_COLOURS["cost"], label="cost advantage"),
        Patch(color=ADVANTAGE_COLOURS["differentiation"], label="differentiation"),
        Patch(color=ADVANTAGE_COLOURS[None], label="none (likely decorative)"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=SMALL, frameon=False)  # off the bars


_DRAW = {"quadrants": _quadrants, "margin_leak": _margin_leak, "initiative_roi": _initiative_roi}


def chart_size(key: ChartKey, r: ValueChainAnalysis) -> tuple[float, float]:
    """Figure size in inches: bar charts grow with their number of bars."""
    if key == "quadrants":  # the chart, then its numbered key in two columns
        n = len(r.step1_primary.activities) + len(r.step2_support.activities)
        return (7.0, 5.0 + 0.19 * ((n + 1) // 2))
    if key == "margin_leak":
        return (7.0, 1.4 + 0.3 * max(len(r.step3_costs.margin_leak), 2))
    return (7.0, 1.4 + 0.4 * max(len(r.step4_opportunities.initiatives), 2))  # two-line labels, the legend


def render_chart(
    key: ChartKey,
    result: ValueChainAnalysis,
    fmt: ImageFormat = "svg",
    dpi: int = 150,
    text_as_paths: bool = False,
) -> bytes:
    """One chart as SVG or PNG bytes; `text_as_paths` draws SVG text as outlines (for the PDF)."""
    rc = {**_RC, "svg.fonttype": "path"} if text_as_paths else _RC
    with rc_context(rc):
        fig = Figure(figsize=chart_size(key, result), layout="constrained")
        _DRAW[key](fig, result)
        buf = io.BytesIO()
        metadata: dict[str, str | None] = {"Date": None} if fmt == "svg" else {"Software": None}
        fig.savefig(buf, format=fmt, dpi=dpi, metadata=metadata)
    return buf.getvalue()


CHARTS: dict[ChartKey, Chart] = {
    "quadrants": Chart(
        "quadrants",
        "Cost share vs value share",
        "Scatter of each activity's cost share against its value share, coloured by quadrant.",
    ),
    "margin_leak": Chart(
        "margin_leak",
        "Margin leak by activity",
        "Horizontal bars of margin leak per activity, largest first.",
    ),
    "initiative_roi": Chart(
        "initiative_roi",
        "Initiatives by ROI",
        "Horizontal bars of initiative ROI, coloured by competitive advantage.",
    ),
}
