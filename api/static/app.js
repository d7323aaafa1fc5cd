/* Value Chain Copilot web UI: vanilla JS over the public API (docs/UI.md).
 *
 * The API key lives in sessionStorage (this tab only) and goes out as `Authorization: Bearer`.
 * Every piece of server text is put in the page as text nodes (never innerHTML), so an answer,
 * a rationale or a knowledge chunk cannot inject markup.
 */
"use strict";

const KEY_STORAGE = "vcc.apiKey";
const SVG_NS = "http://www.w3.org/2000/svg";
const QUADRANTS = {
  invest_and_scale: { label: "Invest & scale", color: "#2e7d32" },
  optimize: { label: "Optimize", color: "#1565c0" },
  eliminate_or_restructure: { label: "Eliminate / restructure", color: "#c62828" },
  maintain: { label: "Maintain", color: "#757575" },
};

const state = {
  key: null,
  me: null,
  conversationId: null,
  streaming: null, // AbortController of the running chat request
  knowledgeQueries: [], // search_knowledge queries of this page session, newest last
  knowledgeHits: new Map(), // source -> hits seen in tool results
  selectedRec: null,
  reportHtml: null,
};

// ------------------------------------------------------------------ helpers

function $(id) {
  return document.getElementById(id);
}

/** el("div", {class: "x", onclick: fn}, "text", child, ...): a DOM element with text-only children. */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

const moneyFmt = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD", maximumFractionDigits: 0 });
function money(x) {
  if (x === null || x === undefined) return "—";
  const a = Math.abs(x);
  if (a >= 1e6) return `${x < 0 ? "-" : ""}$${(a / 1e6).toFixed(a >= 1e7 ? 1 : 2)}M`;
  if (a >= 1e4) return `${x < 0 ? "-" : ""}$${(a / 1e3).toFixed(0)}k`;
  return moneyFmt.format(x);
}
function pct(x, digits = 1) {
  return x === null || x === undefined ? "—" : `${(x * 100).toFixed(digits)}%`;
}
function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso.endsWith("Z") || iso.includes("+") ? iso : `${iso}Z`);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}
function words(s) {
  return String(s || "").replaceAll("_", " ");
}

function toast(message, kind = "ok") {
  const t = $("toast");
  t.textContent = message;
  t.className = `toast ${kind}`;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (t.hidden = true), 5000);
}

/** A readable message from an API error body ({detail: str | list | {message}}). */
function detailText(detail) {
  if (!detail) return "";
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) return detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
  if (detail.message) return detail.message;
  return JSON.stringify(detail);
}

class ApiError extends Error {
  constructor(status, detail) {
    super(detailText(detail) || `HTTP ${status}`);
    this.status = status;
    this.detail = detail;
  }
}

async function api(path, options = {}) {
  const headers = Object.assign({ Authorization: `Bearer ${state.key}` }, options.headers || {});
  let body = options.body;
  if (body !== undefined && typeof body !== "string") {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(body);
  }
  const resp = await fetch(path, { method: options.method || "GET", headers, body, signal: options.signal });
  if (resp.status === 401) {
    signOut("Your API key was not accepted (revoked or invalid); sign in again.");
    throw new ApiError(401, "not signed in");
  }
  if (options.raw) {
    if (!resp.ok) throw new ApiError(resp.status, (await resp.json().catch(() => ({}))).detail);
    return resp;
  }
  const data = await resp.json().catch(() => null);
  if (!resp.ok) throw new ApiError(resp.status, data && data.detail);
  return data;
}

function errorBox(err) {
  return el("div", { class: "error-box", role: "alert" }, err instanceof Error ? err.message : String(err));
}

function can(permission) {
  return !!state.me && state.me.permissions.includes(permission);
}

// ------------------------------------------------------------------ sign in / out

async function signIn(key) {
  state.key = key;
  const me = await api("/api/v1/me");
  state.me = me;
  sessionStorage.setItem(KEY_STORAGE, key);
  $("signin").hidden = true;
  $("app").hidden = false;
  $("whoami").textContent = `${me.user} · ${me.role}`;
  refreshModelStatus();
  refreshPendingCount();
  loadConversations();
  route();
  resumeChat(); // chat.js: reopen this tab's conversation, reattach to a run still going
}

