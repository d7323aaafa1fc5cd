/* Value Chain Copilot web UI, the analysis pages: review queue, value chain, at-risk accounts,
 * the account page, the analysis report and the run log. Classic script loaded after app.js (helpers, routing)
 * and before chat.js; server text goes in as text nodes only, as in app.js.
 */
"use strict";

// ------------------------------------------------------------------ formatted facts

const FACT_PCT_KEY = /(prob|share|rate|ratio|pct|percent|uplift|discount|utili[sz]ation|^p_|_p$|churn)/i;
const FACT_MONEY_KEY = /(arr|mrr|value|cost|revenue|amount|benefit|leak|price|spend|saving|margin)/i;
const FACT_ISO_DAY = /^\d{4}-\d{2}-\d{2}$/;
const FACT_ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/;
const factNumberFmt = new Intl.NumberFormat("en-US", { maximumFractionDigits: 2 });

/** One value as a reader wants it: money, a percentage, a date or a rounded number, by its key. */
function factText(key, v) {
  if (v === null || v === undefined) return "—";
  if (typeof v === "boolean") return v ? "yes" : "no";
  if (typeof v === "number") {
    if (FACT_PCT_KEY.test(key) && Math.abs(v) <= 1.5) return pct(v);
    if (FACT_MONEY_KEY.test(key)) return money(v);
    return Number.isInteger(v) ? v.toLocaleString("en-US") : factNumberFmt.format(v);
  }
  if (typeof v === "string") {
    if (FACT_ISO_DAY.test(v)) return new Date(`${v}T00:00:00`).toLocaleDateString("en-US", { year: "numeric", month: "short", day: "numeric" });
    if (FACT_ISO_TIME.test(v)) return when(v);
    return /^[a-z0-9_]+$/.test(v) ? words(v) : v; // an id-like code reads as words; free text as written
  }
  return JSON.stringify(v);
}

/** Evidence (any JSON) as a definition list of formatted facts, nested objects indented. */
function factsNode(obj, depth = 0) {
  const dl = el("dl", { class: "facts evidence-facts" });
  for (const [k, v] of Object.entries(obj || {})) {
    let value;
    if (Array.isArray(v)) {
      if (v.every((x) => x === null || typeof x !== "object")) value = v.map((x) => factText(k, x)).join(", ") || "—";
      else value = el("ol", { class: "fact-list" }, v.slice(0, 12).map((x) => el("li", {},
        x && typeof x === "object" ? factsNode(x, depth + 1) : factText(k, x))),
        v.length > 12 ? el("li", { class: "muted" }, `… ${v.length - 12} more (see the JSON)`) : null);
    } else if (v && typeof v === "object") {
      value = depth < 3 ? factsNode(v, depth + 1) : JSON.stringify(v);
    } else value = factText(k, v);
    dl.append(el("dt", {}, words(k)), el("dd", {}, value));
  }
  return dl;
}

function evidenceNode(evidence) {
  const keys = Object.keys(evidence || {});
  if (!keys.length) return el("p", { class: "muted" }, "No evidence recorded.");
  return el("div", { class: "evidence" }, factsNode(evidence),
    el("details", { class: "raw-json" }, el("summary", {}, "Show the raw JSON"), el("pre", {}, JSON.stringify(evidence, null, 2))));
}

function tableWrap(table) {
  return el("div", { class: "table-wrap", tabindex: 0, role: "region", "aria-label": table.getAttribute("aria-label") || "table" }, table);
}

// ------------------------------------------------------------------ review queue

const reviewState = { items: new Map(), selected: new Set(), notice: null, listing: null };

function target(rec) {
  return rec.account_id || rec.activity_id || "—";
}

function statusBadge(status) {
  return el("span", { class: `status-badge ${status}` }, status);
}

function proposer(rec) {
  return rec.run_id ? `the copilot (for ${rec.created_by})` : rec.created_by;
}

function loadReviewList() {
  reviewState.listing = fillReviewList();
  return reviewState.listing;
}

async function fillReviewList() {
  const tbody = $("review-table").querySelector("tbody");
  const status = $("review-status").value;
  const account = $("review-account").value.trim();
  const params = new URLSearchParams({ limit: "100" });
  if (status) params.set("status", status);
  if (account) params.set("account_id", account);
  clear(tbody);
  reviewState.items.clear();
  try {
    const page = await api(`/api/v1/recommendations?${params}`);
    $("review-summary").textContent = `${page.total} recommendation${page.total === 1 ? "" : "s"}${status ? ` ${status}` : ""}` +
      (page.ttl_days ? ` · pending ones expire after ${page.ttl_days} days` : "");
    for (const rec of page.items) {
      reviewState.items.set(rec.id, rec);
      const open = () => { location.hash = `#/review/${rec.id}`; };
      const box = rec.decidable && can("decide")
        ? el("input", { type: "checkbox", class: "bulk-pick", "aria-label": `Select #${rec.id} for a bulk decision`,
          checked: reviewState.selected.has(rec.id), onclick: (e) => e.stopPropagation(),
          onchange: (e) => { e.target.checked ? reviewState.selected.add(rec.id) : reviewState.selected.delete(rec.id); updateBulk(); } })
        : null;
      tbody.append(
        el("tr", { class: `clickable${rec.id === state.selectedRec ? " selected" : ""}`, dataset: { id: rec.id }, tabindex: 0,
          "aria-label": `#${rec.id} ${words(rec.action)} for ${target(rec)}, ${rec.status}`,
          onclick: open, onkeydown: (e) => { if (e.target === e.currentTarget && (e.key === "Enter" || e.key === " ")) { e.preventDefault(); open(); } } },
          el("td", {}, box), el("td", {}, `#${rec.id}`), el("td", {}, target(rec)), el("td", {}, words(rec.action)),
          el("td", { class: "num" }, money(rec.expected_value)), el("td", {}, statusBadge(rec.status)),
          el("td", {}, when(rec.created_at))),
      );
    }
    for (const id of [...reviewState.selected]) if (!reviewState.items.get(id)?.decidable) reviewState.selected.delete(id);
    if (!page.items.length) tbody.append(el("tr", {}, el("td", { colspan: 7, class: "muted" }, "Nothing here.")));
  } catch (err) {
    tbody.append(el("tr", {}, el("td", { colspan: 7 }, errorBox(err))));
  }
  updateBulk();
}

