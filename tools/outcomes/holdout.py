"""The holdout: a fixed share of eligible accounts is kept out of each action, as a control group.

Whether an account is held out of an action is a pure function of (account id, action id,
share): the first 8 bytes of sha256("account_id\\x1faction") read as a fraction of 2^64,
held out when below the share. The same account is held out of the same action every time and
on every machine; different actions hold out different accounts. Changing the share only
moves accounts at the boundary (a larger share keeps every account a smaller one held out).

When someone tries to file a held-out action, nothing is filed: `record_holdout` writes a
`recommendation_holdouts` row instead (the control unit whose outcome is measured from its
date, as an executed recommendation's is from its execution) and the caller is told why.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.contract import UtcDateTime
from crm.models import RecommendationHoldout
from tools.errors import ToolInputError

DEFAULT_SHARE = 0.10
#: A second attempt within this many days returns the first holdout row (one control unit per window).
DEDUP_DAYS = 90


def holdout_bucket(account_id: str, action: str) -> float:
    """Where (account, action) falls in [0, 1): the hash that decides the holdout."""
    digest = hashlib.sha256(f"{account_id}\x1f{action}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def check_share(share: float) -> float:
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0.0 <= share <= 0.5:
        raise ToolInputError(f"holdout share must be a number from 0 to 0.5; got {share!r}")
    return float(share)


def is_held_out(account_id: str, action: str, share: float = DEFAULT_SHARE) -> bool:
    """True when the account is in the holdout (control group) of this action."""
    return holdout_bucket(account_id, action) < check_share(share)


def holdout_reason(account_id: str, action: str, share: float) -> str:
    return (
        f"{account_id} is in the {share:.0%} holdout of {action!r} (the control group that measures "
        f"whether it works), so it is not proposed for this account"
    )


class HoldoutRecord(BaseModel):
    """A control unit: the account was held out of the action at `at`."""

    id: int
    account_id: str
    action: str
    at: UtcDateTime
    share: float
    created_by: str
    duplicate_of: int | None


def record_holdout(
    *,
    session: Session,
    account_id: str,
    action: str,
    share: float,
    created_by: str,
    evidence: dict[str, Any] | None = None,
    run_id: str | None = None,
    now: dt.datetime | None = None,
) -> HoldoutRecord:
    """Write the control-group row for a held-out (account, action), once per DEDUP_DAYS; flushes."""
    at = now if now is not None else dt.datetime.now(dt.UTC).replace(tzinfo=None)
    if at.tzinfo is not None:
        at = at.astimezone(dt.UTC).replace(tzinfo=None)
    recent = session.scalars(
        select(RecommendationHoldout)
        .where(
            RecommendationHoldout.account_id == account_id,
            RecommendationHoldout.action == action,
            RecommendationHoldout.at > at - dt.timedelta(days=DEDUP_DAYS),
        )
        .order_by(RecommendationHoldout.at.desc(), RecommendationHoldout.id.desc())
        .limit(1)
    ).first()
    if recent is not None:
        return HoldoutRecord(
            id=recent.id, account_id=recent.account_id, action=recent.action, at=recent.at,
            share=recent.share, created_by=recent.created_by, duplicate_of=recent.id,
        )
    row = RecommendationHoldout(
        account_id=account_id, action=action, at=at, created_by=created_by, run_id=run_id,
        share=share, evidence=evidence or {},
    )
    session.add(row)
    session.flush()
    return HoldoutRecord(
        id=row.id, account_id=account_id, action=action, at=at, share=share, created_by=created_by,
        duplicate_of=None,
    )