function signOut(message) {
  sessionStorage.clear(); // the key, and chat.js's open conversation (the next user must not reopen it)
  state.key = null;
  state.me = null;
  if (state.streaming) state.streaming.abort();
  $("app").hidden = true;
  $("signin").hidden = false;
  $("signin-error").textContent = message || "";
  $("api-key").value = "";
  $("api-key").focus();
}

// ------------------------------------------------------------------ routing

const PAGES = ["chat", "review", "value-chain", "accounts", "report"];
const loaded = new Set();

function route() {
  if (!state.me) return;
  const [page, arg] = (location.hash.replace(/^#\/?/, "") || "chat").split("/");
  const name = PAGES.includes(page) ? page : "chat";
  $("toast").hidden = true;
  for (const p of PAGES) $(`page-${p}`).hidden = p !== name;
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.page === name);
  if (name === "review") {
    if (!arg || !loaded.has(name)) loadReviewList();
    if (arg) openRecommendation(Number(arg));
    refreshPendingCount();
  } else if (name === "value-chain" && !loaded.has(name)) loadValueChain();
  else if (name === "accounts" && !loaded.has(name)) loadRisk();
  else if (name === "report" && !loaded.has(name)) loadReport();
  else if (name === "chat") $("chat-input").focus();
  loaded.add(name);
}

// header status, chat, citations and conversations: chat.js (loaded after this file)

// ------------------------------------------------------------------ review queue

function target(rec) {
  return rec.account_id || rec.activity_id || "—";
}

function statusBadge(status) {
  return el("span", { class: `status-badge ${status}` }, status);
}

async function loadReviewList() {
  const tbody = $("review-table").querySelector("tbody");
  const status = $("review-status").value;
  const account = $("review-account").value.trim();
  const params = new URLSearchParams({ limit: "100" });
  if (status) params.set("status", status);
  if (account) params.set("account_id", account);
  clear(tbody);
  try {
    const page = await api(`/api/v1/recommendations?${params}`);
    $("review-summary").textContent = `${page.total} recommendation${page.total === 1 ? "" : "s"}${status ? ` ${status}` : ""}` +
      (page.ttl_days ? ` · pending ones expire after ${page.ttl_days} days` : "");
    for (const rec of page.items) {
      tbody.append(
        el("tr", { class: `clickable${rec.id === state.selectedRec ? " selected" : ""}`, dataset: { id: rec.id },
          onclick: () => { location.hash = `#/review/${rec.id}`; } },
          el("td", {}, `#${rec.id}`), el("td", {}, target(rec)), el("td", {}, words(rec.action)),
          el("td", { class: "num" }, money(rec.expected_value)), el("td", {}, statusBadge(rec.status)),
          el("td", {}, when(rec.created_at))),
      );
    }
    if (!page.items.length) tbody.append(el("tr", {}, el("td", { colspan: 6, class: "muted" }, "Nothing here.")));
  } catch (err) {
    tbody.append(el("tr", {}, el("td", { colspan: 6 }, errorBox(err))));
  }
}

function evidenceNode(evidence) {
  const keys = Object.keys(evidence || {});
  if (!keys.length) return el("p", { class: "muted" }, "No evidence recorded.");
  return el("div", {}, keys.map((k) =>
    el("details", { class: "evidence", open: keys.length <= 2 }, el("summary", {}, words(k)),
      el("pre", {}, JSON.stringify(evidence[k], null, 2)))));
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
  clear(pane);
  pane.append(
    el("h2", {}, `#${rec.id} ${words(rec.action)} `, el("span", { class: "muted" }, `for ${target(rec)}`), " ", statusBadge(rec.status)),
    el("p", { class: "rationale" }, rec.rationale),
    el("dl", { class: "facts" },
      el("dt", {}, "Expected value"), el("dd", {}, money(rec.expected_value)),
      el("dt", {}, "Filed"), el("dd", {}, `${when(rec.created_at)} by ${rec.created_by}`),
      el("dt", {}, "Version"), el("dd", {}, `v${rec.version} · ${rec.content_hash.slice(0, 12)}…`),
      el("dt", {}, "Expires"), el("dd", {}, rec.expires_at ? when(rec.expires_at) : "—"),
      el("dt", {}, "Decided"), el("dd", {}, rec.decided_at ? `${when(rec.decided_at)} by ${rec.decided_by}` : "—"),
      el("dt", {}, "Conversation"), el("dd", {}, rec.conversation_id
        ? el("a", { href: "#/chat", onclick: (e) => { e.preventDefault(); openConversation(rec.conversation_id); } }, rec.conversation_id)
        : "—")),
    el("h3", {}, "Evidence"),
    evidenceNode(rec.evidence),
    el("h3", {}, "Audit trail"),
    el("table", { class: "grid small" },
      el("tr", {}, el("th", {}, "When"), el("th", {}, "Event"), el("th", {}, "Who"), el("th", {}, "Reason"), el("th", {}, "Note")),
      rec.events.map((e) => el("tr", {}, el("td", {}, when(e.at)), el("td", {}, e.event), el("td", {}, e.actor),
        el("td", {}, e.reason_code || ""), el("td", {}, e.note || "")))),
  );
  if (rec.decidable && can("decide")) pane.append(decisionForm(rec));
  else if (rec.decidable) pane.append(el("p", { class: "muted" }, `Your role (${state.me.role}) can review but not decide; approvers and admins decide.`));
}

function decisionForm(rec) {
  const reason = el("select", { id: "decision-reason" });
  const note = el("textarea", { id: "decision-note", rows: 2, maxlength: 2000, placeholder: "Note for the audit trail (required with reason \"other\")" });
  const message = el("p", { class: "error", role: "alert" });
  const fillReasons = (decision) => {
    clear(reason);
    const codes = decision === "approve" ? state.me.approve_reasons : state.me.reject_reasons;
    if (decision === "approve") reason.append(el("option", { value: "" }, "(no reason code)"));
    else reason.append(el("option", { value: "" }, "choose a reason…"));
    for (const [code, text] of Object.entries(codes)) reason.append(el("option", { value: code }, `${words(code)}: ${text}`));
  };
  let decision = "approve";
  const choose = (d) => {
    decision = d;
    fillReasons(d);
    form.querySelectorAll(".decision-choice").forEach((b) => b.classList.toggle("active", b.dataset.d === d));
    submit.textContent = d === "approve" ? `Approve v${rec.version}` : `Reject v${rec.version}`;
    submit.className = d === "approve" ? "approve" : "reject";
  };
  const submit = el("button", { type: "submit", id: "decision-submit" });
  const form = el("form", { class: "decision", id: "decision-form" },
    el("h3", {}, "Decide"),
    el("div", { class: "segmented" },
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
      refreshPendingCount();
      loadReviewList();
      openRecommendation(rec.id);
    } catch (err) {
      submit.disabled = false;
      const d = err.detail || {};
      if (d.error === "already_decided" && d.winner) {
        message.textContent = `Already ${d.winner.status} by ${d.winner.decided_by} at ${when(d.winner.decided_at)}.`;
      } else if (d.error === "content_changed") {
        message.textContent = "It changed since you opened it: reloaded; review it again.";
        setTimeout(() => openRecommendation(rec.id), 1500);
      } else message.textContent = err.message;
      if (d.error) loadReviewList();
    }
  });
  choose("approve");
  return form;
}

