"""The result of an import: what was read, what was written, every error with its line."""

from __future__ import annotations

from pydantic import BaseModel, Field

from crm.importer.convert import AttributeType

MAX_STORED_ERRORS = 10_000


class ImportIssue(BaseModel):
    """One problem: where it is and what is wrong."""

    line: int | None = Field(
        description="Physical line of the CSV where the record starts (1 = header); null for the mapping"
    )
    column: str | None = Field(description="CSV column (or mapping key) the problem is about")
    message: str


class ImportReport(BaseModel):
    """Outcome of `valuechain import <table>`: all rows were written, or none were."""

    table: str
    file: str
    mapping: str | None
    ok: bool = Field(description="True when the file was valid (and, unless dry_run, written)")
    dry_run: bool = False
    upsert: bool = False
    rows_read: int = Field(0, description="Data records read (blank lines are skipped and not counted)")
    rows_inserted: int = 0
    rows_updated: int = Field(0, description="Existing rows overwritten (only with --upsert)")
    blank_lines_skipped: int = 0
    error_count: int = Field(0, description="All errors found, even beyond the stored list")
    errors: list[ImportIssue] = Field(default_factory=list)
    errors_truncated: bool = Field(False, description=f"More than {MAX_STORED_ERRORS} errors; list cut")
    attribute_types: dict[str, AttributeType] = Field(
        default_factory=dict, description="accounts: attribute column -> inferred (or declared) type"
    )
    warnings: list[ImportIssue] = Field(
        default_factory=list, description="Not errors, but worth a look (e.g. a mostly numeric text column)"
    )
    ignored_columns: list[str] = Field(
        default_factory=list, description="CSV columns that fed nothing (not mapped, not attributes)"
    )
    churn_state_dropped: str | None = Field(
        None,
        description="Why the kept churn feature state was dropped by this import (the next "
        "`valuechain churn score` reads the event tables from scratch), if it was",
    )
    keep_demo: bool = Field(False, description="--keep-demo: importing next to the demo company was allowed")
    demo_accounts: int = Field(0, description="Demo-company accounts in the database at import time")
    demo_refused: bool = Field(
        False,
        description="Refused before reading the file: the database holds the demo company and keep_demo "
        "was not set (the one error says how to go on)",
    )
    seconds: float = 0.0

    def add_error(self, line: int | None, column: str | None, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_STORED_ERRORS:
            self.errors.append(ImportIssue(line=line, column=column, message=message))
        else:
            self.errors_truncated = True
