/* Value Chain Copilot web UI, the outcomes page (#/outcomes, issue #21, docs/OUTCOMES.md): per
 * playbook action the funnel (proposals, approval rate, rejection reasons, executions), the 90-day
 * churn (or win) rate of the executed accounts beside the held-out ones with their 95% intervals,
 * and the estimated uplift with its interval beside the playbook prior, the learned value and, on
 * a demo company with simulated interventions, the true effect the estimate should recover.
 *
 * Everything comes from GET /api/v1/outcomes (the same report as `valuechain outcomes report`);
 * the charts are SVG drawn here. Each drawn mark carries the number it was drawn from
 * (data-value, data-low, data-high) so a test can check the picture against the API. Classic
 * script loaded after app.js (el, svg, api, pct, words) and pages.js (card, tableWrap).
 */
"use strict";

const OUT = { width: 640, label: 170, plotLeft: 180, plotRight: 500, row: 18, gap: 10, top: 26 };
const ARM_COLORS = { treated: "#1565c0", holdout: "#9e9e9e" };

/** +0.417 / -0.060: a signed effect with three decimals. */
function signed(x) {
  return x === null || x === undefined ? "—" : `${x >= 0 ? "+" : ""}${x.toFixed(3)}`;
}

function intervalText(iv, fmt) {
  return iv ? `${fmt(iv.estimate)} [${fmt(iv.low)}, ${fmt(iv.high)}]` : "—";
}

function rateText(arm) {
  return arm.rate ? `${arm.events}/${arm.n} = ${pct(arm.rate.estimate)}` : `0/${arm.n}`;
}

/** The actions worth a row: anything proposed, executed, held out or pending. */
function activeActions(report) {
  return report.actions.filter((a) => a.proposals || a.treated.n || a.holdout.n || a.treated.pending || a.holdout.pending);
}

/** A horizontal axis from lo to hi across the plot area, with ticks and a light grid. */
function axis(lo, hi, height, ticks, fmt) {
  const x = (v) => OUT.plotLeft + ((Math.min(Math.max(v, lo), hi) - lo) / (hi - lo)) * (OUT.plotRight - OUT.plotLeft);
  const g = svg("g", { class: "out-axis" });
  for (const t of ticks) {
    g.append(svg("line", { x1: x(t), x2: x(t), y1: OUT.top - 6, y2: height - 4, class: t === 0 ? "out-zero" : "out-grid" }),
      svg("text", { x: x(t), y: OUT.top - 10, "text-anchor": "middle", class: "out-tick" }, fmt(t)));
  }
  return { g, x };
}

/** Chart 1: each action's 90-day rate (churn, or win for growth), treated and holdout bars with a
 * Wilson 95% whisker. One scale for all, from 0 to the highest interval end. */
function rateChart(actions) {
  const rows = actions.flatMap((a) => ["treated", "holdout"].map((arm) => ({ a, arm, s: a[arm] })));
  const top = Math.max(0.05, ...rows.map((r) => (r.s.rate ? r.s.rate.high : 0)));
  const hi = Math.ceil(top * 20) / 20; // to the next 5%
  const height = OUT.top + actions.length * (2 * OUT.row + OUT.gap) + 4;
  const ticks = [];
  for (let t = 0; t <= hi + 1e-9; t += hi > 0.5 ? 0.2 : hi > 0.2 ? 0.1 : 0.05) ticks.push(Math.round(t * 100) / 100);
  const { g, x } = axis(0, hi, height, ticks, (t) => pct(t, 0));
  const chart = svg("svg", { viewBox: `0 0 ${OUT.width} ${height}`, class: "out-chart", id: "out-rate-chart", role: "img",
    "aria-label": "90-day churn or win rate, treated versus holdout, with 95% intervals", "data-max": hi }, g);
  actions.forEach((a, i) => {
    const y0 = OUT.top + i * (2 * OUT.row + OUT.gap);
    chart.append(svg("text", { x: OUT.label, y: y0 + OUT.row + 4, "text-anchor": "end", class: "out-label" }, words(a.action)));
    ["treated", "holdout"].forEach((arm, k) => {
      const s = a[arm];
      const y = y0 + k * OUT.row;
      const group = svg("g", { class: `out-arm ${arm}`, "data-action": a.action, "data-arm": arm, "data-n": s.n, "data-events": s.events });
      if (s.rate) {
        const bar = svg("rect", { x: x(0), y: y + 3, width: Math.max(0, x(s.rate.estimate) - x(0)), height: OUT.row - 6,
          fill: ARM_COLORS[arm], class: "out-bar", "data-value": s.rate.estimate });
        const whisker = svg("line", { x1: x(s.rate.low), x2: x(s.rate.high), y1: y + OUT.row / 2, y2: y + OUT.row / 2,
          class: "out-whisker", "data-low": s.rate.low, "data-high": s.rate.high });
        group.append(bar, whisker,
          svg("line", { x1: x(s.rate.low), x2: x(s.rate.low), y1: y + 4, y2: y + OUT.row - 4, class: "out-whisker" }),
          svg("line", { x1: x(s.rate.high), x2: x(s.rate.high), y1: y + 4, y2: y + OUT.row - 4, class: "out-whisker" }));
      }
      group.append(svg("text", { x: OUT.plotRight + 8, y: y + OUT.row - 5, class: "out-value" },
        `${arm} ${s.rate ? `${pct(s.rate.estimate)} (n ${s.n})` : `no data (n ${s.n})`}`));
      chart.append(group);
    });
  });
  return chart;
}

