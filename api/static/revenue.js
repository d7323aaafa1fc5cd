/* Value Chain Copilot web UI, the revenue and service pages: pipeline health (with each deal's win
 * chance and its reasons) and the service queue. Classic script loaded after pages.js (card,
 * accountLink, factText) and app.js (el, api, money, pct); both pages call the tools' typed routes
 * (POST /api/v1/tools/call/<tool>), the same calls the CLI and the agent make. Server text goes in
 * as text nodes only.
 */
"use strict";

/** "team=EMEA; product=Growth plan" as the tools' filters {team: "EMEA", product: "Growth plan"};
 * several values of one key separated by commas (priority=urgent,high). */
function filterObject(text) {
  const out = {};
  for (const part of String(text || "").split(/\s*;\s*|\s+(?=[\w.]+=)/).filter(Boolean)) {
    const at = part.indexOf("=");
    if (at < 1) throw new Error(`Filter "${part}" is not key=value (e.g. team=EMEA; several separated by ;).`);
    out[part.slice(0, at).trim()] = part.slice(at + 1).trim();
  }
  return out;
}

/** A CRM timestamp (the data's own clock, no zone) as "2026-09-24 15:24". */
function clockText(iso) {
  return iso ? String(iso).slice(0, 16).replace("T", " ") : "—";
}

/** Hours as "18 h" under two days, else "4.4 days". */
function spanText(hours) {
  const a = Math.abs(hours);
  return a < 48 ? `${Math.round(a)} h` : `${(a / 24).toFixed(1)} days`;
}

function times(x) {
  return x === null || x === undefined ? "—" : `${x.toFixed(2)}×`;
}

function forAnalysts(summary, what) {
  if (can("analyze")) return false;
  clear(summary).append(el("p", { class: "muted" }, `${what} runs the tools: it is for analysts, approvers and admins.`));
  return true;
}

// ------------------------------------------------------------------ pipeline

const GROUP_WORDS = { owner: "Owner", team: "Team", product: "Product", quarter: "Quarter" };

function pipelineRow(g, total) {
  const n = (count, amount) => (count ? `${count} · ${money(amount)}` : "0");
  return el("tr", { class: total ? "total-row" : null, dataset: { group: g.key } },
    el("td", {}, total ? "All" : g.key),
    el("td", { class: "num" }, g.open_deals.toLocaleString("en-US")),
    el("td", { class: "num" }, money(g.open_pipeline)),
    el("td", { class: "num" }, money(g.weighted_pipeline)),
    el("td", { class: "num" }, `${money(g.due_pipeline)} (${g.due_deals})`),
    el("td", { class: "num" }, money(g.won_in_quarter)),
    el("td", { class: "num" }, money(g.expected_won_amount)),
    el("td", { class: "num" }, g.target === null ? "—" : money(g.target)),
    el("td", { class: "num" }, times(g.coverage), g.below_coverage_goal ? [" ", el("span", { class: "band high" }, "below goal")] : null),
    el("td", { class: "num" }, n(g.stale_deals, g.stale_amount)),
    el("td", { class: "num" }, n(g.slipped_deals, g.slipped_amount)));
}

function closeText(d) {
  if (!d.expected_close_date) return "none";
  const day = factText("date", d.expected_close_date);
  return d.days_past_expected_close ? `${day} (${d.days_past_expected_close} days past)` : day;
}

