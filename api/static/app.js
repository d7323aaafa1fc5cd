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
  reportUrl: null, // blob: URL of the report shown in the frame (pages.js)
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

/** An amount in the CRM's currency (settings.currency, from /api/v1/me): $19.3M, $893k, $950. */
function money(x) {
  if (x === null || x === undefined) return "—";
  const code = (state.me && state.me.currency) || "USD";
  if (money.code !== code) {
    money.fmt = new Intl.NumberFormat("en-US", { style: "currency", currency: code, maximumFractionDigits: 0 });
    money.sym = money.fmt.formatToParts(0).find((p) => p.type === "currency").value;
    money.code = code;
  }
  const a = Math.abs(x);
  if (a >= 1e6) return `${x < 0 ? "-" : ""}${money.sym}${(a / 1e6).toFixed(a >= 1e7 ? 1 : 2)}M`;
  if (a >= 1e4) return `${x < 0 ? "-" : ""}${money.sym}${(a / 1e3).toFixed(0)}k`;
  return money.fmt.format(x);
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
  $("nav-runs").hidden = !can("analyze"); // the run log is for analysts (GET /api/v1/feedback)
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

const PAGES = ["chat", "review", "value-chain", "accounts", "pipeline", "service", "outcomes", "account", "report", "runs"];
const loaded = new Set();

function route() {
  if (!state.me) return;
  const [page, arg] = (location.hash.replace(/^#\/?/, "") || "chat").split("/");
  const name = PAGES.includes(page) ? page : "chat";
  $("toast").hidden = true;
  for (const p of PAGES) $(`page-${p}`).hidden = p !== name;
  const navPage = name === "account" ? "accounts" : name; // an account is reached from the at-risk list
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.page === navPage);
  if (name === "review") {
    if (!arg || !loaded.has(name)) loadReviewList();
    if (arg) openRecommendation(Number(arg));
    refreshPendingCount();
  } else if (name === "value-chain" && !loaded.has(name)) loadValueChain();
  else if (name === "accounts" && !loaded.has(name)) loadRisk();
  else if (name === "pipeline" && !loaded.has(name)) loadPipeline();
  else if (name === "service" && !loaded.has(name)) loadServiceQueue();
  else if (name === "outcomes" && !loaded.has(name)) loadOutcomes(); // outcomes.js
  else if (name === "account") loadAccount(decodeURIComponent(arg || ""));
  else if (name === "report" && !loaded.has(name)) loadReport();
  else if (name === "runs") loadRunLog(); // always fresh: new runs and verdicts arrive all the time
  else if (name === "chat") $("chat-input").focus();
  loaded.add(name);
}

// header status, chat, citations and conversations: chat.js (loaded after this file)

// review queue, value chain, at-risk accounts, the account page, the report and the run log: pages.js;
// the pipeline and the service queue: revenue.js

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

  wirePages(); // pages.js
  wireRevenue(); // revenue.js
  wireOutcomes(); // outcomes.js
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