/** The estimate a chart row shows: retention, the uplift 1 − RR (Katz); growth, the difference in
 * 90-day win rate treated − holdout (Newcombe), the scale of the playbook's p_success. */
function effectOf(a) {
  return a.kind === "retention" ? a.uplift : a.difference;
}

/** Chart 2: each action's estimated effect (effectOf) with its 95% interval on a −1 … +1 scale (an
 * end beyond it is clipped and marked with an arrow), with the playbook prior, the learned value
 * and, on a demo, the true effect as marks. */
function upliftChart(actions, demoTruth) {
  const shown = actions;
  const height = OUT.top + shown.length * (OUT.row + OUT.gap) + 4;
  const lo = -1, hi = 1;
  const { g, x } = axis(lo, hi, height, [-1, -0.5, 0, 0.5, 1], (t) => (t > 0 ? `+${t}` : String(t)));
  const chart = svg("svg", { viewBox: `0 0 ${OUT.width} ${height}`, class: "out-chart", id: "out-uplift-chart", role: "img",
    "aria-label": "Estimated uplift with 95% interval, beside the prior, the learned value and the true effect" }, g);
  shown.forEach((a, i) => {
    const y = OUT.top + i * (OUT.row + OUT.gap);
    const mid = y + OUT.row / 2;
    const group = svg("g", { class: "out-uplift", "data-action": a.action, "data-kind": a.kind });
    group.append(svg("text", { x: OUT.label, y: mid + 4, "text-anchor": "end", class: "out-label" }, words(a.action)));
    const u = effectOf(a);
    if (u) {
      group.append(
        svg("line", { x1: x(u.low), x2: x(u.high), y1: mid, y2: mid, class: "out-interval", "data-low": u.low, "data-high": u.high }),
        svg("circle", { cx: x(u.estimate), cy: mid, r: 4, class: "out-estimate", "data-value": u.estimate }));
      if (u.low < lo) group.append(svg("path", { d: `M${x(lo)},${mid} l6,-4 v8 z`, class: "out-clipped" }));
      if (u.high > hi) group.append(svg("path", { d: `M${x(hi)},${mid} l-6,-4 v8 z`, class: "out-clipped" }));
    }
    const tick = (v, cls) => svg("line", { x1: x(v), x2: x(v), y1: y + 1, y2: y + OUT.row - 1, class: cls, "data-value": v });
    group.append(tick(a.learned.prior, "out-prior"), tick(a.learned.learned, "out-learned"));
    if (a.true_effect !== null && a.true_effect !== undefined) {
      group.append(svg("path", { d: `M${x(a.true_effect)},${y} l5,${OUT.row / 2} l-5,${OUT.row / 2} l-5,-${OUT.row / 2} z`,
        class: "out-true", "data-value": a.true_effect }));
    }
    group.append(svg("text", { x: OUT.plotRight + 8, y: mid + 4, class: "out-value" },
      u ? `${signed(u.estimate)}${demoTruth && a.true_effect !== null ? ` (true ${a.true_effect})` : ""}` : "no comparison yet"));
    chart.append(group);
  });
  return chart;
}

/** A chart in a box that scrolls sideways on a narrow screen, so its labels stay readable. */
function chartWrap(chart) {
  return el("div", { class: "out-chart-wrap", role: "region", tabindex: 0, "aria-label": chart.getAttribute("aria-label") }, chart);
}

function outcomeLegend(demoTruth) {
  const item = (cls, text) => el("li", {}, el("span", { class: `swatch ${cls}` }), text);
  return el("ul", { class: "legend out-legend", "aria-label": "Chart marks" },
    item("out-sw-treated", "executed (treated)"), item("out-sw-holdout", "held out (control)"),
    item("out-sw-estimate", "estimated effect, 95% interval"), item("out-sw-prior", "playbook prior"),
    item("out-sw-learned", "learned"), demoTruth ? item("out-sw-true", "true effect (demo simulation)") : null);
}

function reasonsText(reasons) {
  const parts = Object.entries(reasons).map(([k, v]) => `${words(k)} ${v}`);
  return parts.length ? parts.join(", ") : "—";
}

