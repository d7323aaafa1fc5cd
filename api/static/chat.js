/* Value Chain Copilot web UI: the chat page, the header's model status, citations and the
 * conversation list (docs/UI.md). A classic script loaded after app.js; it uses app.js's helpers
 * ($, el, append, clear, api, money, pct, when, words, toast, errorBox, state).
 *
 * A turn runs in the server, not in this page (api/runs.py): the page starts it, follows its
 * events, and after a reload (or in a second tab) reattaches to it by id and replays them.
 * Only the Stop button stops it.
 */
"use strict";

const CHAT_STORAGE = "vcc.chat"; // {conversationId, runId} of this tab, so a reload finds the run again
const STATUS_POLL_MS = 5000;

const chat = {
  live: null, // the run this page follows: {runId, view, controller, lastId}
  sending: false,
  statusTimer: null,
};

// ------------------------------------------------------------------ header status

async function refreshModelStatus() {
  if (!state.me) return;
  const pill = $("model-status");
  try {
    const s = await api("/api/v1/chat/status");
    const mine = (s.your_runs || []).length;
    let text = s.available ? "model ready" : `model ${s.status}`;
    let kind = s.available ? "ok" : s.status === "failed" || s.status.startsWith("disabled") ? "bad" : "warn";
    if (s.status === "busy") {
      const others = s.running + s.queued - mine;
      text = others > 0 ? `model busy${s.queued ? ` · ${s.queued} waiting` : ""}` : "model answering you";
      kind = others > 0 ? "busy" : "ok";
    }
    pill.textContent = text;
    pill.title = s.detail;
    pill.className = `pill ${kind}`;
    pill.dataset.status = s.status;
  } catch (err) {
    pill.textContent = "model unknown";
    pill.title = err.message;
    pill.className = "pill warn";
  }
  clearTimeout(chat.statusTimer);
  chat.statusTimer = setTimeout(refreshModelStatus, STATUS_POLL_MS);
}

/** The review-queue badge in the menu: how many recommendations wait for a decision. */
async function refreshPendingCount() {
  try {
    const page = await api("/api/v1/recommendations?status=pending&limit=1");
    const badge = $("pending-count");
    badge.textContent = String(page.total);
    badge.hidden = page.total === 0;
  } catch (_err) {
    /* the badge is a convenience */
  }
}

// ------------------------------------------------------------------ chat: events

/** Server-sent events from a fetch response: yields {id, event, data}. */
async function* sseEvents(resp) {
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replaceAll("\r\n", "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message";
      let id = null;
      const data = [];
      for (const line of frame.split("\n")) {
        if (line.startsWith(":")) continue; // keep-alive comment
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("id:")) id = Number(line.slice(3).trim());
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) yield { id, event, data: JSON.parse(data.join("\n")) };
    }
  }
}

// ------------------------------------------------------------------ chat: answers as Markdown

const CITATION = /^\[([a-z][a-z0-9]*(?:-[a-z0-9]+)*)(?:\s*§\s*([^\]]+))?\]$/;
const INLINE = /(\*\*[^*\n]+\*\*|`[^`\n]+`|\[[a-z][a-z0-9-]*(?:\s*§\s*[^\]\n]+)?\])/g;

/** Inline Markdown subset: **bold**, `code` and [source] / [source § section] citations. */
function inline(text, turn) {
  const out = [];
  let last = 0;
  for (const m of text.matchAll(INLINE)) {
    if (m.index > last) out.push(text.slice(last, m.index));
    const tok = m[0];
    const cite = CITATION.exec(tok);
    if (tok.startsWith("**")) out.push(el("strong", {}, tok.slice(2, -2)));
    else if (tok.startsWith("`")) out.push(el("code", {}, tok.slice(1, -1)));
    else if (cite) {
      out.push(
        el("button", { class: "citation", type: "button", title: "Open the cited knowledge",
          onclick: () => openCitation(cite[1], cite[2] ? cite[2].trim() : null, turn, turn && turn.hits) }, cite[1]),
      );
    } else out.push(tok);
    last = m.index + tok.length;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

