"""The deal model (issue #20): point-in-time features, time-based holdout, deal_score and its drivers."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import factories as f
import numpy as np
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from crm.importer import import_csv, load_mapping
from crm.models import CLOSED_STAGES, DealModel, Opportunity
from tools.deals.features import feature_table, load_deal_context, load_deal_data
from tools.deals.model import active_deal_model, train_deal_model
from tools.deals.score import DealModelProbabilities, deal_score
from tools.errors import ToolInputError
from tools.pipeline.deals import load_open_deals
from tools.pipeline.health import pipeline_health
from valuechain.cli.main import app

D = dt.date
NOW = dt.datetime(2026, 10, 1, 9, 0)
ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


@pytest.fixture
def trained(demo_sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    with demo_sessions() as s:
        report = train_deal_model(s, now=NOW)
        s.commit()
    assert report.trained, report.reason
    return demo_sessions


def test_the_demo_trains_a_model_that_beats_the_base_rate_on_later_deals(
    demo_sessions: sessionmaker[Session],
) -> None:
    with demo_sessions() as s:
        first = train_deal_model(s, now=NOW)
        s.commit()
        again = train_deal_model(s, now=NOW + dt.timedelta(days=1))
        s.commit()
        assert s.scalars(select(DealModel.version).where(DealModel.active.is_(True))).all() == [
            first.model_version
        ]
    assert first.trained and first.population == "demo" and first.as_of == D(2026, 9, 30)
    assert again.model_version == first.model_version  # same data, same model, byte for byte
    assert first.auc is not None and first.auc > 0.7
    assert first.base_rate is not None and first.brier is not None
    assert first.brier < first.base_rate * (1 - first.base_rate)  # better than always saying the base rate
    assert first.test_window is not None and first.train_window is not None
    assert first.train_window[1] < first.test_window[0]  # the holdout is later in time
    assert {c.method for c in first.candidates} == {"logistic_regression", "gradient_boosting"}
    assert sum(c.chosen for c in first.candidates) == 1
    assert first.notes == []  # the demo's open deals carry amounts and every deal has stage history


def test_deal_score_explains_an_open_deal(trained: sessionmaker[Session]) -> None:
    with trained() as s:
        deal = s.scalars(
            select(Opportunity)
            .where(Opportunity.stage == "proposal", Opportunity.type == "renewal")
            .order_by(Opportunity.id)
        ).first()
        assert deal is not None and deal.external_id is not None
        r = deal_score(session=s, opportunity_id=deal.external_id)
        model = active_deal_model(s)
        assert model is not None
        data = load_deal_data(s, population="demo")
        row = next(d for d in data.deals if d.id == deal.id)
        table = feature_table(data, [(row, D(2026, 9, 30))])
        raw = model.scorer.logit(table)
    assert r.source == "deal_model" and r.model_version == model.version and r.as_of == D(2026, 9, 30)
    assert r.probability == pytest.approx(float(model.calibration.probability(raw)[0]))
    assert 0 < r.probability < 1 and r.stage == "proposal"
    assert 1 <= len(r.drivers) <= 5
    sizes = [abs(d.contribution) for d in r.drivers]
    assert sizes == sorted(sizes, reverse=True)
    assert all(d.direction == ("raises" if d.contribution > 0 else "lowers") for d in r.drivers)
    assert all(d.phrase for d in r.drivers)
    assert r.explanation.startswith(f"{r.opportunity_id}: win chance {r.probability:.0%} (deal model ")


def test_pipeline_health_weights_by_the_deal_model_once_trained(trained: sessionmaker[Session]) -> None:
    with trained() as s:
        r = pipeline_health(session=s)
        assert r.inputs.probability_source == "deal_model"
        one = r.deals_at_risk[0] if r.deals_at_risk else None
        if one is not None:
            assert one.probability == pytest.approx(
                deal_score(session=s, opportunity_id=one.opportunity_id).probability
            )
        assert 0 < r.total.weighted_pipeline < r.total.open_pipeline


def _same_features(s: Session, population: str, days: list[dt.date]) -> int:
    """Every deal of the population on each day: the features from its own context (what
    deal_score reads) against those from the whole population (what training reads)."""
    data = load_deal_data(s, population=population)
    opps = {o.id: o for o in s.scalars(select(Opportunity))}
    checked = 0
    for use_amount, use_stage in ((True, True), (False, False)):
        data.use_amount, data.use_stage = use_amount, use_stage
        for day in days:
            for deal in data.deals:
                context = load_deal_context(s, opps[deal.id], day, population=population)
                context.use_amount, context.use_stage = use_amount, use_stage
                whole = feature_table(data, [(deal, day)])
                alone = feature_table(context, [(deal, day)])
                for name, values in whole.numeric.items():
                    np.testing.assert_array_equal(values, alone.numeric[name], err_msg=f"{deal.ref} {name}")
                for name, labels in whole.categorical.items():
                    assert labels.tolist() == alone.categorical[name].tolist(), (deal.ref, name)
                checked += 1
    return checked


def test_one_deals_context_gives_the_same_features_as_the_whole_population(
    demo_sessions: sessionmaker[Session], engine: Engine
) -> None:
    """deal_score reads only the deal's own context (load_deal_context); its features must be the
    ones training and pipeline_health compute from every deal, on the demo and on an export with
    blank owners' history, open deals without amounts and prospects without an account."""
    with demo_sessions() as s:
        open_ids = set(s.scalars(select(Opportunity.id).where(Opportunity.stage.not_in(CLOSED_STAGES))))
        assert open_ids
        assert _same_features(s, "demo", [D(2026, 9, 30), D(2025, 11, 15)]) > 2 * len(open_ids)
    fixtures, mappings = ROOT / "tests" / "fixtures" / "csv", ROOT / "examples" / "mappings"
    for table, csv_name, mapping in (
        ("accounts", "crm-accounts.csv", "crm-accounts.yaml"),
        ("opportunities", "crm-opportunities.csv", "crm-opportunities.yaml"),
    ):
        assert import_csv(
            engine, table=table, path=fixtures / csv_name, mapping=load_mapping(mappings / mapping)
        ).ok
    with Session(engine) as s:
        assert _same_features(s, "import", [D(2026, 2, 1), D(2017, 6, 1)]) > 0