function reasonOptions(select, decision) {
  clear(select);
  const codes = decision === "approve" ? state.me.approve_reasons : state.me.reject_reasons;
  select.append(el("option", { value: "" }, decision === "approve" ? "(no reason code)" : "choose a reason…"));
  for (const [code, text] of Object.entries(codes)) select.append(el("option", { value: code }, `${words(code)}: ${text}`));
}

function updateBulk() {
  const form = $("bulk-form");
  if (!$("bulk-reason").options.length && state.me) reasonOptions($("bulk-reason"), $("bulk-decision").value);
  const n = reviewState.selected.size;
  form.hidden = !can("decide") || n === 0;
  $("bulk-count").textContent = `${n} selected`;
  $("bulk-submit").textContent = `${$("bulk-decision").value === "approve" ? "Approve" : "Reject"} ${n} selected`;
  const all = $("bulk-all");
  const decidable = [...reviewState.items.values()].filter((r) => r.decidable);
  all.hidden = !can("decide") || !decidable.length;
  all.checked = decidable.length > 0 && decidable.every((r) => reviewState.selected.has(r.id));
}

function refusalText(id, err) {
  const d = err.detail || {};
  if (d.error === "already_decided" && d.winner) return `#${id}: already ${d.winner.status} by ${d.winner.decided_by} at ${when(d.winner.decided_at)}.`;
  if (d.error === "content_changed") return `#${id}: it changed since you opened it; review it again.`;
  if (d.error === "expired") return `#${id}: it expired before the decision.`;
  return `#${id}: ${err.message}`;
}

async function bulkDecide(e) {
  e.preventDefault();
  const decision = $("bulk-decision").value;
  const code = $("bulk-reason").value || null;
  const note = $("bulk-note").value.trim() || null;
  const out = $("bulk-result");
  out.textContent = "";
  if (decision === "reject" && !code) { out.textContent = "A rejection needs a reason."; return; }
  if (code === "other" && !note) { out.textContent = "Reason \"other\" needs a note."; return; }
  const ids = [...reviewState.selected].sort((a, b) => a - b);
  $("bulk-submit").disabled = true;
  const done = [], refused = [];
  for (const id of ids) {
    const rec = reviewState.items.get(id);
    try {
      await api(`/api/v1/recommendations/${id}/${decision}`, {
        method: "POST", body: { expected_version: rec.version, reason_code: code, note },
      });
      done.push(`#${id}`);
    } catch (err) {
      if (err.status === 401) return;
      refused.push(refusalText(id, err));
    }
    reviewState.selected.delete(id);
  }
  $("bulk-submit").disabled = false;
  const verb = decision === "approve" ? "approved" : "rejected";
  clear(out).append(el("p", {}, done.length ? `${done.length} ${verb}: ${done.join(", ")}.` : `None ${verb}.`),
    refused.length ? el("ul", { class: "error" }, refused.map((t) => el("li", {}, t))) : null);
  refreshPendingCount();
  await loadReviewList();
  if (state.selectedRec) openRecommendation(state.selectedRec);
}

function reviewSummary(rec) {
  const facts = [];
  facts.push(`Proposed by ${proposer(rec)}: ${words(rec.action)} for ${rec.account_id ? "account" : "activity"} ${target(rec)}`);
  if (rec.expected_value !== null && rec.expected_value !== undefined) facts.push(`expected value ${money(rec.expected_value)}`);
  let status;
  if (rec.status === "pending") status = `Waiting for a decision${rec.expires_at ? `; it expires ${when(rec.expires_at)}` : ""}.`;
  else if (rec.decided_at) status = `${words(rec.status)[0].toUpperCase()}${words(rec.status).slice(1)} by ${rec.decided_by} on ${when(rec.decided_at)}.`;
  else status = `Status: ${rec.status}.`;
  return el("div", { class: "review-summary", id: "review-plain" },
    el("p", { class: "lead" }, `${facts.join(", ")}.`),
    el("p", { class: "rationale" }, rec.rationale),
    el("p", { class: "muted" }, status));
}