/** Block Markdown subset for answers: paragraphs, headings, bullet/numbered lists, pipe tables. */
function renderMarkdown(text, turn) {
  const root = el("div", { class: "md" });
  const lines = String(text || "").split("\n");
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (!line.trim()) {
      i++;
      continue;
    }
    const heading = /^(#{1,4})\s+(.*)$/.exec(line);
    if (heading) {
      root.append(el(`h${Math.min(6, heading[1].length + 2)}`, {}, inline(heading[2], turn)));
      i++;
    } else if (/^\s*\|.*\|\s*$/.test(line)) {
      const rows = [];
      while (i < lines.length && /^\s*\|.*\|\s*$/.test(lines[i])) rows.push(lines[i++]);
      const cells = (r) => r.trim().slice(1, -1).split("|").map((c) => c.trim());
      const body = rows.filter((r) => !/^\s*\|[\s:|-]+\|\s*$/.test(r));
      const table = el("table", { class: "grid small" });
      body.forEach((r, n) => {
        const tr = el("tr");
        for (const c of cells(r)) tr.append(el(n === 0 ? "th" : "td", {}, inline(c, turn)));
        table.append(tr);
      });
      root.append(el("div", { class: "table-wrap" }, table));
    } else if (/^\s*([-*•]|\d+[.)])\s+/.test(line)) {
      const ordered = /^\s*\d+[.)]/.test(line);
      const list = el(ordered ? "ol" : "ul");
      while (i < lines.length && /^\s*([-*•]|\d+[.)])\s+/.test(lines[i])) {
        list.append(el("li", {}, inline(lines[i].replace(/^\s*([-*•]|\d+[.)])\s+/, ""), turn)));
        i++;
      }
      root.append(list);
    } else {
      const para = [];
      while (i < lines.length && lines[i].trim() && !/^(#{1,4}\s|\s*\||\s*([-*•]|\d+[.)])\s)/.test(lines[i])) {
        para.push(lines[i++]);
      }
      const p = el("p");
      para.forEach((t, n) => {
        if (n) p.append(el("br"));
        append(p, inline(t, turn));
      });
      root.append(p);
    }
  }
  return root;
}


// ------------------------------------------------------------------ chat: tool results

const TOOL_LABELS = {
  rank: (a) => `Ranking ${words(a.entity || "items")}${a.metric ? ` by ${metricLabel(a.metric)}` : ""}`,
  churn_risk: (a) => (a.account_id ? `Estimating churn risk for ${a.account_id}` : "Estimating churn risk"),
  next_best_action: (a) => `Finding the next best action${a.account_id ? ` for ${a.account_id}` : ""}`,
  score_activities: () => "Scoring the value-chain activities",
  value_chain_analysis: () => "Running the value-chain analysis",
  get_account: (a) => `Looking up ${a.account_id || "the account"}`,
  account_timeline: (a) => `Reading the history of ${a.account_id || "the account"}`,
  search_knowledge: () => "Searching the knowledge base",
  propose_recommendation: (a) => `Filing a recommendation${a.account_id ? ` for ${a.account_id}` : ""} for review`,
  list_accounts: () => "Listing accounts",
};

function metricLabel(metric) {
  return metric === "churn_probability" ? "churn risk" : words(metric);
}

/** What a tool call does, in plain words ("Ranking accounts by churn risk"). */
function toolLabel(name, args) {
  const make = TOOL_LABELS[name];
  return make ? make(args || {}) : `Running ${words(name)}`;
}

const MONEY_KEY = /(^|_)(arr|mrr|cost|revenue|amount|price|ltv|spend|savings|benefit|leak|usd)$|arr_at_risk|expected_value/;
const SHARE_KEY = /(probability|share|rate|ratio|pct|percent|gap|churn|margin$|uplift|confidence)/;
const DATE_KEY = /(_at|_on|date|as_of|since|until|week_start)$/;
const ID_KEYS = ["account_id", "activity_id", "id"];

/** A tool figure for people: currency, percentages, dates, thousands separators. */
function formatValue(key, value) {
  if (value === null || value === undefined || value === "") return "—";
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (typeof value === "number") {
    if (MONEY_KEY.test(key)) return money(value);
    if (SHARE_KEY.test(key) && Math.abs(value) <= 1.5) return pct(value);
    if (Number.isInteger(value)) return value.toLocaleString("en-US");
    return value.toLocaleString("en-US", { maximumFractionDigits: 3 });
  }
  if (typeof value === "string" && DATE_KEY.test(key) && /^\d{4}-\d{2}-\d{2}/.test(value)) {
    return value.length > 10 ? when(value) : value;
  }
  if (Array.isArray(value)) {
    return value.map((v) => (v !== null && typeof v === "object" ? v.phrase || v.name || v.label || JSON.stringify(v) : String(v))).join("; ");
  }
  if (typeof value === "object") return Object.entries(value).map(([k, v]) => `${words(k)} ${formatValue(k, v)}`).join(", ");
  return words(value) === value ? value : String(value);
}

function isNumeric(key, rows) {
  return rows.some((r) => typeof r[key] === "number");
}

/** A result row for the table: nested `context` fields inline, a generic `value` under its metric's name. */
function flatRow(row, parent) {
  const out = {};
  for (const [k, v] of Object.entries(row)) {
    if (k === "context" && v && typeof v === "object" && !Array.isArray(v)) Object.assign(out, v);
    else if (k === "value" && typeof parent.metric === "string" && !(parent.metric in row)) {
      out[parent.metric] = v;
    } else out[k] = v;
  }
  return out;
}

