"""Split `Document`s into heading-sized chunks with stable content-hash ids.

Every chunk is embedded as "title — section" followed by its text: short sections
("Service") say little on their own, and the prefix is what lets a question about
"support activities of the value chain" find the right document. The model reads
at most 256 tokens, so long sections are split (on paragraph, then sentence
boundaries) into windows that overlap by a few sentences.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from knowledge.loaders import Document

# Bump when the chunk text or the embedded text changes shape: it is part of the
# corpus fingerprint, so the next start re-indexes.
CHUNKER_VERSION = "1"
MAX_WORDS = 160  # about 210 MiniLM tokens, leaving room for the prefix within 256
OVERLAP_WORDS = 30

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[A-Z0-9*_-])")


@dataclass(frozen=True)
class Chunk:
    """One retrievable unit and everything stored with it."""

    id: str
    source: str
    title: str
    section: str
    topic: str
    path: str
    text: str
    doc_hash: str

    @property
    def embed_text(self) -> str:
        return embed_text(self.title, self.section, self.text)

    def metadata(self) -> dict[str, str]:
        return {
            "source": self.source,
            "title": self.title,
            "section": self.section,
            "topic": self.topic,
            "path": self.path,
            "content_hash": self.id,
            "doc_hash": self.doc_hash,
        }


def embed_text(title: str, section: str, text: str) -> str:
    """The string the model embeds for a chunk."""
    head = title if not section or section == title else f"{title} — {section}"
    return f"{head}\n\n{text}"


def chunk_id(source: str, section: str, text: str) -> str:
    """Content hash: the same source, section and text always give the same id."""
    digest = hashlib.sha256()
    for part in (source, section, text):
        digest.update(part.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()


def _units(text: str) -> list[str]:
    """Paragraphs, with over-long paragraphs broken into sentences (and words)."""
    units: list[str] = []
    for para in re.split(r"\n\s*\n", text):
        para = para.strip()
        if not para:
            continue
        if len(para.split()) <= MAX_WORDS:
            units.append(para)
            continue
        for sentence in _SENTENCE_END.split(para):
            words = sentence.split()
            for start in range(0, len(words), MAX_WORDS):
                units.append(" ".join(words[start : start + MAX_WORDS]))
    return units


def split_text(text: str, *, max_words: int = MAX_WORDS, overlap: int = OVERLAP_WORDS) -> list[str]:
    """Pack paragraphs into windows of at most `max_words`, overlapping by ~`overlap` words."""
    if len(text.split()) <= max_words:
        return [text.strip()] if text.strip() else []
    units = _units(text)
    windows: list[str] = []
    current: list[str] = []
    size = 0
    for unit in units:
        n = len(unit.split())
        if current and size + n > max_words:
            windows.append("\n\n".join(current))
            # Carry trailing units (up to `overlap` words) into the next window.
            carry: list[str] = []
            carried = 0
            for prev in reversed(current):
                m = len(prev.split())
                if carried + m > overlap:
                    break
                carry.insert(0, prev)
                carried += m
            if not carry:
                tail = current[-1].split()[-overlap:]
                carry, carried = [" ".join(tail)], len(tail)
            if carried + n > max_words:
                carry, carried = [], 0
            current, size = carry, carried
        current.append(unit)
        size += n
    if current:
        windows.append("\n\n".join(current))
    return windows


def chunk_document(doc: Document) -> list[Chunk]:
    """Chunks of `doc` in reading order, duplicates (same id) dropped."""
    chunks: list[Chunk] = []
    seen: set[str] = set()
    for section in doc.sections:
        name = section.heading
        for text in split_text(section.text):
            # The title is hashed too (via the embedded text): a retitled document
            # embeds differently, so its chunks must get new ids.
            cid = chunk_id(doc.source, name, embed_text(doc.title, name, text))
            if cid in seen:
                continue
            seen.add(cid)
            chunks.append(
                Chunk(
                    id=cid,
                    source=doc.source,
                    title=doc.title,
                    section=name,
                    topic=doc.topic,
                    path=doc.path,
                    text=text,
                    doc_hash=doc.doc_hash,
                )
            )
    return chunks
