"""Human review of recommendations: list, show, and decide (approve / reject) — SPEC §8.

Deciding is for people with the approver or admin role, and is never bound to the agent
as a tool. The role is checked here again, whoever the caller is (API, CLI, Slack), so an
interface that forgets its own check still cannot let a viewer decide.

A decision is bound to the exact content the approver saw: the caller passes the
`version` and/or `content_hash` it showed, and the decision is written with one atomic
compare-and-set

    UPDATE recommendations SET status = :decision, decided_at = :now, decided_by = :actor
    WHERE id = :id AND status = 'pending' AND version = :v AND content_hash = :h
      AND created_at > :expiry_cutoff

so of any number of concurrent calls exactly one changes the row; the others get
`AlreadyDecided` naming who decided what. The decision and its `recommendation_events`
row are added to the caller's transaction; the caller commits (e.g. `core.db.session_scope`),
or calls `decide_and_commit`, the transaction the API, the CLI and Slack all run.

A pending recommendation older than the TTL (settings `RECOMMENDATION_TTL_DAYS`) is
*expired*: it is listed with status "expired" and can no longer be decided (the evidence
behind it is stale). `expire_stale` writes that status and an "expired" event for good.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal, get_args

from pydantic import BaseModel, Field
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from core.contract import UtcDateTime
from crm.models import AgentRun, Conversation, Recommendation, RecommendationEvent, User
from tools.errors import DataFault, ToolInputError, unknown
from tools.recommendations import content_hash as compute_content_hash

Decision = Literal["approved", "rejected"]
Status = Literal["pending", "approved", "rejected", "expired", "in_progress", "executed", "abandoned"]
Transition = Literal["assign", "start", "execute", "abandon"]
Role = Literal["viewer", "analyst", "approver", "admin"]

STATUSES: tuple[Status, ...] = get_args(Status)
ROLES: tuple[Role, ...] = get_args(Role)
DECIDING_ROLES: tuple[Role, ...] = ("approver", "admin")
DECISIONS: tuple[Decision, ...] = get_args(Decision)
TRANSITIONS: tuple[Transition, ...] = get_args(Transition)
#: Follow-up after approval: the statuses each step may start from, and the status it leaves.
FOLLOW_UP: dict[Transition, tuple[tuple[str, ...], str | None]] = {
    "assign": (("approved", "in_progress"), None),  # owner / due date; the status stays
    "start": (("approved",), "in_progress"),
    "execute": (("approved", "in_progress"), "executed"),
    "abandon": (("approved", "in_progress"), "abandoned"),
}
FOLLOW_UP_EVENTS: dict[Transition, str] = {
    "assign": "assigned",
    "start": "started",
    "execute": "executed",
    "abandon": "abandoned",
}

#: Why a recommendation was rejected; "other" needs a note.
REJECT_REASONS: dict[str, str] = {
    "evidence_wrong": "the figures or facts behind it are wrong or stale",
    "not_worth_it": "the expected value does not justify the cost or effort",
    "already_in_progress": "the account or activity is already being handled another way",
    "bad_timing": "the right action at the wrong time",
    "not_applicable": "does not fit this account or activity",
    "other": "anything else (explain in the note)",
}
#: Why a recommendation was approved (optional); "other" needs a note.
APPROVE_REASONS: dict[str, str] = {
    "agree": "the evidence and expected value support it",
    "strategic": "worth doing for reasons beyond the expected value",
    "customer_request": "the customer asked for it",
    "other": "anything else (explain in the note)",
}
#: Why an approved recommendation was abandoned; "other" needs a note.
ABANDON_REASONS: dict[str, str] = {
    "customer_unreachable": "the customer could not be reached or declined",
    "account_churned": "the account churned before it could be carried out",
    "superseded": "another action replaced it",
    "no_capacity": "nobody could carry it out in time",
    "other": "anything else (explain in the note)",
}
NOTE_MAX = 2000
ACTOR_MAX = 100
MAX_PAGE = 500


# ------------------------------------------------------------------------------ models


class RecommendationEventView(BaseModel):
    """One entry of the append-only audit trail."""

    id: int
    event: str = Field(
        description="proposed, approved, rejected, expired, assigned, started, executed or abandoned"
    )
    actor: str
    at: UtcDateTime
    reason_code: str | None
    note: str | None
    data: dict[str, Any]


class RecommendationView(BaseModel):
    """A recommendation as a reviewer sees it; `status` is the effective one (pending past its
    TTL shows as expired) and `version` + `content_hash` are what a decision must quote."""

    id: int
    status: Status
    stored_status: str = Field(description="The status column as stored (pending until expired is written)")
    decidable: bool = Field(description="True while it is pending and not expired")
    account_id: str | None
    activity_id: str | None
    action: str
    rationale: str
    evidence: dict[str, Any]
    expected_value: float | None
    version: int
    content_hash: str
    created_at: UtcDateTime
    created_by: str
    run_id: str | None
    expires_at: UtcDateTime | None = Field(
        description="When it stops being decidable; null when decided or no TTL"
    )
    decided_at: UtcDateTime | None
    decided_by: str | None
    owner: str | None = Field(default=None, description="Who carries it out once approved")
    due_date: dt.date | None = None
    executed_at: UtcDateTime | None = None


class RecommendationDetail(RecommendationView):
    """A recommendation with its evidence, its audit trail and the conversation that filed it."""

    conversation_id: str | None
    events: list[RecommendationEventView]


class RecommendationFilters(BaseModel):
    status: Status | None = None
    account_id: str | None = None
    activity_id: str | None = None
    action: str | None = None
    created_from: dt.date | None = None
    created_to: dt.date | None = None


class RecommendationPage(BaseModel):
    """A page of recommendations, newest first, with the total that match the filters."""

    items: list[RecommendationView]
    total: int
    limit: int
    offset: int
    filters: RecommendationFilters
    ttl_days: int | None


class DecisionResult(BaseModel):
    """The decision that was recorded."""

    recommendation_id: int
    status: Decision
    decided_by: str
    decided_at: UtcDateTime
    reason_code: str | None
    note: str | None
    version: int
    content_hash: str
    event_id: int
    explanation: str


class DecisionInfo(BaseModel):
    """Who decided a recommendation, what and when (named to the losers of a race)."""

    recommendation_id: int
    status: str
    decided_by: str | None
    decided_at: UtcDateTime | None
    reason_code: str | None
    note: str | None


# ------------------------------------------------------------------------------ errors


class DecisionRefused(Exception):
    """A decision that was not recorded; `error` is a stable code, the message says why."""

    error: str = "refused"

    def __init__(self, message: str, *, recommendation_id: int, **info: Any) -> None:
        super().__init__(message)
        self.message = message
        self.recommendation_id = recommendation_id
        self.info = info

    def as_dict(self) -> dict[str, Any]:
        return {
            "error": self.error,
            "message": self.message,
            "recommendation_id": self.recommendation_id,
            **self.info,
        }


class NotAuthorised(DecisionRefused):
    error = "forbidden"


class RecommendationNotFound(DecisionRefused):
    error = "not_found"


class AlreadyDecided(DecisionRefused):
    error = "already_decided"

    def __init__(self, message: str, *, winner: DecisionInfo) -> None:
        super().__init__(
            message, recommendation_id=winner.recommendation_id, winner=winner.model_dump(mode="json")
        )
        self.winner = winner


class ContentChanged(DecisionRefused):
    error = "content_changed"


class RecommendationExpired(DecisionRefused):
    error = "expired"


# ------------------------------------------------------------------------------ helpers


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _naive_utc(at: dt.datetime | None) -> dt.datetime:
    if at is None:
        return _utc_now()
    if at.tzinfo is not None:
        return at.astimezone(dt.UTC).replace(tzinfo=None)
    return at


def _cutoff(now: dt.datetime, ttl_days: int | None) -> dt.datetime | None:
    """Recommendations created at or before this instant are expired (None: never)."""
    if not ttl_days:
        return None
    return now - dt.timedelta(days=ttl_days)


def _effective(rec: Recommendation, cutoff: dt.datetime | None) -> Status:
    if rec.status == "pending" and cutoff is not None and rec.created_at <= cutoff:
        return "expired"
    if rec.status in STATUSES:
        return rec.status
    raise DataFault(
        f"recommendation #{rec.id} has an unknown stored status {rec.status!r}; the status column of "
        f"recommendations holds only {', '.join(STATUSES)}: correct that row in the database"
    )


def _view(rec: Recommendation, cutoff: dt.datetime | None, ttl_days: int | None) -> RecommendationView:
    status = _effective(rec, cutoff)
    expires_at = rec.created_at + dt.timedelta(days=ttl_days) if ttl_days and status == "pending" else None
    return RecommendationView(
        id=rec.id,
        status=status,
        stored_status=rec.status,
        decidable=status == "pending",
        account_id=rec.account_id,
        activity_id=rec.activity_id,
        action=rec.action,
        rationale=rec.rationale,
        evidence=rec.evidence or {},
        expected_value=rec.expected_value,
        version=rec.version,
        content_hash=rec.content_hash,
        created_at=rec.created_at,
        created_by=rec.created_by,
        run_id=rec.run_id,
        expires_at=expires_at,
        decided_at=rec.decided_at,
        decided_by=rec.decided_by,
        owner=rec.owner,
        due_date=rec.due_date,
        executed_at=rec.executed_at,
    )


def _check_ttl(ttl_days: int | None) -> int | None:
    if ttl_days is not None and (isinstance(ttl_days, bool) or ttl_days < 0):
        raise ToolInputError(f"ttl_days must be 0 (never) or a positive number of days; got {ttl_days!r}")
    return ttl_days or None


def _status_condition(status: Status, cutoff: dt.datetime | None) -> ColumnElement[bool]:
    col = Recommendation.status
    if cutoff is None:
        return col == status
    if status == "pending":
        return (col == "pending") & (Recommendation.created_at > cutoff)
    if status == "expired":
        return or_(col == "expired", (col == "pending") & (Recommendation.created_at <= cutoff))
    return col == status


# ------------------------------------------------------------------------------ reading


def list_recommendations(
    *,
    session: Session,
    status: str | None = None,
    account_id: str | None = None,
    activity_id: str | None = None,
    action: str | None = None,
    created_from: dt.date | None = None,
    created_to: dt.date | None = None,
    limit: int = 50,
    offset: int = 0,
    ttl_days: int | None = None,
    now: dt.datetime | None = None,
) -> RecommendationPage:
    """List recommendations, newest first, filtered by status, target, action and creation date.

    Args:
        status: pending, approved, rejected or expired (effective status: pending past the TTL is expired).
        account_id: only recommendations for this account.
        activity_id: only recommendations for this value-chain activity.
        action: only this action id, e.g. "exec_sponsor_call".
        created_from: first creation day to include (YYYY-MM-DD).
        created_to: last creation day to include (YYYY-MM-DD).
        limit: page size, 1-500.
        offset: rows to skip.
        ttl_days: days a pending recommendation stays decidable (None or 0: forever).
        now: the current time, naive UTC (defaults to the wall clock).
    """
    if status is not None and status not in STATUSES:
        raise unknown("status", status, STATUSES, "recommendations")
    if not 1 <= limit <= MAX_PAGE:
        raise ToolInputError(f"limit must be between 1 and {MAX_PAGE}; got {limit}")
    if offset < 0:
        raise ToolInputError(f"offset must be 0 or more; got {offset}")
    if created_from and created_to and created_from > created_to:
        raise ToolInputError(f"created_from {created_from} is after created_to {created_to}")
    ttl = _check_ttl(ttl_days)
    cutoff = _cutoff(_naive_utc(now), ttl)

    conditions: list[ColumnElement[bool]] = []
    if status is not None:
        conditions.append(_status_condition(status, cutoff))
    if account_id is not None:
        conditions.append(Recommendation.account_id == account_id.strip())
    if activity_id is not None:
        conditions.append(Recommendation.activity_id == activity_id.strip())
    if action is not None:
        conditions.append(Recommendation.action == action.strip())
    if created_from is not None:
        conditions.append(Recommendation.created_at >= dt.datetime.combine(created_from, dt.time()))
    if created_to is not None:
        end = dt.datetime.combine(created_to + dt.timedelta(days=1), dt.time())
        conditions.append(Recommendation.created_at < end)

    total = session.scalar(select(func.count()).select_from(Recommendation).where(*conditions)) or 0
    rows = session.scalars(
        select(Recommendation)
        .where(*conditions)
        .order_by(Recommendation.created_at.desc(), Recommendation.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return RecommendationPage(
        items=[_view(r, cutoff, ttl) for r in rows],
        total=total,
        limit=limit,
        offset=offset,
        filters=RecommendationFilters(
            status=status,
            account_id=account_id,
            activity_id=activity_id,
            action=action,
            created_from=created_from,
            created_to=created_to,
        ),
        ttl_days=ttl,
    )


def get_recommendation(
    *,
    session: Session,
    recommendation_id: int,
    ttl_days: int | None = None,
    now: dt.datetime | None = None,
) -> RecommendationDetail:
    """One recommendation with its evidence, audit trail and the conversation that filed it.

    Args:
        recommendation_id: the recommendation's number.
        ttl_days: days a pending recommendation stays decidable (None or 0: forever).
        now: the current time, naive UTC (defaults to the wall clock).
    """
    ttl = _check_ttl(ttl_days)
    cutoff = _cutoff(_naive_utc(now), ttl)
    rec = session.get(Recommendation, recommendation_id)
    if rec is None:
        raise RecommendationNotFound(
            f"no recommendation #{recommendation_id}", recommendation_id=recommendation_id
        )
    events = session.scalars(
        select(RecommendationEvent)
        .where(RecommendationEvent.recommendation_id == rec.id)
        .order_by(RecommendationEvent.at, RecommendationEvent.id)
    ).all()
    conversation_id = None
    if rec.run_id is not None:
        conversation_id = session.scalar(select(AgentRun.conversation_id).where(AgentRun.id == rec.run_id))
    view = _view(rec, cutoff, ttl)
    return RecommendationDetail(
        **view.model_dump(),
        conversation_id=conversation_id,
        events=[
            RecommendationEventView(
                id=e.id,
                event=e.event,
                actor=e.actor,
                at=e.at,
                reason_code=e.reason_code,
                note=e.note,
                data=e.data or {},
            )
            for e in events
        ],
    )


def _decision_info(session: Session, recommendation_id: int) -> DecisionInfo | None:
    """The row's current decision, read fresh from the database (not the identity map)."""
    row = session.execute(
        select(Recommendation.status, Recommendation.decided_by, Recommendation.decided_at).where(
            Recommendation.id == recommendation_id
        )
    ).first()
    if row is None:
        return None
    event = session.execute(
        select(RecommendationEvent.reason_code, RecommendationEvent.note)
        .where(
            RecommendationEvent.recommendation_id == recommendation_id,
            RecommendationEvent.event == row.status,
        )
        .order_by(RecommendationEvent.at.desc(), RecommendationEvent.id.desc())
        .limit(1)
    ).first()
    return DecisionInfo(
        recommendation_id=recommendation_id,
        status=row.status,
        decided_by=row.decided_by,
        decided_at=row.decided_at,
        reason_code=event.reason_code if event else None,
        note=event.note if event else None,
    )