/** Rows of objects as a table: names with their ids, figures formatted, at most 8 columns. */
function rowsTable(rows) {
  const keys = [];
  for (const r of rows.slice(0, 20)) for (const k of Object.keys(r)) if (!keys.includes(k)) keys.push(k);
  const idKey = ID_KEYS.find((k) => keys.includes(k));
  const named = idKey && keys.includes("name");
  const cols = keys.filter((k) => !(named && (k === idKey || k === "name")) && k !== "explanation")
    .filter((k) => rows.some((r) => r[k] === null || typeof r[k] !== "object" || Array.isArray(r[k])))
    .slice(0, named ? 7 : 8);
  const head = el("tr", {}, named ? el("th", {}, idKey === "activity_id" ? "Activity" : "Name") : null,
    cols.map((k) => el("th", { class: isNumeric(k, rows) ? "num" : "" }, words(k))));
  const body = rows.map((r) => el("tr", {},
    named ? el("td", {}, r.name, el("span", { class: "muted small" }, ` ${r[idKey]}`)) : null,
    cols.map((k) => el("td", { class: typeof r[k] === "number" ? "num" : "" }, formatValue(k, r[k])))));
  return el("div", { class: "table-wrap" }, el("table", { class: "grid small result-table" }, head, body));
}

/** A tool's result as people read it: its figures, its rows as a table, knowledge passages as sources. */
function resultView(name, data) {
  if (data === null || typeof data !== "object") return el("p", {}, String(data));
  const root = el("div", { class: "result-view" });
  if (name === "search_knowledge" && Array.isArray(data.results)) {
    if (!data.results.length) root.append(el("p", { class: "muted" }, "No passage found."));
    for (const h of data.results) {
      root.append(el("div", { class: "passage" },
        el("b", {}, `${h.source} § ${h.section}`),
        typeof h.score === "number" ? el("span", { class: "muted small" }, ` relevance ${h.score.toFixed(2)}`) : null,
        el("p", {}, h.text.length > 400 ? `${h.text.slice(0, 400)}…` : h.text)));
    }
    return root;
  }
  const rows = Array.isArray(data) ? data : null;
  const facts = [];
  const tables = [];
  for (const [k, v] of Object.entries(rows ? {} : data)) {
    if (Array.isArray(v) && v.length && v.every((x) => x && typeof x === "object" && !Array.isArray(x))) {
      tables.push([k, v.map((row) => flatRow(row, data))]);
    } else if (v !== null && typeof v === "object" && !Array.isArray(v)) {
      if (Object.keys(v).length) facts.push([k, v]);
    } else if (typeof v === "string" && v.length > 120) root.append(el("p", { class: "small" }, v));
    else facts.push([k, v]);
  }
  if (facts.length) {
    root.prepend(el("dl", { class: "facts small" }, facts.flatMap(([k, v]) => [el("dt", {}, words(k)), el("dd", {}, formatValue(k, v))])));
  }
  if (rows) tables.push(["", rows]);
  for (const [k, v] of tables) {
    if (k) root.append(el("div", { class: "muted small" }, words(k)));
    root.append(rowsTable(v));
  }
  return root;
}

function parseJson(text) {
  try {
    return { ok: true, data: JSON.parse(text) };
  } catch (_err) {
    return { ok: false, data: text };
  }
}

function argsText(args) {
  return Object.entries(args || {}).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join(", ");
}

/** A collapsible tool call: plain-language label, status, then its result as a table (JSON one click away). */
function toolCallNode(name, args) {
  const status = el("span", { class: "tool-status running" }, "running…");
  const result = el("div", { class: "tool-result" }, el("span", { class: "muted" }, "(waiting for the result)"));
  const raw = el("pre", { class: "tool-json", hidden: true });
  const toggle = el("button", { type: "button", class: "small link json-toggle", onclick: () => {
    raw.hidden = !raw.hidden;
    toggle.textContent = raw.hidden ? "Show JSON" : "Hide JSON";
  } }, "Show JSON");
  const node = el("details", { class: "tool-call", dataset: { tool: name } },
    el("summary", {}, el("span", { class: "tool-label" }, toolLabel(name, args)), el("span", { class: "tool-name" }, name), status),
    el("div", { class: "tool-body" },
      el("div", { class: "tool-args" }, el("span", { class: "muted" }, "Arguments: "), argsText(args) || "none"),
      result, toggle, raw));
  node.finish = (ok, text) => {
    status.textContent = ok ? "ok" : "error";
    status.className = `tool-status ${ok ? "ok" : "bad"}`;
    const parsed = parseJson(text || "");
    raw.textContent = JSON.stringify({ arguments: args || {}, result: parsed.data }, null, 2);
    clear(result).append(ok && parsed.ok ? resultView(name, parsed.data) : el("div", { class: ok ? "" : "error-box" }, String(text || "")));
    node.data = parsed.ok ? parsed.data : null;
  };
  return node;
}

