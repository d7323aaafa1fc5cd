"""Outcomes of executed recommendations: the attribution report (issue #21, docs/OUTCOMES.md)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from api.deps import AUTH_RESPONSES, ReaderDep, SessionDep, SettingsDep
from core.contract import Day
from tools.errors import ToolInputError
from tools.outcomes.report import OutcomeReport, outcomes_report

router = APIRouter(prefix="/api/v1/outcomes", tags=["outcomes"])


@router.get(
    "",
    response_model=OutcomeReport,
    summary="Attribution per action: proposals, approvals, executions, 90-day outcome treated vs holdout",
    responses={**AUTH_RESPONSES, 422: {"description": "Invalid filter"}},
)
def outcomes_route(
    session: SessionDep,
    settings: SettingsDep,
    _user: ReaderDep,
    segment: Annotated[str | None, Query(max_length=32, examples=["Enterprise"])] = None,
    approver: Annotated[str | None, Query(max_length=100, description="Only what this user approved")] = None,
    period_from: Annotated[Day | None, Query(description="First day (YYYY-MM-DD)")] = None,
    period_to: Annotated[Day | None, Query(description="Last day (YYYY-MM-DD)")] = None,
    as_of: Annotated[Day | None, Query(description="As of this date (default: the data's)")] = None,
) -> OutcomeReport:
    playbook = str(settings.playbook_path) if settings.playbook_path is not None else None
    try:
        return outcomes_report(
            session=session, segment=segment, approver=approver, period_from=period_from,
            period_to=period_to, as_of=as_of, playbook_path=playbook,
        )
    except ToolInputError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None
