"""Reading kept churn-score snapshots (`churn_scores`) instead of recomputing every account.

`valuechain churn score` (``write_score_snapshot``) keeps the probability of every account
active on a date, per model version. `rank` by a churn metric and list-mode `churn_risk`
read that snapshot when it exists for the *active logistic model* and the requested date
and covers every filtered account; otherwise they compute features as before. Both paths
give the same probabilities (the same arithmetic, stored as 8-byte floats), so only the
time differs — and the result's `source` says which path was taken.

The rule-based fallback is always computed: its health score is not a function of the
stored probability, and it only runs on small data anyway.

A snapshot describes the data as it was when it was written: after loading rows dated on
or before its date (new data usually moves the data's as-of date, which retires it), run
`valuechain churn score` again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import ColumnElement, and_, select
from sqlalchemy.orm import Session

from crm.models import Account, ChurnScore
from tools.churn.features import column, raw_rows, sort_by_id
from tools.churn.model import ActiveModel


@dataclass(frozen=True)
class StoredScores:
    """Kept probabilities of the filtered accounts, rows sorted by account id (as computed ones)."""

    ids: np.ndarray
    arr: np.ndarray
    probability: np.ndarray


def usable(model: ActiveModel, day: dt.date | None) -> bool:
    """Whether a snapshot may stand in for computing: a trained logistic model and a date."""
    return model.linear is not None and day is not None


def has_snapshot(session: Session, day: dt.date, model_version: str) -> bool:
    """True when `churn_scores` holds rows for this date and model version (an index lookup)."""
    found = session.execute(
        select(ChurnScore.id)
        .where(ChurnScore.as_of == day, ChurnScore.model_version == model_version)
        .limit(1)
    ).first()
    return found is not None


def join_condition(day: dt.date, model_version: str) -> ColumnElement[bool]:
    """ON clause joining `accounts` to its kept score for this date and model."""
    return and_(
        ChurnScore.account_id == Account.id,
        ChurnScore.as_of == day,
        ChurnScore.model_version == model_version,
    )


def stored_scores(
    session: Session, *, day: dt.date | None, model: ActiveModel, where: Sequence[ColumnElement[bool]]
) -> StoredScores | None:
    """Kept scores of every account matching `where`, or None when a snapshot cannot be used
    (rule-based model, no snapshot for this date and model, or a matching account without one)."""
    if day is None or not usable(model, day) or not has_snapshot(session, day, model.version):
        return None
    stmt = (
        select(Account.id, Account.arr, ChurnScore.probability)
        .select_from(Account)
        .outerjoin(ChurnScore, join_condition(day, model.version))
        .where(*where)
    )
    rows = sort_by_id(raw_rows(session.connection(), stmt))
    if not rows:
        return StoredScores(
            ids=np.array([], dtype=object), arr=np.array([], dtype=np.float64), probability=np.array([])
        )
    ids, arr, prob = (column(rows, j) for j in range(3))
    if any(p is None for p in prob):
        return None
    return StoredScores(
        ids=np.array(ids, dtype=object),
        arr=np.nan_to_num(np.array(arr, dtype=np.float64), nan=0.0),
        probability=np.array(prob, dtype=np.float64),
    )