// ------------------------------------------------------------------ chat: one turn on the page

/** The plan's steps, each marked waiting / running / done / failed as the tool calls go. */
function planNode(steps) {
  const items = steps.map((s) => el("li", { class: "step waiting", dataset: { tool: s.tool } },
    el("span", { class: "step-mark", "aria-hidden": "true" }), toolLabel(s.tool, s.args)));
  const node = el("div", { class: "plan" }, el("div", { class: "muted small" }, `Plan: ${steps.length} step${steps.length === 1 ? "" : "s"}`),
    el("ol", {}, items));
  node.mark = (tool, from, to) => {
    const step = items.find((li) => li.dataset.tool === tool && li.classList.contains(from));
    if (step) step.className = `step ${to}`;
  };
  return node;
}

function userBubble(text) {
  return el("div", { class: "msg user" }, el("div", { class: "bubble" }, text));
}

function assistantView(turn) {
  const progress = el("div", { class: "progress", role: "status", hidden: true }, el("span", { class: "spinner", "aria-hidden": "true" }),
    el("span", { class: "progress-text" }), el("span", { class: "progress-time muted" }));
  const tools = el("div", { class: "tools" });
  const body = el("div", { class: "answer" });
  const sources = el("div", { class: "sources", hidden: true });
  const actions = el("div", { class: "answer-actions", hidden: true });
  const meta = el("div", { class: "meta" });
  const node = el("div", { class: "msg assistant" }, el("div", { class: "bubble" }, progress, tools, body, sources, actions, meta));
  return { node, progress, tools, body, sources, actions, meta, calls: new Map(), text: "", turn, plan: null, started: Date.now(), timer: null };
}

function setProgress(view, text) {
  view.progress.hidden = false;
  view.progress.querySelector(".progress-text").textContent = `${text}…`;
  if (!view.timer) {
    const tick = () => {
      view.progress.querySelector(".progress-time").textContent = ` ${Math.max(0, Math.round((Date.now() - view.started) / 1000))} s`;
    };
    tick();
    view.timer = setInterval(tick, 1000);
  }
}

function endProgress(view) {
  clearInterval(view.timer);
  view.timer = null;
  view.progress.hidden = true;
}

function metaLine(result) {
  return [
    result.model,
    `${result.latency_s.toFixed(1)} s`,
    `${result.llm_calls} LLM call${result.llm_calls === 1 ? "" : "s"}`,
    `${result.prompt_tokens + result.completion_tokens} tokens`,
    `${result.tool_calls.length} tool call${result.tool_calls.length === 1 ? "" : "s"}`,
    `run ${result.run_id}`,
  ].join(" · ");
}

/** Knowledge passages the turn retrieved: {source, section, title, text, score}. */
function turnHits(view) {
  const hits = [];
  for (const call of view.calls.values()) {
    if (call.dataset.tool === "search_knowledge" && call.data && Array.isArray(call.data.results)) hits.push(...call.data.results);
  }
  return hits;
}

/** The Sources row: the passages the answer cites, else the ones the turn retrieved; each opens the passage. */
function renderSources(view, answer) {
  const hits = turnHits(view);
  const cited = [];
  for (const m of String(answer || "").matchAll(/\[([a-z][a-z0-9]*(?:-[a-z0-9]+)*)(?:\s*§\s*([^\]\n]+))?\]/g)) {
    const section = m[2] ? m[2].trim() : (hits.find((h) => h.source === m[1]) || {}).section || null;
    cited.push({ source: m[1], section });
  }
  const chosen = cited.length ? cited : hits.map((h) => ({ source: h.source, section: h.section }));
  const seen = new Set();
  const chips = [];
  for (const c of chosen) {
    const key = `${c.source}§${c.section || ""}`;
    if (seen.has(key) || chips.length >= 6) continue;
    seen.add(key);
    const passages = hits.filter((h) => h.source === c.source && (!c.section || h.section === c.section));
    const title = (passages[0] && passages[0].title) || c.source;
    chips.push(el("button", { type: "button", class: "source-chip", title: `Open the passage: ${title}`,
      onclick: () => openCitation(c.source, c.section, view.turn, passages) },
    el("span", { class: "chip-source" }, c.source), c.section ? el("span", { class: "chip-section" }, ` § ${c.section}`) : null));
  }
  clear(view.sources);
  if (!chips.length) {
    view.sources.hidden = true;
    return;
  }
  view.sources.append(el("span", { class: "muted small" }, "Sources"), ...chips);
  view.sources.hidden = false;
}

