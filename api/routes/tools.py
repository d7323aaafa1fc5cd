"""Direct tool endpoints: the deterministic tools over HTTP, returning the models they return.

The agent, the CLI (`valuechain tools ... --json`) and these routes call the same cores, so
a figure is the same everywhere. An unknown account id is a 404 with the tool's message
(which suggests close ids); any other mistake the caller can fix (a malformed `filter`, an
unknown metric, filter or period) is a `ToolInputError`, which the app turns into a 422 with
the message listing what is valid.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Body, HTTPException, Path, Query
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from api.deps import AUTH_RESPONSES, AnalystDep, SessionDep, SettingsDep
from api.metrics import observe_tool
from core.contract import DAY_RANGE, Day, Days, Offset
from tools.account_actions import propose_account_action
from tools.accounts import (
    AccountList,
    AccountProfile,
    AccountTimeline,
    account_timeline,
    get_account,
    list_accounts,
)
from tools.activities import ActivityScores, score_activities
from tools.churn.schemas import ChurnRiskResult
from tools.churn.scoring import churn_risk
from tools.common import require_account
from tools.errors import ToolInputError
from tools.filters import parse_filter_items
from tools.nba import NextBestActionResult, next_best_action
from tools.ranking import Entity, Order, RankResult, rank
from tools.recommendations import HeldOut, ProposedRecommendation

router = APIRouter(prefix="/api/v1/tools", tags=["tools"])

T = TypeVar("T")

TOOL_RESPONSES: dict[int | str, dict[str, Any]] = {
    **AUTH_RESPONSES,
    422: {"description": "A mistake the caller can fix; the message lists what is valid"},
}
ACCOUNT_RESPONSES: dict[int | str, dict[str, Any]] = {
    **TOOL_RESPONSES,
    404: {
        "description": 'No such account; the message suggests close ids, e.g. no account "ACME-0009"; '
        'did you mean "ACME-0005"?'
    },
}

FilterQuery = Annotated[
    list[str],
    Query(
        alias="filter",
        description="key=value or key=v1,v2 (repeatable), e.g. `filter=segment=Enterprise&filter=region=EMEA`",
        examples=[["segment=Enterprise"]],
    ),
]
AsOfQuery = Annotated[
    Day | None,
    Query(description=f"Point-in-time date (YYYY-MM-DD, {DAY_RANGE}); default: the data's as-of date"),
]
AccountId = Annotated[str, Path(max_length=200, description="Account id", examples=["ACME-0042"])]


def _account_or_404(session: Session, account_id: str) -> None:
    try:
        require_account(session, account_id)
    except ToolInputError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None


def _call(name: str, fn: Callable[[], T]) -> T:
    with observe_tool(name):
        return fn()


@router.get(
    "/activity-scores",
    response_model=ActivityScores,
    summary="Cost vs value of value-chain activities: shares, margin leak, quadrants",
    responses=TOOL_RESPONSES,
)
def activity_scores_route(
    session: SessionDep,
    _user: AnalystDep,
    period: Annotated[
        str | None, Query(description="Period to score; default the latest", examples=["2026"])
    ] = None,
) -> ActivityScores:
    return _call("score_activities", lambda: score_activities(session=session, period=period))


@router.get(
    "/rank/{entity}/{metric}",
    response_model=RankResult,
    summary="Top N accounts, activities or initiatives by a metric",
    responses=TOOL_RESPONSES,
)
def rank_route(
    entity: Annotated[Entity, Path(description="accounts, activities or initiatives")],
    metric: Annotated[str, Path(description="e.g. arr_at_risk, margin_leak, roi", examples=["arr_at_risk"])],
    session: SessionDep,
    _user: AnalystDep,
    filters: FilterQuery = [],  # noqa: B006 - FastAPI copies defaults per request
    limit: Annotated[int, Query(ge=1, le=1000)] = 10,
    order: Annotated[Order | None, Query(description="Override the metric's natural order")] = None,
    as_of: AsOfQuery = None,
) -> RankResult:
    parsed = parse_filter_items(filters)
    return _call(
        "rank",
        lambda: rank(
            session=session,
            entity=entity,
            metric=metric,
            filters=parsed,
            limit=limit,
            order=order,
            as_of=as_of,
        ),
    )


@router.get(
    "/churn-risk",
    response_model=ChurnRiskResult,
    summary="Accounts ranked by churn probability (filtered), with drivers",
    responses=TOOL_RESPONSES,
)
def churn_risk_list_route(
    session: SessionDep,
    _user: AnalystDep,
    filters: FilterQuery = [],  # noqa: B006
    as_of: AsOfQuery = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    top_drivers: Annotated[int, Query(ge=0, le=20)] = 3,
    order_by: Annotated[
        Literal["probability", "arr_at_risk"],
        Query(description="Rank by churn probability (default) or by ARR at risk (ARR × probability)"),
    ] = "probability",
) -> ChurnRiskResult:
    parsed = parse_filter_items(filters)
    return _call(
        "churn_risk",
        lambda: churn_risk(
            session=session, filters=parsed, as_of=as_of, limit=limit, top_drivers=top_drivers,
            order_by=order_by,
        ),
    )


@router.get(
    "/churn-risk/{account_id}",
    response_model=ChurnRiskResult,
    summary="One account's churn probability, band, ARR at risk and drivers",
    responses=ACCOUNT_RESPONSES,
)
def churn_risk_route(
    account_id: AccountId,
    session: SessionDep,
    _user: AnalystDep,
    as_of: AsOfQuery = None,
    top_drivers: Annotated[int, Query(ge=0, le=20)] = 3,
) -> ChurnRiskResult:
    _account_or_404(session, account_id)
    return _call(
        "churn_risk",
        lambda: churn_risk(session=session, account_id=account_id, as_of=as_of, top_drivers=top_drivers),
    )


@router.get(
    "/next-best-action/{account_id}",
    response_model=NextBestActionResult,
    summary="Playbook actions for one account ranked by expected value, with suppressions",
    responses=ACCOUNT_RESPONSES,
)
def next_best_action_route(
    account_id: AccountId,
    session: SessionDep,
    settings: SettingsDep,
    _user: AnalystDep,
    limit: Annotated[int, Query(ge=1, le=50)] = 3,
    as_of: AsOfQuery = None,
    cooldown_days: Annotated[Days, Query(description="Suppress actions proposed or approved this many days back")] = 30,
    rejection_days: Annotated[Days, Query(description="Suppress actions rejected this many days back")] = 90,
) -> NextBestActionResult:
    _account_or_404(session, account_id)
    playbook = str(settings.playbook_path) if settings.playbook_path is not None else None
    return _call(
        "next_best_action",
        lambda: next_best_action(
            session=session,
            account_id=account_id,
            limit=limit,
            as_of=as_of,
            playbook_path=playbook,
            cooldown_days=cooldown_days,
            rejection_days=rejection_days,
            holdout_share=settings.holdout_share,
        ),
    )


class ProposeActionRequest(BaseModel):
    """Which of the account's next best actions to file for approval."""

    action: str = Field(min_length=1, max_length=64, examples=["exec_sponsor_call"])