def _already_decided(info: DecisionInfo) -> AlreadyDecided:
    what = f"{info.status} by {info.decided_by or 'unknown'}"
    when = f" at {info.decided_at.isoformat(timespec='seconds')}Z" if info.decided_at else ""
    reason = f" (reason {info.reason_code!r})" if info.reason_code else ""
    return AlreadyDecided(
        f"recommendation #{info.recommendation_id} was already {what}{when}{reason}; nothing was changed",
        winner=info,
    )


# ------------------------------------------------------------------------------ deciding


def _check_reason(
    decision: Decision, reason_code: str | None, note: str | None
) -> tuple[str | None, str | None]:
    reasons = REJECT_REASONS if decision == "rejected" else APPROVE_REASONS
    code = reason_code.strip() if isinstance(reason_code, str) and reason_code.strip() else None
    text = note.strip() if isinstance(note, str) and note.strip() else None
    if code is None and decision == "rejected":
        raise ToolInputError("a rejection needs a reason_code; valid: " + ", ".join(REJECT_REASONS))
    if code is not None and code not in reasons:
        raise unknown("reason_code", code, reasons, f"{decision} recommendations")
    if code == "other" and text is None:
        raise ToolInputError('reason_code "other" needs a note saying why')
    if text is not None and len(text) > NOTE_MAX:
        raise ToolInputError(f"note must be at most {NOTE_MAX} characters; got {len(text)}")
    return code, text


