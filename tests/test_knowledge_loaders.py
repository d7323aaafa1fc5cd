"""Loaders, chunking and BM25: pure functions, no model and no store."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from knowledge.bm25 import BM25Index, tokenize
from knowledge.chunking import MAX_WORDS, chunk_document, chunk_id, split_text
from knowledge.ingest import collect_files
from knowledge.loaders import Document, Section, UnsupportedDocument, load_document

FIXTURES = Path(__file__).parent / "fixtures" / "knowledge"


def test_markdown_front_matter_and_heading_sections() -> None:
    doc = load_document(FIXTURES / "espresso-machines.md")
    assert doc.source == "espresso-machines"
    assert doc.title == "Espresso machine maintenance"
    assert doc.topic == "fixture"
    assert [s.heading for s in doc.sections] == [
        "Overview",
        "Descaling",
        "Group head cleaning",
        "Group head cleaning > Shower screen",
    ]
    assert "citric-acid" in doc.sections[1].text
    assert len(doc.doc_hash) == 64


def test_markdown_without_front_matter_uses_h1_and_stem(tmp_path: Path) -> None:
    path = tmp_path / "my-notes.md"
    path.write_text("# Field notes\n\nIntro line.\n\n## Findings\n\n```\n## not a heading\n```\n")
    doc = load_document(path)
    assert doc.source == "my-notes"
    assert doc.title == "Field notes"
    assert [s.heading for s in doc.sections] == ["Overview", "Findings"]
    assert "## not a heading" in doc.sections[1].text


def test_html_strips_tags_scripts_and_splits_at_headings() -> None:
    doc = load_document(FIXTURES / "volcanoes.html")
    assert doc.source == "volcanoes"
    assert doc.title == "Volcano basics"  # <title> wins over <h1>
    assert [s.heading for s in doc.sections] == ["Volcanoes", "Shield volcanoes", "Stratovolcanoes"]
    text = "\n".join(s.text for s in doc.sections)
    assert "secret" not in text and "color" not in text and "Home | About" not in text
    assert "viscous lava & they erupt" in text  # entities decoded
    assert "Mount Fuji\nMount St. Helens" in doc.sections[2].text


def test_html_without_title_uses_h1(tmp_path: Path) -> None:
    path = tmp_path / "page.htm"
    path.write_text("<h1>Heading one</h1><p>Body <b>bold</b> text.</p>")
    doc = load_document(path)
    assert doc.title == "Heading one"
    assert doc.sections[0].text == "Body bold text."


def test_pdf_pages_become_sections() -> None:
    doc = load_document(FIXTURES / "glaciers.pdf")
    assert doc.source == "glaciers"
    assert doc.title == "Glacier field notes"
    assert [s.heading for s in doc.sections] == ["page 1", "page 2"]
    assert "snowfall exceeds melting" in doc.sections[0].text
    assert "Moraines" in doc.sections[1].text


def test_text_file_is_one_section() -> None:
    doc = load_document(FIXTURES / "bicycle-gears.txt")
    assert doc.title == "Bicycle gears"
    assert len(doc.sections) == 1 and "derailleur" in doc.sections[0].text


def test_unsupported_and_missing_files_are_clear_errors(tmp_path: Path) -> None:
    bad = tmp_path / "data.xlsx"
    bad.write_bytes(b"x")
    with pytest.raises(UnsupportedDocument, match=r"unsupported file type '\.xlsx'"):
        collect_files([bad])
    with pytest.raises(FileNotFoundError, match="no such file"):
        collect_files([tmp_path / "missing.md"])
    # Folders skip what they cannot read.
    assert collect_files([tmp_path]) == []


def test_chunks_prefix_title_and_section_and_hash_content() -> None:
    doc = load_document(FIXTURES / "tidal-pools.md")
    chunks = chunk_document(doc)
    assert [c.section for c in chunks] == ["Who lives there", "Survival at low tide"]
    first = chunks[0]
    assert first.embed_text.startswith("Life in tidal pools — Who lives there\n\n")
    assert first.id == chunk_id(first.source, first.section, first.embed_text)
    meta = first.metadata()
    assert {"source", "title", "section", "topic", "path", "content_hash"} <= meta.keys()
    assert meta["content_hash"] == first.id
    # Same input, same ids; changed text, changed id.
    assert [c.id for c in chunk_document(doc)] == [c.id for c in chunks]
    edited = Document(
        source=doc.source,
        title=doc.title,
        path=doc.path,
        sections=[Section("Who lives there", "Only crabs.")],
    )
    assert chunk_document(edited)[0].id != first.id


def test_long_sections_split_with_overlap() -> None:
    sentences = [f"Sentence number {i} talks about topic {i % 7} in some detail." for i in range(120)]
    text = " ".join(sentences)
    parts = split_text(text)
    assert len(parts) > 1
    assert all(len(p.split()) <= MAX_WORDS for p in parts)
    # Consecutive windows share their boundary sentence(s).
    for a, b in itertools.pairwise(parts):
        assert a.split("\n\n")[-1] in b
    # Nothing lost.
    joined = " ".join(parts)
    assert all(s in joined for s in sentences)


def test_bm25_prefers_the_document_with_the_terms() -> None:
    index = BM25Index(
        [
            "Inbound logistics receives and stores inputs.",
            "Marketing and sales persuade customers to buy.",
            "Service keeps the product working after the sale.",
        ]
    )
    top = index.top("which activity handles marketing and sales", 3)
    assert top[0][0] == 1
    assert index.top("quantum chromodynamics", 3) == []
    assert tokenize("Activities costs") == tokenize("activity cost")