/** Copy, retry, thumbs up / down with an optional note. */
function renderActions(view, run) {
  const box = clear(view.actions);
  const note = el("textarea", { class: "feedback-note", rows: 2, maxlength: 2000, placeholder: "What was good or missing? (optional)" });
  const save = el("button", { type: "button", class: "small" }, "Save note");
  const noteBox = el("div", { class: "feedback-box", hidden: true }, note, save);
  let rating = run.rating || null;
  const up = el("button", { type: "button", class: "small", title: "Good answer", "aria-label": "Good answer", "aria-pressed": String(rating === "up") }, "▲ Helpful");
  const down = el("button", { type: "button", class: "small", title: "Poor answer", "aria-label": "Poor answer", "aria-pressed": String(rating === "down") }, "▼ Not helpful");
  note.value = run.note || "";
  const send = async (r) => {
    try {
      await api(`/api/v1/chat/runs/${encodeURIComponent(run.runId)}/feedback`, { method: "PUT", body: { rating: r, note: note.value.trim() || null } });
      rating = r;
      up.setAttribute("aria-pressed", String(r === "up"));
      down.setAttribute("aria-pressed", String(r === "down"));
      toast(r === "up" ? "Thanks: marked as a good answer." : "Thanks: marked as a poor answer.");
    } catch (err) {
      toast(err.message, "bad");
    }
  };
  up.addEventListener("click", () => { noteBox.hidden = false; send("up"); });
  down.addEventListener("click", () => { noteBox.hidden = false; note.focus(); send("down"); });
  save.addEventListener("click", () => send(rating || "down"));
  const copy = el("button", { type: "button", class: "small", onclick: () => copyText(run.answer) }, "Copy");
  const retry = el("button", { type: "button", class: "small", onclick: () => sendChat(view.turn.question) }, "Retry");
  box.append(copy, retry, up, down, noteBox);
  box.hidden = false;
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
  } catch (_err) { // no clipboard permission (http, an old browser): the selection way
    const area = el("textarea", { class: "offscreen" });
    area.value = text;
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  toast("Answer copied.");
}

/** Apply one run event to its view (live, or replayed after a reload). */
function applyEvent(view, event, data) {
  if (event === "run_started") {
    setProgress(view, "Reading your question");
  } else if (event === "queue") {
    setProgress(view, data.position > 0 ? data.text : "Working on your question");
  } else if (event === "plan") {
    const steps = (data.plan && data.plan.steps) || [];
    if (steps.length) {
      view.plan = planNode(steps);
      view.tools.prepend(view.plan);
    }
    setProgress(view, steps.length ? `Plan ready: ${steps.length} step${steps.length === 1 ? "" : "s"}` : "Writing the answer");
  } else if (event === "token") {
    if (!view.text) setProgress(view, "Writing the answer");
    view.text += data.text || "";
    view.body.classList.add("streaming");
    view.body.textContent = view.text;
  } else if (event === "tool_start") {
    const call = toolCallNode(data.name, data.args);
    view.calls.set(data.call_id || data.name, call);
    view.tools.append(call);
    if (view.plan) view.plan.mark(data.name, "waiting", "running");
    if (data.name === "search_knowledge" && data.args && data.args.query) view.turn.queries.push(data.args.query);
    view.text = "";
    view.body.textContent = "";
    setProgress(view, toolLabel(data.name, data.args));
  } else if (event === "tool_end") {
    const call = view.calls.get(data.call_id || data.name);
    if (call) call.finish(data.ok, data.text);
    if (view.plan) view.plan.mark(data.name, "running", data.ok ? "done" : "failed");
    const pending = [...view.calls.values()].some((c) => c.querySelector(".tool-status.running"));
    if (!pending) setProgress(view, "Writing the answer");
  } else if (event === "error") {
    view.node.querySelector(".bubble").insertBefore(el("div", { class: "error-box" }, data.text), view.body);
  } else if (event === "answer") {
    finishView(view, { runId: data.run_id, answer: data.result.answer, error: data.result.error, meta: metaLine(data.result) });
    for (const info of data.result.tool_calls) if (info.name === "propose_recommendation" && info.ok) refreshPendingCount();
  } else if (event === "stopped") {
    endProgress(view);
    view.body.classList.remove("streaming");
    view.body.append(el("div", { class: "muted stopped" }, `(${data.text})`));
  }
}