async function loadPipeline() {
  const summary = clear($("pipe-summary"));
  const groups = clear($("pipe-groups").querySelector("tbody"));
  const risky = clear($("pipe-risk").querySelector("tbody"));
  $("pipe-explanation").textContent = "";
  if (forAnalysts(summary, "Pipeline health")) return;
  const groupBy = $("pipe-group").value;
  const body = { group_by: groupBy, limit: Number($("pipe-limit").value) };
  const quarter = $("pipe-quarter").value.trim();
  if (quarter) body.quarter = quarter;
  let res;
  try {
    const filters = filterObject($("pipe-filter").value);
    if (Object.keys(filters).length) body.filters = filters;
    summary.append(el("p", { class: "muted" }, "Loading…"));
    res = await api("/api/v1/tools/call/pipeline_health", { method: "POST", body });
  } catch (err) {
    clear(summary).append(errorBox(err));
    return;
  }
  const t = res.total, i = res.inputs;
  const source = i.probability_source === "deal_model" ? "win chances from the deal model" : "win chances from the stage table";
  $("pipe-quarter").placeholder = i.quarter;
  clear(summary).append(
    card("Open pipeline", money(t.open_pipeline), `${t.open_deals.toLocaleString("en-US")} open deals, as of ${factText("date", i.as_of)}`),
    card("Weighted pipeline", money(t.weighted_pipeline), source),
    card(`Expected won, ${i.quarter}`, money(t.expected_won_amount), t.target === null ? "no target" : `target ${money(t.target)}`),
    card("Coverage", times(t.coverage), `goal ${i.coverage_goal}×${t.below_coverage_goal ? " · below it" : ""}`),
    card("Stale deals", String(t.stale_deals), `${money(t.stale_amount)} · no activity > ${i.stale_days} days`),
    card("Slipped deals", String(t.slipped_deals), `${money(t.slipped_amount)} · past expected close`),
    card("Deals at risk", String(res.at_risk_count), "any sign above, or long in stage"),
  );
  $("pipe-explanation").textContent = res.explanation;
  $("pipe-group-head").textContent = GROUP_WORDS[i.group_by] || words(i.group_by);
  for (const g of res.groups) groups.append(pipelineRow(g, false));
  groups.append(pipelineRow(t, true));
  $("pipe-risk-title").textContent = `Deals at risk (${res.deals_at_risk.length} of ${res.at_risk_count})`;
  res.deals_at_risk.forEach((d, k) => {
    const detail = el("tr", { class: "deal-row", hidden: true, id: `deal-${d.opportunity_id}` }, el("td", { colspan: 9 }));
    const open = el("button", { type: "button", class: "link deal-open", "aria-expanded": "false", "aria-controls": detail.id,
      "aria-label": `Win chance and reasons of deal ${d.opportunity_id}`,
      onclick: (e) => toggleDeal(d.opportunity_id, detail, e.currentTarget) }, d.opportunity_id);
    risky.append(
      el("tr", { dataset: { deal: d.opportunity_id } },
        el("td", { class: "rank" }, String(k + 1)),
        el("td", { class: "who" }, el("b", {}, open), el("div", { class: "muted small" },
          [d.product, d.account_id].filter(Boolean).join(" · ") || "no account")),
        el("td", { dataset: { label: "Owner · team" } }, `${d.owner || "—"} · ${d.team || "—"}`),
        el("td", { dataset: { label: "Stage" } }, words(d.stage)),
        el("td", { class: "num", dataset: { label: "Amount" } }, money(d.amount), d.amount_estimated ? " (estimated)" : ""),
        el("td", { class: "num", dataset: { label: "Win chance" } }, pct(d.probability, 0)),
        el("td", { class: "num", dataset: { label: "Weighted" } }, el("b", {}, money(d.weighted_amount))),
        el("td", { dataset: { label: "Expected close" } }, closeText(d)),
        el("td", { class: "why-cell" }, d.why)),
      detail);
  });
  if (!res.deals_at_risk.length) risky.append(el("tr", {}, el("td", { colspan: 9, class: "muted" }, "No open deal shows a sign of risk.")));
}

/** Open or fold a deal's win chance (deal_score) with its drivers in words. */
async function toggleDeal(ref, row, button) {
  row.hidden = !row.hidden;
  button.setAttribute("aria-expanded", String(!row.hidden));
  if (row.hidden || row.dataset.loaded) return;
  const cell = clear(row.firstChild);
  cell.append(el("span", { class: "muted" }, "Loading…"));
  try {
    const s = await api("/api/v1/tools/call/deal_score", { method: "POST", body: { opportunity_id: ref } });
    const by = s.source === "deal_model"
      ? `deal model ${s.model_version}${s.model_auc === null ? "" : `, holdout AUC ${s.model_auc.toFixed(2)}`}`
      : "stage table: no deal model is trained";
    clear(cell).append(
      el("p", { class: "deal-chance" }, el("b", {}, `Win chance ${pct(s.probability, 0)}`), " ", el("span", { class: "muted small" }, `(${by})`)),
      s.drivers.length
        ? el("ul", { class: "deal-drivers", "aria-label": `Why ${ref} scores ${pct(s.probability, 0)}` }, s.drivers.map((d) =>
          el("li", { dataset: { feature: d.feature } },
            el("span", { class: `driver-dir ${d.direction}` }, d.direction === "raises" ? "▲ raises it" : "▼ lowers it"), " ", d.phrase)))
        : el("p", { class: "muted" }, s.explanation));
    row.dataset.loaded = "1";
  } catch (err) {
    clear(cell).append(errorBox(err));
  }
}

