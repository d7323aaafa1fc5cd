"""Simulated interventions in the demo history, with stated true effects (issue #21, docs/OUTCOMES.md).

Four quarterly review rounds, at `as_of` − 390, − 300, − 210 and − 120 days (so every 90-day
window has ended by `as_of`). At each round an account that is alive, at least 60 days old and
has never been in a round before is *eligible* when a churn signal is on that week, and gets one
retention action by its strongest signal:

    payment trouble             → billing_resolution     (true uplift TRUE_UPLIFT below)
    champion gone               → champion_rebuild
    trouble ≥ 0.6, Enterprise   → exec_sponsor_outreach
    trouble ≥ 0.6, otherwise    → adoption_workshop

A share HOLDOUT_SHARE of eligible accounts is held out — by the product's own rule (sha256 of
account id + action, tools/outcomes/holdout.py; reimplemented here because crm/ does not import
tools/, and a test checks the two agree). The others are proposed 7 days before the round,
decided 5 days before (approved with P_APPROVE, else rejected with a random reason), and an
approved one is executed on the round day with P_EXECUTE (else abandoned). Approval and
execution are drawn independently of the account's future, so the executed and the held-out
accounts are comparable.

The effect: an executed account whose (untreated) churn day falls in (day 0, day 0 + 90] is saved
with probability TRUE_UPLIFT[action] — it does not churn (then or later in the history). So the
true relative reduction of 90-day churn is exactly TRUE_UPLIFT. Each account enters at most one
round, so no account is in a treated and a control group at once. The draws come from their own
random stream: every other table of the demo is unchanged except the saved accounts' churn.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

ROUNDS_BEFORE_AS_OF = (390, 300, 210, 120)
HOLDOUT_SHARE = 0.10
P_APPROVE = 0.8
P_EXECUTE = 0.85
TROUBLE_THRESHOLD = 0.6
#: The simulated true effect: relative reduction of 90-day churn of an executed action.
TRUE_UPLIFT: dict[str, float] = {
    "billing_resolution": 0.35,
    "champion_rebuild": 0.20,
    "exec_sponsor_outreach": 0.0,
    "adoption_workshop": 0.25,
}
APPROVERS = ("Nora Quinn", "Omar Said", "Paula Jensen")
REJECT_CODES = ("not_worth_it", "bad_timing", "already_in_progress", "not_applicable")
ABANDON_CODES = ("customer_unreachable", "no_capacity")
RATIONALE = {
    "billing_resolution": "Failed or late payments: fix billing before it becomes a churn reason.",
    "champion_rebuild": "The champion left: rebuild the relationship with a new sponsor.",
    "exec_sponsor_outreach": "Enterprise account in trouble: executive sponsor meeting.",
    "adoption_workshop": "Usage and sentiment are falling: run an adoption workshop.",
}


def holdout_bucket(account_id: str, action: str) -> float:
    """Same as tools.outcomes.holdout.holdout_bucket (tests check they agree)."""
    digest = hashlib.sha256(f"{account_id}\x1f{action}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def content_hash(account_id: str, action: str, rationale: str, evidence: dict[str, Any]) -> str:
    """Same as tools.recommendations.content_hash for an account target without expected value."""
    payload = {
        "target": {"account_id": account_id, "activity_id": None},
        "action": action,
        "rationale": rationale,
        "evidence": evidence,
        "expected_value": None,
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class Signals:
    """What the interventions read of a chunk: latent weekly states and account facts."""

    ids: NDArray[Any]  # account id strings
    valid: NDArray[np.bool_]
    created: NDArray[np.int64]
    enterprise: NDArray[np.bool_]
    trouble: NDArray[np.float64]  # (C, W)
    pay: NDArray[np.bool_]
    champ_gone: NDArray[np.bool_]
    csm: list[str]


def _at(day: int) -> dt.datetime:
    return dt.datetime.combine(dt.date.fromordinal(day), dt.time(10, 0))


def simulate_interventions(
    s: Signals, churn_day: NDArray[np.int64], *, as_of: int, monday0: int, rng: np.random.Generator
) -> tuple[NDArray[np.bool_], dict[str, dict[str, list[Any]]]]:
    """Decide, execute and apply the interventions; returns (saved accounts, table columns).

    `churn_day` is the untreated churn day per account; saved accounts are those whose churn the
    action prevented. Tables: recommendations (with `local` ids), recommendation_events (with
    `recommendation_local`) and recommendation_holdouts.
    """
    C = len(churn_day)
    W = s.trouble.shape[1]
    n_rounds = len(ROUNDS_BEFORE_AS_OF)
    # every draw for the whole chunk up front, so an account's fate depends only on its position
    u_approve = rng.random((C, n_rounds))
    u_execute = rng.random((C, n_rounds))
    u_save = rng.random((C, n_rounds))
    u_reason = rng.integers(0, 1 << 30, (C, n_rounds))
    u_owner = rng.integers(0, 1 << 30, (C, n_rounds))
    saved = np.zeros(C, dtype=bool)
    seen = np.zeros(C, dtype=bool)
    recs: dict[str, list[Any]] = {k: [] for k in (
        "account_id", "action", "rationale", "evidence", "expected_value", "status", "version", "content_hash",
        "created_at", "created_by", "run_id", "decided_at", "decided_by", "owner", "due_date", "executed_at",
    )}
    events: dict[str, list[Any]] = {k: [] for k in (
        "recommendation_local", "event", "actor", "at", "reason_code", "note", "data",
    )}
    holdouts: dict[str, list[Any]] = {k: [] for k in (
        "account_id", "action", "at", "created_by", "run_id", "share", "evidence",
    )}

    def event(local: int, name: str, actor: str, at: dt.datetime, code: str | None = None,
              data: dict[str, Any] | None = None) -> None:
        for key, value in (("recommendation_local", local), ("event", name), ("actor", actor), ("at", at),
                           ("reason_code", code), ("note", None), ("data", data or {})):
            events[key].append(value)

    for r, before in enumerate(ROUNDS_BEFORE_AS_OF):
        day0 = as_of - before
        week = min(max((day0 - monday0) // 7, 0), W - 1)
        alive = s.valid & ~seen & (s.created <= day0 - 60) & (churn_day > day0) & ~saved
        troubled = s.trouble[:, week] >= TROUBLE_THRESHOLD
        signal = alive & (s.pay[:, week] | s.champ_gone[:, week] | troubled)
        for i in np.flatnonzero(signal).tolist():
            seen[i] = True
            if s.pay[i, week]:
                action = "billing_resolution"
            elif s.champ_gone[i, week]:
                action = "champion_rebuild"
            elif s.enterprise[i]:
                action = "exec_sponsor_outreach"
            else:
                action = "adoption_workshop"
            account = str(s.ids[i])
            evidence = {"demo": True, "signal": action, "trouble": round(float(s.trouble[i, week]), 3)}
            if holdout_bucket(account, action) < HOLDOUT_SHARE:
                for key, value in (("account_id", account), ("action", action), ("at", _at(day0)),
                                   ("created_by", "agent"), ("run_id", None), ("share", HOLDOUT_SHARE),
                                   ("evidence", evidence)):
                    holdouts[key].append(value)
                continue
            local = len(recs["account_id"])
            proposed, decided = _at(day0 - 7), _at(day0 - 5)
            approver = APPROVERS[int(u_owner[i, r]) % len(APPROVERS)]
            owner = s.csm[i]
            approved = u_approve[i, r] < P_APPROVE
            executed = approved and u_execute[i, r] < P_EXECUTE
            status = "executed" if executed else "abandoned" if approved else "rejected"
            version = 3 if approved else 1  # approval, then the assign and execute/abandon steps bump it
            rationale = RATIONALE[action]
            row: dict[str, Any] = {
                "account_id": account, "action": action, "rationale": rationale, "evidence": evidence,
                "expected_value": None, "status": status, "version": version,
                "content_hash": content_hash(account, action, rationale, evidence),
                "created_at": proposed, "created_by": "agent", "run_id": None, "decided_at": decided,
                "decided_by": approver, "owner": owner if approved else None,
                "due_date": dt.date.fromordinal(day0 + 7) if approved else None,
                "executed_at": _at(day0) if executed else None,
            }
            for key, value in row.items():
                recs[key].append(value)
            event(local, "proposed", "agent", proposed, data={"evidence": evidence})
            if not approved:
                code = REJECT_CODES[int(u_reason[i, r]) % len(REJECT_CODES)]
                event(local, "rejected", approver, decided, code, {"version": 1, "role": "approver"})
                continue
            event(local, "approved", approver, decided, None, {"version": 1, "role": "approver"})
            event(local, "assigned", approver, decided, None, {"owner": owner, "version": 2})
            if not executed:
                code = ABANDON_CODES[int(u_reason[i, r]) % len(ABANDON_CODES)]
                event(local, "abandoned", owner, _at(day0), code, {"from_status": "approved", "version": 3})
                continue
            event(local, "executed", owner, _at(day0), None, {"from_status": "approved", "version": 3})
            if day0 < churn_day[i] <= day0 + 90 and u_save[i, r] < TRUE_UPLIFT[action]:
                saved[i] = True
    return saved, {"recommendations": recs, "recommendation_events": events, "recommendation_holdouts": holdouts}