async function openRecommendation(id) {
  state.selectedRec = id;
  for (const tr of $("review-table").querySelectorAll("tbody tr")) tr.classList.toggle("selected", Number(tr.dataset.id) === id);
  const pane = clear($("review-detail"));
  pane.append(el("p", { class: "muted" }, "Loading…"));
  let rec;
  try {
    rec = await api(`/api/v1/recommendations/${id}`);
  } catch (err) {
    clear(pane).append(errorBox(err));
    return;
  }
  if (state.selectedRec !== id) return; // another one was opened meanwhile
  clear(pane);
  const notice = reviewState.notice && reviewState.notice.id === id ? reviewState.notice.text : null;
  reviewState.notice = null;
  append(pane, [
    el("h2", {}, `#${rec.id} ${words(rec.action)} `, el("span", { class: "muted" }, `for ${target(rec)}`), " ", statusBadge(rec.status)),
    notice ? el("div", { class: "error-box", role: "alert", id: "review-notice" }, notice) : null,
    reviewSummary(rec),
  ]);
  if (rec.decidable && can("decide")) pane.append(decisionForm(rec));
  else if (rec.decidable) pane.append(el("p", { class: "muted" }, `Your role (${state.me.role}) can review but not decide; approvers and admins decide.`));
  if (FOLLOWED.includes(rec.status)) pane.append(followUpForm(rec));
  pane.append(
    el("h3", {}, "Facts"),
    el("dl", { class: "facts" },
      el("dt", {}, "Expected value"), el("dd", {}, money(rec.expected_value)),
      el("dt", {}, "Filed"), el("dd", {}, `${when(rec.created_at)} by ${rec.created_by}`),
      el("dt", {}, "Version"), el("dd", {}, `v${rec.version} · ${rec.content_hash.slice(0, 12)}…`),
      el("dt", {}, "Expires"), el("dd", {}, rec.expires_at ? when(rec.expires_at) : "—"),
      el("dt", {}, "Decided"), el("dd", {}, rec.decided_at ? `${when(rec.decided_at)} by ${rec.decided_by}` : "—"),
      el("dt", {}, "Owner"), el("dd", { id: "fact-owner" }, rec.owner || "—"),
      el("dt", {}, "Due"), el("dd", { id: "fact-due" }, rec.due_date || "—"),
      el("dt", {}, "Executed"), el("dd", { id: "fact-executed" }, rec.executed_at ? when(rec.executed_at) : "—"),
      el("dt", {}, "Account"), el("dd", {}, rec.account_id ? el("a", { href: `#/account/${encodeURIComponent(rec.account_id)}` }, rec.account_id) : "—"),
      el("dt", {}, "Conversation"), el("dd", {}, rec.conversation_id
        ? el("a", { href: "#/chat", onclick: (e) => { e.preventDefault(); openConversation(rec.conversation_id); } }, rec.conversation_id)
        : "—")),
    el("h3", {}, "Evidence"),
    evidenceNode(rec.evidence),
    el("h3", {}, "Audit trail"),
    tableWrap(el("table", { class: "grid small", "aria-label": "Audit trail" },
      el("tr", {}, el("th", {}, "When"), el("th", {}, "Event"), el("th", {}, "Who"), el("th", {}, "Reason"), el("th", {}, "Note")),
      rec.events.map((e) => el("tr", {}, el("td", {}, when(e.at)), el("td", {}, e.event), el("td", {}, e.actor),
        el("td", {}, e.reason_code || ""), el("td", {}, e.note || ""))))),
  );
  // one column on a narrow screen: bring the item (summary, then the form) into view under the list
  if (window.matchMedia("(max-width: 900px)").matches) {
    await reviewState.listing;
    if (state.selectedRec === id) pane.scrollIntoView({ block: "start" });
  }
}

function decisionForm(rec) {
  const reason = el("select", { id: "decision-reason" });
  const note = el("textarea", { id: "decision-note", rows: 2, maxlength: 2000, placeholder: "Note for the audit trail (required with reason \"other\")" });
  const message = el("p", { class: "error", role: "alert" });
  let decision = "approve";
  const choose = (d) => {
    decision = d;
    reasonOptions(reason, d);
    form.querySelectorAll(".decision-choice").forEach((b) => {
      b.classList.toggle("active", b.dataset.d === d);
      b.setAttribute("aria-pressed", String(b.dataset.d === d));
    });
    submit.textContent = d === "approve" ? `Approve v${rec.version}` : `Reject v${rec.version}`;
    submit.className = d === "approve" ? "approve" : "reject";
  };
  const submit = el("button", { type: "submit", id: "decision-submit" });
  const form = el("form", { class: "decision", id: "decision-form", "aria-label": "Decide" },
    el("h3", {}, "Decide"),
    el("div", { class: "segmented", role: "group", "aria-label": "Decision" },
      el("button", { type: "button", class: "decision-choice", dataset: { d: "approve" }, onclick: () => choose("approve") }, "Approve"),
      el("button", { type: "button", class: "decision-choice", dataset: { d: "reject" }, onclick: () => choose("reject") }, "Reject")),
    el("label", {}, "Reason", reason),
    el("label", {}, "Note", note),
    submit, message,
    el("p", { class: "muted small" }, `The decision is bound to version ${rec.version}: if the recommendation changed or someone decided first, it is refused and you see why.`));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    message.textContent = "";
    const code = reason.value || null;
    if (decision === "reject" && !code) {
      message.textContent = "A rejection needs a reason.";
      return;
    }
    if (code === "other" && !note.value.trim()) {
      message.textContent = "Reason \"other\" needs a note.";
      return;
    }
    submit.disabled = true;
    try {
      const result = await api(`/api/v1/recommendations/${rec.id}/${decision}`, {
        method: "POST",
        body: { expected_version: rec.version, reason_code: code, note: note.value.trim() || null },
      });
      toast(`#${rec.id} ${result.status} by ${result.decided_by}`);
    } catch (err) {
      if (err.status === 401) return;
      if (err.status !== 409 && err.status !== 410 && err.status !== 403 && err.status !== 404) {
        submit.disabled = false;
        message.textContent = err.message;
        return;
      }
      // refused: show why on the refreshed item (its real status, and no form once decided)
      reviewState.notice = { id: rec.id, text: `Not recorded. ${refusalText(rec.id, err).replace(/^#\d+: /, "")}` };
    }
    refreshPendingCount();
    loadReviewList();
    openRecommendation(rec.id);
  });
  choose("approve");
  return form;
}

// ------------------------------------------------------------------ follow-up (after approval)

const FOLLOWED = ["approved", "in_progress"];

/** Owner, due date and the steps approved → in progress → executed / abandoned (with a reason),
 * each a POST bound to the version shown (docs/OUTCOMES.md §1). Assigning is for approvers and
 * admins; the steps also for an analyst who owns it. The server decides; a refusal is shown on the
 * refreshed item. */