function outcomeRow(a, demoTruth) {
  const l = a.learned;
  return el("tr", { dataset: { action: a.action } },
    el("td", { class: "who" }, el("b", {}, words(a.action)), el("div", { class: "muted small" }, a.kind)),
    el("td", { class: "num", dataset: { label: "Proposals" } }, String(a.proposals)),
    el("td", { class: "num", dataset: { label: "Approval rate" } }, pct(a.approval_rate)),
    el("td", { dataset: { label: "Rejection reasons" } }, reasonsText(a.rejection_reasons)),
    el("td", { class: "num", dataset: { label: "Executed" } }, String(a.executions), a.abandoned ? el("div", { class: "muted small" }, `${a.abandoned} abandoned`) : null),
    el("td", { class: "num", dataset: { label: "Treated" } }, rateText(a.treated), a.treated.pending ? el("div", { class: "muted small" }, `${a.treated.pending} pending`) : null),
    el("td", { class: "num", dataset: { label: "Holdout" } }, rateText(a.holdout), a.holdout.pending ? el("div", { class: "muted small" }, `${a.holdout.pending} pending`) : null),
    el("td", { class: "num", dataset: { label: "Difference" } }, intervalText(a.difference, signed)),
    el("td", { class: "num", dataset: { label: "Estimated uplift" } }, a.kind === "growth" ? "—" : intervalText(a.uplift, signed)),
    demoTruth ? el("td", { class: "num", dataset: { label: "True effect" } }, a.true_effect === null ? "—" : String(a.true_effect)) : null,
    el("td", { class: "num", dataset: { label: "Learned" } }, l.learned.toFixed(3),
      el("div", { class: "muted small" }, `prior ${l.prior}; n ${l.n_treated}/${l.n_holdout}`)));
}

async function loadOutcomes() {
  const summary = clear($("out-summary"));
  const charts = clear($("out-charts"));
  const table = clear($("out-table"));
  $("out-method").textContent = "";
  const params = new URLSearchParams();
  for (const [name, id] of [["segment", "out-segment"], ["approver", "out-approver"], ["period_from", "out-from"], ["period_to", "out-to"]]) {
    const v = $(id).value.trim();
    if (v) params.set(name, v);
  }
  let report;
  try {
    summary.append(el("p", { class: "muted" }, "Loading…"));
    const query = params.toString();
    report = await api(`/api/v1/outcomes${query ? `?${query}` : ""}`);
  } catch (err) {
    clear(summary).append(errorBox(err));
    return;
  }
  const actions = activeActions(report);
  const sum = (f) => actions.reduce((t, a) => t + f(a), 0);
  clear(summary).append(
    card("Proposals", String(sum((a) => a.proposals)), `as of ${report.as_of}`),
    card("Executed", String(sum((a) => a.executions)), `${sum((a) => a.abandoned)} abandoned`),
    card("Held out", String(sum((a) => a.holdout.n + a.holdout.pending)), "accounts in a control group"),
    card("Actions with outcomes", String(actions.filter((a) => a.treated.n && a.holdout.n).length), "treated and holdout both measured"),
  );
  $("out-method").textContent = report.method + (report.demo_truth
    ? " This is a demo company: its history simulates the interventions with stated true effects, shown beside the estimates." : "");
  if (!actions.length) {
    charts.append(el("p", { class: "muted", id: "out-empty" }, "Nothing proposed, executed or held out matches these filters yet."));
    return;
  }
  charts.append(
    el("h3", {}, "90-day churn (retention) or win rate (growth): executed vs held out"),
    chartWrap(rateChart(actions)),
    el("h3", {}, "Estimated effect with 95% interval: retention, uplift (relative churn reduction); growth, added 90-day win rate"),
    chartWrap(upliftChart(actions, report.demo_truth)),
    outcomeLegend(report.demo_truth));
  const head = ["Action", "Proposals", "Approval rate", "Rejection reasons", "Executed", "Treated 90-day", "Holdout 90-day",
    "Difference [95%]", "Estimated uplift [95%]", ...(report.demo_truth ? ["True effect"] : []), "Learned"];
  table.append(tableWrap(el("table", { class: "grid phone-cards", id: "out-actions", "aria-label": "Attribution per action" },
    el("thead", {}, el("tr", {}, head.map((h, i) => el("th", { class: i && i !== 3 ? "num" : null }, h)))),
    el("tbody", {}, actions.map((a) => outcomeRow(a, report.demo_truth))))));
}

function wireOutcomes() {
  $("out-refresh").addEventListener("click", loadOutcomes);
  $("out-segment").addEventListener("change", loadOutcomes);
  for (const id of ["out-approver", "out-from", "out-to"]) $(id).addEventListener("keydown", (e) => e.key === "Enter" && loadOutcomes());
}