def test_deal_score_gives_every_open_deal_the_probability_of_the_whole_population_scoring(
    trained: sessionmaker[Session],
) -> None:
    """Old path against new: scoring from every deal's full history (what deal_score and
    pipeline_health did before), from the open deals' history (DealModelProbabilities, for
    pipeline_health) and from the one deal's context (deal_score) gives the same floats."""
    with trained() as s:
        model = active_deal_model(s)
        assert model is not None
        deals = load_open_deals(s, [], D(2026, 9, 30))
        assert len(deals) > 20
        whole = DealModelProbabilities(s, model).probabilities(deals)
        alone = [deal_score(session=s, opportunity_id=d.ref).probability for d in deals]
        everything = load_deal_data(s, population="demo")  # every deal's history, as training reads it
        by_id = {d.id: d for d in everything.deals}
        everything.use_amount, everything.use_stage = model.use_amount, model.use_stage
        raw = model.scorer.logit(feature_table(everything, [(by_id[d.id], D(2026, 9, 30)) for d in deals]))
        full = model.calibration.probability(raw).tolist()
    assert alone == whole == full


def test_the_loaded_model_is_kept_by_version_and_its_metrics_read_anew(trained: sessionmaker[Session]) -> None:
    with trained() as s:
        first, again = active_deal_model(s), active_deal_model(s)
        assert first is not None and again is not None
        assert again.scorer is first.scorer and again.version == first.version
        row = s.get(DealModel, first.version)
        assert row is not None
        row.metrics = {**row.metrics, "auc": 0.5}
        s.flush()
        changed = active_deal_model(s)
        assert changed is not None and changed.metrics["auc"] == 0.5
        assert first.metrics["auc"] != 0.5  # an earlier caller's copy is not changed under it