// ------------------------------------------------------------------ value chain

function card(label, value, extra) {
  return el("div", { class: "card stat" }, el("div", { class: "muted small" }, label), el("div", { class: "stat-value" }, value),
    extra ? el("div", { class: "muted small" }, extra) : null);
}

function scatterChart(scores) {
  const W = 620, H = 440, m = { l: 56, r: 16, t: 16, b: 44 };
  const acts = scores.activities;
  const n = Math.max(1, acts.length);
  const maxX = Math.max(1.5 / n, ...acts.map((a) => a.cost_share)) * 1.1;
  const maxY = Math.max(1.5 / n, ...acts.map((a) => a.value_share)) * 1.1;
  const x = (v) => m.l + (v / maxX) * (W - m.l - m.r);
  const y = (v) => H - m.b - (v / maxY) * (H - m.t - m.b);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart scatter", role: "img",
    "aria-label": "Cost share versus value share of each activity" });
  const cut = 1 / n;
  const quad = [
    ["invest_and_scale", m.l, m.t, x(cut) - m.l, y(cut) - m.t, "start", m.l + 6, m.t + 14],
    ["optimize", x(cut), m.t, W - m.r - x(cut), y(cut) - m.t, "end", W - m.r - 6, m.t + 14],
    ["maintain", m.l, y(cut), x(cut) - m.l, H - m.b - y(cut), "start", m.l + 6, H - m.b - 8],
    ["eliminate_or_restructure", x(cut), y(cut), W - m.r - x(cut), H - m.b - y(cut), "end", W - m.r - 6, H - m.b - 8],
  ];
  for (const [key, qx, qy, qw, qh, anchor, tx, ty] of quad) {
    root.append(svg("rect", { x: qx, y: qy, width: Math.max(0, qw), height: Math.max(0, qh), fill: QUADRANTS[key].color, "fill-opacity": 0.06 }));
    root.append(svg("text", { x: tx, y: ty, "text-anchor": anchor, class: "quad-label", fill: QUADRANTS[key].color }, QUADRANTS[key].label));
  }
  // axes, ticks, the average-share split and the value = cost line (below it an activity leaks margin)
  root.append(svg("line", { x1: m.l, y1: H - m.b, x2: W - m.r, y2: H - m.b, class: "axis" }));
  root.append(svg("line", { x1: m.l, y1: m.t, x2: m.l, y2: H - m.b, class: "axis" }));
  for (let i = 0; i <= 4; i++) {
    const vx = (maxX * i) / 4, vy = (maxY * i) / 4;
    root.append(svg("text", { x: x(vx), y: H - m.b + 16, "text-anchor": "middle", class: "tick" }, pct(vx, 0)));
    root.append(svg("text", { x: m.l - 6, y: y(vy) + 4, "text-anchor": "end", class: "tick" }, pct(vy, 0)));
  }
  root.append(svg("line", { x1: x(cut), y1: m.t, x2: x(cut), y2: H - m.b, class: "split" }));
  root.append(svg("line", { x1: m.l, y1: y(cut), x2: W - m.r, y2: y(cut), class: "split" }));
  const d = Math.min(maxX, maxY);
  root.append(svg("line", { x1: x(0), y1: y(0), x2: x(d), y2: y(d), class: "parity" }));
  root.append(svg("text", { x: x(d) - 4, y: y(d) + 14, "text-anchor": "end", class: "tick" }, "value = cost"));
  root.append(svg("text", { x: (m.l + W - m.r) / 2, y: H - 8, "text-anchor": "middle", class: "axis-label" }, "cost share"));
  root.append(svg("text", { x: 14, y: (m.t + H - m.b) / 2, "text-anchor": "middle", class: "axis-label",
    transform: `rotate(-90 14 ${(m.t + H - m.b) / 2})` }, "value share"));
  const maxCost = Math.max(...acts.map((a) => a.annual_cost), 1);
  const placed = []; // label boxes so far: the biggest activities get their labels first
  const overlaps = (b) => b.x0 < m.l || b.x1 > W - m.r || b.y0 < m.t || b.y1 > H - m.b ||
    placed.some((p) => b.x0 < p.x1 && b.x1 > p.x0 && b.y0 < p.y1 && b.y1 > p.y0);
  for (const a of [...acts].sort((p, q) => q.annual_cost - p.annual_cost)) {
    const g = svg("g", { class: "point", "data-activity": a.id });
    const cx = x(a.cost_share), cy = y(a.value_share), r = 4 + 8 * Math.sqrt(a.annual_cost / maxCost);
    g.append(svg("circle", { cx, cy, r, fill: (QUADRANTS[a.quadrant] || QUADRANTS.maintain).color, "fill-opacity": 0.75, stroke: "#fff" }));
    const text = a.name.length > 26 ? `${a.name.slice(0, 25)}…` : a.name;
    const w = text.length * 5.4, h = 11;
    const spots = [[cx + r + 3, cy + 3, "start"], [cx - r - 3, cy + 3, "end"], [cx, cy - r - 4, "middle"], [cx, cy + r + 11, "middle"]];
    for (const [tx, ty, anchor] of spots) {
      const x0 = anchor === "start" ? tx : anchor === "end" ? tx - w : tx - w / 2;
      const box = { x0, x1: x0 + w, y0: ty - h + 2, y1: ty + 2 };
      if (overlaps(box)) continue;
      placed.push(box);
      g.append(svg("text", { x: tx, y: ty, "text-anchor": anchor, class: "point-label" }, text));
      break;
    }
    g.append(svg("title", {}, `${a.name} (${a.kind}, ${words(a.porter_category)})\ncost ${money(a.annual_cost)} = ${pct(a.cost_share)} of cost\n` +
      `value ${pct(a.value_share)} of value · margin leak ${money(a.margin_leak)}\nquadrant: ${QUADRANTS[a.quadrant] ? QUADRANTS[a.quadrant].label : a.quadrant}`));
    root.append(g);
  }
  return root;
}

