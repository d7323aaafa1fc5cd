"""Churn model: hand-worked drivers and bands, training paths, versioning, fallback, CLI JSON."""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import pytest
from churn_builders import AS_OF, build_attributes, build_history, constant_model, store_model
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from crm.models import ChurnModel
from tools.churn.design import Column, LinearModel, sigmoid
from tools.churn.features import FeatureTable
from tools.churn.metrics import evaluate, roc_auc
from tools.churn.model import detect_source, load_active_model, snapshot_dates, train
from tools.churn.scoring import band_of, check_bands, churn_risk, explain_rows
from tools.errors import ToolInputError
from valuechain.cli.main import app

NOW = dt.datetime(2026, 10, 1, 12, 0)


def _table(**numeric: list[float]) -> FeatureTable:
    n = len(next(iter(numeric.values())))
    return FeatureTable(
        ids=np.array([f"A-{i}" for i in range(n)], dtype=object),
        as_of=np.zeros(n, dtype=np.int64),
        numeric={k: np.asarray(v, dtype=np.float64) for k, v in numeric.items()},
        categorical={"segment": np.array(["SMB"] * n, dtype=object)},
    )


HAND_MODEL = LinearModel(
    columns=(
        Column(name="usage_trend", group="usage_trend", source="usage_trend", kind="num"),
        Column(
            name="open_tickets_urgent", group="open_tickets_urgent", source="open_tickets_urgent", kind="num"
        ),
    ),
    means=np.array([-0.1, 0.5]),
    scales=np.array([0.2, 1.0]),
    coefs=np.array([-1.5, 0.8]),
    intercept=-2.0,
)


def test_driver_contributions_hand_worked() -> None:
    table = _table(usage_trend=[-0.5], open_tickets_urgent=[2.0])
    # usage:   coef −1.5 × (−0.5 − (−0.1)) / 0.2 = −1.5 × −2.0 = 3.0
    # tickets: coef  0.8 × (2 − 0.5) / 1.0      =  0.8 × 1.5  = 1.2
    contrib = HAND_MODEL.contributions(table)
    assert contrib[0].tolist() == pytest.approx([3.0, 1.2])
    # logit = −2.0 + 3.0 + 1.2 = 2.2 → p = 1 / (1 + e^−2.2) = 0.9002495...
    assert HAND_MODEL.logit(table)[0] == pytest.approx(2.2)
    assert HAND_MODEL.probability(table)[0] == pytest.approx(1 / (1 + math.exp(-2.2)))
    from tools.churn.model import ActiveModel

    active = ActiveModel(
        version="hand",
        method="logistic_regression",
        source="history",
        as_of=None,
        reason=None,
        scorer=HAND_MODEL,
    )
    drivers, protective = explain_rows(active, table, top_drivers=5)[0]
    assert [(d.feature, d.contribution) for d in drivers] == [
        ("usage_trend", pytest.approx(3.0)),
        ("open_tickets_urgent", pytest.approx(1.2)),
    ]
    assert drivers[0].phrase == "usage down 50% over the last 4 weeks (vs the previous 8)"
    assert drivers[1].phrase == "2 urgent tickets open"
    assert drivers[0].unit == "log_odds"
    assert protective == []


def test_missing_value_imputed_with_training_median() -> None:
    model = LinearModel(
        columns=(Column(name="nps_last", group="nps_last", source="nps_last", kind="num", fill=7.0),),
        means=np.array([7.0]),
        scales=np.array([2.0]),
        coefs=np.array([-1.0]),
        intercept=0.0,
    )
    # unknown NPS → the median 7 → (7 − 7) / 2 = 0 → contribution 0, p = 0.5 exactly
    table = _table(nps_last=[float("nan")])
    assert model.contributions(table)[0, 0] == 0.0
    assert model.probability(table)[0] == 0.5


@pytest.mark.parametrize(
    ("p", "band"),
    [(0.0, "low"), (0.1999999, "low"), (0.2, "medium"), (0.4999999, "medium"), (0.5, "high"), (1.0, "high")],
)
def test_bands_default(p: float, band: str) -> None:
    assert band_of(p) == band


def test_bands_configurable() -> None:
    assert band_of(0.25, (0.3, 0.6)) == "low"
    assert band_of(0.3, (0.3, 0.6)) == "medium"
    assert band_of(0.6, (0.3, 0.6)) == "high"
    with pytest.raises(ToolInputError, match="band_thresholds"):
        check_bands((0.5, 0.2))
    with pytest.raises(ToolInputError, match="band_thresholds"):
        check_bands((0.0, 0.5))


@settings(max_examples=60, deadline=None)
@given(
    logits=st.lists(st.floats(min_value=-800, max_value=800, allow_nan=False), min_size=1, max_size=20),
)
def test_sigmoid_is_a_probability(logits: list[float]) -> None:
    p = sigmoid(np.asarray(logits))
    assert np.all((p >= 0.0) & (p <= 1.0))
    assert not np.isnan(p).any()