function followUpForm(rec) {
  const deciding = can("decide");
  const mayStep = deciding || (can("analyze") && rec.owner === state.me.user);
  const message = el("p", { class: "error", role: "alert", id: "follow-up-message" });
  const owner = el("input", { id: "follow-owner", size: 14, maxlength: 100, value: rec.owner || "", placeholder: "who does it" });
  const due = el("input", { id: "follow-due", type: "date", value: rec.due_date || "" });
  const reason = el("select", { id: "follow-reason" }, el("option", { value: "" }, "choose a reason…"),
    Object.entries(state.me.abandon_reasons || {}).map(([k, v]) => el("option", { value: k, title: v }, words(k))));
  const note = el("input", { id: "follow-note", size: 24, maxlength: 2000, placeholder: "note (required with other)" });
  const step = async (transition, body, button) => {
    message.textContent = "";
    button.disabled = true;
    try {
      const r = await api(`/api/v1/recommendations/${rec.id}/${transition}`, { method: "POST", body: { expected_version: rec.version, ...body } });
      toast(`#${rec.id} ${r.status === rec.status ? "updated" : words(r.status)}`);
    } catch (err) {
      if (err.status === 401) return;
      if (err.status === 422) {
        button.disabled = false;
        message.textContent = err.message;
        return;
      }
      reviewState.notice = { id: rec.id, text: `Not recorded. ${refusalText(rec.id, err).replace(/^#\d+: /, "")}` };
    }
    loadReviewList();
    openRecommendation(rec.id);
  };
  const form = el("div", { class: "decision", id: "follow-up", role: "group", "aria-label": "Follow-up" },
    el("h3", {}, "Follow-up"),
    el("p", { class: "muted small" }, `Status ${words(rec.status)}; every step is bound to version ${rec.version} and recorded in the audit trail.`));
  if (deciding) {
    const save = el("button", { type: "button", id: "follow-assign" }, "Save owner and due date");
    save.addEventListener("click", () => {
      const body = {};
      if (owner.value.trim()) body.owner = owner.value.trim();
      if (due.value) body.due_date = due.value;
      if (!Object.keys(body).length) { message.textContent = "Give an owner or a due date."; return; }
      step("assign", body, save);
    });
    form.append(el("div", { class: "follow-up" }, el("label", {}, "Owner", owner), el("label", {}, "Due date", due), save));
  }
  if (!mayStep) {
    form.append(el("p", { class: "muted" }, `Its owner, an approver or an admin records the steps (you are ${state.me.role}${rec.owner ? `; the owner is ${rec.owner}` : ""}).`));
    return append(form, [message]);
  }
  const buttons = el("div", { class: "follow-up" });
  if (rec.status === "approved") {
    const start = el("button", { type: "button", id: "follow-start" }, "Start");
    start.addEventListener("click", () => step("start", {}, start));
    buttons.append(start);
  }
  const done = el("button", { type: "button", class: "approve", id: "follow-execute" }, "Mark executed");
  done.addEventListener("click", () => step("execute", note.value.trim() ? { note: note.value.trim() } : {}, done));
  const abandon = el("button", { type: "button", class: "reject", id: "follow-abandon" }, "Abandon");
  abandon.addEventListener("click", () => {
    if (!reason.value) { message.textContent = "Abandoning needs a reason."; return; }
    if (reason.value === "other" && !note.value.trim()) { message.textContent = "Reason \"other\" needs a note."; return; }
    step("abandon", { reason_code: reason.value, note: note.value.trim() || null }, abandon);
  });
  buttons.append(done, el("label", {}, "Reason to abandon", reason), el("label", {}, "Note", note), abandon);
  return append(form, [buttons, message]);
}

function wireReview() {
  $("review-refresh").addEventListener("click", loadReviewList);
  $("review-status").addEventListener("change", loadReviewList);
  $("review-account").addEventListener("keydown", (e) => e.key === "Enter" && loadReviewList());
  $("bulk-decision").addEventListener("change", () => { reasonOptions($("bulk-reason"), $("bulk-decision").value); updateBulk(); });
  $("bulk-all").addEventListener("change", (e) => {
    for (const r of reviewState.items.values()) if (r.decidable) e.target.checked ? reviewState.selected.add(r.id) : reviewState.selected.delete(r.id);
    for (const b of document.querySelectorAll(".bulk-pick")) b.checked = e.target.checked;
    updateBulk();
  });
  $("bulk-form").addEventListener("submit", bulkDecide);
}

// ------------------------------------------------------------------ value chain

function card(label, value, extra) {
  return el("div", { class: "card stat" }, el("div", { class: "muted small" }, label), el("div", { class: "stat-value" }, value),
    extra ? el("div", { class: "muted small" }, extra) : null);
}

function quadrantOf(a) {
  return QUADRANTS[a.quadrant] || { label: words(a.quadrant), color: QUADRANTS.maintain.color };
}

function quadrantLegend() {
  return el("ul", { class: "legend", "aria-label": "Quadrant colours" }, Object.values(QUADRANTS).map((q) =>
    el("li", {}, el("span", { class: "swatch", style: `background:${q.color}` }), q.label)));
}

/** The cost/value scatter sized to its box (so its text stays legible on a phone): points are
 * numbered, and the numbered key under it gives each activity's full name and figures. */