@router.post(
    "/next-best-action/{account_id}/propose",
    response_model=ProposedRecommendation,
    status_code=201,
    summary="File one of the account's next best actions as a pending recommendation, as the caller",
    responses=ACCOUNT_RESPONSES,
)
def propose_action_route(
    account_id: AccountId,
    body: Annotated[ProposeActionRequest, Body()],
    session: SessionDep,
    settings: SettingsDep,
    user: AnalystDep,
) -> ProposedRecommendation:
    _account_or_404(session, account_id)
    playbook = str(settings.playbook_path) if settings.playbook_path is not None else None
    try:
        result = _call(
            "propose_recommendation",
            lambda: propose_account_action(
                session=session, account_id=account_id, action=body.action, created_by=user.name,
                playbook_path=playbook, holdout_share=settings.holdout_share,
            ),
        )
    except HeldOut:
        session.commit()  # keep the control-group row; the refusal is still the answer
        raise
    session.commit()
    return result


@router.get(
    "/accounts",
    response_model=AccountList,
    summary="A page of accounts sorted by id, filtered or searched",
    responses=TOOL_RESPONSES,
)
def list_accounts_route(
    session: SessionDep,
    _user: AnalystDep,
    filters: FilterQuery = [],  # noqa: B006
    search: Annotated[str | None, Query(max_length=200, description="Substring of the id or name")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[Offset, Query()] = 0,
) -> AccountList:
    parsed = parse_filter_items(filters)
    return _call(
        "list_accounts",
        lambda: list_accounts(session=session, filters=parsed, search=search, limit=limit, offset=offset),
    )


@router.get(
    "/accounts/{account_id}",
    response_model=AccountProfile,
    summary="One account's profile: subscription, tickets, invoices, NPS, champions, usage",
    responses=ACCOUNT_RESPONSES,
)
def get_account_route(
    account_id: AccountId, session: SessionDep, _user: AnalystDep, as_of: AsOfQuery = None
) -> AccountProfile:
    _account_or_404(session, account_id)
    return _call("get_account", lambda: get_account(session=session, account_id=account_id, as_of=as_of))


@router.get(
    "/accounts/{account_id}/timeline",
    response_model=AccountTimeline,
    summary="One account's events, newest first",
    responses=ACCOUNT_RESPONSES,
)
def account_timeline_route(
    account_id: AccountId,
    session: SessionDep,
    _user: AnalystDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    since: Annotated[Day | None, Query(description="First day to include")] = None,
    as_of: AsOfQuery = None,
) -> AccountTimeline:
    _account_or_404(session, account_id)
    return _call(
        "account_timeline",
        lambda: account_timeline(
            session=session, account_id=account_id, limit=limit, since=since, as_of=as_of
        ),
    )