def _asker(session: Session, run_id: str | None) -> str | None:
    """The user whose question the agent run `run_id` answered (its conversation's owner), if known:
    whoever asked for a proposal may not decide it, whatever name the proposal was filed under."""
    if not run_id:
        return None
    return session.scalar(
        select(User.name)
        .join(Conversation, Conversation.user_id == User.id)
        .join(AgentRun, AgentRun.conversation_id == Conversation.id)
        .where(AgentRun.id == run_id)
    )


def decide_recommendation(
    *,
    session: Session,
    recommendation_id: int,
    decision: Decision,
    actor: str,
    role: str,
    expected_version: int | None = None,
    content_hash: str | None = None,
    reason_code: str | None = None,
    note: str | None = None,
    ttl_days: int | None = None,
    now: dt.datetime | None = None,
    credential: dict[str, str] | None = None,
) -> DecisionResult:
    """Approve or reject a pending recommendation, exactly once, bound to the content seen.

    Only the approver and admin roles may decide, and not on a recommendation they filed
    themselves. The decision is refused when the recommendation is unknown, already decided
    (the winner is named), changed since the version/hash the approver saw, or expired.
    Adds the row update and one audit event to the caller's transaction; the caller commits.

    Args:
        recommendation_id: the recommendation's number.
        decision: "approved" or "rejected".
        actor: the user deciding (recorded as decided_by and on the event).
        role: the actor's role: viewer, analyst, approver or admin.
        expected_version: the version the approver was shown (give this and/or content_hash).
        content_hash: the content hash the approver was shown.
        reason_code: why; required to reject (see REJECT_REASONS), optional to approve.
        note: free text for the audit trail; required with reason_code "other".
        ttl_days: days a pending recommendation stays decidable (None or 0: forever).
        now: the decision time, naive UTC (defaults to the wall clock).
        credential: how the interface established who `actor` is (e.g. an API key prefix or
            the local operator's OS login); recorded on the audit event.
    """
    if decision not in DECISIONS:
        raise unknown("decision", decision, DECISIONS)
    actor_name = actor.strip() if isinstance(actor, str) else ""
    if not actor_name or len(actor_name) > ACTOR_MAX:
        raise ToolInputError(f"actor must be a user name of 1-{ACTOR_MAX} characters; got {actor!r}")
    if role not in DECIDING_ROLES:
        raise NotAuthorised(
            f"role {role!r} may not decide recommendations; only {' or '.join(DECIDING_ROLES)} may",
            recommendation_id=recommendation_id,
        )
    if expected_version is None and content_hash is None:
        raise ToolInputError(
            "give expected_version and/or content_hash: the version of the recommendation you reviewed"
        )
    if expected_version is not None and (isinstance(expected_version, bool) or expected_version < 1):
        raise ToolInputError(f"expected_version must be a positive integer; got {expected_version!r}")
    code, text = _check_reason(decision, reason_code, note)
    ttl = _check_ttl(ttl_days)
    at = _naive_utc(now)
    cutoff = _cutoff(at, ttl)

    rec = session.get(Recommendation, recommendation_id, populate_existing=True)
    if rec is None:
        raise RecommendationNotFound(
            f"no recommendation #{recommendation_id}", recommendation_id=recommendation_id
        )
    if rec.status == "expired":
        raise RecommendationExpired(
            f"recommendation #{rec.id} expired"
            + (f" at {rec.decided_at.isoformat(timespec='seconds')}Z" if rec.decided_at else "")
            + "; its evidence is stale — ask for a fresh recommendation",
            recommendation_id=rec.id,
        )
    if rec.status != "pending":
        info = _decision_info(session, rec.id)
        if info is None:
            raise RecommendationNotFound(f"no recommendation #{rec.id}", recommendation_id=rec.id)
        raise _already_decided(info)
    if actor_name in (rec.created_by, _asker(session, rec.run_id)):
        raise NotAuthorised(
            f"{actor_name!r} asked for recommendation #{rec.id}; another approver must decide it",
            recommendation_id=rec.id,
        )
    current = {"version": rec.version, "content_hash": rec.content_hash}
    if expected_version is not None and expected_version != rec.version:
        raise ContentChanged(
            f"recommendation #{rec.id} is at version {rec.version}, not the version {expected_version} "
            "you reviewed; review it again before deciding",
            recommendation_id=rec.id,
            current=current,
        )
    if content_hash is not None and content_hash.strip().lower() != rec.content_hash:
        raise ContentChanged(
            f"recommendation #{rec.id} has content hash {rec.content_hash[:12]}…, not the "
            f"{content_hash.strip()[:12]}… you reviewed; review it again before deciding",
            recommendation_id=rec.id,
            current=current,
        )
    recomputed = compute_content_hash(
        account_id=rec.account_id,
        activity_id=rec.activity_id,
        action=rec.action,
        rationale=rec.rationale,
        evidence=rec.evidence or {},
        expected_value=rec.expected_value,
    )
    if recomputed != rec.content_hash:
        raise ContentChanged(
            f"recommendation #{rec.id} was edited without a new version (its content no longer "
            "matches its content hash); it cannot be decided until it is filed again",
            recommendation_id=rec.id,
            current=current,
        )
    if cutoff is not None and rec.created_at <= cutoff:
        expired_at = rec.created_at + dt.timedelta(days=ttl or 0)
        raise RecommendationExpired(
            f"recommendation #{rec.id} expired at {expired_at.isoformat(timespec='seconds')}Z "
            f"({ttl} days after it was filed); its evidence is stale — ask for a fresh recommendation",
            recommendation_id=rec.id,
            expired_at=expired_at.isoformat(),
        )

    conditions = [
        Recommendation.id == rec.id,
        Recommendation.status == "pending",
        Recommendation.version == rec.version,
        Recommendation.content_hash == rec.content_hash,
    ]
    if cutoff is not None:
        conditions.append(Recommendation.created_at > cutoff)
    result = session.execute(
        update(Recommendation)
        .where(*conditions)
        .values(status=decision, decided_at=at, decided_by=actor_name)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        # Someone else got there first (or the content changed under us): say who and what.
        info = _decision_info(session, rec.id)
        if info is None:
            raise RecommendationNotFound(f"no recommendation #{rec.id}", recommendation_id=rec.id)
        if info.status != "pending":
            raise _already_decided(info)
        raise ContentChanged(
            f"recommendation #{rec.id} changed while you were deciding; review it again",
            recommendation_id=rec.id,
        )
    event = RecommendationEvent(
        recommendation_id=rec.id,
        event=decision,
        actor=actor_name,
        at=at,
        reason_code=code,
        note=text,
        data={"version": rec.version, "content_hash": rec.content_hash, "role": role}
        | ({"credential": dict(credential)} if credential else {}),
    )
    session.add(event)
    session.flush()
    session.refresh(rec)
    verb = "Approved" if decision == "approved" else "Rejected"
    target = f"account {rec.account_id}" if rec.account_id else f"activity {rec.activity_id}"
    return DecisionResult(
        recommendation_id=rec.id,
        status=decision,
        decided_by=actor_name,
        decided_at=at,
        reason_code=code,
        note=text,
        version=rec.version,
        content_hash=rec.content_hash,
        event_id=event.id,
        explanation=f"{verb} recommendation #{rec.id} ({rec.action!r} for {target}) as {actor_name}"
        + (f", reason {code!r}" if code else "")
        + ".",
    )


def decide_and_commit(
    *,
    session: Session,
    recommendation_id: int,
    decision: Decision,
    actor: str,
    role: str,
    expected_version: int | None = None,
    content_hash: str | None = None,
    reason_code: str | None = None,
    note: str | None = None,
    ttl_days: int | None = None,
    now: dt.datetime | None = None,
    credential: dict[str, str] | None = None,
) -> DecisionResult:
    """`decide_recommendation` as its own transaction on `session`, the one every interface runs.

    A decision is committed. A refusal or a mistake in the call is rolled back and raised; an
    expired recommendation first has its expiry written for good (`expire_stale`, committed),
    so a fresh recommendation may be filed for its target. The arguments are
    `decide_recommendation`'s.
    """
    try:
        result = decide_recommendation(
            session=session,
            recommendation_id=recommendation_id,
            decision=decision,
            actor=actor,
            role=role,
            expected_version=expected_version,
            content_hash=content_hash,
            reason_code=reason_code,
            note=note,
            ttl_days=ttl_days,
            now=now,
            credential=credential,
        )
    except DecisionRefused as exc:
        session.rollback()
        if isinstance(exc, RecommendationExpired):
            expire_stale(session=session, ttl_days=ttl_days, now=now)
            session.commit()
        raise
    except ToolInputError:
        session.rollback()
        raise
    session.commit()
    return result


def expire_stale(
    *, session: Session, ttl_days: int | None, actor: str = "system", now: dt.datetime | None = None
) -> list[int]:
    """Write status "expired" (and an "expired" event) on pending recommendations past the TTL.

    Args:
        ttl_days: days a pending recommendation stays decidable (None or 0: nothing expires).
        actor: who runs the sweep (recorded on the events).
        now: the current time, naive UTC (defaults to the wall clock).
    """
    ttl = _check_ttl(ttl_days)
    at = _naive_utc(now)
    cutoff = _cutoff(at, ttl)
    if cutoff is None:
        return []
    ids = list(
        session.scalars(
            select(Recommendation.id)
            .where(Recommendation.status == "pending", Recommendation.created_at <= cutoff)
            .order_by(Recommendation.id)
        )
    )
    expired: list[int] = []
    for rid in ids:
        result = session.execute(
            update(Recommendation)
            .where(Recommendation.id == rid, Recommendation.status == "pending")
            .values(status="expired", decided_at=at, decided_by=actor)
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 0) == 1:
            session.add(
                RecommendationEvent(
                    recommendation_id=rid, event="expired", actor=actor, at=at, data={"ttl_days": ttl}
                )
            )
            expired.append(rid)
    session.flush()
    return expired


# ------------------------------------------------------------------------------ follow-up


class FollowUpResult(BaseModel):
    """A follow-up step that was recorded on an approved recommendation."""

    recommendation_id: int
    transition: Transition
    status: Status
    owner: str | None
    due_date: dt.date | None
    executed_at: UtcDateTime | None
    actor: str
    at: UtcDateTime
    reason_code: str | None
    note: str | None
    version: int = Field(description="The new version: quote it for the next step")
    event_id: int
    explanation: str


class InvalidTransition(DecisionRefused):
    error = "invalid_transition"


def _check_follow_up_reason(
    transition: Transition, reason_code: str | None, note: str | None
) -> tuple[str | None, str | None]:
    code = reason_code.strip() if isinstance(reason_code, str) and reason_code.strip() else None
    text = note.strip() if isinstance(note, str) and note.strip() else None
    if transition == "abandon":
        if code is None:
            raise ToolInputError("abandoning needs a reason_code; valid: " + ", ".join(ABANDON_REASONS))
        if code not in ABANDON_REASONS:
            raise unknown("reason_code", code, ABANDON_REASONS, "abandoned recommendations")
        if code == "other" and text is None:
            raise ToolInputError('reason_code "other" needs a note saying why')
    elif code is not None:
        raise ToolInputError(f"reason_code applies only to abandon; got {code!r} for {transition}")
    if text is not None and len(text) > NOTE_MAX:
        raise ToolInputError(f"note must be at most {NOTE_MAX} characters; got {len(text)}")
    return code, text


def follow_up(
    *,
    session: Session,
    recommendation_id: int,
    transition: Transition,
    actor: str,
    role: str,
    expected_version: int,
    owner: str | None = None,
    due_date: dt.date | None = None,
    reason_code: str | None = None,
    note: str | None = None,
    now: dt.datetime | None = None,
    credential: dict[str, str] | None = None,
) -> FollowUpResult:
    """Record a follow-up step on an approved recommendation, exactly once, bound to the version seen.

    Steps: assign (owner and/or due date; approver or admin), start (approved → in_progress),
    execute (approved or in_progress → executed; `executed_at` is what outcomes are measured
    from), abandon (approved or in_progress → abandoned, with a reason code). Start, execute and
    abandon are for approvers and admins, or an analyst who is the recommendation's owner; a
    viewer never. Each step bumps `version` with one compare-and-set on (id, status, version), so
    of concurrent steps exactly one wins, and adds one audit event. The caller commits.

    Args:
        recommendation_id: the recommendation's number.
        transition: assign, start, execute or abandon.
        actor: the user recording the step.
        role: the actor's role: viewer, analyst, approver or admin.
        expected_version: the version the actor was shown.
        owner: assign: who carries it out (start: defaults to the actor when nobody owns it).
        due_date: assign: by when.
        reason_code: abandon: why (see ABANDON_REASONS).
        note: free text for the audit trail; required with reason_code "other".
        now: the time of the step, naive UTC (defaults to the wall clock).
        credential: how the interface established who `actor` is; recorded on the event.
    """
    if transition not in TRANSITIONS:
        raise unknown("transition", transition, TRANSITIONS)
    actor_name = actor.strip() if isinstance(actor, str) else ""
    if not actor_name or len(actor_name) > ACTOR_MAX:
        raise ToolInputError(f"actor must be a user name of 1-{ACTOR_MAX} characters; got {actor!r}")
    if role not in ROLES:
        raise unknown("role", role, ROLES)
    if isinstance(expected_version, bool) or not isinstance(expected_version, int) or expected_version < 1:
        raise ToolInputError(f"expected_version must be a positive integer; got {expected_version!r}")
    new_owner = owner.strip() if isinstance(owner, str) and owner.strip() else None
    if new_owner is not None and len(new_owner) > ACTOR_MAX:
        raise ToolInputError(f"owner must be a user name of 1-{ACTOR_MAX} characters; got {owner!r}")
    if transition == "assign" and new_owner is None and due_date is None:
        raise ToolInputError("assign needs an owner and/or a due_date")
    if transition != "assign" and (due_date is not None or (new_owner is not None and transition != "start")):
        raise ToolInputError(f"owner and due_date are set with assign, not {transition}")
    code, text = _check_follow_up_reason(transition, reason_code, note)
    at = _naive_utc(now)

    rec = session.get(Recommendation, recommendation_id, populate_existing=True)
    if rec is None:
        raise RecommendationNotFound(
            f"no recommendation #{recommendation_id}", recommendation_id=recommendation_id
        )
    deciding = role in DECIDING_ROLES
    if transition == "assign" and not deciding:
        raise NotAuthorised(
            f"role {role!r} may not assign recommendations; only {' or '.join(DECIDING_ROLES)} may",
            recommendation_id=rec.id,
        )
    if not deciding and not (role == "analyst" and rec.owner == actor_name):
        raise NotAuthorised(
            f"{actor_name!r} ({role}) may not {transition} recommendation #{rec.id}: only its owner "
            f"({rec.owner or 'nobody yet'}) as an analyst, or an approver or admin, may",
            recommendation_id=rec.id,
        )
    sources, target = FOLLOW_UP[transition]
    if rec.status not in sources:
        raise InvalidTransition(
            f"recommendation #{rec.id} is {rec.status}; {transition} applies only to "
            f"{' or '.join(sources)} recommendations",
            recommendation_id=rec.id,
            current={"status": rec.status, "version": rec.version},
        )
    if expected_version != rec.version:
        raise ContentChanged(
            f"recommendation #{rec.id} is at version {rec.version}, not the version {expected_version} "
            "you saw; look at it again before changing it",
            recommendation_id=rec.id,
            current={"status": rec.status, "version": rec.version},
        )
    values: dict[str, Any] = {"version": rec.version + 1}
    if target is not None:
        values["status"] = target
    if transition == "assign":
        if new_owner is not None:
            values["owner"] = new_owner
        if due_date is not None:
            values["due_date"] = due_date
    elif transition == "start" and rec.owner is None:
        values["owner"] = new_owner or actor_name
    if transition == "execute":
        values["executed_at"] = at
        if rec.owner is None:
            values["owner"] = actor_name
    result = session.execute(
        update(Recommendation)
        .where(
            Recommendation.id == rec.id,
            Recommendation.status == rec.status,
            Recommendation.version == rec.version,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        row = session.execute(
            select(Recommendation.status, Recommendation.version).where(Recommendation.id == rec.id)
        ).one()
        raise ContentChanged(
            f"recommendation #{rec.id} changed while you were updating it (now {row.status}, version "
            f"{row.version}); look at it again",
            recommendation_id=rec.id,
            current={"status": row.status, "version": row.version},
        )
    event = RecommendationEvent(
        recommendation_id=rec.id,
        event=FOLLOW_UP_EVENTS[transition],
        actor=actor_name,
        at=at,
        reason_code=code,
        note=text,
        data={
            "from_status": rec.status,
            "version": rec.version + 1,
            "role": role,
            **{k: (v.isoformat() if isinstance(v, dt.date | dt.datetime) else v) for k, v in values.items()
               if k in ("owner", "due_date", "status")},
        }
        | ({"credential": dict(credential)} if credential else {}),
    )
    session.add(event)
    session.flush()
    session.refresh(rec)
    status = _effective(rec, None)
    what = {
        "assign": "Assigned",
        "start": "Started",
        "execute": "Executed",
        "abandon": "Abandoned",
    }[transition]
    details = []
    if transition == "assign" or transition == "start":
        if rec.owner:
            details.append(f"owner {rec.owner}")
        if rec.due_date:
            details.append(f"due {rec.due_date}")
    if code:
        details.append(f"reason {code!r}")
    return FollowUpResult(
        recommendation_id=rec.id,
        transition=transition,
        status=status,
        owner=rec.owner,
        due_date=rec.due_date,
        executed_at=rec.executed_at,
        actor=actor_name,
        at=at,
        reason_code=code,
        note=text,
        version=rec.version,
        event_id=event.id,
        explanation=f"{what} recommendation #{rec.id} ({rec.action!r}) as {actor_name}; status {status}, "
        f"version {rec.version}" + (f" ({', '.join(details)})" if details else "") + ".",
    )


def follow_up_and_commit(
    *,
    session: Session,
    recommendation_id: int,
    transition: Transition,
    actor: str,
    role: str,
    expected_version: int,
    owner: str | None = None,
    due_date: dt.date | None = None,
    reason_code: str | None = None,
    note: str | None = None,
    now: dt.datetime | None = None,
    credential: dict[str, str] | None = None,
) -> FollowUpResult:
    """`follow_up` as its own transaction on `session`: committed, or rolled back and raised.
    The arguments are `follow_up`'s."""
    try:
        result = follow_up(
            session=session,
            recommendation_id=recommendation_id,
            transition=transition,
            actor=actor,
            role=role,
            expected_version=expected_version,
            owner=owner,
            due_date=due_date,
            reason_code=reason_code,
            note=note,
            now=now,
            credential=credential,
        )
    except (DecisionRefused, ToolInputError):
        session.rollback()
        raise
    session.commit()
    return result