function scatterChart(scores, boxWidth) {
  const W = Math.max(300, Math.min(640, Math.floor(boxWidth))), H = Math.round(W * 0.7);
  const m = { l: 46, r: 12, t: 12, b: 40 };
  const acts = [...scores.activities].sort((p, q) => q.annual_cost - p.annual_cost);
  const n = Math.max(1, acts.length);
  const maxX = Math.max(1.5 / n, ...acts.map((a) => a.cost_share)) * 1.1;
  const maxY = Math.max(1.5 / n, ...acts.map((a) => a.value_share)) * 1.1;
  const x = (v) => m.l + (v / maxX) * (W - m.l - m.r);
  const y = (v) => H - m.b - (v / maxY) * (H - m.t - m.b);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "chart scatter", role: "img",
    "aria-label": "Cost share versus value share of each activity; the numbered key below lists them" });
  const cut = 1 / n;
  const quad = [
    ["invest_and_scale", m.l, m.t, x(cut) - m.l, y(cut) - m.t],
    ["optimize", x(cut), m.t, W - m.r - x(cut), y(cut) - m.t],
    ["maintain", m.l, y(cut), x(cut) - m.l, H - m.b - y(cut)],
    ["eliminate_or_restructure", x(cut), y(cut), W - m.r - x(cut), H - m.b - y(cut)],
  ];
  for (const [key, qx, qy, qw, qh] of quad) {
    root.append(svg("rect", { x: qx, y: qy, width: Math.max(0, qw), height: Math.max(0, qh), fill: QUADRANTS[key].color, "fill-opacity": 0.07 }));
  }
  root.append(svg("line", { x1: m.l, y1: H - m.b, x2: W - m.r, y2: H - m.b, class: "axis" }));
  root.append(svg("line", { x1: m.l, y1: m.t, x2: m.l, y2: H - m.b, class: "axis" }));
  for (let i = 0; i <= 4; i++) {
    const vx = (maxX * i) / 4, vy = (maxY * i) / 4;
    root.append(svg("text", { x: x(vx), y: H - m.b + 15, "text-anchor": "middle", class: "tick" }, pct(vx, 0)));
    root.append(svg("text", { x: m.l - 5, y: y(vy) + 4, "text-anchor": "end", class: "tick" }, pct(vy, 0)));
  }
  root.append(svg("line", { x1: x(cut), y1: m.t, x2: x(cut), y2: H - m.b, class: "split" }));
  root.append(svg("line", { x1: m.l, y1: y(cut), x2: W - m.r, y2: y(cut), class: "split" }));
  const d = Math.min(maxX, maxY);
  root.append(svg("line", { x1: x(0), y1: y(0), x2: x(d), y2: y(d), class: "parity" }));
  root.append(svg("text", { x: (m.l + W - m.r) / 2, y: H - 6, "text-anchor": "middle", class: "axis-label" }, "share of cost →"));
  root.append(svg("text", { x: 12, y: (m.t + H - m.b) / 2, "text-anchor": "middle", class: "axis-label",
    transform: `rotate(-90 12 ${(m.t + H - m.b) / 2})` }, "share of value →"));
  const maxCost = Math.max(...acts.map((a) => a.annual_cost), 1);
  acts.forEach((a, i) => {
    const g = svg("g", { class: "point", "data-activity": a.id });
    const cx = x(a.cost_share), cy = y(a.value_share), r = 4 + 7 * Math.sqrt(a.annual_cost / maxCost);
    g.append(svg("circle", { cx, cy, r, fill: quadrantOf(a).color, "fill-opacity": 0.75, stroke: "#fff" }));
    g.append(svg("text", { x: cx + r + 2, y: cy - r + 4, class: "point-label" }, String(i + 1)));
    g.append(svg("title", {}, `${i + 1}. ${a.name}: ${pct(a.cost_share)} of cost, ${pct(a.value_share)} of value`));
    root.append(g);
  });
  const key = el("ol", { class: "chart-key", "aria-label": "Activities in the chart" }, acts.map((a) =>
    el("li", {}, el("span", { class: "swatch", style: `background:${quadrantOf(a).color}` }),
      el("b", {}, a.name), ` ${pct(a.cost_share)} of cost, ${pct(a.value_share)} of value · ${quadrantOf(a).label}`)));
  return el("div", {}, el("div", { class: "chart-box" }, root), quadrantLegend(), key);
}

/** Margin leak per activity as HTML bars: full names wrap, and every value is printed. */
function leakChart(scores) {
  const items = scores.activities.filter((a) => a.margin_leak > 0).sort((a, b) => b.margin_leak - a.margin_leak).slice(0, 12);
  if (!items.length) return el("p", { class: "muted" }, "No activity leaks margin in this period.");
  const max = items[0].margin_leak;
  return el("div", {},
    el("ul", { class: "hbars", "aria-label": "Margin leak by activity" }, items.map((a) =>
      el("li", { class: "hbar", dataset: { activity: a.id } },
        el("span", { class: "hbar-label" }, a.name, " ", el("span", { class: "muted small" }, a.id)),
        el("span", { class: "hbar-track" },
          el("span", { class: "hbar-fill", style: `width:${Math.max(1, (100 * a.margin_leak) / max).toFixed(1)}%;background:${quadrantOf(a).color}` })),
        el("span", { class: "hbar-value" }, `${money(a.margin_leak)} (${pct(a.margin_leak / (scores.total_margin_leak || 1), 0)})`)))),
    quadrantLegend());
}

async function loadValueChain() {
  const period = $("vc-period").value.trim();
  const summary = clear($("vc-summary"));
  const scatter = clear($("vc-scatter"));
  const leak = clear($("vc-leak"));
  const tbody = clear($("vc-table").querySelector("tbody"));
  summary.append(el("p", { class: "muted" }, "Loading…"));
  let scores;
  try {
    scores = await api(`/api/v1/tools/activity-scores${period ? `?period=${encodeURIComponent(period)}` : ""}`);
  } catch (err) {
    clear(summary).append(errorBox(err));
    return;
  }
  clear(summary);
  $("vc-period").placeholder = scores.period;
  summary.append(
    card("Period", scores.period, `${scores.n} activities`),
    card("Total cost", money(scores.total_cost)),
    card("Total margin leak", money(scores.total_margin_leak), pct(scores.total_margin_leak / (scores.total_cost || 1)) + " of cost"),
    card("Non-value-added cost", money(scores.total_non_value_added_cost), `unused capacity ${money(scores.total_unused_capacity_cost)}`),
    ...Object.entries(QUADRANTS).map(([k, q]) => {
      const c = card(q.label, String(scores.quadrant_counts[k] || 0), "activities");
      c.style.borderTop = `3px solid ${q.color}`;
      return c;
    }),
  );
  scatter.append(scatterChart(scores, scatter.clientWidth || 620));
  leak.append(leakChart(scores));
  $("vc-explanation").textContent = words(scores.explanation);
  for (const a of scores.activities) {
    tbody.append(el("tr", {},
      el("td", {}, a.name, el("div", { class: "muted small" }, a.id)), el("td", {}, a.kind), el("td", {}, words(a.porter_category)),
      el("td", { class: "num" }, money(a.annual_cost)), el("td", { class: "num" }, pct(a.cost_share)),
      el("td", { class: "num" }, pct(a.value_share)), el("td", { class: "num" }, money(a.margin_leak)),
      el("td", {}, el("span", { class: "quad" }, el("span", { class: "swatch", style: `background:${quadrantOf(a).color}` }), quadrantOf(a).label)),
      el("td", { class: "num" }, a.performance_gap === null ? "—" : pct(a.performance_gap))));
  }
}

// ------------------------------------------------------------------ at-risk accounts

