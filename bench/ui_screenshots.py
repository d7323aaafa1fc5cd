"""Screenshots of every page of the web UI at a desktop (1366×900) and a phone (390×844) width.

    .venv/bin/python -m bench.ui_screenshots --out docs/screenshots

Starts the service on a new demo database (the 120-account company, seed 7) in a temporary
folder, with the scripted fake chat model of the tests (no real model is reached): the review
queue has pending items, the chat a conversation with tool calls and a cited answer, and the run
log two rated answers (tests/web_demo.py). Each page is opened as an approver sees it, its details
unfolded, in headless Chromium (Debian's, through Playwright), and saved as
`<out>/<page>-<width>.png` (and `report-chart-<width>.png`: the report's first chart in its
frame): the whole page, at most 4,000 px tall, as a 256-colour PNG
(about 50–250 KB each).
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent.parent / "tests"
WIDTHS = {1366: 900, 390: 844}
MAX_HEIGHT = 4000  # px: a taller page is cut there


def _png(raw: bytes) -> bytes:
    """A screenshot as a 256-colour PNG: a UI has few colours, so it stays sharp at a fifth the size."""
    from PIL import Image

    image = Image.open(io.BytesIO(raw)).convert("RGB")
    out = io.BytesIO()
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(out, "PNG", optimize=True)
    return out.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    ap.add_argument("--pages", nargs="*", help="only these pages (default: all)")
    args = ap.parse_args()
    sys.path.insert(0, str(TESTS))  # the demo service, the scripted model and the browser harness live with the tests
    from web_demo import PAGES, demo_ui, show, sign_in
    from web_harness import Watched, launch_chromium

    pages = args.pages or list(PAGES)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ui-shots-") as tmp, demo_ui(Path(tmp)) as demo, launch_chromium() as browser:
        for width, height in WIDTHS.items():
            context = browser.new_context(viewport={"width": width, "height": height})
            watched = Watched.open(context)
            page = watched.page
            if "signin" in pages:
                show(page, demo, "signin")
                _save(page, args.out / f"signin-{width}.png")
            sign_in(page, demo, "carol")
            page.evaluate("document.getElementById('toast').hidden = true")
            for name in pages:
                if name == "signin":
                    continue
                show(page, demo, name)
                _save(page, args.out / f"{name}-{width}.png")
                if name == "report":  # and its first chart, scrolled to inside the frame
                    page.frame_locator("#report-frame").locator("figure.chart").first.scroll_into_view_if_needed()
                    page.locator("#report-frame").scroll_into_view_if_needed()
                    _save(page, args.out / f"report-chart-{width}.png", full_page=False)
            watched.assert_no_errors()
            context.close()


def _save(page: Any, path: Path, *, full_page: bool = True) -> None:
    full = page.evaluate("document.documentElement.scrollHeight")
    width = page.viewport_size["width"]
    raw = (page.screenshot(full_page=True, clip={"x": 0, "y": 0, "width": width, "height": min(full, MAX_HEIGHT)})
           if full_page else page.screenshot())
    data = _png(raw)
    path.write_bytes(data)
    print(f"{path}  {len(data) // 1024} KB")


if __name__ == "__main__":
    main()
