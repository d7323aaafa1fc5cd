"""Recorded model traffic for the model suites (selection, tasks, faithfulness): record live, replay in CI.

`valuechain eval run SUITE --record` runs the suite against the live endpoint inside a vcrpy
cassette and writes ``evals/cassettes/<suite>.yaml`` plus ``<suite>.meta.json`` (model, whether it
was the embedded server, temperature, trials, case ids, and the suite's result as recorded).
`--replay` runs the same suite against the cassette alone: requests match on method, path and
body (the full prompt, tool schemas and tool results), each recording plays once, and a run that
leaves a recording unplayed fails — so a changed prompt, tool docstring, tool output or case
means re-recording, never a silent pass. Authorization headers are filtered out when recording.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from evals.report import SuiteName, SuiteResult

CASSETTE_DIR = Path(__file__).resolve().parent / "cassettes"
REPLAY_URL = "http://127.0.0.1:9/v1"
"""Nothing listens here: in replay every response comes from the cassette."""
MATCH_ON = ("method", "path", "same_body")
FILTER_HEADERS = ["authorization", "api-key", "x-api-key", "openai-organization", "cookie", "set-cookie"]
RECORD_COMMAND = "make eval-record"
RECORDED_BY_MAKE = frozenset({"selection", "tasks", "faithfulness"})
"""The suites `make eval-record` records; the others are recorded on their own."""


def record_command(suite: str) -> str:
    """How to (re-)record `suite`'s cassette."""
    return RECORD_COMMAND if suite in RECORDED_BY_MAKE else f"valuechain eval run {suite} --record"


def same_body(r1: Any, r2: Any) -> None:
    """vcrpy's matcher protocol: the request bodies are byte-identical, else AssertionError.

    vcrpy's own `body` matcher builds a difflib diff for every recording that does not match; a
    request is compared with every recording before its own, so a replay of hundreds of requests
    computes a quadratic number of diffs nobody reads. The OpenAI client serialises a request
    the same way every time, so bytes are the comparison (the replay error names the remedy).
    """
    # [dev] extra: vcrpy (~0.2 s); only recording and replaying need it
    from vcr.util import read_body

    if read_body(r1) != read_body(r2):
        raise AssertionError("the request bodies differ")


class ReplayError(RuntimeError):
    """A cassette is missing, was recorded for another configuration, or did not play out."""


class CassetteMeta(BaseModel):
    suite: SuiteName
    model: str
    embedded: bool = Field(description="Recorded from the embedded llama.cpp server (its request shape)")
    temperature: float | None
    trials: int
    case_ids: list[str]
    recorded_at: str
    requests: int
    design: Literal["react", "plan"] = Field(
        default="react", description="The agent design recorded (recordings from before this field are ReAct)")
    exemplars: int = Field(default=4, description="Planner exemplars per question (plan design)")
    result: SuiteResult = Field(description="The suite's result when it was recorded; replay must reproduce it")


def paths(suite: SuiteName, directory: Path = CASSETTE_DIR) -> tuple[Path, Path]:
    return directory / f"{suite}.yaml", directory / f"{suite}.meta.json"


def load_meta(suite: SuiteName, directory: Path = CASSETTE_DIR) -> CassetteMeta:
    cassette, meta = paths(suite, directory)
    if not cassette.is_file() or not meta.is_file():
        raise ReplayError(f"no recording of the {suite} suite in {directory} "
                          f"(need {cassette.name} and {meta.name}); record it with `{record_command(suite)}`")
    return CassetteMeta.model_validate_json(meta.read_text(encoding="utf-8"))


def write_meta(meta: CassetteMeta, directory: Path = CASSETTE_DIR) -> Path:
    path = paths(meta.suite, directory)[1]
    path.write_text(meta.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return path


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


@contextmanager
def cassette(suite: SuiteName, *, record: bool, directory: Path = CASSETTE_DIR) -> Iterator[Any]:
    """Record into, or replay from, the suite's cassette (see the module docstring)."""
    # [dev] extra: vcrpy (~0.2 s); only recording and replaying need it
    import vcr
    from vcr.errors import CannotOverwriteExistingCassetteException

    path = paths(suite, directory)[0]
    if record:
        directory.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)  # a fresh recording, never appended to an old one
    elif not path.is_file():
        raise ReplayError(f"no cassette {path}; record it with `{record_command(suite)}`")
    recorder = vcr.VCR(
        match_on=MATCH_ON,
        filter_headers=FILTER_HEADERS,
        record_mode="all" if record else "none",
        decode_compressed_response=True,
    )
    recorder.register_matcher("same_body", same_body)
    try:
        with recorder.use_cassette(str(path), allow_playback_repeats=False) as cas:
            yield cas
    except CannotOverwriteExistingCassetteException as exc:
        raise ReplayError(f"{path.name}: a request matched no recording; re-record with `{record_command(suite)}`.\n"
                          f"{exc}") from exc
    if not record and not cas.all_played:
        raise ReplayError(
            f"{path.name}: {cas.play_count} of {len(cas)} recorded requests were played; the requests "
            f"this run sent differ from the recording (a prompt, tool docstring, tool output, case or model "
            f"setting changed): re-record with `{record_command(suite)}`")


def replay_runtime(meta: CassetteMeta, settings: Any) -> Any:
    """An `LLMRuntime` that sends exactly the requests of the recorded configuration to `REPLAY_URL`."""
    # [llm] extra: only --replay needs these (agent.llm.runtime loads langchain, ~0.47 s on top)
    from agent.llm.client import resolve_endpoint
    from agent.llm.runtime import LLMRuntime

    if meta.embedded:
        local = settings.model_copy(update={"llm_base_url": None, "llm_model": None})
    else:
        local = settings.model_copy(update={"llm_base_url": REPLAY_URL, "llm_model": meta.model})
    model = resolve_endpoint(local, REPLAY_URL).model
    if model != meta.model:
        raise ReplayError(f"the {meta.suite} cassette was recorded with model {meta.model!r}, but this "
                          f"configuration would send {model!r} (LLM_GGUF_PATH?); re-record or reset it")
    return LLMRuntime(local, REPLAY_URL, model)


def recorded_design(metas: list[CassetteMeta]) -> tuple[Literal["react", "plan"], int]:
    """The agent design and exemplar count the recordings were made with (replay must run the same)."""
    found = {(m.design, m.exemplars) for m in metas}
    if len(found) > 1:
        raise ReplayError("the recordings were made with different agent designs: "
                          + ", ".join(f"{m.suite}={m.design}/{m.exemplars}" for m in metas) + f"; re-record with `{RECORD_COMMAND}`")
    return found.pop() if found else ("react", 4)