function finishView(view, run) {
  endProgress(view);
  view.body.classList.remove("streaming");
  clear(view.body);
  view.turn.hits = turnHits(view);
  if (!run.error) view.body.append(renderMarkdown(run.answer, view.turn));
  else if (!view.node.querySelector(".error-box")) view.body.append(el("div", { class: "error-box" }, run.error));
  view.meta.textContent = run.meta;
  if (!run.error) {
    renderSources(view, run.answer);
    renderActions(view, run);
  }
}

function scrollChat() {
  const box = $("messages");
  box.scrollTop = box.scrollHeight;
}

function setBusy(runId) {
  $("chat-send").hidden = !!runId;
  $("chat-stop").hidden = !runId;
  $("chat-stop").dataset.run = runId || "";
  $("chat-input").disabled = !!runId;
}

function remember(conversationId, runId) {
  sessionStorage.setItem(CHAT_STORAGE, JSON.stringify({ conversationId, runId }));
}

/** Follow a run's event stream into `view` until its last event; reattach (Last-Event-ID) if the line drops. */
async function followRun(view, firstResponse, runId) {
  const controller = new AbortController();
  chat.live = { runId, view, controller, lastId: 0 };
  state.streaming = controller;
  setBusy(runId || "starting");
  let resp = firstResponse;
  let ended = false;
  for (let attempt = 0; !ended && attempt < 30; attempt++) {
    try {
      if (!resp) {
        resp = await api(`/api/v1/chat/runs/${encodeURIComponent(chat.live.runId)}/events`,
          { raw: true, signal: controller.signal, headers: { Accept: "text/event-stream", "Last-Event-ID": String(chat.live.lastId) } });
      }
      for await (const { id, event, data } of sseEvents(resp)) {
        if (id) chat.live.lastId = id;
        if (event === "run_started") {
          chat.live.runId = data.run_id;
          state.conversationId = data.conversation_id;
          remember(data.conversation_id, data.run_id);
          setBusy(data.run_id);
          loadConversations();
        }
        applyEvent(view, event, data);
        if (event === "answer" || event === "stopped") ended = true;
        scrollChat();
      }
      resp = null;
      if (!ended && !chat.live.runId) throw new Error("the connection closed before the run started");
    } catch (err) {
      resp = null;
      if (err.name === "AbortError") break; // the page left the run (signed out, opened another conversation)
      if (err.status === 410 || err.status === 404 || !chat.live.runId) {
        endProgress(view);
        view.body.classList.remove("streaming");
        view.body.append(errorBox(err));
        break;
      }
      setProgress(view, "Connection lost; reconnecting");
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  if (chat.live && chat.live.view === view) {
    chat.live = null;
    state.streaming = null;
    setBusy(null);
    remember(state.conversationId, null);
  }
  refreshModelStatus();
  loadConversations();
  $("chat-input").focus();
}

function hideEmpty() {
  $("chat-empty").hidden = true;
}

/** Ask `message` in the current conversation: the run starts in the server, the page follows it. */
async function sendChat(message) {
  message = String(message || "").trim();
  if (!message || chat.live || chat.sending) return false;
  chat.sending = true; // until the run's stream is followed (a double click must not ask twice)
  try {
    return await startTurn(message);
  } finally {
    chat.sending = false;
  }
}

async function startTurn(message) {
  hideEmpty();
  const box = $("messages");
  box.append(userBubble(message));
  const view = assistantView({ question: message, queries: [] });
  box.append(view.node);
  setProgress(view, "Sending your question");
  scrollChat();
  setBusy("starting");
  let resp;
  try {
    resp = await api("/api/v1/chat", {
      method: "POST",
      raw: true,
      headers: { Accept: "text/event-stream", "X-Client": "web" },
      body: { message, conversation_id: state.conversationId },
    });
  } catch (err) {
    endProgress(view);
    view.body.append(errorBox(err));
    setBusy(null);
    refreshModelStatus();
    return false;
  }
  const following = followRun(view, resp, null);
  chat.sending = false;
  await following;
  return true;
}

async function stopRun() {
  const runId = $("chat-stop").dataset.run;
  if (!runId || runId === "starting") return;
  $("chat-stop").disabled = true;
  try {
    await api(`/api/v1/chat/runs/${encodeURIComponent(runId)}/stop`, { method: "POST" });
  } catch (err) {
    toast(err.message, "bad");
  } finally {
    $("chat-stop").disabled = false;
  }
}

/** Leave the run this page follows without stopping it (it goes on in the server). */
function detachRun() {
  if (!chat.live) return;
  chat.live.controller.abort();
  endProgress(chat.live.view);
  chat.live = null;
  state.streaming = null;
  setBusy(null);
}

// ------------------------------------------------------------------ conversations

async function loadConversations() {
  const list = $("conversation-list");
  const q = $("conversation-search").value.trim();
  try {
    const params = new URLSearchParams({ limit: "50", mine: "true" });
    if (q) params.set("q", q);
    const page = await api(`/api/v1/conversations?${params}`);
    clear(list);
    if (!page.items.length) list.append(el("li", { class: "muted" }, q ? "no conversation matches" : "none yet"));
    for (const c of page.items) list.append(conversationItem(c));
  } catch (err) {
    clear(list).append(el("li", { class: "muted" }, err.message));
  }
}

function conversationItem(c) {
  const item = el("li", { class: c.id === state.conversationId ? "active" : "", dataset: { id: c.id } });
  const link = el("a", { href: "#/chat", title: c.title || c.id, onclick: (e) => { e.preventDefault(); openConversation(c.id); } }, c.title || c.id);
  const rename = el("button", { type: "button", class: "small link", title: "Rename", "aria-label": "Rename conversation", onclick: () => renameConversation(c, item) }, "✎");
  const del = el("button", { type: "button", class: "small link", title: "Delete", "aria-label": "Delete conversation", onclick: () => deleteConversation(c) }, "✕");
  item.append(el("div", { class: "conv-row" }, link, rename, del), el("span", { class: "muted small" }, `${c.channel} · ${when(c.last_run_at || c.created_at)}`));
  return item;
}

function renameConversation(c, item) {
  const input = el("input", { class: "rename-input", value: c.title || "", maxlength: 200, "aria-label": "New title" });
  const save = async () => {
    const title = input.value.trim();
    if (!title || title === c.title) return loadConversations();
    try {
      await api(`/api/v1/conversations/${encodeURIComponent(c.id)}`, { method: "PATCH", body: { title } });
      toast("Conversation renamed.");
    } catch (err) {
      toast(err.message, "bad");
    }
    loadConversations();
  };
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter") { e.preventDefault(); save(); }
    if (e.key === "Escape") loadConversations();
  });
  input.addEventListener("blur", save, { once: true });
  clear(item).append(input);
  input.focus();
  input.select();
}

