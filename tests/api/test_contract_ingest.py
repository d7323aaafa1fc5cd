"""Issue #18, bounded ingest: a knowledge upload is capped in bytes and in chunks to embed, refused
whole when over a cap (nothing half-ingested), and its source ids are valid ids that cannot take
over a product corpus document unless an admin asks to."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apihelp import bearer, settings_for
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.app import create_app
from knowledge.ingest import CORPUS_DIR, ingest_documents, load_documents
from knowledge.store import KnowledgeStore

DOCS = "/api/v1/knowledge/documents"
PROBLEM = "application/problem+json"


@pytest.fixture
def any_engine(sqlite_engine: Engine) -> Engine:
    return sqlite_engine


@pytest.fixture
def store(tmp_path: Path) -> KnowledgeStore:
    return KnowledgeStore.at_path(tmp_path / "chroma")


@pytest.fixture
def kclient(db_engine: Engine, tmp_path: Path, store: KnowledgeStore) -> Iterator[TestClient]:
    """Uploads capped at 64 KiB and 5 new chunks, into a real embedded Chroma store."""
    settings = settings_for(db_engine, tmp_path, knowledge_upload_max_bytes=64 * 1024, knowledge_upload_max_chunks=5)
    with TestClient(create_app(settings, knowledge_store=store), raise_server_exceptions=False) as c:
        yield c


def upload(client: TestClient, key: str, *files: tuple[str, bytes], **params: Any) -> Any:
    return client.post(DOCS, files=[("files", (name, data, "text/markdown")) for name, data in files],
                       params=params, headers=bearer(key))


def detail(r: Any, status: int) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    text: str = r.json()["detail"]
    return text


def md(source: str | None, sections: int = 1) -> bytes:
    front = f"---\nid: {source}\ntitle: Notes\n---\n" if source else ""
    body = "".join(f"## Part {i}\n\nThe zorblatt widget part {i} is returned within {i} days.\n\n" for i in range(sections))
    return (front + body).encode()


def test_a_300_character_file_name_is_422(kclient: TestClient, keys: dict[str, str], store: KnowledgeStore) -> None:
    text = detail(upload(kclient, keys["analyst"], ("n" * 297 + ".md", md(None))), 422)
    assert text.startswith("file name 'nnnn") and text.endswith("is 300 characters long; at most 200")
    assert store.count() == 0


def test_broken_front_matter_is_422_naming_the_file(kclient: TestClient, keys: dict[str, str],
                                                    store: KnowledgeStore) -> None:
    broken = b"---\ntitle: [unclosed\nid: x\n---\n# Body\n"
    text = detail(upload(kclient, keys["analyst"], ("good.md", md("good")), ("broken.md", broken)), 422)
    assert text.startswith("'broken': the front matter (between the --- lines) is not valid YAML")
    assert store.count() == 0  # the good file was not ingested either


@pytest.mark.parametrize("source", ["../../etc/passwd", "/etc/passwd", "a b", ".hidden", "x" * 201])
def test_a_source_id_that_is_not_an_id_is_422(kclient: TestClient, keys: dict[str, str], source: str) -> None:
    text = detail(upload(kclient, keys["analyst"], ("notes.md", md(f'"{source}"'))), 422)
    assert "is not valid: use 1-200 letters, digits" in text


def test_a_corpus_source_id_is_refused_unless_an_admin_replaces_it(
    kclient: TestClient, keys: dict[str, str], store: KnowledgeStore
) -> None:
    corpus_doc = CORPUS_DIR / "customer-value.md"
    ingest_documents(load_documents([corpus_doc], base=CORPUS_DIR), store=store, origin="corpus")
    corpus_chunks = store.ids_for_source("customer-value", "corpus")
    assert corpus_chunks

    fake = md("customer-value")
    text = detail(upload(kclient, keys["analyst"], ("mine.md", fake)), 409)
    assert text.startswith("source id 'customer-value' belongs to the product's knowledge corpus")
    # a corpus id not indexed yet is protected as well (it is on disk)
    assert detail(upload(kclient, keys["analyst"], ("mine.md", md("porter-value-chain"))), 409)
    forbidden = detail(upload(kclient, keys["analyst"], ("mine.md", fake), replace_corpus="true"), 403)
    assert forbidden == "only an admin may replace a corpus document (replace_corpus)"
    assert store.ids_for_source("customer-value", "corpus") == corpus_chunks

    r = upload(kclient, keys["admin"], ("mine.md", fake), replace_corpus="true")
    assert r.status_code == 200, r.text
    assert store.ids_for_source("customer-value", "corpus") == set()
    assert store.ids_for_source("customer-value", "user")


def test_over_the_chunk_cap_nothing_is_ingested(kclient: TestClient, keys: dict[str, str], store: KnowledgeStore) -> None:
    text = detail(upload(kclient, keys["analyst"], ("a.md", md("a", 3)), ("b.md", md("b", 3))), 413)
    assert text.startswith("these documents make 6 new chunks to embed; at most 5 are embedded per upload. "
                           "Nothing was ingested")
    assert store.count() == 0
    ok = upload(kclient, keys["analyst"], ("a.md", md("a", 3)))
    assert ok.status_code == 200 and ok.json()["added"] == 3
    # unchanged chunks cost nothing: re-sending a plus a 2-part b is 2 new chunks
    again = upload(kclient, keys["analyst"], ("a.md", md("a", 3)), ("b.md", md("b", 2)))
    assert again.status_code == 200 and again.json()["added"] == 2


def test_over_the_size_cap_nothing_is_ingested(kclient: TestClient, keys: dict[str, str], store: KnowledgeStore) -> None:
    half = b"## Part\n\n" + b"word " * (7 * 1024)  # ~35 KiB each, 70 KiB together
    text = detail(upload(kclient, keys["analyst"], ("a.md", half), ("b.md", half)), 413)
    assert text == "the files are larger than 0.0625 MiB together; nothing was ingested"
    assert store.count() == 0
    # a declared body far over the cap is refused before it is read
    r = kclient.post(DOCS, content=b"x" * (200 * 1024),
                     headers={**bearer(keys["analyst"]), "Content-Type": "multipart/form-data; boundary=b"})
    assert "at most" in detail(r, 413)
