"""`valuechain knowledge ...`: ingest documents, search, build the corpus index, eval."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, cast

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from knowledge.loaders import UnsupportedDocument
from knowledge.search import search_knowledge
from tools.errors import ToolInputError
from valuechain.cli.common import JsonOption, console, err_console, fail, print_json

if TYPE_CHECKING:
    from knowledge.ingest import ProgressFn
    from knowledge.store import KnowledgeStore

app = typer.Typer(no_args_is_help=True)

ModeOption = typer.Option(None, "--mode", help="Ranking: vector or hybrid (default: the store's, hybrid)")


def _store(mode: str | None = None) -> KnowledgeStore:
    # Imported here so `valuechain --help` does not load Chroma and onnxruntime.
    from knowledge.store import SEARCH_MODES, KnowledgeStore, SearchMode

    if mode is not None and mode not in SEARCH_MODES:
        raise fail(f"unknown mode {mode!r}; valid: {', '.join(SEARCH_MODES)}", code=2)
    store = KnowledgeStore.from_settings()
    if mode is not None:
        store.mode = cast(SearchMode, mode)
    return store


@contextmanager
def _progress(label: str, enabled: bool) -> Iterator[ProgressFn | None]:
    """A rich progress bar on stderr fed by (done, total) calls; nothing with --json."""
    if not enabled:
        yield None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


@app.command("ingest", help="Add Markdown, text, HTML or PDF files (or folders) to the knowledge base.")
def ingest_cmd(
    paths: list[Path] = typer.Argument(..., help="Files or folders (searched recursively)"),
    as_json: bool = JsonOption,
) -> None:
    # [knowledge] extra: knowledge.ingest loads Chroma (~0.3 s)
    from knowledge.ingest import ingest

    store = _store()
    try:
        with _progress("embedding chunks", not as_json) as progress:
            report = ingest(paths, store=store, progress=progress)
    except (FileNotFoundError, UnsupportedDocument, ToolInputError) as exc:
        raise fail(str(exc)) from exc
    if as_json:
        print_json(report)
        return
    table = Table("source", "title", "path", "chunks", "added", "removed")
    for s in report.sources:
        table.add_row(s.source, s.title, s.path, str(s.chunks), str(s.added), str(s.removed))
    console.print(table)
    console.print(
        f"{report.files} file(s), {report.chunks} chunk(s): {report.added} added, "
        f"{report.removed} removed, {report.unchanged} unchanged"
    )
    for s in report.sources:
        if s.chunks == 0:
            err_console.print(f"[yellow]warning:[/] no text found in {s.path!r} (scanned PDF?)")


@app.command("search", help="Search the knowledge base; prints cited chunks best first.")
def search_cmd(
    query: str = typer.Argument(..., help="Question or key phrase"),
    k: int = typer.Option(5, "--k", min=1, max=20, help="Number of chunks"),
    mode: str | None = ModeOption,
    as_json: bool = JsonOption,
) -> None:
    store = _store(mode)
    try:
        results = search_knowledge(store=store, query=query, k=k)
    except ToolInputError as exc:
        raise fail(str(exc), code=2) from exc
    if as_json:
        print_json(results)
        return
    if not results.results:
        console.print("no results: the knowledge base is empty (run `valuechain knowledge build`)")
        return
    table = Table("rank", "score", "source", "section", "snippet")
    for rank, hit in enumerate(results.results, start=1):
        snippet = " ".join(hit.text.split())
        snippet = snippet if len(snippet) <= 140 else snippet[:139] + "…"
        table.add_row(str(rank), f"{hit.score:.3f}", hit.source, hit.section, snippet)
    console.print(table)


@app.command("build", help="Index the bundled framework corpus (only what changed since last time).")
def build_cmd(
    force: bool = typer.Option(False, "--force", help="Re-check every corpus document"),
    as_json: bool = JsonOption,
) -> None:
    # [knowledge] extra: knowledge.ingest loads Chroma (~0.3 s)
    from knowledge.ingest import ensure_corpus_index

    store = _store()
    with _progress("embedding corpus", not as_json) as progress:
        report = ensure_corpus_index(store, progress=progress, force=force)
    if as_json:
        print_json(report)
        return
    added = report.ingest.added if report.ingest else 0
    removed = report.ingest.removed if report.ingest else 0
    console.print(
        f"corpus index {report.status}: {report.documents} document(s), {report.chunks} chunk(s)"
        + (f" ({added} embedded, {removed} removed)" if report.ingest else "")
    )


@app.command("eval", help="Retrieval eval: recall@1, recall@5 and MRR per ranking mode.")
def eval_cmd(
    mode: str = typer.Option("both", "--mode", help="vector, hybrid or both"),
    cases: Path | None = typer.Option(
        None, "--cases", help="Cases file (default: evals/cases/retrieval.yaml)"
    ),
    as_json: bool = JsonOption,
) -> None:
    # [knowledge] extra: these load Chroma (~0.3 s)
    from knowledge.evaluate import CASES_FILE, THRESHOLDS, run_retrieval_eval
    from knowledge.ingest import ensure_corpus_index
    from knowledge.store import SEARCH_MODES, SearchMode

    if mode != "both" and mode not in SEARCH_MODES:
        raise fail(f"unknown mode {mode!r}; valid: vector, hybrid, both", code=2)
    cases_file = cases or CASES_FILE
    if not cases_file.is_file():
        raise fail(f"no retrieval cases at {str(cases_file)!r}")
    store = _store()
    with _progress("embedding corpus", not as_json) as progress:
        ensure_corpus_index(store, progress=progress)
    modes: tuple[SearchMode, ...] = SEARCH_MODES if mode == "both" else (cast(SearchMode, mode),)
    report = run_retrieval_eval(store, modes=modes, cases_file=cases_file)
    if as_json:
        print_json(report)
    else:
        table = Table("mode", "cases", "recall@1", "recall@5", "MRR", "ms/query", "pass")
        for m in report.modes:
            table.add_row(
                m.mode + (" (default)" if m.mode == report.default_mode else ""),
                str(m.cases),
                f"{m.recall_at_1:.3f}",
                f"{m.recall_at_5:.3f}",
                f"{m.mrr:.3f}",
                f"{m.mean_latency_ms:.0f}",
                "yes" if m.passed else "NO",
            )
        console.print(table)
        console.print(
            f"thresholds: recall@5 ≥ {THRESHOLDS['recall_at_5']}, MRR ≥ {THRESHOLDS['mrr']}; "
            f"{report.chunks} chunks indexed"
        )
        for m in report.modes:
            for f in m.failures:
                console.print(
                    f"[dim]{m.mode}[/] {f.id}: expected {f.expected}, rank {f.first_rank or '-'}; "
                    f"top: {f.retrieved[:3]}"
                )
    if not report.passed:
        raise typer.Exit(1)
