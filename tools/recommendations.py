"""The `propose_recommendation` tool: file an intervention for a human to approve (SPEC §5.5).

It writes a *pending* recommendation and a "proposed" audit event. Nothing here can set a
status, approve, reject or execute: there is no parameter for it, and the row is always
created as pending. Deciding belongs to the review API, behind the approver role.

The tool adds and flushes the rows in the caller's session; the caller's unit of work
(e.g. `core.db.session_scope`) commits them together with its own run log.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.contract import UtcDateTime
from crm.models import AgentRun, Recommendation, RecommendationEvent
from tools.common import require_account, require_activity
from tools.errors import ToolInputError
from tools.outcomes.holdout import (
    DEFAULT_SHARE,
    HoldoutRecord,
    check_share,
    holdout_reason,
    is_held_out,
    record_holdout,
)
from tools.projection import pick

ACTION_MAX = 64
ACTOR_MAX = 100


class HeldOut(ToolInputError):
    """The account is in the action's holdout: nothing was filed. `holdout` is the control-group
    row written in the caller's session (commit it to keep the control unit)."""

    def __init__(self, message: str, *, holdout: HoldoutRecord) -> None:
        super().__init__(message)
        self.holdout = holdout


class ProposeInputs(BaseModel):
    account_id: str | None
    activity_id: str | None
    action: str
    rationale: str
    evidence: dict[str, Any]
    expected_value: float | None
    created_by: str
    run_id: str | None


class ProposedRecommendation(BaseModel):
    """The pending recommendation that was filed (or the identical one already waiting)."""

    id: int
    status: Literal["pending"]
    version: int
    account_id: str | None
    activity_id: str | None
    action: str
    rationale: str
    evidence: dict[str, Any]
    expected_value: float | None
    content_hash: str
    created_at: UtcDateTime
    created_by: str
    run_id: str | None
    duplicate_of: int | None
    explanation: str
    inputs: ProposeInputs


def project_proposed(r: ProposedRecommendation) -> dict[str, Any]:
    """What the model reads of `propose_recommendation`: what was filed, and that a human decides."""
    return {
        **pick(r, "id", "status", "action", "account_id", "activity_id", "expected_value"),
        "note": "pending: a human must approve it",
        "duplicate_of": r.duplicate_of,
    }


