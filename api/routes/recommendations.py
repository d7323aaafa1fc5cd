"""The review queue: list and inspect recommendations; approve or reject them (approver role).

A decision must quote the `version` and/or `content_hash` the approver saw (from the detail
route); exactly one of any number of concurrent decisions wins and the others get 409
naming the winner. See tools/review.py for the rules and docs/API.md for examples.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Path, Query
from fastapi.openapi.models import Example
from pydantic import BaseModel, Field, model_validator

from api.deps import AUTH_RESPONSES, AnalystDep, ApproverDep, ReaderDep, SessionDep, SettingsDep
from api.metrics import record_decision
from core.contract import INT32_MAX, Day, Offset, RowId
from tools.errors import ToolInputError
from tools.review import (
    ABANDON_REASONS,
    APPROVE_REASONS,
    NOTE_MAX,
    REJECT_REASONS,
    STATUSES,
    AlreadyDecided,
    ContentChanged,
    Decision,
    DecisionRefused,
    DecisionResult,
    FollowUpResult,
    InvalidTransition,
    NotAuthorised,
    RecommendationDetail,
    RecommendationExpired,
    RecommendationNotFound,
    RecommendationPage,
    Transition,
    decide_and_commit,
    follow_up_and_commit,
    get_recommendation,
    list_recommendations,
)

router = APIRouter(prefix="/api/v1/recommendations", tags=["recommendations"])

HTTP_STATUS: dict[type[DecisionRefused], int] = {
    NotAuthorised: 403,
    RecommendationNotFound: 404,
    AlreadyDecided: 409,
    ContentChanged: 409,
    RecommendationExpired: 410,
    InvalidTransition: 409,
}


class DecisionError(BaseModel):
    """Why a decision was not recorded. `error`: forbidden, not_found, already_decided,
    content_changed or expired; `winner` names who decided first (already_decided)."""

    error: str
    message: str
    recommendation_id: int
    winner: dict[str, Any] | None = None
    current: dict[str, Any] | None = None


class DecisionErrorBody(BaseModel):
    detail: DecisionError


HASH_PATTERN = "^[0-9a-f]{64}$"


class _DecisionRequest(BaseModel):
    expected_version: int | None = Field(
        default=None, ge=1, le=INT32_MAX, strict=True,  # `true` is not version 1
        description="The `version` shown to the approver (from the detail route)",
    )
    content_hash: str | None = Field(
        default=None, pattern=HASH_PATTERN, description="The `content_hash` shown to the approver"
    )
    note: str | None = Field(default=None, max_length=NOTE_MAX, description="Free text for the audit trail")

    @model_validator(mode="after")
    def _bound_to_content(self) -> _DecisionRequest:
        if self.expected_version is None and self.content_hash is None:
            raise ValueError(
                "give expected_version and/or content_hash: the version of the recommendation you reviewed"
            )
        return self


class ApproveRequest(_DecisionRequest):
    """Approve the recommendation exactly as reviewed."""

    reason_code: str | None = Field(
        default=None,
        description="Optional: " + "; ".join(f"`{k}` {v}" for k, v in APPROVE_REASONS.items()),
        json_schema_extra={"enum": [*APPROVE_REASONS, None]},
    )


class RejectRequest(_DecisionRequest):
    """Reject the recommendation exactly as reviewed, saying why."""

    reason_code: str = Field(
        description="Required: " + "; ".join(f"`{k}` {v}" for k, v in REJECT_REASONS.items()),
        json_schema_extra={"enum": list(REJECT_REASONS)},
    )


_HASH_EXAMPLE = "3f1a" + "0" * 60

APPROVE_EXAMPLES = {
    "by_version": Example(
        summary="Approve the version you reviewed",
        value={"expected_version": 1, "reason_code": "agree", "note": "Exec sponsor call booked for Monday."},
    ),
    "by_hash": Example(
        summary="Approve, bound to the exact content hash",
        value={"content_hash": _HASH_EXAMPLE},
    ),
}
REJECT_EXAMPLES = {
    "not_worth_it": Example(
        summary="Reject with a reason code and a note",
        value={
            "expected_version": 1,
            "reason_code": "not_worth_it",
            "note": "Discount would cost more than the ARR at risk.",
        },
    ),
}

DECISION_RESPONSES: dict[int | str, dict[str, Any]] = {
    **AUTH_RESPONSES,
    403: {"model": DecisionErrorBody, "description": "Role may not decide, or the approver filed it"},
    404: {"model": DecisionErrorBody, "description": "No such recommendation"},
    409: {
        "model": DecisionErrorBody,
        "description": "Already decided (the winner is named) or changed since the version you reviewed",
    },
    410: {"model": DecisionErrorBody, "description": "Expired: older than RECOMMENDATION_TTL_DAYS"},
    422: {"description": "Invalid body: no version/hash, unknown reason code, note too long"},
}


@router.get(
    "",
    response_model=RecommendationPage,
    summary="List recommendations (newest first), filtered and paginated",
    responses=AUTH_RESPONSES,
)
def list_route(
    session: SessionDep,
    settings: SettingsDep,
    _user: ReaderDep,
    status: Annotated[
        str | None,
        Query(description="Effective status: " + ", ".join(STATUSES), examples=["pending"]),
    ] = None,
    account_id: Annotated[str | None, Query(description="Only this account", examples=["ACME-0042"])] = None,
    activity_id: Annotated[str | None, Query(description="Only this value-chain activity")] = None,
    action: Annotated[
        str | None, Query(description="Only this action id", examples=["exec_sponsor_call"])
    ] = None,
    created_from: Annotated[Day | None, Query(description="First creation day (YYYY-MM-DD)")] = None,
    created_to: Annotated[Day | None, Query(description="Last creation day (YYYY-MM-DD)")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[Offset, Query()] = 0,
) -> RecommendationPage:
    return list_recommendations(
        session=session,
        status=status,
        account_id=account_id,
        activity_id=activity_id,
        action=action,
        created_from=created_from,
        created_to=created_to,
        limit=limit,
        offset=offset,
        ttl_days=settings.recommendation_ttl_days,
    )


RecommendationId = Annotated[RowId, Path(description="The recommendation's number", examples=[12])]


@router.get(
    "/{recommendation_id}",
    response_model=RecommendationDetail,
    summary="One recommendation with evidence, audit trail and version/hash to decide on",
    responses={**AUTH_RESPONSES, 404: {"description": "No such recommendation"}},
)
def detail_route(
    recommendation_id: RecommendationId, session: SessionDep, settings: SettingsDep, _user: ReaderDep
) -> RecommendationDetail:
    try:
        return get_recommendation(
            session=session, recommendation_id=recommendation_id, ttl_days=settings.recommendation_ttl_days
        )
    except RecommendationNotFound as exc:
        raise HTTPException(status_code=404, detail=exc.message) from None


def _decide(
    *,
    decision: Decision,
    recommendation_id: int,
    body: _DecisionRequest,
    reason_code: str | None,
    session: SessionDep,
    settings: SettingsDep,
    user: ApproverDep,
) -> DecisionResult:
    try:
        result = decide_and_commit(
            session=session,
            recommendation_id=recommendation_id,
            decision=decision,
            actor=user.name,
            role=user.role,
            expected_version=body.expected_version,
            content_hash=body.content_hash,
            reason_code=reason_code,
            note=body.note,
            ttl_days=settings.recommendation_ttl_days,
        )
    except DecisionRefused as exc:
        record_decision(decision=decision, outcome=exc.error)
        raise HTTPException(status_code=HTTP_STATUS.get(type(exc), 409), detail=exc.as_dict()) from None
    except ToolInputError as exc:
        record_decision(decision=decision, outcome="invalid")
        raise HTTPException(status_code=422, detail=str(exc)) from None
    record_decision(decision=decision, outcome="decided")
    return result


@router.post(
    "/{recommendation_id}/approve",
    response_model=DecisionResult,
    summary="Approve a pending recommendation (approver or admin), bound to the version you saw",
    responses=DECISION_RESPONSES,
)
def approve_route(
    recommendation_id: RecommendationId,
    body: Annotated[ApproveRequest, Body(openapi_examples=APPROVE_EXAMPLES)],
    session: SessionDep,
    settings: SettingsDep,
    user: ApproverDep,
) -> DecisionResult:
    return _decide(
        decision="approved",
        recommendation_id=recommendation_id,
        body=body,
        reason_code=body.reason_code,
        session=session,
        settings=settings,
        user=user,
    )


@router.post(
    "/{recommendation_id}/reject",
    response_model=DecisionResult,
    summary="Reject a pending recommendation with a reason code and note (approver or admin)",
    responses=DECISION_RESPONSES,
)
def reject_route(
    recommendation_id: RecommendationId,
    body: Annotated[RejectRequest, Body(openapi_examples=REJECT_EXAMPLES)],
    session: SessionDep,
    settings: SettingsDep,
    user: ApproverDep,
) -> DecisionResult:
    return _decide(
        decision="rejected",
        recommendation_id=recommendation_id,
        body=body,
        reason_code=body.reason_code,
        session=session,
        settings=settings,
        user=user,
    )


# ------------------------------------------------------------------------------ follow-up


class FollowUpRequest(BaseModel):
    """A follow-up step, bound to the version you saw (every step bumps it)."""

    expected_version: int = Field(ge=1, le=INT32_MAX, strict=True, description="The `version` you saw")
    note: str | None = Field(default=None, max_length=NOTE_MAX, description="Free text for the audit trail")


class AssignRequest(FollowUpRequest):
    """Set the owner and/or the due date of an approved or in-progress recommendation."""

    owner: str | None = Field(default=None, min_length=1, max_length=100, description="Who carries it out")
    due_date: Day | None = Field(default=None, description="By when (YYYY-MM-DD)")


class AbandonRequest(FollowUpRequest):
    """Abandon an approved or in-progress recommendation, saying why."""

    reason_code: str = Field(
        description="Required: " + "; ".join(f"`{k}` {v}" for k, v in ABANDON_REASONS.items()),
        json_schema_extra={"enum": list(ABANDON_REASONS)},
    )


FOLLOW_UP_RESPONSES: dict[int | str, dict[str, Any]] = {
    **AUTH_RESPONSES,
    403: {"model": DecisionErrorBody, "description": "Not the owner (analyst), or a viewer"},
    404: {"model": DecisionErrorBody, "description": "No such recommendation"},
    409: {
        "model": DecisionErrorBody,
        "description": "Wrong status for this step (invalid_transition) or changed since the version you saw",
    },
    422: {"description": "Invalid body"},
}


def _follow_up(
    *,
    transition: Transition,
    recommendation_id: int,
    body: FollowUpRequest,
    session: SessionDep,
    user: AnalystDep,
    owner: str | None = None,
    due_date: dt.date | None = None,
    reason_code: str | None = None,
) -> FollowUpResult:
    try:
        return follow_up_and_commit(
            session=session,
            recommendation_id=recommendation_id,
            transition=transition,
            actor=user.name,
            role=user.role,
            expected_version=body.expected_version,
            owner=owner,
            due_date=due_date,
            reason_code=reason_code,
            note=body.note,
            credential={"channel": "api", "kind": "api_key", "key_prefix": user.key_prefix or ""},
        )
    except DecisionRefused as exc:
        status = HTTP_STATUS.get(type(exc), 409)
        raise HTTPException(status_code=status, detail=exc.as_dict()) from None
    except ToolInputError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None


@router.post(
    "/{recommendation_id}/assign",
    response_model=FollowUpResult,
    summary="Set the owner and/or due date of an approved recommendation (approver or admin)",
    responses=FOLLOW_UP_RESPONSES,
)
def assign_route(
    recommendation_id: RecommendationId, body: AssignRequest, session: SessionDep, user: AnalystDep
) -> FollowUpResult:
    return _follow_up(
        transition="assign", recommendation_id=recommendation_id, body=body, session=session, user=user,
        owner=body.owner, due_date=body.due_date,
    )


@router.post(
    "/{recommendation_id}/start",
    response_model=FollowUpResult,
    summary="Mark an approved recommendation in progress (its owner, an approver or an admin)",
    responses=FOLLOW_UP_RESPONSES,
)
def start_route(
    recommendation_id: RecommendationId, body: FollowUpRequest, session: SessionDep, user: AnalystDep
) -> FollowUpResult:
    return _follow_up(
        transition="start", recommendation_id=recommendation_id, body=body, session=session, user=user
    )


@router.post(
    "/{recommendation_id}/execute",
    response_model=FollowUpResult,
    summary="Mark an approved or in-progress recommendation executed; its outcome is measured from now",
    responses=FOLLOW_UP_RESPONSES,
)
def execute_route(
    recommendation_id: RecommendationId, body: FollowUpRequest, session: SessionDep, user: AnalystDep
) -> FollowUpResult:
    return _follow_up(
        transition="execute", recommendation_id=recommendation_id, body=body, session=session, user=user
    )


@router.post(
    "/{recommendation_id}/abandon",
    response_model=FollowUpResult,
    summary="Abandon an approved or in-progress recommendation with a reason code",
    responses=FOLLOW_UP_RESPONSES,
)
def abandon_route(
    recommendation_id: RecommendationId, body: AbandonRequest, session: SessionDep, user: AnalystDep
) -> FollowUpResult:
    return _follow_up(
        transition="abandon", recommendation_id=recommendation_id, body=body, session=session, user=user,
        reason_code=body.reason_code,
    )