function accountLink(id, text) {
  return el("a", { href: `#/account/${encodeURIComponent(id)}` }, text || id);
}

/** A next best action in words: what, why, and what it is worth against its cost. */
function actionWhy(act) {
  const because = [...new Set(act.evidence.map((e) => e.phrase))];
  return because.length ? `Why: ${because.join("; ")}.` : "It applies to every account.";
}

let riskRequest = 0; // the latest loadRisk call: an older one's late answer is dropped, never shown

async function loadRisk() {
  const filter = $("risk-filter").value.trim();
  const params = new URLSearchParams({ limit: $("risk-limit").value, top_drivers: "3", order_by: $("risk-order").value });
  for (const f of filter.split(/\s*;\s*|\s+(?=\w+=)/).filter(Boolean)) params.append("filter", f);
  const mine = ++riskRequest;
  const summary = clear($("risk-summary"));
  clear($("risk-table").querySelector("tbody"));
  summary.append(el("p", { class: "muted" }, "Loading…"));
  let res;
  try {
    res = await api(`/api/v1/tools/churn-risk?${params}`);
  } catch (err) {
    if (mine === riskRequest) clear(summary).append(errorBox(err));
    return;
  }
  if (mine !== riskRequest) return; // the user asked again (another order, filter or page visit) meanwhile
  const tbody = clear($("risk-table").querySelector("tbody"));
  clear(summary).append(
    card("Accounts matched", res.matched.toLocaleString(), res.as_of ? `as of ${res.as_of}` : ""),
    card("ARR at risk", money(res.total_arr_at_risk), `of ${money(res.total_arr)} ARR`),
    card("High risk", String(res.band_counts.high || 0), "accounts"),
    card("Medium risk", String(res.band_counts.medium || 0), "accounts"),
  );
  const mdl = res.model;
  $("risk-model").textContent = `Model ${mdl.version}: ${words(mdl.method)} (${mdl.source})` +
    (mdl.auc !== null && mdl.auc !== undefined ? `, AUC ${mdl.auc.toFixed(3)}` : "") + (mdl.reason ? ` — ${mdl.reason}` : "");
  res.accounts.forEach((a, i) => {
    const nbaRow = el("tr", { class: "nba-row", hidden: true }, el("td", { colspan: 9 }));
    const nbaButton = el("button", { class: "small", "aria-expanded": "false",
      onclick: (e) => toggleNba(a.account_id, nbaRow, e.currentTarget) }, "Next best action");
    tbody.append(
      el("tr", { dataset: { account: a.account_id } }, // data-label: the column name when rows become cards (phone)
        el("td", { class: "rank" }, String(i + 1)),
        el("td", { class: "who" }, el("b", {}, accountLink(a.account_id)), el("div", { class: "muted small" }, a.name)),
        el("td", { class: "num", dataset: { label: "ARR at risk" } }, el("b", {}, money(a.arr_at_risk))),
        el("td", { class: "num", dataset: { label: "Churn probability" } }, pct(a.probability)),
        el("td", { dataset: { label: "Band" } }, el("span", { class: `band ${a.band}` }, a.band)),
        el("td", { class: "num", dataset: { label: "ARR" } }, money(a.arr)),
        el("td", { dataset: { label: "Segment · plan" } }, `${a.segment || "—"} · ${a.plan || "—"}`),
        el("td", { class: "drivers-cell" }, el("ul", { class: "drivers" }, a.drivers.map((d) => el("li", {}, d.phrase)))),
        el("td", { class: "actions" }, nbaButton, " ", el("a", { class: "small", href: `#/account/${encodeURIComponent(a.account_id)}` }, "Open account"))),
      nbaRow,
    );
  });
  if (!res.accounts.length) tbody.append(el("tr", {}, el("td", { colspan: 9, class: "muted" }, "No account matches.")));
}

async function toggleNba(accountId, row, button) {
  row.hidden = !row.hidden;
  button.setAttribute("aria-expanded", String(!row.hidden));
  if (row.hidden || row.dataset.loaded) return;
  const cell = clear(row.firstChild);
  cell.append(el("span", { class: "muted" }, "Loading…"));
  try {
    const res = await api(`/api/v1/tools/next-best-action/${encodeURIComponent(accountId)}?limit=3`);
    clear(cell);
    if (!res.actions.length) cell.append(el("p", { class: "muted" }, "No playbook action is worth doing for this account today."));
    cell.append(el("ol", { class: "nba" }, res.actions.map((act) =>
      el("li", {}, el("b", {}, act.description), ` — worth ${money(act.expected_value)} for a cost of ${money(act.cost)}. `,
        el("span", { class: "muted" }, actionWhy(act))))));
    for (const sup of res.suppressed) {
      cell.append(el("div", { class: "muted small" }, `Held back: ${words(sup.action)} — ${sup.reason} (recommendation #${sup.recommendation_id}, ${sup.status})`));
    }
    cell.append(el("p", {}, accountLink(accountId, `Open ${accountId} to propose one of these`)));
    row.dataset.loaded = "1";
  } catch (err) {
    clear(cell).append(errorBox(err));
  }
}

function askAbout(question) {
  location.hash = "#/chat";
  const input = $("chat-input");
  input.value = question;
  input.focus();
}

// ------------------------------------------------------------------ account page

const TIMELINE_KINDS = {
  ticket_opened: "Ticket", ticket_closed: "Ticket", invoice_failed: "Invoice", invoice_late: "Invoice",
  interaction: "Interaction", nps_response: "NPS", contact_left: "Contact", opportunity_created: "Opportunity",
  opportunity_won: "Opportunity", opportunity_lost: "Opportunity", subscription_started: "Subscription",
  subscription_renewed: "Subscription", account_created: "Account", account_churned: "Account",
};

