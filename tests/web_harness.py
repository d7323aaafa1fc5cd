"""What the browser tests share: Debian's Chromium, a real uvicorn server on a free port, and a
page that records console errors and checks horizontal overflow.

`serve(app)` runs an app (built by `api.app.create_app`) in a background thread and yields its
base URL; `launch_chromium()` starts a headless Chromium through Playwright (never Playwright's
own browser download); `Watched` wraps a page with its console errors.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ARTIFACTS = Path(__file__).parent / "artifacts"
DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}


def chromium_executable() -> str | None:
    """Debian's chromium (or CHROMIUM_PATH); Playwright's own browser download is not used."""
    for candidate in (os.environ.get("CHROMIUM_PATH"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def serve(app: Any, **config: Any) -> Iterator[str]:
    """Run `app` under uvicorn (lifespan on, more `uvicorn.Config` options in `config`) on a free
    local port; yields its base URL and stops the server on exit."""
    import uvicorn

    sock = free_socket()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws="none", lifespan="on", **config))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the uvicorn server did not start")
        time.sleep(0.05)
    host, port = sock.getsockname()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


@contextmanager
def launch_chromium() -> Iterator[Any]:
    executable = chromium_executable()
    if executable is None:
        pytest.fail("no Chromium found (install Debian's `chromium` or set CHROMIUM_PATH): the browser test cannot run")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Watched:
    """A page and the console errors, uncaught exceptions and failed requests (HTTP ≥ 400) it produced."""

    page: Any
    errors: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, context: Any) -> Watched:
        page = context.new_page()
        watched = cls(page)
        page.on("pageerror", lambda exc: watched.errors.append(f"pageerror: {exc}"))
        page.on("console", lambda msg: watched.errors.append(f"console: {msg.text}") if msg.type == "error" else None)
        page.on("response", lambda r: watched.errors.append(f"HTTP {r.status} {r.request.method} {r.url}")
                if r.status >= 400 else None)
        return watched

    def overflow(self) -> tuple[int, int]:
        """(document scrollWidth, window innerWidth): the page overflows sideways when the first is larger."""
        width, inner = self.page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        return int(width), int(inner)

    def assert_no_overflow(self, where: str) -> None:
        width, inner = self.overflow()
        assert width <= inner, f"{where}: the page is {width} px wide in a {inner} px window (horizontal overflow)"

    def assert_no_errors(self) -> None:
        assert self.errors == [], f"console errors: {self.errors}"


# WCAG 2.x contrast of every rendered text in a document against what is painted behind it.
# For each text node (and each input's value or placeholder): the text colour (`fill` for SVG
# text) with the opacity of the element and its ancestors, over the layers under the text's
# centre (`elementsFromPoint` from the text's element down: backgrounds, and SVG shapes behind
# chart labels) composited on white. Large text (≥ 24 px, or ≥ 18.66 px bold; SVG text at its
# rendered size) needs 3:1, the rest 4.5:1. Disabled controls are exempt (WCAG 1.4.3), and so is
# text hidden from sight (`display: none`, `visibility: hidden`, 1-px visually-hidden labels).
# Returns {checked, failures: [{text, where, ratio, needed, fg, bg, px}], unknown: [...]}.
CONTRAST_JS = r"""() => {
  const parse = (c) => {
    const m = /rgba?\(([^)]+)\)/.exec(c || "");
    if (!m) return null;
    const p = m[1].split(/[\s,/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const over = (top, bottom) => [0, 1, 2].map((i) => top[i] * top[3] + bottom[i] * (1 - top[3])).concat(1);
  const lum = (c) => {
    const [r, g, b] = c.slice(0, 3).map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
  const hex = (c) => "#" + c.slice(0, 3).map((v) => Math.round(v).toString(16).padStart(2, "0")).join("");
  const opacity = (e) => { let o = 1; for (let a = e; a && a.nodeType === 1; a = a.parentElement) o *= Number(getComputedStyle(a).opacity); return o; };
  const name = (e) => `${e.tagName.toLowerCase()}${e.id ? "#" + e.id : ""}${typeof e.className === "string" && e.className ? "." + e.className.trim().split(/\s+/).join(".") : ""}`;
  const SHAPES = new Set(["rect", "circle", "ellipse", "path", "polygon"]);
  const unknown = [];
  // the colour painted under point (x, y) below element `e` (e's own background included)
  const background = (e, x, y) => {
    const stack = document.elementsFromPoint(x, y);
    let i = -1;
    for (let a = e; a && i < 0; a = a.parentElement) i = stack.indexOf(a);
    const layers = [];
    for (const s of i < 0 ? [] : stack.slice(i)) {
      const cs = getComputedStyle(s);
      let c = null;
      if (s instanceof SVGElement) {
        if (SHAPES.has(s.tagName.toLowerCase()) && cs.fill !== "none") {
          c = parse(cs.fill);
          if (c) c[3] *= Number(cs.fillOpacity) * opacity(s);
        }
      } else {
        if (cs.backgroundImage !== "none") unknown.push(`${name(s)}: background-image ${cs.backgroundImage.slice(0, 40)}`);
        c = parse(cs.backgroundColor);
        if (c) c[3] *= opacity(s);
      }
      if (c && c[3] > 0) layers.push(c);
      if (c && c[3] >= 0.999) break;
    }
    return layers.reverse().reduce((acc, c) => over(c, acc), [255, 255, 255, 1]);
  };
  const inView = (r) => r.top >= 0 && r.left >= 0 && r.bottom <= innerHeight && r.right <= innerWidth;
  const failures = [];
  const seen = new Set();
  let checked = 0;
  const check = (e, text, colour, px, bold, rectOf) => {
    let r = rectOf();
    if (!r || r.width <= 1 || r.height <= 1) return;
    if (!inView(r)) { e.scrollIntoView({ block: "center", inline: "center" }); r = rectOf(); }
    const x = Math.min(Math.max(r.left + r.width / 2, 0), innerWidth - 1), y = Math.min(Math.max(r.top + r.height / 2, 0), innerHeight - 1);
    const bg = background(e, x, y);
    const fg = over(colour, bg);
    const needed = px >= 24 || (px >= 18.66 && bold >= 700) ? 3 : 4.5;
    const got = ratio(fg, bg);
    checked++;
    if (got + 1e-6 < needed) {
      const key = `${name(e)} ${hex(fg)} ${hex(bg)}`;
      if (seen.has(key)) return;
      seen.add(key);
      failures.push({ text: text.trim().slice(0, 40), where: name(e), ratio: Math.round(got * 100) / 100, needed,
        fg: hex(fg), bg: hex(bg), px: Math.round(px * 10) / 10 });
    }
  };
  const exempt = (e) => e.closest("[hidden], .offscreen, script, style, noscript, template, title, option, button:disabled, input:disabled, select:disabled, textarea:disabled, fieldset:disabled");
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const e = n.parentElement;
    if (!e || !n.data.trim() || exempt(e)) continue;
    const cs = getComputedStyle(e);
    if (cs.visibility !== "visible") continue;
    const range = document.createRange();
    range.selectNodeContents(n);
    if (!range.getClientRects().length) continue;
    let colour, px = parseFloat(cs.fontSize);
    if (e instanceof SVGElement) {
      colour = parse(cs.fill);
      if (!colour) continue;
      colour[3] *= Number(cs.fillOpacity);
      const m = e.getScreenCTM();
      if (m) px *= Math.hypot(m.a, m.b);
    } else colour = parse(cs.color);
    colour[3] *= opacity(e);
    check(e, n.data, colour, px, Number(cs.fontWeight), () => range.getClientRects()[0]);
  }
  for (const e of document.querySelectorAll("input:not([type=checkbox]):not([type=radio]):not([type=hidden]), textarea, select")) {
    if (exempt(e) || !e.getClientRects().length || getComputedStyle(e).visibility !== "visible") continue;
    const value = e.tagName === "SELECT" ? (e.selectedOptions[0] || {}).text || "" : e.value;
    const text = value || e.placeholder || "";
    if (!text.trim()) continue;
    const cs = getComputedStyle(e, value ? null : "::placeholder");
    const colour = parse(cs.color);
    colour[3] *= opacity(e);
    check(e, text, colour, parseFloat(getComputedStyle(e).fontSize), Number(getComputedStyle(e).fontWeight), () => e.getBoundingClientRect());
  }
  return { checked, failures, unknown: [...new Set(unknown)].slice(0, 5) };
}"""


def low_contrast(page: Any) -> dict[str, Any]:
    """CONTRAST_JS in the page and in each of its frames (the report): every failure, with where it is."""
    out: dict[str, Any] = {"checked": 0, "failures": [], "unknown": []}
    for frame in page.frames:
        if frame != page.main_frame:
            handle = frame.frame_element()
            if not handle.is_visible():
                continue
            handle.scroll_into_view_if_needed()
        found = frame.evaluate(CONTRAST_JS)
        where = "" if frame == page.main_frame else "frame: "
        out["checked"] += found["checked"]
        out["failures"] += [{**f, "where": where + f["where"]} for f in found["failures"]]
        out["unknown"] += found["unknown"]
    page.evaluate("window.scrollTo(0, 0)")
    return out