// ------------------------------------------------------------------ service queue

async function loadServiceQueue() {
  const summary = clear($("svc-summary"));
  const tbody = clear($("svc-table").querySelector("tbody"));
  $("svc-explanation").textContent = "";
  if (forAnalysts(summary, "The service queue")) return;
  const body = { limit: Number($("svc-limit").value) };
  let res;
  try {
    const filters = filterObject($("svc-filter").value);
    if ($("svc-priority").value) filters.priority = $("svc-priority").value;
    if (Object.keys(filters).length) body.filters = filters;
    summary.append(el("p", { class: "muted" }, "Loading…"));
    res = await api("/api/v1/tools/call/service_queue", { method: "POST", body });
  } catch (err) {
    clear(summary).append(errorBox(err));
    return;
  }
  clear(summary).append(
    card("Open tickets", res.open_tickets.toLocaleString("en-US"), `at the end of ${factText("date", res.inputs.as_of)}`),
    card("Past their SLA", res.breached.toLocaleString("en-US"), "tickets"),
    card("Likely to breach", res.likely_to_breach.toLocaleString("en-US"), "chance ≥ 50%, not yet past"),
    card("Lifetime value exposed", money(res.clv_exposed), "Σ chance of breach × CLV"),
  );
  $("svc-explanation").textContent = res.explanation;
  for (const q of res.items) {
    const basis = q.breached ? null // the why says so
      : `chance estimated from ${q.basis_label}${q.basis_resolved === null ? "" : ` (${q.basis_resolved.toLocaleString("en-US")} resolved)`}`;
    tbody.append(el("tr", { dataset: { ticket: q.ticket_id } },
      el("td", { class: "rank" }, String(q.rank)),
      el("td", { class: "who nowrap" }, el("b", {}, `#${q.ticket_id}`), el("div", { class: "muted small" }, "opened ", el("br", {}), clockText(q.opened))),
      el("td", { dataset: { label: "Account" } }, el("span", {}, accountLink(q.account_id), el("div", { class: "muted small" }, q.account_name))),
      el("td", { dataset: { label: "Priority · category" } }, `${q.priority} · ${words(q.category || "—")}`),
      el("td", { class: "nowrap", dataset: { label: "Deadline" } }, el("span", {}, clockText(q.deadline), el("div", { class: "muted small" }, `SLA ${q.sla_hours} h`))),
      el("td", { class: `num${q.breached ? " overdue" : ""}`, dataset: { label: "Time left" } },
        q.hours_left < 0 ? `${spanText(q.hours_left)} overdue` : `${spanText(q.hours_left)} left`),
      el("td", { class: "num", dataset: { label: "Chance of breach" } }, pct(q.p_sla_breach, 0)),
      el("td", { class: "num", dataset: { label: "CLV" } }, money(q.clv)),
      el("td", { class: "num", dataset: { label: "Score" } }, el("b", {}, money(q.score))),
      el("td", { class: "why-cell" }, q.why, basis ? el("div", { class: "muted small" }, basis) : null)));
  }
  if (!res.items.length) tbody.append(el("tr", {}, el("td", { colspan: 10, class: "muted" }, "No open ticket matches.")));
}

// ------------------------------------------------------------------ wiring

function wireRevenue() {
  $("pipe-refresh").addEventListener("click", loadPipeline);
  $("pipe-group").addEventListener("change", loadPipeline);
  for (const id of ["pipe-filter", "pipe-quarter"]) $(id).addEventListener("keydown", (e) => e.key === "Enter" && loadPipeline());
  $("svc-refresh").addEventListener("click", loadServiceQueue);
  $("svc-priority").addEventListener("change", loadServiceQueue);
  $("svc-filter").addEventListener("keydown", (e) => e.key === "Enter" && loadServiceQueue());
}
