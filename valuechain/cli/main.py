"""The `valuechain` command-line program. Each command group lives in its own module."""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from valuechain.cli import analysis as analysis_cmd
from valuechain.cli import ask as ask_cmd
from valuechain.cli import churn as churn_cmd
from valuechain.cli import db as db_cmd
from valuechain.cli import deals as deals_cmd
from valuechain.cli import demo as demo_cmd
from valuechain.cli import eval as eval_cmd
from valuechain.cli import importer as import_cmd
from valuechain.cli import jobs as jobs_cmd
from valuechain.cli import keys as keys_cmd
from valuechain.cli import knowledge as knowledge_cmd
from valuechain.cli import llm as llm_cmd
from valuechain.cli import outcomes as outcomes_cmd
from valuechain.cli import review as review_cmd
from valuechain.cli import runs as runs_cmd
from valuechain.cli import serve as serve_cmd
from valuechain.cli import setup as setup_cmd
from valuechain.cli import tools_cmd
from valuechain.cli.common import internal_errors


class Commands(TyperGroup):
    """The command groups, each command run under `internal_errors`: a data fault or a bug in any
    command is one line with an error id on stderr (exit 1), its traceback only in the log."""

    def invoke(self, ctx: Any) -> Any:
        with internal_errors():
            return super().invoke(ctx)


app = typer.Typer(
    name="valuechain",
    help="Value Chain Copilot: value-chain analysis and CRM actions from a chat agent.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=Commands,
)

app.command("init", help="Create or migrate the database and load the demo company on first start.")(
    setup_cmd.init
)
app.command("status", help="Show configuration and what the database holds.")(setup_cmd.status)
app.add_typer(
    demo_cmd.app,
    name="demo",
    help="Generate the deterministic demo company into the database; `demo remove` deletes it.",
)
app.command("serve", help="Run the HTTP API (OpenAPI at /docs).")(serve_cmd.serve)
app.command("ask", help="Ask the agent one question; prints the answer and its tool calls.")(ask_cmd.ask)
app.command("chat", help="Chat with the agent interactively; answers stream.")(ask_cmd.chat)
app.add_typer(eval_cmd.app, name="eval", help="Evals: run the suites (tools, selection, retrieval, tasks, faithfulness); dev tool selection.")
app.add_typer(import_cmd.app, name="import", help="Import CSV files with a column mapping.")
app.add_typer(db_cmd.app, name="db", help="Database maintenance: migrate, canonical hash.")
app.add_typer(knowledge_cmd.app, name="knowledge", help="Knowledge base: ingest, search, build, eval.")
app.add_typer(llm_cmd.app, name="llm", help="LLM endpoint and speed; run the embedded model server.")
app.add_typer(churn_cmd.app, name="churn", help="Churn model: train, report, keep score snapshots.")
app.add_typer(deals_cmd.app, name="deals", help="Deal (win) model: train on closed deals, report.")
app.add_typer(analysis_cmd.app, name="analysis", help="Five-step value-chain analysis report (md, html, pdf).")
app.add_typer(tools_cmd.app, name="tools", help="Deterministic tools: scoring, ranking, accounts, churn.")
app.add_typer(review_cmd.app, name="review", help="Review queue: list, show, approve, reject recommendations.")
app.add_typer(outcomes_cmd.app, name="outcomes", help="Outcomes of executed recommendations: attribution report.")
app.add_typer(keys_cmd.app, name="keys", help="API keys: create (shown once), list, revoke.")
app.add_typer(jobs_cmd.app, name="jobs", help="Batch jobs: submit churn scoring or retraining, show progress.")
app.command("worker", help="Run queued batch jobs (PostgreSQL; on SQLite jobs run where they are submitted).")(
    jobs_cmd.worker
)
app.add_typer(runs_cmd.app, name="runs", help="Chat runs on a running server: follow one by id (replay), stop one.")


if __name__ == "__main__":
    app()