function leakChart(scores) {
  const items = scores.activities.filter((a) => a.margin_leak > 0).sort((a, b) => b.margin_leak - a.margin_leak).slice(0, 12);
  if (!items.length) return el("p", { class: "muted" }, "No activity leaks margin in this period.");
  const W = 620, row = 28, m = { l: 210, r: 80, t: 8, b: 8 };
  const H = m.t + m.b + row * items.length;
  const max = items[0].margin_leak;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart bars", role: "img", "aria-label": "Margin leak by activity" });
  items.forEach((a, i) => {
    const y = m.t + i * row;
    const w = ((W - m.l - m.r) * a.margin_leak) / max;
    const g = svg("g", { class: "bar", "data-activity": a.id });
    g.append(svg("text", { x: m.l - 8, y: y + row / 2 + 4, "text-anchor": "end", class: "bar-label" }, a.name.length > 30 ? `${a.name.slice(0, 29)}…` : a.name));
    g.append(svg("rect", { x: m.l, y: y + 4, width: Math.max(1, w), height: row - 8, rx: 3, fill: (QUADRANTS[a.quadrant] || QUADRANTS.maintain).color, "fill-opacity": 0.8 }));
    g.append(svg("text", { x: m.l + w + 6, y: y + row / 2 + 4, class: "bar-value" }, money(a.margin_leak)));
    g.append(svg("title", {}, `${a.name}: margin leak ${money(a.margin_leak)} (${pct(a.margin_leak / (scores.total_margin_leak || 1))} of the total)`));
    root.append(g);
  });
  return root;
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
  scatter.append(scatterChart(scores));
  leak.append(leakChart(scores));
  $("vc-explanation").textContent = scores.explanation;
  for (const a of scores.activities) {
    tbody.append(el("tr", {},
      el("td", {}, el("span", { title: a.id }, a.name)), el("td", {}, a.kind), el("td", {}, words(a.porter_category)),
      el("td", { class: "num" }, money(a.annual_cost)), el("td", { class: "num" }, pct(a.cost_share)),
      el("td", { class: "num" }, pct(a.value_share)), el("td", { class: "num" }, money(a.margin_leak)),
      el("td", {}, el("span", { class: "quad", style: `color:${(QUADRANTS[a.quadrant] || QUADRANTS.maintain).color}` },
        QUADRANTS[a.quadrant] ? QUADRANTS[a.quadrant].label : a.quadrant)),
      el("td", { class: "num" }, a.performance_gap === null ? "—" : pct(a.performance_gap))));
  }
}

