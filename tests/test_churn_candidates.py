"""Churn model candidates: the choice by cross-validation, boosted-tree drivers, calibration,
storage, and which custom fields are used."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator

import numpy as np
import pytest
from churn_builders import build_attributes, build_interaction_attributes
from sqlalchemy import Engine
from typer.testing import CliRunner

from core.db import make_engine, make_sessionmaker
from crm.migrate import upgrade
from crm.models import ChurnModel
from tools.churn.attributes import classify_attributes
from tools.churn.boosted import BoostedModel, fit_boosted, inner_split
from tools.churn.calibration import cross_fitted, fit_platt
from tools.churn.candidates import TIE_MARGIN
from tools.churn.design import sigmoid
from tools.churn.features import AccountScope, attribute_columns, compute_features
from tools.churn.model import attribute_table, attributes_config, load_active_model, train
from tools.churn.schemas import ChurnModelReport
from tools.churn.scoring import churn_risk, group_contributions
from valuechain.cli.main import app

NOW = dt.datetime(2026, 10, 1, 12, 0)


def _engine(tmp_path_factory: pytest.TempPathFactory, name: str) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp(name) / 'db.sqlite'}")
    upgrade(engine)
    return engine


@pytest.fixture(scope="module")
def interaction(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, ChurnModelReport]]:
    engine = _engine(tmp_path_factory, "interaction")
    with make_sessionmaker(engine)() as session:
        build_interaction_attributes(session, accounts=1200, seed=0)
        report = train(session, now=NOW)
        session.commit()
    yield engine, report
    engine.dispose()


@pytest.fixture(scope="module")
def linear(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, ChurnModelReport]]:
    engine = _engine(tmp_path_factory, "linear")
    with make_sessionmaker(engine)() as session:
        build_attributes(session, accounts=600, seed=0)
        report = train(session, now=NOW)
        session.commit()
    yield engine, report
    engine.dispose()


def _by_method(report: ChurnModelReport) -> dict[str, float]:
    return {c.method: c.auc for c in report.candidates if c.auc is not None}


def test_candidate_table_has_both_models_judged_on_the_same_folds(
    linear: tuple[Engine, ChurnModelReport],
) -> None:
    _, report = linear
    assert [c.method for c in report.candidates] == ["logistic_regression", "gradient_boosting"]
    assert sum(c.chosen for c in report.candidates) == 1
    for cand in report.candidates:
        assert len(cand.fold_aucs) == 5 and cand.auc == pytest.approx(np.mean(cand.fold_aucs))
        assert cand.auc_std == pytest.approx(np.std(cand.fold_aucs))
        assert cand.brier is not None and 0.0 < cand.brier < 0.25
        assert cand.features > 0
    boosted = next(c for c in report.candidates if c.method == "gradient_boosting")
    picked = boosted.settings["picked_per_split"]
    assert len(picked) == 5 and all(p["trees"] >= 20 for p in picked)  # one inner tuning per outer fold


def test_linear_data_keeps_the_logistic_model(linear: tuple[Engine, ChurnModelReport]) -> None:
    engine, report = linear
    aucs = _by_method(report)
    # the signal is a straight line in log-odds: trees cannot do better than the tie margin
    assert aucs["gradient_boosting"] <= aucs["logistic_regression"] + TIE_MARGIN
    assert report.method == "logistic_regression" and report.model_version.startswith("lr-attributes-")
    assert report.choice is not None and report.choice.startswith("logistic_regression:")
    assert report.auc == aucs["logistic_regression"] and report.auc is not None and report.auc > 0.7
    with make_sessionmaker(engine)() as session:
        assert load_active_model(session).method == "logistic_regression"


def test_threshold_interaction_chooses_boosted_trees(interaction: tuple[Engine, ChurnModelReport]) -> None:
    _, report = interaction
    aucs = _by_method(report)
    assert report.method == "gradient_boosting" and report.model_version.startswith("gbm-attributes-")
    # the box 45 ≤ age ≤ 60 × products ≥ 3 with 5 % of labels flipped: a perfect ranking scores
    # ~0.87 (a quarter of the churners are flips no model can find)
    assert aucs["gradient_boosting"] > 0.8
    assert aucs["gradient_boosting"] > aucs["logistic_regression"] + 0.05, aucs
    assert report.choice is not None and "gradient_boosting: highest mean AUC" in report.choice
    assert report.top_coefficients == [] and report.feature_importance
    top_two = {name for name, _ in report.feature_importance[:2]}
    assert top_two == {"attr:Age", "attr:NumOfProducts"}


def test_fields_used_and_excluded_with_reasons(interaction: tuple[Engine, ChurnModelReport]) -> None:
    _, report = interaction
    uses = {a.name: a for a in report.attributes}
    assert uses["Surname"].kind == "excluded" and "high-cardinality text" in uses["Surname"].reason
    assert uses["CustomerId"].kind == "excluded" and "identifier-like" in uses["CustomerId"].reason
    assert uses["NumOfProducts"].kind == "code"
    assert uses["HasCrCard"].kind == "numeric" and "flag" in uses["HasCrCard"].reason
    assert (uses["Age"].kind, uses["Noise"].kind) == ("numeric", "numeric")
    assert set(report.skipped_attributes) == {"Surname", "CustomerId"}
    stored = {c.method: c.features for c in report.candidates}
    # logistic: NumOfProducts as a number and as 4 indicators; trees: as a number only
    assert stored["logistic_regression"] > stored["gradient_boosting"]


def test_classify_attributes_rules() -> None:
    rng = np.random.default_rng(1)
    cities = [f"City{k}" for k in range(40)]
    weights = np.array([30.0] * 10 + [1.0] * 30)
    attrs = [
        {
            "Surname": f"Name{int(rng.integers(0, 5000))}",
            "City": str(rng.choice(cities, p=weights / weights.sum())),
            "RowNumber": i + 1,
            "Products": int(rng.integers(1, 5)),
            "Active": bool(rng.integers(0, 2)),
            "Constant": "x",
            "Balance": float(rng.integers(0, 100_000)) / 100,
        }
        for i in range(1000)
    ]
    kinds = {u.name: u.kind for u in classify_attributes(attrs, exclude=["Balance"])}
    assert kinds == {
        "Active": "numeric",
        "Balance": "excluded",
        "City": "categorical",  # 40 values, but the top 20 cover most rows: the rest become __other__
        "Constant": "excluded",
        "Products": "code",
        "RowNumber": "excluded",
        "Surname": "excluded",
    }


def test_code_field_is_a_number_and_categories_in_one_driver_group(
    interaction: tuple[Engine, ChurnModelReport],
) -> None:
    engine, _ = interaction
    with make_sessionmaker(engine)() as session:
        table, y, kinds, _ = attribute_table(session, None)
    numeric, categorical = attribute_columns([{"P": 3}, {"P": "2"}, {}], {"P": "code"})
    assert np.array_equal(numeric["attr:P"], [3.0, 2.0, np.nan], equal_nan=True)
    assert categorical["attr:P#code"].tolist() == ["3", "2", None]
    from tools.churn.design import fit_linear

    model = fit_linear(table, y, attributes_config(kinds), c=0.1)
    product_columns = [c.name for c in model.columns if c.group == "attr:NumOfProducts"]
    assert product_columns == [
        "attr:NumOfProducts",
        "attr:NumOfProducts=1",
        "attr:NumOfProducts=2",
        "attr:NumOfProducts=3",
        "attr:NumOfProducts=4",
    ]
    groups, _ = model.group_contributions(table.take([0]))
    assert groups.count("attr:NumOfProducts") == 1


def test_boosted_contributions_sum_to_the_raw_score(interaction: tuple[Engine, ChurnModelReport]) -> None:
    engine, _ = interaction
    with make_sessionmaker(engine)() as session:
        model = load_active_model(session)
        assert isinstance(model.scorer, BoostedModel) and model.calibration is not None
        table = compute_features(
            session,
            None,
            AccountScope(ids=("B-00007",)),
            history=False,
            attribute_kinds=model.attribute_kinds,
        )
        raw = model.scorer.logit(table)
        contrib = model.scorer.contributions(table)
        assert contrib.shape == (1, len(model.scorer.columns) + 1)
        # TreeSHAP: Σ column contributions + base value = the raw (pre-calibration) log-odds
        assert contrib[0].sum() == pytest.approx(raw[0], abs=1e-9)
        groups, sums = group_contributions(model, table)
        assert sums[0].sum() + contrib[0, -1] == pytest.approx(raw[0], abs=1e-9)
        assert len(groups) == len(set(groups))
        # the stored probability is the calibrated raw score
        fit = model.calibration
        expected = 1 / (1 + np.exp(-(fit.slope * raw[0] + fit.intercept)))
        assert model.probability(table)[0] == pytest.approx(expected)
        one = churn_risk(session=session, account_id="B-00007", top_drivers=10)
    account = one.accounts[0]
    assert account.probability == pytest.approx(expected)
    by_group = dict(zip(groups, sums[0], strict=True))
    assert account.drivers and all(d.unit == "log_odds" for d in account.drivers)
    for driver in account.drivers + account.protective:
        assert driver.contribution == pytest.approx(by_group[driver.feature])
    assert "Boosted trees gbm-attributes-" in one.explanation


def test_boosted_scores_alone_equal_scores_in_a_batch(interaction: tuple[Engine, ChurnModelReport]) -> None:
    engine, _ = interaction
    with make_sessionmaker(engine)() as session:
        model = load_active_model(session)
        ranked = churn_risk(session=session, limit=1000, filters={"status": ["active", "churned"]})
        some = [ranked.accounts[k] for k in (0, 17, 400)]
        for listed in some:
            alone = churn_risk(session=session, account_id=listed.account_id).accounts[0]
            assert alone.probability == listed.probability  # bit for bit
            assert [d.model_dump() for d in alone.drivers] == [d.model_dump() for d in listed.drivers]
    assert model.method == "gradient_boosting"
    assert [a.probability for a in ranked.accounts] == sorted(
        (a.probability for a in ranked.accounts), reverse=True
    )


def test_stored_booster_reloads_to_the_same_scores(interaction: tuple[Engine, ChurnModelReport]) -> None:
    engine, report = interaction
    with make_sessionmaker(engine)() as session:
        row = session.get(ChurnModel, report.model_version)
        assert row is not None and row.method == "gradient_boosting"
        table, y, kinds, _ = attribute_table(session, None)
    reloaded = BoostedModel.from_params(json.loads(json.dumps(row.params)))
    # refit on the same rows with the same seed: the same trees, byte for byte
    refit = fit_boosted(table, y, attributes_config(kinds))
    assert refit.booster.model_to_string() == row.params["booster"]
    np.testing.assert_array_equal(reloaded.logit(table), refit.logit(table))


def test_calibration_tables_count_every_row(
    interaction: tuple[Engine, ChurnModelReport], linear: tuple[Engine, ChurnModelReport]
) -> None:
    for _, report in (interaction, linear):
        assert len(report.calibration) == 10
        assert sum(b.n for b in report.calibration) == report.n_train
        means = [b.mean_predicted for b in report.calibration]
        assert means == sorted(means)
        assert report.calibration_method == "platt" and report.calibration_fit is not None
        # calibrated out of fold: predicted and observed rates agree on the whole
        predicted = sum(b.n * b.mean_predicted for b in report.calibration) / report.n_train
        assert predicted == pytest.approx(report.positives / report.n_train, abs=0.02)


def test_platt_recovers_a_known_miscalibration() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(0.0, 1.5, 40_000)
    y = rng.random(z.size) < sigmoid(2.0 * z - 1.0)
    fit = fit_platt(z, y)
    assert fit.slope == pytest.approx(2.0, abs=0.1) and fit.intercept == pytest.approx(-1.0, abs=0.1)
    # a model ranking backwards is left uncalibrated rather than flipped
    assert fit_platt(-z, y).slope == 1.0
    # cross-fitted: a group's probabilities come from a fit on the other groups only
    groups = np.arange(z.size) % 4
    out = cross_fitted(z, y, groups)
    inside = groups == 2
    np.testing.assert_allclose(out[inside], fit_platt(z[~inside], y[~inside]).probability(z[inside]))


def test_inner_split_keeps_an_accounts_snapshots_together() -> None:
    groups = np.repeat(np.arange(100), 3).astype(str).astype(object)
    y = np.zeros(300, dtype=bool)
    y[::7] = True
    fit_idx, valid_idx = inner_split(y, groups)
    assert len(fit_idx) + len(valid_idx) == 300
    assert not set(groups[fit_idx]) & set(groups[valid_idx])
    assert y[valid_idx].any() and y[fit_idx].any()
    assert 0.1 < len(valid_idx) / 300 < 0.3


def test_cli_train_one_candidate_and_report(tmp_path_factory: pytest.TempPathFactory) -> None:
    engine = _engine(tmp_path_factory, "cli")
    with make_sessionmaker(engine)() as session:
        build_interaction_attributes(session, accounts=400, seed=2)
    url = str(engine.url)
    runner = CliRunner()
    out = runner.invoke(
        app, ["churn", "train", "--candidate", "gradient_boosting", "--json", "--database-url", url]
    )
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert doc["method"] == "gradient_boosting" and [c["method"] for c in doc["candidates"]] == [
        "gradient_boosting"
    ]
    assert doc["choice"] == "gradient_boosting: the only candidate evaluated"
    assert {a["name"] for a in doc["attributes"]} >= {"Surname", "CustomerId", "Age"}
    shown = runner.invoke(app, ["churn", "report", "--database-url", url])
    assert shown.exit_code == 0
    for text in ("candidates", "reliability by decile", "custom fields", "high-cardinality text"):
        assert text in shown.stdout
    bad = runner.invoke(app, ["churn", "train", "--candidate", "forest", "--database-url", url])
    assert bad.exit_code == 2 and "candidates must be some of" in bad.output
    engine.dispose()
