"""CSV import with a column mapping: typing, all-or-nothing errors with line numbers, CLI output."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from crm.dump import database_hash
from crm.importer import ImportReport, MappingError, import_csv, load_mapping, parse_mapping, table_spec
from crm.importer.convert import AttributeInference, ConversionError, parse_date, parse_int, parse_list
from crm.importer.csvfile import CsvFile
from crm.importer.mapping import check_mapping
from crm.models import Account, ChurnFeatureState, Initiative, SupportTicket, ValueChainActivity
from valuechain.cli.main import app

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "csv"
MAPPINGS = ROOT / "examples" / "mappings"
DATA = ROOT / "examples" / "data"
TELCO = FIXTURES / "telco-sample.csv"
TELCO_MAPPING = MAPPINGS / "telco-accounts.yaml"

runner = CliRunner()


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def _cli(engine: Engine, *args: str) -> Any:
    return runner.invoke(app, ["import", *args, "--database-url", _url(engine)])


def _import(engine: Engine, table: str, path: Path, mapping: Path, **kw: Any) -> ImportReport:
    return import_csv(
        engine, table=table, path=path, mapping=load_mapping(mapping), mapping_name=mapping.name, **kw
    )


def _telco_rows() -> list[dict[str, str]]:
    with TELCO.open(newline="") as f:
        return list(csv.DictReader(f))


def _seed_other_account(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(insert(Account), [{"id": "ACME-0001", "name": "Acme", "arr": 1.0, "attributes": {}}])


# --------------------------------------------------------------------------- happy path


def test_telco_sample_import_types_attributes_and_maps_churn(session: Session, engine: Engine) -> None:
    source = _telco_rows()
    assert TELCO.read_bytes().count(b"\r\n") == len(source) + 1  # the fixture keeps Telco's CRLF

    report = _import(engine, "accounts", TELCO, TELCO_MAPPING)

    assert report.ok, report.errors
    assert (report.rows_read, report.rows_inserted, report.error_count) == (40, 40, 0)
    assert report.attribute_types["tenure"] == "int"
    assert report.attribute_types["SeniorCitizen"] == "int"
    assert report.attribute_types["MonthlyCharges"] == "float"
    assert report.attribute_types["TotalCharges"] == "float"
    assert report.attribute_types["Partner"] == "str"  # Yes/No stays categorical
    assert "customerID" not in report.attribute_types and "Churn" not in report.attribute_types
    churned = sum(r["Churn"] == "Yes" for r in source)
    assert session.scalar(select(func.count()).where(Account.status == "churned")) == churned == 12
    assert session.scalar(select(func.count()).where(Account.status == "active")) == 28

    first = session.get(Account, "7590-VHVEG")
    assert first is not None
    assert first.name == "7590-VHVEG"  # name defaults to the id
    assert (first.segment, first.industry) == ("SMB", "Telecommunications")
    assert first.arr == pytest.approx(29.85 * 12)
    assert first.attributes["tenure"] == 1
    assert first.attributes["MonthlyCharges"] == 29.85
    assert first.attributes["TotalCharges"] == 29.85
    assert first.attributes["PaymentMethod"] == "Electronic check"
    blank = session.get(Account, "4472-LVYGI")  # TotalCharges is " " in the export
    assert blank is not None and "TotalCharges" not in blank.attributes
    assert blank.attributes["tenure"] == 0


def test_chain_of_tables_on_any_engine(any_engine: Engine) -> None:
    """accounts -> tickets (CRLF, quoted newline) -> activities -> initiatives, then --upsert."""
    for table, path, mapping in [
        ("accounts", TELCO, TELCO_MAPPING),
        ("tickets", DATA / "tickets.csv", MAPPINGS / "tickets.yaml"),
        ("activities", DATA / "activities.csv", MAPPINGS / "activities.yaml"),
        ("initiatives", DATA / "initiatives.csv", MAPPINGS / "initiatives.yaml"),
    ]:
        report = _import(any_engine, table, path, mapping)
        assert report.ok, (table, report.errors)
        assert report.rows_inserted == report.rows_read > 0

    with Session(any_engine) as s:
        ticket = s.get(SupportTicket, 1002)
        assert ticket is not None
        assert (ticket.priority, ticket.opened_at, ticket.csat) == ("high", dt.date(2026, 3, 4), 3)
        open_ticket = s.get(SupportTicket, 1003)
        assert open_ticket is not None and open_ticket.closed_at is None and open_ticket.csat is None
        # explicit ids must not break the next database-numbered insert (PostgreSQL sequences)
        s.add(SupportTicket(account_id="7590-VHVEG", priority="low", opened_at=dt.date(2026, 4, 1)))
        s.commit()

        support = s.get(ValueChainActivity, "ACT-TEC-01")
        assert support is not None
        assert support.kind == "support" and support.porter_category == "technology_development"
        assert support.systems == ["GitHub", "Jira"]
        assert support.enables == ["ACT-OPS-01", "ACT-OUT-01", "ACT-SRV-01"]
        manual = s.get(ValueChainActivity, "ACT-OPS-02")
        assert manual is not None
        assert (manual.cost_driver, manual.std_quantity, manual.actual_quantity, manual.std_price) == (
            "Analyst hours",
            0.0,
            4400.0,
            70.0,
        )
        assert manual.necessary is False and manual.perf_direction == "lower_is_better"
        finance = s.get(ValueChainActivity, "ACT-FIN-01")
        assert finance is not None and finance.name == "Finance, legal and billing"
        assert finance.cost_driver is None and finance.necessary is None
        initiative = s.get(Initiative, "INI-01")
        assert initiative is not None
        assert (initiative.type, initiative.advantage, initiative.due) == (
            "automate",
            "cost",
            dt.date(2027, 3, 31),
        )

    # Same file again: refused without --upsert, updated with it.
    before = database_hash(any_engine)
    again = _import(any_engine, "accounts", TELCO, TELCO_MAPPING)
    assert not again.ok and again.error_count == 40
    assert "already exists in the database" in again.errors[0].message
    assert database_hash(any_engine) == before
    upserted = _import(any_engine, "accounts", TELCO, TELCO_MAPPING, upsert=True)
    assert upserted.ok and (upserted.rows_inserted, upserted.rows_updated) == (0, 40)


def test_upsert_overwrites_supplied_fields_and_merges_attributes(engine: Engine, tmp_path: Path) -> None:
    assert _import(engine, "accounts", TELCO, TELCO_MAPPING).ok
    extra = tmp_path / "crm.csv"
    extra.write_text("id,Owner,NPS bucket\n7590-VHVEG,Dana,promoter\nNEW-1,Lee,\n", encoding="utf-8")
    mapping = tmp_path / "m.yaml"
    mapping.write_text("columns: {id: id, Owner: owner}\n", encoding="utf-8")

    report = _import(engine, "accounts", extra, mapping, upsert=True)

    assert report.ok, report.errors
    assert (report.rows_inserted, report.rows_updated) == (1, 1)
    with Session(engine) as s:
        old = s.get(Account, "7590-VHVEG")
        assert old is not None
        assert old.owner == "Dana"
        assert old.segment == "SMB" and old.status == "active"  # not supplied: kept
        assert old.attributes["NPS bucket"] == "promoter"
        assert old.attributes["tenure"] == 1  # keys from the earlier file are kept
        new = s.get(Account, "NEW-1")
        assert new is not None and new.name == "NEW-1" and new.attributes == {}


def test_dry_run_validates_and_writes_nothing(engine: Engine) -> None:
    before = database_hash(engine)
    report = _import(engine, "accounts", TELCO, TELCO_MAPPING, dry_run=True)
    assert report.ok and report.rows_read == 40 and report.rows_inserted == 0
    assert database_hash(engine) == before


# --------------------------------------------------------------------------- malformed files


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        (
            "telco-missing-id.csv",
            [(1, "customerID", "has no column 'customerID' (did you mean 'customerId'?)")],
        ),
        (
            "telco-bad-number.csv",
            [
                (5, "MonthlyCharges", "arr (derived): not a number: 'fifty'"),
                (7, "MonthlyCharges", "arr: -126.0 is below the minimum 0"),
            ],
        ),
        (
            "telco-duplicate-id.csv",
            [(7, "customerID", "duplicate id '7590-VHVEG' in the file (first on line 2)")],
        ),
        (
            "telco-wrong-field-count.csv",
            [
                (4, None, "expected 21 fields as in the header, found 20"),
                (6, None, "expected 21 fields as in the header, found 22"),
            ],
        ),
        ("telco-bad-status.csv", [(3, "Churn", "status: 'Maybe' is not one of active, churned")]),
    ],
)
def test_malformed_accounts_file_is_refused_whole(
    engine: Engine, fixture: str, expected: list[tuple[int, str | None, str]]
) -> None:
    _seed_other_account(engine)
    before = database_hash(engine)

    result = _cli(engine, "accounts", str(FIXTURES / fixture), "--mapping", str(TELCO_MAPPING), "--json")

    assert result.exit_code == 1, result.output
    report = ImportReport.model_validate_json(result.stdout)  # exactly one JSON document
    assert not report.ok and report.rows_inserted == 0
    assert report.error_count == len(expected)
    got = [(e.line, e.column, e.message) for e in report.errors]
    for (line, column, text), (g_line, g_column, g_message) in zip(expected, got, strict=True):
        assert (g_line, g_column) == (line, column)
        assert text in g_message
    assert database_hash(engine) == before


def test_missing_id_column_names_the_mapping(engine: Engine) -> None:
    result = _cli(engine, "accounts", str(FIXTURES / "telco-missing-id.csv"), "--mapping", str(TELCO_MAPPING))
    assert result.exit_code == 1
    assert "import failed: 1 error in telco-missing-id.csv; nothing was written" in result.stderr
    assert "line 1, column 'customerID': " in result.stderr
    assert "telco-accounts.yaml maps column 'customerID' to 'id'" in result.stderr


def test_child_rows_with_unknown_account_and_line_numbers_across_quoted_newlines(engine: Engine) -> None:
    assert _import(engine, "accounts", TELCO, TELCO_MAPPING).ok
    before = database_hash(engine)

    result = _cli(
        engine, "tickets", str(FIXTURES / "tickets-bad.csv"), "--mapping", str(MAPPINGS / "tickets.yaml")
    )

    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0] == "import failed: 5 errors in tickets-bad.csv; nothing was written"
    # record 2002 spans physical lines 3-4 and line 6 is blank: line numbers are physical lines
    assert lines[1].startswith(
        "  line 5, column 'Customer': account_id 'NOPE-0001' does not exist in accounts"
    )
    assert "line 7, column 'Opened': opened_at: ambiguous date '03/06/2026'" in lines[2]
    assert "line 7, column 'Priority': priority: 'P9' is not one of low, medium, high, urgent" in lines[3]
    assert lines[4] == "  line 7, column 'CSAT': csat: 9 is above the maximum 5"
    assert lines[5] == "  line 8, column 'Closed': closed_at 2026-03-01 is before opened_at 2026-03-07"
    assert database_hash(engine) == before


def test_many_errors_show_the_first_twenty_and_json_lists_all(engine: Engine) -> None:
    assert _import(engine, "accounts", TELCO, TELCO_MAPPING).ok
    args = ["accounts", str(TELCO), "--mapping", str(TELCO_MAPPING)]

    text = _cli(engine, *args)
    as_json = _cli(engine, *args, "--json")

    assert text.exit_code == as_json.exit_code == 1
    assert text.stderr.count("already exists in the database") == 20
    assert "... and 20 more (--json lists them all)" in text.stderr
    payload = json.loads(as_json.stdout)
    assert len(payload["errors"]) == payload["error_count"] == 40
    assert payload["errors"][0] == {
        "line": 2,
        "column": "customerID",
        "message": "id '7590-VHVEG' already exists in the database (use --upsert to update existing rows)",
    }


def test_blank_id_in_a_mapped_id_column_is_refused(engine: Engine, tmp_path: Path) -> None:
    assert _import(engine, "accounts", TELCO, TELCO_MAPPING).ok
    path = tmp_path / "t.csv"
    path.write_text(
        "Ticket #,Customer,Priority,Category,Subject,Opened,Closed,CSAT\n"
        "1,7590-VHVEG,P1,x,s,2026-01-01,,\n"
        ",7590-VHVEG,P1,x,s,2026-01-02,,\n",
        encoding="utf-8",
    )
    report = _import(engine, "tickets", path, MAPPINGS / "tickets.yaml")
    assert [(e.line, e.column) for e in report.errors] == [(3, "Ticket #")]
    assert "id is blank" in report.errors[0].message


def test_usage_composite_key(engine: Engine, tmp_path: Path) -> None:
    assert _import(engine, "accounts", TELCO, TELCO_MAPPING).ok
    path = tmp_path / "usage.csv"
    path.write_text(
        "account;week;users;sessions;features\n"
        "7590-VHVEG;06/04/2026;3;40;2\n"
        "7590-VHVEG;13/04/2026;2;31;2\n"
        "7590-VHVEG;06/04/2026;3;40;2\n",
        encoding="utf-8",
    )
    mapping = tmp_path / "usage.yaml"
    mapping.write_text(
        "table: usage\ndelimiter: ';'\ndate_formats: ['%d/%m/%Y']\n"
        "columns: {account: account_id, week: week_start, users: active_users, sessions: sessions, "
        "features: features_adopted}\n",
        encoding="utf-8",
    )
    report = _import(engine, "usage", path, mapping)
    assert [(e.line, e.message) for e in report.errors] == [
        (
            4,
            "duplicate account_id '7590-VHVEG' + week_start 2026-04-06 in the file (first on line 2)",
        )
    ]
    path.write_text("\n".join(path.read_text(encoding="utf-8").splitlines()[:3]) + "\n", encoding="utf-8")
    assert _import(engine, "usage", path, mapping).rows_inserted == 2
    again = _import(engine, "usage", path, mapping)
    assert again.error_count == 2 and "already exists in the database" in again.errors[0].message


def test_activity_rules(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "acts.csv"
    path.write_text(
        "Activity ID,Activity,Type,Porter category,Period,Annual cost,Value score (0-10),Enables,"
        "Std qty,Actual qty,Std price,KPI actual,KPI target\n"
        "A1,Ops,Support,Operations,2026,10,5,,1,2,3,,\n"
        "A2,Tech,,Technology Development,2026,10,11,A1;A9,,,,,\n"
        "A3,Billing,,Firm Infrastructure,2026,10,5,,,2,,,\n"
        "A4,Ops,,Operations,2026,10,5,,,,,,\n"
        "A5,Service desk,,Service,2026,10,5,,,,,5,0\n",
        encoding="utf-8",
    )
    mapping = tmp_path / "acts.yaml"
    mapping.write_text(
        "columns:\n"
        + "".join(
            f"  {c}: {f}\n"
            for c, f in [
                ("Activity ID", "id"),
                ("Activity", "name"),
                ("Type", "kind"),
                ("Porter category", "porter_category"),
                ("Period", "period"),
                ("Annual cost", "annual_cost"),
                ("Value score (0-10)", "value_score"),
                ("Enables", "enables"),
                ("Std qty", "std_quantity"),
                ("Actual qty", "actual_quantity"),
                ("Std price", "std_price"),
                ("KPI actual", "perf_actual"),
                ("KPI target", "perf_target"),
            ]
        ),
        encoding="utf-8",
    )
    report = _import(engine, "activities", path, mapping)
    got = [(e.line, e.message) for e in report.errors]
    assert got == [
        (2, "kind 'support' does not match porter_category 'operations', which is a primary activity"),
        (3, "value_score: 11.0 is above the maximum 10"),
        (3, "enables 'A9': no such activity in the file or the database"),
        (
            4,
            "cost driver fields come together: std_quantity, actual_quantity, std_price; "
            "missing std_quantity, std_price",
        ),
        (5, "name + period ('Ops', '2026') repeats line 2; must be unique"),
        (
            6,
            "performance fields come together: perf_actual, perf_target, perf_direction; missing perf_direction",
        ),
        (6, "perf_target is 0: the performance gap divides by the target"),
    ]


# --------------------------------------------------------------------------- mapping file


def test_unknown_field_lists_valid_ones() -> None:
    mapping = parse_mapping("table: accounts\ncolumns: {customerID: id, Churn: stauts}\n")
    problems = check_mapping(mapping, table_spec("accounts"))
    assert len(problems) == 1
    assert "unknown field 'stauts' for table accounts (did you mean 'status'?)" in problems[0]
    assert "valid fields: id, name, segment, industry, region, plan, arr" in problems[0]


@pytest.mark.parametrize(
    ("table", "text", "needle"),
    [
        ("accounts", "columns: {Churn: status}\n", "needs its key field 'id' from a CSV column"),
        ("usage", "table: accounts\ncolumns: {a: account_id}\n", "this mapping is for 'accounts'"),
        ("tickets", "columns: {a: account_id}\nattributes: rest\n", "only accounts, opportunities and sales agents have an attributes field"),
        ("tickets", "columns: {a: account_id}\n", "field 'priority' is required for support_tickets"),
        ("accounts", "columns: {a: id, b: attributes}\n", "'attributes' is filled from unmapped columns"),
        ("accounts", "columns: {a: id}\ndefaults: {arr: lots}\n", "defaults.arr: not a number: 'lots'"),
        ("accounts", "columns: {a: id}\ndefaults: {name: 'X {owner}'}\n", "placeholder {owner}"),
        ("accounts", "columns: {a: id}\nderive: {segment: {from: a}}\n", "only numeric fields"),
        ("accounts", "columns: {a: id}\nvalues: {segment: {x: SMB}}\n", "no column feeds 'segment'"),
    ],
)
def test_mapping_problems_are_explained(table: str, text: str, needle: str) -> None:
    problems = check_mapping(parse_mapping(text), table_spec(table))
    assert any(needle in p for p in problems), problems


def test_mapping_schema_errors_and_yaml_booleans(tmp_path: Path) -> None:
    mapping = parse_mapping("columns: {x: status}\nvalues: {status: {Yes: churned, No: active, 1: active}}\n")
    assert mapping.values["status"] == {"Yes": "churned", "No": "active", "1": "active"}
    with pytest.raises(MappingError, match=r"colums: unknown key \(valid keys: table, columns"):
        parse_mapping("colums: {a: id}\n")
    with pytest.raises(MappingError, match="cannot read mapping file"):
        load_mapping(tmp_path / "absent.yaml")


def test_cli_reports_a_broken_mapping_as_json(engine: Engine, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("columns: [oops\n", encoding="utf-8")
    result = _cli(engine, "accounts", str(TELCO), "--mapping", str(broken), "--json")
    assert result.exit_code == 1
    payload = json.loads(result.stdout)
    assert payload["ok"] is False and payload["errors"][0]["line"] is None
    assert "not valid YAML" in payload["errors"][0]["message"]


def test_cli_success_summary(engine: Engine) -> None:
    result = _cli(engine, "accounts", str(TELCO), "--mapping", str(TELCO_MAPPING))
    assert result.exit_code == 0, result.output
    assert "40 rows read, 40 inserted, 0 updated" in result.stdout
    assert "TotalCharges" in result.stdout and "float" in result.stdout


# --------------------------------------------------------------------------- parsing units


def test_line_numbers_count_physical_lines(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b'\xef\xbb\xbfid,note\r\n\r\na,"two\r\nlines"\r\n ,  \r\nb,x\r\nc,"3\n4\n5"\nd,y')
    with CsvFile(path) as f:
        assert f.header == ["id", "note"]
        records = [(r.line, r.cells[0]) for r in f.records()]
        assert records == [(3, "a"), (6, "b"), (7, "c"), (10, "d")]
        assert f.blank_lines == 2


def test_values_convert_by_column_type() -> None:
    assert parse_int("1,234") == 1234 and parse_int("12.0") == 12
    with pytest.raises(ConversionError):
        parse_int("12.5")
    assert parse_date("2026-03-02") == dt.date(2026, 3, 2)
    assert parse_date("2026-03-02T09:15:00Z") == dt.date(2026, 3, 2)
    assert parse_date("2 Mar 2026") == parse_date("02.03.2026") == dt.date(2026, 3, 2)
    assert parse_date("03/02/2026", ["%m/%d/%Y"]) == dt.date(2026, 3, 2)
    with pytest.raises(ConversionError, match="ambiguous date"):
        parse_date("03/02/2026")
    assert parse_list('["CRM", "ERP"]') == ["CRM", "ERP"] == parse_list(" CRM ; ERP ;")


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        (["1", "", "-3"], "int"),
        (["1", "2.5", " "], "float"),
        (["Yes", "No"], "str"),
        (["00123", "4"], "str"),  # codes with leading zeros stay text
        (["true", "false"], "str"),  # only numbers are inferred
        (["nan", "1"], "str"),
        (["", ""], "empty"),
    ],
)
def test_attribute_inference(values: list[str], kind: str) -> None:
    inference = AttributeInference()
    for v in values:
        inference.add(v.strip())
    assert inference.type == kind


def test_mostly_numeric_text_column_is_a_warning(engine: Engine, tmp_path: Path) -> None:
    rows = ["id,spend"] + [f"A{i},{i * 10}" for i in range(20)] + ["A99,n/a"]
    path = tmp_path / "a.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    mapping = tmp_path / "m.yaml"
    mapping.write_text("columns: {id: id}\n", encoding="utf-8")
    report = _import(engine, "accounts", path, mapping)
    assert report.ok and report.attribute_types == {"spend": "str"}
    assert report.warnings[0].line == 22 and "1 of 21 values are not numbers" in report.warnings[0].message
    mapping.write_text("columns: {id: id}\nattribute_types: {spend: float}\n", encoding="utf-8")
    strict = _import(engine, "accounts", path, mapping, upsert=True)
    assert [(e.line, e.column) for e in strict.errors] == [(22, "spend")]


# --------------------------------------------------------------------------- churn feature state


def _keep_state(engine: Engine, as_of: dt.date) -> None:
    with engine.begin() as conn:
        conn.execute(insert(ChurnFeatureState).values(key="history", as_of=as_of, payload=b"x"))


def _state_dates(engine: Engine) -> list[dt.date]:
    with Session(engine) as s:
        return list(s.scalars(select(ChurnFeatureState.as_of)))


@pytest.mark.parametrize(
    ("state_as_of", "dropped"),
    [
        # tickets.csv is dated 2026-03-02..2026-03-06: after a state of February they are new rows
        (dt.date(2026, 2, 28), None),
        # a state of 2026-03-04 would miss the tickets opened or closed on or before it
        (dt.date(2026, 3, 4), "support_tickets rows dated 2026-03-02, on or before the state's date"),
    ],
)
def test_an_import_drops_the_churn_state_it_would_make_wrong(
    engine: Engine, state_as_of: dt.date, dropped: str | None
) -> None:
    assert _import(engine, "accounts", TELCO, TELCO_MAPPING).ok
    _keep_state(engine, state_as_of)
    report = _import(engine, "tickets", DATA / "tickets.csv", MAPPINGS / "tickets.yaml")
    assert report.ok and report.rows_inserted == report.rows_read
    if dropped is None:
        assert report.churn_state_dropped is None and _state_dates(engine) == [state_as_of]
    else:
        assert report.churn_state_dropped is not None and report.churn_state_dropped.startswith(dropped)
        assert _state_dates(engine) == []


def test_an_upsert_into_an_event_table_drops_the_churn_state_and_accounts_do_not(engine: Engine) -> None:
    assert _import(engine, "accounts", TELCO, TELCO_MAPPING).ok
    assert _import(engine, "tickets", DATA / "tickets.csv", MAPPINGS / "tickets.yaml").ok
    _keep_state(engine, dt.date(2026, 1, 1))
    again = _import(engine, "accounts", TELCO, TELCO_MAPPING, upsert=True)
    assert again.ok and again.rows_updated > 0 and again.churn_state_dropped is None
    assert _state_dates(engine) == [dt.date(2026, 1, 1)]  # account fields are read fresh every run
    report = _import(engine, "tickets", DATA / "tickets.csv", MAPPINGS / "tickets.yaml", upsert=True)
    assert report.ok and report.rows_updated == report.rows_read
    assert report.churn_state_dropped == f"{report.rows_updated} support_tickets row(s) were updated in place"
    assert _state_dates(engine) == []


def test_an_endless_line_is_refused_with_its_number_before_it_is_read_whole(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue #19 item 9: a line with no end (/dev/zero grew the import to 18.6 GB) is refused at a cap,
    here lowered to 10,000 characters so the test stays small; nothing is imported."""
    import crm.importer.csvfile as csvfile

    monkeypatch.setattr(csvfile, "MAX_LINE_CHARS", 10_000)
    header, good = TELCO.read_text(encoding="utf-8").splitlines()[:2]
    path = tmp_path / "endless.csv"
    path.write_text(f"{header}\n{good}\n" + "0" * 50_000, encoding="utf-8")  # line 3 never ends
    _seed_other_account(engine)
    before = database_hash(engine)
    result = _cli(engine, "accounts", str(path), "--mapping", str(TELCO_MAPPING), "--json")
    assert result.exit_code == 1, result.output
    report = ImportReport.model_validate_json(result.stdout)
    assert not report.ok and report.rows_inserted == 0
    assert [(e.line, "line longer than 10,000 characters" in e.message) for e in report.errors] == [(3, True)]
    assert database_hash(engine) == before
    # reading stops at the cap: a reader over /dev/zero ends with the same error, not with memory
    with pytest.raises(csvfile.CsvProblem, match="line 1: line longer than 10,000"), \
            csvfile.CsvFile(Path("/dev/zero"), encoding="latin-1") as zero:
        list(zero.records())