async function deleteConversation(c) {
  if (!window.confirm(`Delete "${c.title || c.id}" with its answers? Recommendations it filed stay in the review queue.`)) return;
  try {
    await api(`/api/v1/conversations/${encodeURIComponent(c.id)}`, { method: "DELETE" });
    toast("Conversation deleted.");
    if (c.id === state.conversationId) newConversation();
  } catch (err) {
    toast(err.message, "bad");
  }
  loadConversations();
}

/** Remove every message but keep the empty state (with its suggestions) in place. */
function resetMessages() {
  const box = $("messages");
  for (const node of [...box.children]) if (node.id !== "chat-empty") node.remove();
  return box;
}

function newConversation() {
  detachRun();
  state.conversationId = null;
  remember(null, null);
  resetMessages();
  $("chat-empty").hidden = false;
  $("chat-input").disabled = false;
  loadConversations();
  $("chat-input").focus();
}

async function openConversation(id) {
  detachRun();
  if (location.hash !== "#/chat") location.hash = "#/chat";
  const box = resetMessages();
  hideEmpty();
  try {
    const conv = await api(`/api/v1/conversations/${encodeURIComponent(id)}`);
    state.conversationId = conv.id;
    remember(conv.id, null);
    let running = null;
    for (const run of conv.runs) {
      const turn = { question: run.question, queries: [] };
      box.append(userBubble(run.question));
      const view = assistantView(turn);
      box.append(view.node);
      if (run.status === "running") {
        running = { run, view };
        continue;
      }
      for (const t of run.tool_calls) {
        const call = toolCallNode(t.name, t.args);
        call.finish(t.ok, t.error || JSON.stringify(t.result));
        view.calls.set(`${t.seq}`, call);
        view.tools.append(call);
        if (t.name === "search_knowledge" && t.args && t.args.query) turn.queries.push(t.args.query);
      }
      const mine = (run.feedback || []).find((f) => f.user === state.me.user) || {};
      const meta = [run.model, run.latency_ms ? `${(run.latency_ms / 1000).toFixed(1)} s` : null,
        `${run.llm_calls} LLM call${run.llm_calls === 1 ? "" : "s"}`, `${run.tool_calls.length} tool call${run.tool_calls.length === 1 ? "" : "s"}`,
        `run ${run.id}`, run.recommendation_ids.length ? `filed #${run.recommendation_ids.join(", #")}` : null].filter(Boolean).join(" · ");
      if (run.answer) {
        finishView(view, { runId: run.id, answer: run.answer, error: null, meta, rating: mine.rating, note: mine.note });
      } else {
        const label = run.status === "stopped" ? "Stopped" : run.status === "interrupted" ? "Interrupted" : "Failed";
        view.body.append(el("div", { class: run.status === "error" ? "error-box" : "notice" }, `${label}: ${run.error || "no answer"}`));
        view.meta.textContent = meta;
      }
    }
    loadConversations();
    scrollChat();
    if (running) await attachRun(running.run.id, running.view);
  } catch (err) {
    box.append(errorBox(err));
  }
}

