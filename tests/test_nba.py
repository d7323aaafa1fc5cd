"""next_best_action: hand-worked expected values, playbook language, suppression with reasons."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from churn_builders import AS_OF, build_history, constant_model, store_model
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import update
from sqlalchemy.orm import Session

from crm.models import PORTER_CATEGORIES, Account, Recommendation, RecommendationEvent
from tools.churn.design import Column, LinearModel
from tools.errors import ToolInputError
from tools.nba import SHIPPED_PLAYBOOK, PlaybookAction, _value, load_playbook, next_best_action

RETENTION_IDS = {
    "exec_sponsor_outreach",
    "support_escalation_review",
    "adoption_workshop",
    "billing_resolution",
    "early_renewal_offer",
    "champion_rebuild",
    "health_check_qbr",
}
GROWTH_IDS = {"seat_expansion_offer", "plan_upgrade_offer", "multi_year_conversion"}


def _playbook(tmp_path: Path, actions: list[dict[str, object]], name: str = "playbook.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"version": 1, "actions": actions}))
    return str(path)


def _account(session: Session, arr: float, account_id: str = "T-0001") -> str:
    session.execute(
        update(Account).where(Account.id == account_id).values(arr=arr, status="active", churned_at=None)
    )
    session.commit()
    return account_id


@pytest.fixture
def half(session: Session) -> Session:
    """Synthetic accounts scored by a hand-set model with p_churn = sigmoid(0) = 0.5 exactly."""
    build_history(session, accounts=6, seed=11)
    store_model(session, constant_model(0.0))
    return session


def test_shipped_playbook_has_the_documented_actions() -> None:
    playbook, digest, name = load_playbook()
    ids = {a.id for a in playbook.actions}
    assert ids == RETENTION_IDS | GROWTH_IDS
    assert len(playbook.actions) >= 8
    for action in playbook.actions:
        assert action.activity in PORTER_CATEGORIES
        assert action.kind == ("retention" if action.id in RETENTION_IDS else "growth")
    assert name == "shipped" and len(digest) == 12
    assert SHIPPED_PLAYBOOK.is_file()


def test_retention_expected_value_hand_worked(half: Session, tmp_path: Path) -> None:
    account_id = _account(half, 120_000.0)
    path = _playbook(
        tmp_path,
        [
            {
                "id": "keep",
                "description": "Keep them",
                "activity": "service",
                "kind": "retention",
                "cost": 3000,
                "effect": {"uplift": 0.25},
            },
        ],
    )
    result = next_best_action(session=half, account_id=account_id, playbook_path=path, holdout_share=0.0)
    (action,) = result.actions
    # arr 120,000 × p_churn 0.5 × uplift 0.25 − cost 3,000 = 15,000 − 3,000 = 12,000
    assert action.expected_value == 12_000.0
    assert action.cost == 3000.0 and action.uplift == 0.25
    assert result.p_churn == 0.5 and result.band == "high"
    assert "= 12,000" in action.formula and "Expected value" in action.rationale


def test_growth_expected_value_hand_worked(half: Session, tmp_path: Path) -> None:
    account_id = _account(half, 100_000.0)
    path = _playbook(
        tmp_path,
        [
            {
                "id": "grow",
                "description": "More seats",
                "activity": "marketing_sales",
                "kind": "growth",
                "cost": 1000,
                "effect": {"p_success": 0.3, "expansion_value": {"arr_fraction": 0.2}},
            },
            {
                "id": "renew",
                "description": "Renew early",
                "activity": "marketing_sales",
                "kind": "retention",
                "cost": {"fixed": 200, "arr_fraction": 0.03},
                "effect": {"uplift": 0.1},
            },
            {
                "id": "tiny",
                "description": "Too small",
                "activity": "service",
                "kind": "growth",
                "cost": 500,
                "effect": {"p_success": 0.1, "expansion_value": 1000},
            },
        ],
    )
    result = next_best_action(session=half, account_id=account_id, playbook_path=path, holdout_share=0.0)
    by_id = {a.action: a for a in result.actions}
    # grow: expansion 0.2 × 100,000 = 20,000; 0.3 × 20,000 − 1,000 = 5,000
    assert by_id["grow"].expected_value == pytest.approx(5000.0)
    assert by_id["grow"].expansion_value == pytest.approx(20_000.0)
    # renew: cost 200 + 0.03 × 100,000 = 3,200; 100,000 × 0.5 × 0.1 − 3,200 = 1,800
    assert by_id["renew"].cost == pytest.approx(3200.0)
    assert by_id["renew"].expected_value == pytest.approx(1800.0)
    assert [a.action for a in result.actions] == ["grow", "renew"]  # best first
    # tiny: 0.1 × 1,000 − 500 = −400: eligible but not worth it
    assert [(u.action, u.expected_value) for u in result.unprofitable] == [("tiny", pytest.approx(-400.0))]
    assert result.eligible_count == 3 and result.ineligible_count == 0


def test_ties_break_by_action_id_and_limit(half: Session, tmp_path: Path) -> None:
    account_id = _account(half, 10_000.0)
    same = {"activity": "service", "kind": "retention", "cost": 0, "effect": {"uplift": 0.1}}
    path = _playbook(tmp_path, [{"id": i, "description": i, **same} for i in ("c_act", "a_act", "b_act")])
    result = next_best_action(session=half, account_id=account_id, playbook_path=path, limit=2, holdout_share=0.0)
    assert [a.action for a in result.actions] == ["a_act", "b_act"]


@settings(max_examples=80, deadline=None)
@given(
    arr=st.floats(min_value=0, max_value=1e8),
    p=st.floats(min_value=0, max_value=1),
    uplift=st.floats(min_value=0.001, max_value=1),
    cost=st.floats(min_value=0, max_value=1e6),
    p_success=st.floats(min_value=0, max_value=1),
    fraction=st.floats(min_value=0, max_value=2),
)
def test_expected_value_formulas(
    arr: float, p: float, uplift: float, cost: float, p_success: float, fraction: float
) -> None:
    retention = PlaybookAction.model_validate(
        {
            "id": "r",
            "description": "r",
            "activity": "service",
            "kind": "retention",
            "cost": cost,
            "effect": {"uplift": uplift},
        }
    )
    growth = PlaybookAction.model_validate(
        {
            "id": "g",
            "description": "g",
            "activity": "marketing_sales",
            "kind": "growth",
            "cost": {"fixed": cost, "arr_fraction": 0},
            "effect": {"p_success": p_success, "expansion_value": {"arr_fraction": fraction}},
        }
    )
    assert _value(retention, arr, p).expected_value == arr * p * uplift - cost
    assert _value(growth, arr, p).expected_value == p_success * (fraction * arr) - cost


def test_conditions_features_any_and_drivers(session: Session, tmp_path: Path) -> None:
    build_history(session, accounts=6, seed=11)
    usage_model = LinearModel(
        columns=(Column(name="tenure_days", group="tenure_days", source="tenure_days", kind="num"),),
        means=np.array([0.0]),
        scales=np.array([1000.0]),
        coefs=np.array([1.0]),
        intercept=-1.0,
    )
    store_model(session, usage_model)
    account_id = _account(session, 50_000.0)
    path = _playbook(
        tmp_path,
        [
            {
                "id": "old_friend",
                "description": "Old friend",
                "activity": "service",
                "kind": "retention",
                "cost": 10,
                "effect": {"uplift": 0.1},
                "when": [
                    {"feature": "tenure_days", "op": ">=", "value": 365},
                    {
                        "any": [
                            {
                                "feature": "segment",
                                "op": "in",
                                "value": ["Nope", "SMB", "Mid-Market", "Enterprise"],
                            },
                            {"feature": "arr", "op": "<", "value": 0},
                        ]
                    },
                    {"driver": "tenure_days", "in_top": 1},
                ],
            },
            {
                "id": "never",
                "description": "Never",
                "activity": "service",
                "kind": "retention",
                "cost": 10,
                "effect": {"uplift": 0.1},
                "when": [{"feature": "nps_last", "op": ">", "value": 11}],
            },
            {
                "id": "unknown_is_false",
                "description": "x",
                "activity": "service",
                "kind": "retention",
                "cost": 10,
                "effect": {"uplift": 0.1},
                "when": [{"feature": "attr:no_such_field", "op": "==", "value": "x"}],
            },
        ],
    )
    result = next_best_action(session=session, account_id=account_id, playbook_path=path, holdout_share=0.0)
    assert [a.action for a in result.actions] == ["old_friend"]
    assert result.ineligible_count == 2
    evidence = result.actions[0].evidence
    assert [e.condition for e in evidence] == [
        "tenure_days >= 365",
        "segment in [Nope, SMB, Mid-Market, Enterprise]",
        "tenure_days among the top 1 churn drivers",
    ]
    assert evidence[0].phrase.startswith("customer for ")
    assert evidence[2].value == 1


@pytest.mark.parametrize(
    ("action", "message"),
    [
        ({"when": [{"feature": "favourite_colour", "op": "==", "value": "red"}]}, "unknown feature"),
        ({"when": [{"feature": "arr", "op": "__import__('os').system('true')", "value": 1}]}, "op"),
        ({"when": [{"feature": "arr", "op": ">", "value": 1, "extra": "no"}]}, "not valid"),
        ({"kind": "growth"}, "growth action needs effect fields"),
        ({"activity": "astrology"}, "unknown activity"),
        ({"id": "Bad Id"}, "not valid"),
    ],
)
def test_playbook_is_validated_not_evaluated(
    half: Session, tmp_path: Path, action: dict[str, object], message: str
) -> None:
    base: dict[str, object] = {
        "id": "x",
        "description": "x",
        "activity": "service",
        "kind": "retention",
        "cost": 1,
        "effect": {"uplift": 0.1},
    }
    path = _playbook(tmp_path, [{**base, **action}])
    with pytest.raises(ToolInputError, match="not valid") as err:
        next_best_action(session=half, account_id="T-0001", playbook_path=path)
    assert message in str(err.value)


def test_missing_playbook_file(half: Session, tmp_path: Path) -> None:
    with pytest.raises(ToolInputError, match="does not exist"):
        next_best_action(session=half, account_id="T-0001", playbook_path=str(tmp_path / "nope.yaml"))


def _recommend(
    session: Session,
    account_id: str,
    action: str,
    status: str,
    created: dt.datetime,
    decided: dt.datetime | None = None,
    by: str | None = None,
    note: str | None = None,
) -> None:
    rec = Recommendation(
        account_id=account_id,
        action=action,
        rationale="r",
        evidence={},
        status=status,
        content_hash="h",
        created_at=created,
        created_by="agent",
        decided_at=decided,
        decided_by=by,
    )
    session.add(rec)
    session.flush()
    if status == "rejected":
        session.add(
            RecommendationEvent(
                recommendation_id=rec.id,
                event="rejected",
                actor=by or "?",
                at=decided or created,
                note=note,
                data={},
            )
        )
    session.commit()


def _noon(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(12))


def test_suppression_cooldown_and_rejection_with_reasons(half: Session, tmp_path: Path) -> None:
    account_id = _account(half, 100_000.0)
    ids = [
        "pending_recent",
        "pending_old",
        "approved_recent",
        "rejected_recent",
        "rejected_old",
        "expired",
        "proposed_after_as_of",
        "free",
    ]
    path = _playbook(
        tmp_path,
        [
            {
                "id": i,
                "description": i,
                "activity": "service",
                "kind": "retention",
                "cost": 100,
                "effect": {"uplift": 0.1},
            }
            for i in ids
        ],
    )
    days = dt.timedelta
    _recommend(half, account_id, "pending_recent", "pending", _noon(AS_OF - days(days=10)))
    _recommend(half, account_id, "pending_old", "pending", _noon(AS_OF - days(days=30)))
    _recommend(
        half,
        account_id,
        "approved_recent",
        "approved",
        _noon(AS_OF - days(days=45)),
        _noon(AS_OF - days(days=20)),
        "bob",
    )
    _recommend(
        half,
        account_id,
        "rejected_recent",
        "rejected",
        _noon(AS_OF - days(days=70)),
        _noon(AS_OF - days(days=60)),
        "alice",
        "too expensive for this account",
    )
    _recommend(
        half,
        account_id,
        "rejected_old",
        "rejected",
        _noon(AS_OF - days(days=100)),
        _noon(AS_OF - days(days=90)),
        "alice",
        "no",
    )
    _recommend(half, account_id, "expired", "expired", _noon(AS_OF - days(days=5)))
    _recommend(half, account_id, "proposed_after_as_of", "pending", _noon(AS_OF + days(days=40)))
    _recommend(half, "T-0002", "free", "pending", _noon(AS_OF - days(days=1)))  # another account
    result = next_best_action(
        session=half, account_id=account_id, playbook_path=path, limit=20, holdout_share=0.0
    )
    suppressed = {s.action: s for s in result.suppressed}
    assert set(suppressed) == {"pending_recent", "approved_recent", "rejected_recent", "proposed_after_as_of"}
    assert suppressed["rejected_recent"].reason == (
        "rejected on 2026-08-01 by alice: too expensive for this account (suppressed for 90 days after a rejection)"
    )
    assert suppressed["approved_recent"].reason == "approved on 2026-09-10 by bob (cooldown 30 days)"
    assert (
        suppressed["pending_recent"].reason
        == "proposed on 2026-09-20 by agent, awaiting approval (cooldown 30 days)"
    )
    assert all(s.eligible for s in result.suppressed)
    # 100,000 × 0.5 × 0.1 − 100 = 4,900 for each: ties by id
    assert suppressed["pending_recent"].expected_value == pytest.approx(4900.0)
    assert [a.action for a in result.actions] == ["expired", "free", "pending_old", "rejected_old"]
    # shorter windows free the actions again
    relaxed = next_best_action(
        session=half, account_id=account_id, playbook_path=path, limit=20, cooldown_days=5, rejection_days=30,
        holdout_share=0.0,
    )
    assert {s.action for s in relaxed.suppressed} == {"proposed_after_as_of"}


def test_same_db_same_args_byte_identical(half: Session) -> None:
    account_id = _account(half, 75_000.0)
    first = next_best_action(session=half, account_id=account_id).model_dump_json()
    second = next_best_action(session=half, account_id=account_id).model_dump_json()
    assert first == second


def test_unknown_account_and_limits(half: Session) -> None:
    with pytest.raises(ToolInputError, match="T-0001"):
        next_best_action(session=half, account_id="t-0001x")
    with pytest.raises(ToolInputError):
        next_best_action(session=half, account_id="T-0001", limit=0)


def test_rule_based_fallback_is_reported(session: Session) -> None:
    build_history(session, accounts=6, seed=11)
    result = next_best_action(session=session, account_id="T-0001")
    assert result.churn_method == "rule_based"
    assert "rule-based fallback" in result.explanation
    assert not math.isnan(result.p_churn)