def test_a_field_past_the_csv_limit_is_refused_at_the_line_its_record_starts(engine: Engine, tmp_path: Path) -> None:
    """Issue #19 item 9: a quote never closed makes one field of every line after it (each line short, so the
    line cap does not see it); the field cap refuses it, named by the record's first line, and nothing is imported."""
    header, good = TELCO.read_text(encoding="utf-8").splitlines()[:2]
    path = tmp_path / "open-quote.csv"
    path.write_text(f"{header}\n{good}\n\"{good}\n" + "x,y\n" * 40_000, encoding="utf-8")  # line 3 opens a quote
    _seed_other_account(engine)
    before = database_hash(engine)
    result = _cli(engine, "accounts", str(path), "--mapping", str(TELCO_MAPPING), "--json")
    assert result.exit_code == 1, result.output
    report = ImportReport.model_validate_json(result.stdout)
    assert not report.ok and report.rows_inserted == 0
    [error] = report.errors
    assert error.line == 3, error
    assert error.message.startswith("a field longer than 131,072 characters, running to line ")
    assert "quote that is never closed" in error.message
    assert database_hash(engine) == before


def test_a_line_of_exactly_the_cap_with_crlf_keeps_the_line_numbers(tmp_path: Path) -> None:
    """The cap counts a line without its line break: a CRLF line of exactly the cap is one line (it was split
    in two, and every later line number was one too high)."""
    path = tmp_path / "crlf.csv"
    path.write_bytes(b"a,b\r\n" + b"1," + b"y" * 98 + b"\r\n" + b"2,z\r\n")
    with CsvFile(path, max_line_chars=100) as f:
        assert [(r.line, r.cells[0]) for r in f.records()] == [(2, "1"), (3, "2")]
        assert f.blank_lines == 0