// ------------------------------------------------------------------ at-risk accounts

async function loadRisk() {
  const filter = $("risk-filter").value.trim();
  const params = new URLSearchParams({ limit: $("risk-limit").value, top_drivers: "3" });
  for (const f of filter.split(/\s*;\s*|\s+(?=\w+=)/).filter(Boolean)) params.append("filter", f);
  const summary = clear($("risk-summary"));
  const tbody = clear($("risk-table").querySelector("tbody"));
  summary.append(el("p", { class: "muted" }, "Loading…"));
  let res;
  try {
    res = await api(`/api/v1/tools/churn-risk?${params}`);
  } catch (err) {
    clear(summary).append(errorBox(err));
    return;
  }
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
    const nbaRow = el("tr", { class: "nba-row", hidden: true }, el("td", { colspan: 10 }));
    const nbaButton = el("button", { class: "small", onclick: () => toggleNba(a.account_id, nbaRow) }, "Next best action");
    tbody.append(
      el("tr", { dataset: { account: a.account_id } },
        el("td", {}, String(i + 1)),
        el("td", {}, el("b", {}, a.account_id), el("div", { class: "muted small" }, a.name)),
        el("td", {}, a.segment || "—"), el("td", {}, a.plan || "—"),
        el("td", { class: "num" }, money(a.arr)), el("td", { class: "num" }, pct(a.probability)),
        el("td", {}, el("span", { class: `band ${a.band}` }, a.band)),
        el("td", { class: "num" }, money(a.arr_at_risk)),
        el("td", {}, el("ul", { class: "drivers" }, a.drivers.map((d) => el("li", {}, d.phrase)))),
        el("td", { class: "actions" }, nbaButton,
          el("button", { class: "small link", onclick: () => askAbout(`What should we do about ${a.account_id} (${a.name})?`) }, "Ask the copilot"))),
      nbaRow,
    );
  });
  if (!res.accounts.length) tbody.append(el("tr", {}, el("td", { colspan: 10, class: "muted" }, "No account matches.")));
}