/** Reattach to a run still going in the server: replay its events from the start into `view`. */
async function attachRun(runId, view) {
  let info;
  try {
    info = await api(`/api/v1/chat/runs/${encodeURIComponent(runId)}`);
  } catch (err) {
    view.body.append(errorBox(err));
    return;
  }
  if (!info.live) {
    view.body.append(el("div", { class: "notice" }, `This run is ${info.status} and not held by the server any more.`));
    return;
  }
  view.started = Date.now() - (info.elapsed_s || 0) * 1000;
  setProgress(view, "Reconnecting to the answer in progress");
  await followRun(view, null, runId);
}

/** After a reload: reopen this tab's conversation and reattach to its run if it is still going. */
async function resumeChat() {
  let saved = {};
  try {
    saved = JSON.parse(sessionStorage.getItem(CHAT_STORAGE) || "{}") || {};
  } catch (_err) {
    saved = {};
  }
  if (saved.conversationId) {
    await openConversation(saved.conversationId);
    return;
  }
  // a new tab: follow a run of yours still going (asked in another tab, or before the tab closed)
  try {
    const status = await api("/api/v1/chat/status");
    const runId = (status.your_runs || [])[0];
    if (!runId || chat.live || state.conversationId) return;
    const info = await api(`/api/v1/chat/runs/${encodeURIComponent(runId)}`);
    if (!chat.live && !state.conversationId && location.hash.startsWith("#/chat")) await openConversation(info.conversation_id);
  } catch (_err) {
    /* the chat status is also shown in the header */
  }
}

// ------------------------------------------------------------------ citations

/** The side panel with a cited passage: the turn's own retrieved passages if given, else a knowledge search. */
async function openCitation(source, section, turn, known) {
  const panel = $("citation-panel");
  const body = clear($("citation-body"));
  $("citation-title").textContent = `[${source}]${section ? ` § ${section}` : ""}`;
  panel.hidden = false;
  let hits = (known || []).filter((h) => h.source === source && (!section || h.section === section));
  let lastError = null;
  if (!hits.length) {
    body.append(el("p", { class: "muted" }, "Loading the cited passage…"));
    const queries = [...((turn && turn.queries) || [])];
    if (turn && turn.question) queries.push(turn.question);
    queries.push(`${words(source).replaceAll("-", " ")} ${section || ""}`.trim());
    for (const q of queries) {
      try {
        const res = await api(`/api/v1/knowledge/search?q=${encodeURIComponent(q.slice(0, 2000))}&k=10`);
        hits = res.results.filter((h) => h.source === source && (!section || h.section === section));
        if (!hits.length) hits = res.results.filter((h) => h.source === source);
        if (hits.length) break;
      } catch (err) {
        lastError = err;
      }
    }
  }
  clear(body);
  if (!hits.length) {
    body.append(el("p", {}, lastError ? lastError.message : `No passage of "${source}" matched this question.`));
    return;
  }
  for (const h of hits) {
    body.append(
      el("article", { class: "chunk" },
        el("h4", {}, h.title || h.source),
        el("div", { class: "muted small" }, `${h.source} § ${h.section}${h.score !== undefined ? ` · relevance ${h.score.toFixed(2)}` : ""}`),
        el("p", { class: "chunk-text" }, h.text)),
    );
  }
}

// ------------------------------------------------------------------ wiring (called from app.js wire())

function wireChat() {
  $("chat-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const input = $("chat-input");
    const text = input.value;
    if (!text.trim() || chat.live || chat.sending) return;
    input.value = "";
    if (!(await sendChat(text)) && !input.value) input.value = text; // not sent: keep the question
  });
  $("chat-input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $("chat-form").requestSubmit();
    }
  });
  $("chat-stop").addEventListener("click", stopRun);
  $("new-chat").addEventListener("click", newConversation);
  $("toggle-conversations").addEventListener("click", () => {
    const open = $("page-chat").querySelector(".sidebar").classList.toggle("open");
    $("toggle-conversations").setAttribute("aria-expanded", String(open));
  });
  for (const b of document.querySelectorAll(".suggestion")) b.addEventListener("click", () => sendChat(b.textContent));
  let searchTimer = null;
  $("conversation-search").addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(loadConversations, 250);
  });
  $("citation-close").addEventListener("click", () => ($("citation-panel").hidden = true));
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape") $("citation-panel").hidden = true;
  });
}