def test_features_are_point_in_time(demo_sessions: sessionmaker[Session]) -> None:
    """What happens after the day changes nothing about the deal's features on that day."""
    with demo_sessions() as s:
        data = load_deal_data(s, population="demo")
        deal = next(d for d in data.deals if d.type == "upsell" and d.outcome is not None and d.account_id)
        assert deal.created is not None and deal.close is not None
        day = deal.created + (deal.close - deal.created) // 2
        before = feature_table(data, [(deal, day)])
        later = day + dt.timedelta(days=1)
        account = deal.account_id
        assert account is not None
        f.interaction(s, account, occurred_at=later)
        f.ticket(s, account, opened_at=later)
        s.add(
            Opportunity(
                external_id="LATE-1",
                owner=deal.owner,
                product=deal.product,
                stage="closed_won",
                amount=1.0,
                created_at=later,
                close_date=later,
                attributes={},
                origin="demo",
            )
        )
        s.flush()
        after = feature_table(load_deal_data(s, population="demo"), [(deal, day)])
    for name, values in before.numeric.items():
        np.testing.assert_array_equal(values, after.numeric[name], err_msg=name)
    assert before.categorical["stage"][0] is not None


def test_too_little_history_trains_nothing_and_scores_by_stage(session: Session) -> None:
    f.golden_pipeline(session)
    report = train_deal_model(session, now=NOW)
    assert not report.trained and "too little" in report.reason
    assert session.scalar(select(DealModel.version)) is None
    r = deal_score(session=session, opportunity_id="OPP-D1")
    assert (r.source, r.probability, r.drivers) == ("stage_table", 0.5, [])
    assert (
        r.explanation
        == "No deal model is trained (valuechain deals train): the stage table gives proposal deals a win chance of 50%."
    )


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("OPP-D9", 'no opportunity "OPP-D9"; did you mean'),
        (
            "OPP-W1",
            'opportunity "OPP-W1" is already closed_won (closed 2026-04-20); deal_score is for open deals',
        ),
    ],
)
def test_unknown_or_closed_deals_are_messages(session: Session, ref: str, message: str) -> None:
    f.golden_pipeline(session)
    with pytest.raises(ToolInputError) as err:
        deal_score(session=session, opportunity_id=ref)
    assert message in str(err.value)


def test_an_export_without_open_amounts_or_history_leaves_them_out(engine: Engine) -> None:
    """The generic export: open deals have no value (it is filled at close) and there is no stage
    history for closed deals: both would give the outcome away, so neither is a feature."""
    fixtures, mappings = ROOT / "tests" / "fixtures" / "csv", ROOT / "examples" / "mappings"
    for table, csv_name, mapping in (
        ("accounts", "crm-accounts.csv", "crm-accounts.yaml"),
        ("opportunities", "crm-opportunities.csv", "crm-opportunities.yaml"),
    ):
        assert import_csv(
            engine, table=table, path=fixtures / csv_name, mapping=load_mapping(mappings / mapping)
        ).ok
    with Session(engine) as s:
        data = load_deal_data(s, population="import")
    assert (data.use_amount, data.use_stage) == (False, False)
    assert [n.split(":")[0] for n in data.notes] == ["amount not used", "stage not used"]
    won = next(d for d in data.deals if d.ref == "9ME3374G")
    features = feature_table(data, [(won, D(2026, 2, 1))])
    assert np.isnan(features.numeric["amount_log"][0]) and features.categorical["stage"][0] is None


def test_cli_trains_and_reports_json(demo_db: Path, tmp_path: Path) -> None:
    copy = tmp_path / "cli.db"
    shutil.copy(demo_db, copy)
    url = f"sqlite:///{copy}"
    result = runner.invoke(app, ["deals", "train", "--json", "--database-url", url])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["trained"] is True and body["auc"] > 0.7 and body["model_version"].startswith("deal-")
    report = runner.invoke(app, ["deals", "report", "--json", "--database-url", url])
    assert report.exit_code == 0, report.output
    assert json.loads(report.stdout)["model_version"] == body["model_version"]