def canonical_json(payload: Any) -> str:
    """Key-sorted, compact JSON with no NaN: the form that content hashes are taken over."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def content_hash(
    *,
    account_id: str | None,
    activity_id: str | None,
    action: str,
    rationale: str,
    evidence: dict[str, Any],
    expected_value: float | None,
) -> str:
    """sha256 of the canonical JSON of (target, action, rationale, evidence, expected_value)."""
    payload = {
        "target": {"account_id": account_id, "activity_id": activity_id},
        "action": action,
        "rationale": rationale,
        "evidence": evidence,
        "expected_value": expected_value,
    }
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _check_text(name: str, value: str, max_len: int | None = None) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        raise ToolInputError(f"{name} must be a non-empty string")
    if max_len is not None and len(text) > max_len:
        raise ToolInputError(f"{name} must be at most {max_len} characters; got {len(text)}")
    return text


def _result(rec: Recommendation, inputs: ProposeInputs, duplicate_of: int | None) -> ProposedRecommendation:
    target = f"account {rec.account_id}" if rec.account_id else f"activity {rec.activity_id}"
    if duplicate_of is not None:
        explanation = (
            f"An identical pending recommendation #{rec.id} ({rec.action!r} for {target}) already "
            f"exists; nothing new was filed. It waits for a human approver."
        )
    else:
        explanation = (
            f"Filed recommendation #{rec.id}: {rec.action!r} for {target}, status pending. "
            f"It takes effect only if a human approver approves it."
        )
    return ProposedRecommendation(
        id=rec.id,
        status="pending",
        version=rec.version,
        account_id=rec.account_id,
        activity_id=rec.activity_id,
        action=rec.action,
        rationale=rec.rationale,
        evidence=rec.evidence,
        expected_value=rec.expected_value,
        content_hash=rec.content_hash,
        created_at=rec.created_at,
        created_by=rec.created_by,
        run_id=rec.run_id,
        duplicate_of=duplicate_of,
        explanation=explanation,
        inputs=inputs,
    )


def _pending(
    session: Session, *, account_id: str | None, activity_id: str | None, action: str
) -> Recommendation | None:
    """The pending recommendation of `action` for the target, if one exists."""
    return session.scalars(
        select(Recommendation)
        .where(
            Recommendation.status == "pending",
            Recommendation.action == action,
            Recommendation.account_id.is_(None)
            if account_id is None
            else Recommendation.account_id == account_id,
            Recommendation.activity_id.is_(None)
            if activity_id is None
            else Recommendation.activity_id == activity_id,
        )
        .order_by(Recommendation.id)
        .limit(1)
    ).first()


def propose_recommendation(
    *,
    session: Session,
    action: str,
    rationale: str,
    evidence: dict[str, Any],
    account_id: str | None = None,
    activity_id: str | None = None,
    expected_value: float | None = None,
    created_by: str = "agent",
    run_id: str | None = None,
    now: dt.datetime | None = None,
    holdout_share: float = DEFAULT_SHARE,
) -> ProposedRecommendation:
    """File a recommended intervention for an account or activity as PENDING for human approval.

    It never approves or executes anything. If the same action is already pending for the same
    target, that recommendation is returned (duplicate_of) instead of a second one. An account
    in the action's holdout (control group) is refused: nothing is filed.

    Args:
        action: short action id, e.g. "exec_sponsor_call" or "renegotiate_contract".
        rationale: why, in one or two sentences, citing the figures used.
        evidence: the tool figures behind it, e.g. {"churn_probability": 0.62, "open_tickets": 4}.
        account_id: the account it is for (give this or activity_id).
        activity_id: the value-chain activity it is for (give this or account_id).
        expected_value: expected value in the account currency, if a tool computed one.
        created_by: who proposes it (set by the system).
        run_id: the agent run that proposed it (set by the system).
        now: audit timestamp, naive UTC (set by the system; defaults to the current time).
        holdout_share: share of accounts held out of each action (set by the system).
    """
    if (account_id is None) == (activity_id is None):
        raise ToolInputError("give exactly one of account_id or activity_id")
    action = _check_text("action", action, ACTION_MAX)
    rationale = _check_text("rationale", rationale)
    created_by = _check_text("created_by", created_by, ACTOR_MAX)
    if not isinstance(evidence, dict):
        raise ToolInputError(f"evidence must be an object of named figures; got {type(evidence).__name__}")
    try:
        evidence = json.loads(canonical_json(evidence))
    except (TypeError, ValueError) as exc:
        raise ToolInputError(f"evidence must be plain JSON (no NaN or infinity): {exc}") from exc
    if expected_value is not None:
        if isinstance(expected_value, bool) or not isinstance(expected_value, int | float):
            raise ToolInputError(f"expected_value must be a number; got {expected_value!r}")
        expected_value = float(expected_value)
        if not math.isfinite(expected_value):
            raise ToolInputError(f"expected_value must be finite; got {expected_value!r}")
    if account_id is not None:
        account_id = require_account(session, account_id.strip()).id
    if activity_id is not None:
        activity_id = require_activity(session, activity_id.strip()).id
    if run_id is not None and session.get(AgentRun, run_id) is None:
        raise ValueError(f"run_id {run_id!r} does not name an agent run")
    share = check_share(holdout_share)
    if account_id is not None and is_held_out(account_id, action, share):
        held = record_holdout(
            session=session, account_id=account_id, action=action, share=share, created_by=created_by,
            evidence=evidence, run_id=run_id, now=now,
        )
        raise HeldOut(
            f"not filed: {holdout_reason(account_id, action, share)}; it was recorded as holdout "
            f"#{held.id} instead. Choose another action or account.",
            holdout=held,
        )

    inputs = ProposeInputs(
        account_id=account_id,
        activity_id=activity_id,
        action=action,
        rationale=rationale,
        evidence=evidence,
        expected_value=expected_value,
        created_by=created_by,
        run_id=run_id,
    )
    existing = _pending(session, account_id=account_id, activity_id=activity_id, action=action)
    if existing is not None:
        return _result(existing, inputs, duplicate_of=existing.id)

    at = now if now is not None else _utc_now()
    if at.tzinfo is not None:
        at = at.astimezone(dt.UTC).replace(tzinfo=None)
    rec = Recommendation(
        account_id=account_id,
        activity_id=activity_id,
        action=action,
        rationale=rationale,
        evidence=evidence,
        expected_value=expected_value,
        status="pending",
        version=1,
        content_hash=content_hash(
            account_id=account_id,
            activity_id=activity_id,
            action=action,
            rationale=rationale,
            evidence=evidence,
            expected_value=expected_value,
        ),
        created_at=at,
        created_by=created_by,
        run_id=run_id,
    )
    try:
        # The partial unique index (one pending row per target and action) settles a race with
        # another writer that filed the same action after the check above: undo only this row.
        with session.begin_nested():
            session.add(rec)
            session.flush()
    except IntegrityError:
        existing = _pending(session, account_id=account_id, activity_id=activity_id, action=action)
        if existing is None:  # not the duplicate guard: some other constraint failed
            raise
        return _result(existing, inputs, duplicate_of=existing.id)
    session.add(
        RecommendationEvent(
            recommendation_id=rec.id,
            event="proposed",
            actor=created_by,
            at=at,
            data={"evidence": evidence},
        )
    )
    session.flush()
    return _result(rec, inputs, duplicate_of=None)