function actionCard(accountId, act) {
  const result = el("p", { class: "propose-result", role: "status" });
  const button = el("button", { class: "primary", type: "button", dataset: { action: act.action },
    "aria-label": `Propose: ${act.description}` }, "Propose");
  if (!can("analyze")) button.disabled = true;
  button.addEventListener("click", async () => {
    button.disabled = true;
    clear(result).append("Filing…");
    try {
      const rec = await api(`/api/v1/tools/next-best-action/${encodeURIComponent(accountId)}/propose`, {
        method: "POST", body: { action: act.action },
      });
      clear(result).append(rec.duplicate_of ? "Already waiting for approval as " : "Filed for approval as ",
        el("a", { href: `#/review/${rec.id}` }, `#${rec.id}`), ` (pending; an approver other than you decides).`);
      refreshPendingCount();
    } catch (err) {
      button.disabled = false;
      clear(result).append(errorBox(err));
    }
  });
  return el("article", { class: "card action-card", dataset: { action: act.action } },
    el("h3", {}, act.description),
    el("p", { class: "muted small" }, `${act.kind} · ${words(act.activity)} · ${act.action}`),
    el("p", {}, actionWhy(act)),
    el("dl", { class: "facts" },
      el("dt", {}, "Expected value"), el("dd", {}, money(act.expected_value)),
      el("dt", {}, "Cost"), el("dd", {}, money(act.cost)),
      act.uplift !== null && act.uplift !== undefined ? [el("dt", {}, "Risk reduction"), el("dd", {}, pct(act.uplift, 0))] : null,
      act.p_success !== null && act.p_success !== undefined ? [el("dt", {}, "Chance of success"), el("dd", {}, pct(act.p_success, 0))] : null),
    el("details", {}, el("summary", {}, "How the value is computed"), el("p", { class: "small" }, act.formula)),
    can("analyze") ? button : el("p", { class: "muted small" }, `Your role (${state.me.role}) cannot propose.`),
    result);
}

async function loadAccount(accountId) {
  const root = clear($("account-body"));
  $("account-title").textContent = accountId;
  root.append(el("p", { class: "muted" }, "Loading…"));
  const id = encodeURIComponent(accountId);
  let profile, risk, nba, timeline;
  try {
    [profile, risk, nba, timeline] = await Promise.all([
      api(`/api/v1/tools/accounts/${id}`),
      api(`/api/v1/tools/churn-risk/${id}?top_drivers=5`),
      api(`/api/v1/tools/next-best-action/${id}?limit=5`),
      api(`/api/v1/tools/accounts/${id}/timeline?limit=60`),
    ]);
  } catch (err) {
    clear(root).append(errorBox(err));
    return;
  }
  clear(root);
  const a = risk.accounts[0];
  $("account-title").textContent = `${profile.name} (${profile.id})`;
  const sub = profile.subscription;
  root.append(
    el("p", { class: "muted" }, [profile.segment, profile.industry, profile.region, profile.plan && `${profile.plan} plan`,
      profile.owner && `owner ${profile.owner}`, profile.status].filter(Boolean).join(" · ")),
    el("div", { class: "cards" },
      card("ARR at risk", money(a.arr_at_risk), `of ${money(profile.arr)} ARR`),
      card("Churn probability", pct(a.probability, 0), `${a.band} risk, next 90 days`),
      card("Renewal", sub ? factText("renewal_date", sub.renewal_date) : "—", profile.days_to_renewal !== null ? `in ${profile.days_to_renewal} days` : ""),
      card("Open tickets", String(profile.open_tickets), Object.entries(profile.open_tickets_by_priority).map(([k, v]) => `${v} ${k}`).join(", ")),
      card("Last NPS", profile.last_nps ? String(profile.last_nps.score) : "—", profile.last_nps ? factText("date", profile.last_nps.responded_at) : ""),
      card("Champions", `${profile.champions_active} active`, `${profile.champions_left} left`),
      card("Usage (latest week)", profile.latest_usage ? `${profile.latest_usage.active_users} users` : "—",
        profile.latest_usage && profile.latest_usage.seat_utilisation !== null ? `${pct(profile.latest_usage.seat_utilisation, 0)} of seats` : "")),
    el("section", { class: "account-grid" },
      el("div", {},
        el("h3", {}, "Why it may churn"),
        a.drivers.length ? el("ul", { class: "churn-drivers" }, a.drivers.map((d) => el("li", {}, d.phrase)))
          : el("p", { class: "muted" }, "No risk-raising drivers."),
        el("h3", {}, "Next best actions"),
        nba.actions.length ? el("div", { class: "action-cards" }, nba.actions.map((act) => actionCard(profile.id, act)))
          : el("p", { class: "muted" }, "No playbook action is worth doing for this account today."),
        nba.suppressed.length ? el("ul", { class: "muted small" }, nba.suppressed.map((s) =>
          el("li", {}, `Held back: ${words(s.action)} — ${s.reason} (`, el("a", { href: `#/review/${s.recommendation_id}` }, `#${s.recommendation_id}`), `, ${s.status})`))) : null),
      el("div", {},
        el("h3", {}, `Timeline (${timeline.events.length} of ${timeline.total} events, newest first)`),
        el("ol", { class: "timeline" }, timeline.events.map((e) =>
          el("li", { dataset: { kind: e.kind } }, el("span", { class: "tl-date" }, factText("date", e.date)),
            el("span", { class: "tl-kind" }, TIMELINE_KINDS[e.kind] || words(e.kind)), el("span", { class: "tl-text" }, e.summary)))))),
    el("p", {}, el("button", { type: "button", class: "link", onclick: () => askAbout(`What should we do about ${profile.id} (${profile.name})?`) }, "Ask the copilot about this account")),
  );
}

// ------------------------------------------------------------------ analysis report

function reportUrl(format, extra = {}) {
  const params = new URLSearchParams({ format, ...extra });
  const period = $("report-period").value.trim();
  if (period) params.set("period", period);
  return `/api/v1/analysis?${params}`;
}

