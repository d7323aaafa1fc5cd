"""Read Markdown, text, HTML and PDF files into `Document`s: a title and sections.

Each loader does only extraction; splitting sections into chunks is `chunking`'s job.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, ClassVar

import yaml

SUPPORTED_SUFFIXES = frozenset({".md", ".markdown", ".txt", ".text", ".html", ".htm", ".pdf"})
INTRO_SECTION = "Overview"

_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.DOTALL)
_MD_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$")
_FENCE = re.compile(r"^[ \t]*(```|~~~)")


class UnsupportedDocument(ValueError):
    """The file type is not one the knowledge base reads, or the file is unreadable."""


@dataclass(frozen=True)
class Section:
    """A heading and the text under it. `level` is 2 for `##`, 3 for `###`, 0 otherwise."""

    heading: str
    text: str
    level: int = 2


@dataclass
class Document:
    """One source document, ready to chunk."""

    source: str
    title: str
    path: str
    sections: list[Section]
    topic: str = ""
    doc_hash: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def load_document(path: Path, *, display_path: str | None = None) -> Document:
    """Read one supported file. `display_path` is what metadata records (default: `path`)."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise UnsupportedDocument(
            f"{str(path)!r}: unsupported file type {suffix or '(none)'!r}; "
            f"supported: {', '.join(sorted(SUPPORTED_SUFFIXES))}"
        )
    raw = path.read_bytes()
    shown = display_path or str(path)
    if suffix == ".pdf":
        doc = _load_pdf(raw, path)
    else:
        text = raw.decode("utf-8", errors="replace")
        if suffix in {".html", ".htm"}:
            doc = _load_html(text, path)
        elif suffix in {".md", ".markdown"}:
            doc = load_markdown_text(text, fallback_source=path.stem)
        else:
            doc = Document(
                source=path.stem,
                title=_title_from_stem(path.stem),
                path="",
                sections=[Section(INTRO_SECTION, text.strip(), 0)],
            )
    doc.path = shown
    doc.doc_hash = hashlib.sha256(raw).hexdigest()
    doc.sections = [s for s in doc.sections if s.text.strip()]
    return doc


def _title_from_stem(stem: str) -> str:
    return re.sub(r"[-_]+", " ", stem).strip().capitalize() or stem


def load_markdown_text(text: str, *, fallback_source: str) -> Document:
    """Parse Markdown with optional YAML front matter (id, title, topic, source_notes)."""
    meta: dict[str, Any] = {}
    match = _FRONT_MATTER.match(text)
    if match:
        try:
            loaded = yaml.safe_load(match.group(1))
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            at = f" at line {where.line + 2}" if where is not None else ""  # +1 for the opening ---
            reason = getattr(exc, "problem", None) or type(exc).__name__
            raise UnsupportedDocument(
                f"{fallback_source!r}: the front matter (between the --- lines) is not valid YAML{at}: {reason}"
            ) from None
        if isinstance(loaded, dict):
            meta = loaded
        text = text[match.end() :]

    sections: list[Section] = []
    h1: str | None = None
    heading, level, lines = INTRO_SECTION, 0, []
    parents: dict[int, str] = {}
    in_fence = False
    for line in text.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        m = None if in_fence else _MD_HEADING.match(line)
        if m is None:
            lines.append(line)
            continue
        depth, title = len(m.group(1)), m.group(2).strip()
        if depth == 1 and h1 is None and not sections and not "".join(lines).strip():
            h1 = title
            continue
        if depth > 3:
            # Deeper headings stay inside their section as bold lines.
            lines.append(f"**{title}**")
            continue
        sections.append(Section(heading, "\n".join(lines).strip(), level))
        parents[depth] = title
        for deeper in [d for d in parents if d > depth]:
            del parents[deeper]
        # A `###` section is named with its `##` parent so a citation reads on its own.
        heading = f"{parents[2]} > {title}" if depth == 3 and 2 in parents else title
        level, lines = depth, []
    sections.append(Section(heading, "\n".join(lines).strip(), level))

    source = str(meta.get("id") or fallback_source)
    title = str(meta.get("title") or h1 or _title_from_stem(fallback_source))
    topic = meta.get("topic") or ""
    if isinstance(topic, list):
        topic = ", ".join(str(t) for t in topic)
    return Document(
        source=source,
        title=title,
        path="",
        sections=sections,
        topic=str(topic),
        extra={k: v for k, v in meta.items() if k not in {"id", "title", "topic"}},
    )


_BLOCK_TAGS = "p div br li tr section article blockquote pre table ul ol dd dt h4 h5 h6"


class _HTMLExtractor(HTMLParser):
    """Collects visible text split at h1-h3 headings; remembers <title> and the first <h1>."""

    _SKIP = frozenset({"script", "style", "noscript", "template", "head", "svg", "nav", "footer"})
    _BLOCK = frozenset(_BLOCK_TAGS.split())
    _HEADINGS: ClassVar[dict[str, int]] = {"h1": 1, "h2": 2, "h3": 3}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title: str | None = None
        self.h1: str | None = None
        self.sections: list[Section] = []
        self._skip_depth = 0
        self._in_title = False
        self._heading_tag: str | None = None
        self._heading_buf: list[str] = []
        self._buf: list[str] = []
        self._current = INTRO_SECTION
        self._level = 0
        self._title_buf: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in self._SKIP:
            self._skip_depth += 1
        elif tag in self._HEADINGS and self._skip_depth == 0:
            self._heading_tag, self._heading_buf = tag, []
        elif tag in self._BLOCK:
            self._buf.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
            self.title = " ".join("".join(self._title_buf).split()) or None
        elif tag in self._SKIP:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag == self._heading_tag:
            text = " ".join("".join(self._heading_buf).split())
            self._heading_tag = None
            if tag == "h1" and self.h1 is None:
                self.h1 = text
            if text:
                self._flush()
                self._current, self._level = text, self._HEADINGS[tag]
        elif tag in self._BLOCK:
            self._buf.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self._title_buf.append(data)
        elif self._skip_depth:
            return
        elif self._heading_tag is not None:
            self._heading_buf.append(data)
        else:
            self._buf.append(data)

    def _flush(self) -> None:
        paragraphs = [" ".join(p.split()) for p in "".join(self._buf).split("\n")]
        text = "\n".join(p for p in paragraphs if p)
        self.sections.append(Section(self._current, text, self._level))
        self._buf = []

    def close(self) -> None:
        super().close()
        self._flush()


def _load_html(text: str, path: Path) -> Document:
    parser = _HTMLExtractor()
    parser.feed(text)
    parser.close()
    return Document(
        source=path.stem,
        title=parser.title or parser.h1 or _title_from_stem(path.stem),
        path="",
        sections=parser.sections,
    )


def _load_pdf(raw: bytes, path: Path) -> Document:
    # [knowledge] extra: pypdf (~0.05 s); only PDF files need it
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(raw))
        pages = [page.extract_text() or "" for page in reader.pages]
        info_title = reader.metadata.title if reader.metadata else None
    except (PdfReadError, ValueError, KeyError) as exc:
        raise UnsupportedDocument(f"{str(path)!r}: cannot read PDF: {exc}") from exc
    sections = [
        Section(f"page {n}", "\n".join(line.strip() for line in text.splitlines()).strip(), 0)
        for n, text in enumerate(pages, start=1)
    ]
    return Document(
        source=path.stem,
        title=str(info_title).strip() if info_title else _title_from_stem(path.stem),
        path="",
        sections=sections,
    )
