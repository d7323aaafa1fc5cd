"""Opportunities from a real CRM export (issue #20): string ids beside the internal key, open deals
without value or dates, prospects without an account, owners with their team, stage history."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from crm.dump import database_hash
from crm.importer import ImportReport, import_csv, load_mapping, table_spec
from crm.models import Account, Opportunity, OpportunityStage, SalesAgent
from crm.stages import canonical_stage
from valuechain.cli.main import app

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "csv"
MAPPINGS = ROOT / "examples" / "mappings"
D = dt.date
runner = CliRunner()


def _import(engine: Engine, table: str, csv_name: str, mapping_name: str, **kw: Any) -> ImportReport:
    mapping = MAPPINGS / mapping_name
    return import_csv(
        engine,
        table=table,
        path=FIXTURES / csv_name,
        mapping=load_mapping(mapping),
        mapping_name=mapping.name,
        **kw,
    )


def _load_all(engine: Engine) -> None:
    for table, csv_name, mapping in (
        ("accounts", "crm-accounts.csv", "crm-accounts.yaml"),
        ("sales-team", "crm-sales-teams.csv", "crm-sales-team.yaml"),
        ("opportunities", "crm-opportunities.csv", "crm-opportunities.yaml"),
        ("opportunity-stages", "crm-opportunity-history.csv", "crm-opportunity-stages.yaml"),
    ):
        report = _import(engine, table, csv_name, mapping)
        assert report.ok, (table, [e.message for e in report.errors])


def test_the_import_key_is_the_crms_id_and_the_internal_key_is_never_mapped() -> None:
    spec = table_spec("opportunities")
    assert spec.key == ("external_id",) and not spec.generated_key
    assert "id" not in spec.fields
    assert spec.unique_together == ()  # the key's own uniqueness is checked once, as the key
    assert {f for f in spec.mappable_fields} >= {"owner", "product", "expected_close_date", "amount"}


@pytest.mark.parametrize(
    ("text", "stage"),
    [
        ("Won", "closed_won"),
        ("Closed Won", "closed_won"),
        ("LOST", "closed_lost"),
        ("Engaging", "engaging"),
        ("Proposal/Price Quote", "proposal_price_quote"),
        (" prospecting ", "prospecting"),
    ],
)
def test_stages_get_one_spelling(text: str, stage: str) -> None:
    assert canonical_stage(text) == stage


def test_a_generic_opportunities_export_imports_whole(any_engine: Engine) -> None:
    _load_all(any_engine)
    with Session(any_engine) as s:
        opps = {o.external_id: o for o in s.scalars(select(Opportunity))}
        assert len(opps) == 15
        assert len({o.id for o in opps.values()}) == 15  # the database numbered them
        won = opps["9ME3374G"]
        assert (won.stage, won.amount, won.account_id, won.owner, won.product, won.type) == (
            "closed_won",
            4790.0,
            "Brightwater Labs",
            "Amara Okafor",
            "Core Pro",
            "new",
        )
        assert (won.created_at, won.close_date) == (D(2026, 1, 5), D(2026, 2, 19))
        lost = opps["2XH6XGY4"]
        assert (lost.stage, lost.amount) == ("closed_lost", None)  # the export's 0 means "no value"
        engaging = opps["OB3KY6L2"]
        assert (engaging.stage, engaging.amount, engaging.close_date) == ("engaging", None, None)
        assert engaging.created_at == D(2026, 5, 18)
        prospect = opps["1C1I7A6R"]
        assert (prospect.stage, prospect.account_id, prospect.created_at) == ("prospecting", None, None)
        assert all(o.attributes == {} and o.origin == "import" for o in opps.values())

        teams = {a.name: (a.manager, a.team) for a in s.scalars(select(SalesAgent))}
        assert teams["Chiara Lindqvist"] == ("Marcus Hale", "East")
        assert len(teams) == 5

        history = s.execute(
            select(
                OpportunityStage.opportunity_id, OpportunityStage.stage, OpportunityStage.entered_at
            ).order_by(OpportunityStage.opportunity_id, OpportunityStage.entered_at)
        ).all()
        assert ("9ME3374G", "closed_won", D(2026, 2, 19)) in history
        assert ("OB3KY6L2", "engaging", D(2026, 5, 18)) in history
        assert len(history) == 8

        account = s.get(Account, "Calloway Freight")
        assert account is not None and account.industry == "logistics"
        assert account.attributes["subsidiary_of"] == "Harbourline Group"
        assert account.attributes["employees"] == 1210


def test_a_broken_export_is_refused_whole_with_line_numbers(engine: Engine) -> None:
    _import(engine, "accounts", "crm-accounts.csv", "crm-accounts.yaml")
    before = database_hash(engine)

    report = _import(engine, "opportunities", "crm-opportunities-bad.csv", "crm-opportunities.yaml")

    assert not report.ok and report.rows_inserted == 0
    got = {(e.line, e.column): e.message for e in report.errors}
    assert "does not exist in accounts" in got[(3, "account")]  # 'Callaway' is a typo of Calloway
    assert "2026-02-31" in got[(4, "engage_date")]
    assert "duplicate external_id '9ME3374G' in the file (first on line 2)" in got[(5, "opportunity_id")]
    assert "below the minimum" in got[(6, "close_value")]
    assert "external_id is required but column 'opportunity_id' is blank" in got[(7, "opportunity_id")]
    assert database_hash(engine) == before


def test_close_before_engage_is_an_error(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "o.csv"
    path.write_text(
        "opportunity_id,sales_agent,product,account,deal_stage,engage_date,close_date,close_value\n"
        "AB12,Ann,Core Pro,,Won,2026-03-01,2026-02-01,100\n"
    )
    mapping = MAPPINGS / "crm-opportunities.yaml"
    report = import_csv(engine, table="opportunities", path=path, mapping=load_mapping(mapping))
    assert [(e.line, e.column) for e in report.errors] == [(2, "close_date")]
    assert "is before created_at" in report.errors[0].message


def test_reimport_is_refused_and_upsert_updates_by_the_crms_id(engine: Engine, tmp_path: Path) -> None:
    _load_all(engine)
    again = _import(engine, "opportunities", "crm-opportunities.csv", "crm-opportunities.yaml")
    assert not again.ok
    assert "external_id '9ME3374G' already exists in the database" in again.errors[0].message

    path = tmp_path / "update.csv"
    path.write_text(
        "opportunity_id,sales_agent,product,account,deal_stage,engage_date,close_date,close_value,forecast\n"
        "OB3KY6L2,Bruno Castell,Core Pro,Everly Health,Won,2026-05-18,2026-07-01,5100,commit\n"
    )
    with Session(engine) as s:
        internal = s.scalar(select(Opportunity.id).where(Opportunity.external_id == "OB3KY6L2"))
    report = import_csv(
        engine,
        table="opportunities",
        path=path,
        mapping=load_mapping(MAPPINGS / "crm-opportunities.yaml"),
        upsert=True,
    )
    assert report.ok and (report.rows_inserted, report.rows_updated) == (0, 1), report.errors
    with Session(engine) as s:
        o = s.scalars(select(Opportunity).where(Opportunity.external_id == "OB3KY6L2")).one()
        assert (o.id, o.stage, o.amount, o.close_date) == (internal, "closed_won", 5100.0, D(2026, 7, 1))
        assert o.attributes == {"forecast": "commit"}


def test_stage_history_needs_its_opportunity(engine: Engine, tmp_path: Path) -> None:
    _load_all(engine)
    path = tmp_path / "h.csv"
    path.write_text("OpportunityId,StageName,CreatedDate\nNOPE0001,Engaging,2026-05-01\n")
    report = import_csv(
        engine,
        table="opportunity-stages",
        path=path,
        mapping=load_mapping(MAPPINGS / "crm-opportunity-stages.yaml"),
    )
    assert [(e.line, e.column) for e in report.errors] == [(2, "OpportunityId")]
    assert "opportunity_id 'NOPE0001' does not exist in opportunities" in report.errors[0].message


def test_cli_imports_the_export_and_reports_json(engine: Engine) -> None:
    url = engine.url.render_as_string(hide_password=False)
    base = ["--database-url", url, "--json"]
    for table, csv_name, mapping in (
        ("accounts", "crm-accounts.csv", "crm-accounts.yaml"),
        ("opportunities", "crm-opportunities.csv", "crm-opportunities.yaml"),
    ):
        result = runner.invoke(
            app, ["import", table, str(FIXTURES / csv_name), "--mapping", str(MAPPINGS / mapping), *base]
        )
        assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["ok"] is True and body["rows_inserted"] == 15 and body["table"] == "opportunities"


def test_the_imported_export_feeds_pipeline_health(engine: Engine) -> None:
    """No as-of date recorded: the pipeline is read at the export's latest date (2026-06-25, a stage
    change). Open deals have no value: each gets its product's median won amount (Core Pro 4,790;
    Insight Advanced median(3,405, 3,318) = 3,361.5; Core Basic median(527, 498) = 512.5; Insight
    Special has no win: median of all 5 wins = 3,318). Engaging 0.4, prospecting 0.1."""
    from tools.pipeline.health import pipeline_health

    _load_all(engine)
    with Session(engine) as s:
        r = pipeline_health(session=s, group_by="team")
    assert r.inputs.as_of == D(2026, 6, 25)
    assert r.inputs.unlisted_stages == [] and r.inputs.stage_probabilities == {
        "engaging": 0.4,
        "prospecting": 0.1,
    }
    got = {g.key: (g.open_deals, g.open_pipeline, round(g.weighted_pipeline, 2)) for g in r.groups}
    assert got == {
        "East": (3, 8_664.0, 1_874.85),
        "West": (2, 8_108.0, 2_247.8),
        "Central": (2, 5_302.5, 2_121.0),
    }
    assert (r.total.open_deals, r.total.open_pipeline, round(r.total.weighted_pipeline, 2)) == (
        7,
        22_074.5,
        6_243.65,
    )
    assert r.total.stale_deals == 2  # OB3KY6L2 (engaged 05-18, 38 days) and MV1LWRNH (04-14, 72 days)
    assert r.total.target is None and r.total.coverage is None  # the export has no quotas
    assert [d.opportunity_id for d in r.deals_at_risk[:2]] == ["OB3KY6L2", "MV1LWRNH"]
    assert r.at_risk_count == 7  # no expected close dates in this export