@settings(max_examples=40, deadline=None)
@given(
    coefs=st.lists(st.floats(min_value=-50, max_value=50), min_size=2, max_size=2),
    intercept=st.floats(min_value=-50, max_value=50),
    usage=st.lists(st.one_of(st.none(), st.floats(min_value=-1, max_value=5)), min_size=1, max_size=8),
)
def test_model_probabilities_in_unit_interval(
    coefs: list[float], intercept: float, usage: list[float | None]
) -> None:
    model = LinearModel(
        columns=HAND_MODEL.columns,
        means=HAND_MODEL.means,
        scales=HAND_MODEL.scales,
        coefs=np.asarray(coefs),
        intercept=intercept,
    )
    table = _table(
        usage_trend=[math.nan if u is None else u for u in usage], open_tickets_urgent=[1.0] * len(usage)
    )
    p = model.probability(table)
    assert np.all((p >= 0.0) & (p <= 1.0))


def test_metrics_hand_worked() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8])
    # pairs (pos, neg): (0.35 > 0.1) (0.35 < 0.4) (0.8 > 0.1) (0.8 > 0.4) → 3 of 4 = 0.75
    assert roc_auc(y, p) == pytest.approx(0.75)
    metrics = evaluate(y, p, bins=2)
    # Brier = (0.01 + 0.16 + 0.4225 + 0.04) / 4 = 0.158125
    assert metrics.brier == pytest.approx(0.158125)
    assert [(b.n, b.observed_rate) for b in metrics.calibration] == [(2, 0.5), (2, 0.5)]
    # top decile = the top ceil(4/10) = 1 row (p 0.8, churned): rate 1 / base rate 0.5 = 2
    assert metrics.top_decile_lift == pytest.approx(2.0)


def test_snapshot_dates_month_ends_with_full_label_window() -> None:
    snaps = snapshot_dates(dt.date(2026, 9, 30), dt.date(2025, 1, 1), n=12)
    assert snaps[-1] == dt.date(2026, 6, 30)  # + 90 days = 2026-09-28 ≤ as_of
    assert snaps[0] == dt.date(2025, 7, 31)
    assert all(s + dt.timedelta(days=90) <= dt.date(2026, 9, 30) for s in snaps)
    # not enough usage history: snapshots need ~90 days of usage before them
    assert snapshot_dates(dt.date(2026, 9, 30), dt.date(2026, 5, 1), n=12) == []


def test_no_model_means_rule_based_and_says_so(session: Session) -> None:
    build_history(session, accounts=12, seed=1)
    model = load_active_model(session)
    assert model.method == "rule_based"
    result = churn_risk(session=session, limit=5)
    assert result.model.method == "rule_based"
    assert "churn train" in (result.model.reason or "")
    assert "Rule-based health score (fallback" in result.explanation
    for a in result.accounts:
        assert a.health == pytest.approx(100 * (1 - a.probability))
        assert all(d.unit == "health_points" for d in a.drivers)


def test_too_little_history_falls_back_to_rules(any_engine: Engine) -> None:
    from core.db import make_sessionmaker

    with make_sessionmaker(any_engine)() as session:
        build_history(session, accounts=25, seed=1)
        report = train(session, now=NOW)
        session.commit()
        assert report.method == "rule_based"
        assert report.reason is not None and "too little labelled history" in report.reason
        result = churn_risk(session=session, limit=3)
        assert result.model.method == "rule_based"
        assert result.model.version == report.model_version
        assert "too little labelled history" in (result.model.reason or "")
        assert "fallback" in result.explanation


@pytest.fixture(scope="module")
def trained_history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Engine, str]:
    from core.db import make_engine, make_sessionmaker
    from crm.migrate import upgrade

    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('churn') / 'history.db'}")
    upgrade(engine)
    with make_sessionmaker(engine)() as session:
        build_history(session, accounts=300, seed=0)
        report = train(session, now=NOW)
        session.commit()
    return engine, report.model_version