async function toggleNba(accountId, row) {
  row.hidden = !row.hidden;
  if (row.hidden || row.dataset.loaded) return;
  const cell = clear(row.firstChild);
  cell.append(el("span", { class: "muted" }, "Loading…"));
  try {
    const res = await api(`/api/v1/tools/next-best-action/${encodeURIComponent(accountId)}?limit=3`);
    clear(cell);
    if (!res.actions.length) cell.append(el("p", { class: "muted" }, `No playbook action applies. ${res.explanation}`));
    cell.append(el("ol", { class: "nba" }, res.actions.map((act) =>
      el("li", {}, el("b", {}, words(act.action)), ` (${act.kind}, ${words(act.activity)}): ${act.description} — expected value ${money(act.expected_value)}`,
        el("div", { class: "muted small" }, act.rationale)))));
    for (const sup of res.suppressed) {
      cell.append(el("div", { class: "muted small" }, `Held back: ${words(sup.action)} — ${sup.reason} (recommendation #${sup.recommendation_id}, ${sup.status})`));
    }
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
    $("report-frame").srcdoc = state.reportHtml;
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

// ------------------------------------------------------------------ wiring

function wire() {
  $("signin-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const key = $("api-key").value.trim();
    $("signin-error").textContent = "";
    $("signin-button").disabled = true;
    try {
      await signIn(key);
    } catch (err) {
      state.key = null;
      $("signin-error").textContent = err.status === 401 || err.status === undefined
        ? "That key was not accepted: check it was copied whole (vck_…_…), and that it is not revoked."
        : err.message;
    } finally {
      $("signin-button").disabled = false;
    }
  });
  $("signout").addEventListener("click", () => signOut("Signed out."));
  window.addEventListener("hashchange", route);

  wireChat(); // chat.js

  $("review-refresh").addEventListener("click", loadReviewList);
  $("review-status").addEventListener("change", loadReviewList);
  $("review-account").addEventListener("keydown", (e) => e.key === "Enter" && loadReviewList());
  $("vc-refresh").addEventListener("click", loadValueChain);
  $("vc-period").addEventListener("keydown", (e) => e.key === "Enter" && loadValueChain());
  $("risk-refresh").addEventListener("click", loadRisk);
  $("risk-filter").addEventListener("keydown", (e) => e.key === "Enter" && loadRisk());
  $("report-show").addEventListener("click", loadReport);
  $("report-open").addEventListener("click", openReportTab);
  $("report-pdf").addEventListener("click", () => downloadReport("pdf"));
  $("report-md").addEventListener("click", () => downloadReport("md"));
}

document.addEventListener("DOMContentLoaded", () => {
  wire();
  const saved = sessionStorage.getItem(KEY_STORAGE);
  if (saved) {
    signIn(saved).catch((err) => signOut(err.status === 401 ? "" : err.message));
  } else {
    signOut("");
  }
});