async function loadReport() {
  const status = $("report-status");
  status.textContent = "Rendering the report (charts take a few seconds)…";
  try {
    const resp = await api(reportUrl("html"), { raw: true });
    state.reportHtml = await resp.text();
    // a blob: document, not srcdoc: in srcdoc the contents links (#s1) resolve against this page's
    // URL and navigate the frame to the app, which refuses to be framed (frame-ancestors). The frame's
    // sandbox allows the blob's own origin (needed to follow #links within it) but no scripts.
    if (state.reportUrl) URL.revokeObjectURL(state.reportUrl);
    state.reportUrl = URL.createObjectURL(new Blob([state.reportHtml], { type: "text/html" }));
    $("report-frame").src = state.reportUrl;
    status.textContent = "";
  } catch (err) {
    status.textContent = err.message;
  }
}

async function downloadReport(format) {
  const status = $("report-status");
  status.textContent = `Preparing the ${format.toUpperCase()}…`;
  try {
    const resp = await api(reportUrl(format, { download: "true" }), { raw: true });
    const blob = await resp.blob();
    const cd = resp.headers.get("Content-Disposition") || "";
    const name = (/filename="([^"]+)"/.exec(cd) || [])[1] || `value-chain-analysis.${format}`;
    const url = URL.createObjectURL(blob);
    const a = el("a", { href: url, download: name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    status.textContent = `Downloaded ${name} (${Math.round(blob.size / 1024)} kB).`;
  } catch (err) {
    status.textContent = err.message;
  }
}

async function openReportTab() {
  const tab = window.open("", "_blank"); // opened now, while the click still counts, then filled
  try {
    if (!state.reportHtml) await loadReport();
    const url = URL.createObjectURL(new Blob([state.reportHtml || ""], { type: "text/html" }));
    if (tab) tab.location = url;
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  } catch (err) {
    if (tab) tab.close();
    toast(err.message, "bad");
  }
}

// ------------------------------------------------------------------ run log

const RUN_PAGE = 50;
const RATING_WORDS = { up: "▲ Helpful", down: "▼ Not helpful" };

/** One verdict on an answer: who, helpful or not, and their note. */
function verdictNode(f) {
  return el("li", { class: `verdict ${f.rating}` },
    el("span", { class: "verdict-rating" }, RATING_WORDS[f.rating] || f.rating), " ",
    el("span", { class: "muted" }, `${f.user || "a removed user"} · ${when(f.updated_at)}`),
    f.note ? el("q", { class: "verdict-note" }, f.note) : null);
}

/** The start of an answer as plain text (no Markdown marks), for a folded answer's summary. */
function plainExcerpt(text, n = 160) {
  const plain = String(text).replace(/\*\*|`|^#+\s*|^\s*[-*•]\s+/gm, "").replace(/\s+/g, " ").trim();
  return plain.length > n ? `${plain.slice(0, n - 1)}…` : plain;
}

/** One run as a card: who asked what, how it ended, what it called and filed, and the verdicts. */
function runEntry(r) {
  const took = r.latency_ms === null ? null : `${(r.latency_ms / 1000).toFixed(1)} s`;
  const head = el("p", { class: "run-head" }, el("span", { class: `status-badge ${r.status}` }, r.status), " ",
    el("span", { class: "muted" }, [when(r.started_at), r.user || "no user", r.channel, took, r.model].filter(Boolean).join(" · ")));
  const ended = r.answer
    ? el("details", { class: "run-answer" }, el("summary", {}, el("span", { class: "run-answer-label" }, "Answer"), " ",
      el("span", { class: "run-excerpt" }, plainExcerpt(r.answer))), renderMarkdown(r.answer, { queries: [] }))
    : el("p", { class: r.status === "error" ? "error" : "muted" }, r.error || (r.status === "running" ? "Still running…" : "No answer."));
  const facts = [r.tools.length ? `Tools: ${r.tools.join(", ")}` : "No tool calls",
    r.recommendation_ids.length ? `filed #${r.recommendation_ids.join(", #")}` : null].filter(Boolean).join(" · ");
  const verdicts = r.feedback.length
    ? el("ul", { class: "verdicts", "aria-label": "Verdicts on this answer" }, r.feedback.map(verdictNode))
    : el("p", { class: "muted small" }, "Not rated.");
  const open = el("button", { type: "button", class: "small", onclick: () => openConversation(r.conversation_id) }, "Open the conversation");
  return el("li", { class: "card run-entry", dataset: { run: r.run_id } },
    head, el("p", { class: "run-question" }, r.question), ended, el("p", { class: "muted small" }, facts), verdicts, open);
}

async function loadRunLog(more = false) {
  const list = $("runs-list");
  const offset = more ? list.children.length : 0;
  if (!more) clear(list);
  $("runs-more").hidden = true;
  if (!can("analyze")) {
    $("runs-summary").textContent = "The run log is for analysts, approvers and admins.";
    return;
  }
  $("runs-summary").textContent = "Loading…";
  try {
    const params = new URLSearchParams({ rated: $("runs-rated").value, limit: RUN_PAGE, offset });
    const log = await api(`/api/v1/feedback?${params}`);
    list.append(...log.items.map(runEntry));
    $("runs-summary").textContent = `${log.total} run${log.total === 1 ? "" : "s"}, newest first · verdicts over all runs: `
      + `${log.ratings.up} helpful, ${log.ratings.down} not helpful`;
    $("runs-more").hidden = list.children.length >= log.total;
  } catch (err) {
    clear($("runs-summary")).append(errorBox(err));
  }
}

// ------------------------------------------------------------------ wiring

function wirePages() {
  wireReview();
  $("vc-refresh").addEventListener("click", loadValueChain);
  $("vc-period").addEventListener("keydown", (e) => e.key === "Enter" && loadValueChain());
  $("risk-refresh").addEventListener("click", loadRisk);
  $("risk-filter").addEventListener("keydown", (e) => e.key === "Enter" && loadRisk());
  $("report-show").addEventListener("click", loadReport);
  $("report-open").addEventListener("click", openReportTab);
  $("report-pdf").addEventListener("click", () => downloadReport("pdf"));
  $("report-md").addEventListener("click", () => downloadReport("md"));
  $("runs-refresh").addEventListener("click", () => loadRunLog());
  $("runs-rated").addEventListener("change", () => loadRunLog());
  $("runs-more").addEventListener("click", () => loadRunLog(true));
}