def test_history_training_learns_and_is_versioned(trained_history: tuple[Engine, str]) -> None:
    from core.db import make_sessionmaker

    engine, version = trained_history
    with make_sessionmaker(engine)() as session:
        assert detect_source(session) == "history"
        row = session.get(ChurnModel, version)
        assert row is not None and row.active
        metrics = row.metrics
        # both candidates judged on the same holdout; the stored method is the chosen one
        assert [c["method"] for c in metrics["candidates"]] == ["logistic_regression", "gradient_boosting"]
        assert [c["method"] for c in metrics["candidates"] if c["chosen"]] == [row.method]
        if row.method == "logistic_regression":
            assert {"features", "means", "scales", "coefs", "intercept"} <= set(row.params)
            assert len(row.params["features"]) == len(row.params["coefs"]) == len(row.params["means"])
        else:
            assert row.method == "gradient_boosting" and version.startswith("gbm-history-")
            assert {"features", "columns", "booster", "setting", "trees"} <= set(row.params)
            assert row.params["booster"].startswith("tree\n")  # LightGBM's model text
        assert set(row.params["calibration"]) == {"method", "slope", "intercept"}
        assert metrics["auc"] > 0.65
        assert metrics["test_snapshots"] and metrics["train_snapshots"]
        last_train = dt.date.fromisoformat(metrics["train_snapshots"][-1])
        first_test = dt.date.fromisoformat(metrics["test_snapshots"][0])
        assert last_train + dt.timedelta(days=90) <= first_test  # no label window overlaps the test window
        assert len(metrics["calibration"]) == 10
        # the same data trains the same version; it stays the only active model
        again = train(session, now=NOW + dt.timedelta(hours=1))
        session.commit()
        assert again.model_version == version
        assert session.scalar(select(func.count()).select_from(ChurnModel).where(ChurnModel.active)) == 1
        # a different as-of date is different data: a new version
        other = train(session, now=NOW, as_of=AS_OF - dt.timedelta(days=31))
        session.commit()
        assert other.model_version != version
        assert load_active_model(session).version == other.model_version
        train(session, now=NOW)  # back to the original
        session.commit()
        assert load_active_model(session).version == version


def test_attribute_only_training_cross_validated(any_engine: Engine) -> None:
    from core.db import make_sessionmaker

    with make_sessionmaker(any_engine)() as session:
        build_attributes(session, accounts=600, seed=0)
        assert detect_source(session) == "attributes"
        report = train(session, now=NOW)
        session.commit()
        assert report.method == "logistic_regression"
        assert report.source == "attributes"
        assert report.folds == 5 and len(report.fold_aucs) == 5
        assert report.auc is not None and report.auc > 0.7
        assert report.auc_std is not None and 0 <= report.auc_std < 0.1
        assert report.n_train == 600
        result = churn_risk(session=session, limit=5)
        assert result.model.source == "attributes"
        top = result.accounts[0]
        assert {d.feature for d in top.drivers} <= {
            "attr:Contract",
            "attr:tenure",
            "attr:MonthlyCharges",
            "attr:TotalCharges",
            "attr:PaperlessBilling",
        }


def test_cli_train_and_report_json(trained_history: tuple[Engine, str]) -> None:
    engine, version = trained_history
    url = engine.url.render_as_string(hide_password=False)
    runner = CliRunner()
    out = runner.invoke(app, ["churn", "train", "--json", "--database-url", url])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)  # exactly one JSON document
    assert doc["model_version"] == version
    assert doc["source"] == "history"
    for key in (
        "auc",
        "brier",
        "top_decile_lift",
        "calibration",
        "n_train",
        "n_test",
        "candidates",
        "choice",
    ):
        assert key in doc
    chosen = [c for c in doc["candidates"] if c["chosen"]]
    assert len(doc["candidates"]) == 2 and [c["method"] for c in chosen] == [doc["method"]]
    assert doc["choice"].startswith(doc["method"] + ":")
    rep = runner.invoke(app, ["churn", "report", "--json", "--database-url", url])
    assert rep.exit_code == 0, rep.output
    assert json.loads(rep.stdout)["model_version"] == version
    table = runner.invoke(app, ["churn", "report", "--database-url", url])
    assert table.exit_code == 0 and "calibration" in table.stdout and "candidates" in table.stdout


def test_cli_train_attributes_json_keys(tmp_path_factory: pytest.TempPathFactory) -> None:
    from core.db import make_engine, make_sessionmaker
    from crm.migrate import upgrade

    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('attrs') / 'a.db'}")
    upgrade(engine)
    with make_sessionmaker(engine)() as session:
        build_attributes(session, accounts=400, seed=4)
    out = CliRunner().invoke(
        app, ["churn", "train", "--source", "attributes", "--json", "--database-url", str(engine.url)]
    )
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert {"auc", "auc_std", "brier", "folds", "n_train", "method", "source", "model_version"} <= set(doc)
    assert doc["folds"] == 5 and doc["source"] == "attributes"
    assert doc["method"] in ("logistic_regression", "gradient_boosting")
    assert {c["method"] for c in doc["candidates"]} == {"logistic_regression", "gradient_boosting"}
    engine.dispose()


def test_constant_model_gives_one_half(session: Session) -> None:
    build_history(session, accounts=5, seed=9)
    store_model(session, constant_model(0.0))
    result = churn_risk(session=session, limit=5)
    assert result.model.version.startswith("hand-")
    assert {a.probability for a in result.accounts} == {0.5}
    assert all(a.arr_at_risk == a.arr * 0.5 for a in result.accounts)
