"""`valuechain tools ...`: tables by default, exactly one JSON document with --json, exit 2 on input errors,
exit 1 with one line naming an error id on an internal error."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from typer.testing import CliRunner, Result

from core.db import make_engine
from core.settings import get_settings
from crm.models import AppMeta
from tools.errors import DataFault
from valuechain.cli.main import app

runner = CliRunner()


def _json(args: list[str]) -> dict[str, object]:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # exactly one document, or this raises


def test_score_activities_table(golden_db_url: str) -> None:
    result = runner.invoke(app, ["tools", "score-activities", "--database-url", golden_db_url])
    assert result.exit_code == 0, result.output
    assert "Order fulfilment" in result.stdout and "eliminate_or_restructure" in result.stdout
    # Readable on an 80-column terminal: A1's row in the ABM table (gap, driver, VA, NVA, unused).
    assert "│ A1 │    10.0% │ orders" in result.stdout
    assert "│         320 │            80 │              0 │" in result.stdout
    assert "latest period" in result.stdout


def test_score_activities_json(golden_db_url: str) -> None:
    doc = _json(["tools", "score-activities", "--period", "2026", "--database-url", golden_db_url])
    assert doc["period"] == "2026" and doc["total_margin_leak"] == 300.0
    assert [a["id"] for a in doc["activities"]] == ["A1", "A2", "A3", "A4"]  # type: ignore[union-attr,index]


def test_rank_table_and_json(golden_db_url: str) -> None:
    args = [
        "tools",
        "rank",
        "accounts",
        "days_to_renewal",
        "--filter",
        "region=EMEA,NA",
        "--database-url",
        golden_db_url,
    ]
    table = runner.invoke(app, args)
    assert table.exit_code == 0, table.output
    assert "ACME-0005" in table.stdout and "-10" in table.stdout
    doc = _json([*args, "--limit", "2", "--order", "desc"])
    assert [i["id"] for i in doc["items"]] == ["ACME-0002", "ACME-0001"]  # type: ignore[union-attr,index]
    assert doc["filters"] == {"region": ["EMEA", "NA"], "status": ["active"]}


def test_rank_initiatives_json(golden_db_url: str) -> None:
    doc = _json(["tools", "rank", "initiatives", "roi", "--database-url", golden_db_url])
    assert [i["value"] for i in doc["items"]] == [2.5, 2.0, 1.5, None]  # type: ignore[union-attr,index]


def test_account_and_accounts_and_timeline(golden_db_url: str) -> None:
    one = runner.invoke(app, ["tools", "account", "ACME-0001", "--database-url", golden_db_url])
    assert one.exit_code == 0, one.output
    assert "renews 2026-04-30" in one.stdout and "2 (urgent 1, high 1, medium 0, low 0)" in one.stdout
    assert _json(["tools", "account", "ACME-0001", "--database-url", golden_db_url])["days_to_renewal"] == 30

    many = runner.invoke(app, ["tools", "accounts", "-f", "segment=Enterprise", "--database-url", golden_db_url])
    assert many.exit_code == 0, many.output
    assert "ACME-0001" in many.stdout and "ACME-0002" not in many.stdout
    assert _json(["tools", "accounts", "--search", "beta", "--database-url", golden_db_url])["total"] == 1

    tl = runner.invoke(app, ["tools", "timeline", "ACME-0001", "--database-url", golden_db_url])
    assert tl.exit_code == 0, tl.output
    assert "ticket_opened" in tl.stdout
    doc = _json(["tools", "timeline", "ACME-0001", "--limit", "2", "--database-url", golden_db_url])
    assert len(doc["events"]) == 2  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tools", "rank", "accounts", "foo"], 'unknown metric "foo" for accounts; valid:'),
        (["tools", "rank", "accounts", "arr", "--filter", "segment=Enterprize"], 'did you mean "Enterprise"'),
        (["tools", "rank", "accounts", "arr", "--filter", "segment"], "--filter takes key=value"),
        (["tools", "score-activities", "--period", "1999"], 'unknown period "1999"'),
        (["tools", "account", "ACME-9999"], 'no account "ACME-9999"'),
        (["tools", "timeline", "ACME-0001", "--since", "soon"], "--since must be a date"),
    ],
)
def test_input_errors_exit_2_with_message(golden_db_url: str, args: list[str], message: str) -> None:
    for extra in ([], ["--json"]):
        result = runner.invoke(app, [*args, *extra, "--database-url", golden_db_url])
        assert result.exit_code == 2, result.output
        assert message in " ".join(result.stderr.split())
        assert result.stdout == ""


@pytest.mark.parametrize(
    "args",
    [
        ["tools", "score-activities"],
        ["tools", "churn-risk", "ACME-0001"],
        ["tools", "next-best-action", "ACME-0001"],
        ["churn", "score"],
        ["review", "list"],
        ["review", "approve", "1", "--as", "ann", "--expected-version", "1"],
        ["keys", "create", "--name", "ann", "--role", "viewer"],
        ["analysis", "report"],
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_uninitialised_database_is_a_clear_error(tmp_path: Path, args: list[str]) -> None:
    """Every command that reads the CRM says what to do (valuechain/cli/common.tool_errors), no traceback."""
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    result = runner.invoke(app, [*args, "--database-url", url])
    assert result.exit_code == 1, result.output
    assert "database error" in result.stderr and "valuechain init" in " ".join(result.stderr.split())


# ---------------------------------------------------------------------------- internal errors
# A data fault or a bug is one line on stderr naming an error id (exit 1); the traceback is only
# in the log, under that id (valuechain/cli/common.internal_errors, applied to every command).

ONE_LINE = re.compile(r"^error: internal error \(id ([0-9a-f]{8})\): (.+) \(traceback in (.+)\)$")


@pytest.fixture
def corrupt_db(golden_db_url: str) -> str:
    """The golden data with an `app_meta` as-of date that is not a date."""
    engine = make_engine(golden_db_url)
    with engine.begin() as conn:
        conn.execute(update(AppMeta).where(AppMeta.key == "as_of").values(value="yesterday"))
    engine.dispose()
    return golden_db_url


def _internal_error(result: Result) -> tuple[str, str, str]:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    match = ONE_LINE.match(lines[0])
    assert match is not None, lines[0]
    return match.group(1), match.group(2), match.group(3)


def _logged(caplog: pytest.LogCaptureFixture, error_id: str) -> logging.LogRecord:
    [record] = [r for r in caplog.records if error_id in r.getMessage()]
    assert record.exc_info is not None  # the traceback is in the log
    return record


def test_a_data_fault_is_one_line_with_an_error_id(corrupt_db: str, caplog: pytest.LogCaptureFixture) -> None:
    result = runner.invoke(app, ["tools", "account", "ACME-0001", "--database-url", corrupt_db])
    error_id, summary, where = _internal_error(result)
    assert summary.startswith("app_meta 'as_of' is not an ISO date: 'yesterday'; set it to a date")
    assert where == "the log"
    assert isinstance(_logged(caplog, error_id).exc_info[1], DataFault)  # type: ignore[index]


def test_a_bug_in_any_command_is_one_line_with_an_error_id(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """`status` runs no tool and has no handler of its own: the main app catches it."""
    import valuechain.cli.setup

    def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("boom\nmore detail")

    monkeypatch.setattr(valuechain.cli.setup, "current_revision", broken)
    result = runner.invoke(app, ["status", "--database-url", "sqlite://"])
    error_id, summary, _ = _internal_error(result)
    assert summary == "RuntimeError: boom"
    assert str(_logged(caplog, error_id).exc_info[1]) == "boom\nmore detail"  # type: ignore[index]


def test_without_logging_set_up_the_traceback_goes_to_a_file_in_data_dir(
    corrupt_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from valuechain.cli import common

    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(common.log, "propagate", False)  # as from a terminal: no handler anywhere
    get_settings.cache_clear()
    try:
        result = runner.invoke(app, ["tools", "account", "ACME-0001", "--database-url", corrupt_db])
    finally:
        get_settings.cache_clear()
        for handler in common.log.handlers[:]:
            common.log.removeHandler(handler)
            handler.close()
    error_id, _, where = _internal_error(result)
    assert Path(where) == tmp_path / "data" / common.LOG_FILE
    text = Path(where).read_text()
    assert f"internal error {error_id}" in text and "Traceback" in text and "DataFault" in text
