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
round, so no account is in a treated and a control group of one action at once.

Growth offers (generator version 5): at each round, after the retention actions, an account that
is alive, at least 60 days old, healthy that week (trouble < HEALTHY, no payment trouble, champion
in place) and has no signal is offered, with probability P_GROWTH_OFFER and once in the history,
plan_upgrade_offer (Enterprise) or seat_expansion_offer (others), through the same holdout and
decision steps. An executed offer wins, with probability TRUE_P_SUCCESS[action], business that
would not have come anyway: an extra won upsell deal within 90 days (`growth_wins`, written by
crm/demo/deals.py). The report's difference in win rate estimates TRUE_P_SUCCESS × (1 − b), b the
share that wins organic business in the window anyway (docs/OUTCOMES.md §6). The draws come from their own
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
#: Growth actions: the stated true effect is the chance that an executed offer wins business
#: that would not have come anyway (the playbook's `p_success`): an executed account gets, with
#: this probability, an extra won expansion deal closing within 90 days, of EXPANSION_FRACTION of
#: its ARR (the playbook's expansion_value).
TRUE_P_SUCCESS: dict[str, float] = {
    "seat_expansion_offer": 0.30,
    "plan_upgrade_offer": 0.10,
}
EXPANSION_FRACTION: dict[str, float] = {"seat_expansion_offer": 0.2, "plan_upgrade_offer": 0.3}
GROWTH_PRODUCT: dict[str, str] = {"seat_expansion_offer": "Growth plan", "plan_upgrade_offer": "Business plan"}
#: A healthy account (trouble below HEALTHY, no payment trouble, champion in place) is offered a
#: growth action at a round with this probability, once in the history.
HEALTHY = 0.3
P_GROWTH_OFFER = 0.15
#: app_meta key holding TRUE_UPLIFT and TRUE_P_SUCCESS as JSON, written only when interventions are simulated, so
#: the attribution report can show the truth beside its estimates on a demo database.
TRUE_EFFECTS_KEY = "demo_true_effects"
APPROVERS = ("Nora Quinn", "Omar Said", "Paula Jensen")
REJECT_CODES = ("not_worth_it", "bad_timing", "already_in_progress", "not_applicable")
ABANDON_CODES = ("customer_unreachable", "no_capacity")
RATIONALE = {
    "billing_resolution": "Failed or late payments: fix billing before it becomes a churn reason.",
    "champion_rebuild": "The champion left: rebuild the relationship with a new sponsor.",
    "exec_sponsor_outreach": "Enterprise account in trouble: executive sponsor meeting.",
    "adoption_workshop": "Usage and sentiment are falling: run an adoption workshop.",
    "seat_expansion_offer": "Healthy and growing usage: offer more seats.",
    "plan_upgrade_offer": "Healthy Enterprise account: offer the next plan up.",
}


def true_effects_json() -> str:
    """The stated true effects as app_meta stores them: {action: {"uplift": u} or {"p_success": p}}."""
    effects: dict[str, dict[str, float]] = {a: {"uplift": u} for a, u in TRUE_UPLIFT.items()}
    effects.update({a: {"p_success": p} for a, p in TRUE_P_SUCCESS.items()})
    return json.dumps(effects, sort_keys=True)


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
    `recommendation_local`), recommendation_holdouts, and `growth_wins` — the extra won expansion
    deals executed growth offers brought ({row, created, close, fraction, product}), for
    crm/demo/deals.py to write as opportunities.
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
    # growth draws come after the retention ones, so the retention history is what it was
    u_offer = rng.random((C, n_rounds))
    u_win = rng.random((C, n_rounds))
    u_open = rng.integers(3, 21, (C, n_rounds))  # days from day 0 to the deal's creation
    u_cycle = rng.integers(14, 61, (C, n_rounds))  # days from creation to the win
    saved = np.zeros(C, dtype=bool)
    seen = np.zeros(C, dtype=bool)
    offered = np.zeros(C, dtype=bool)
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
    wins: dict[str, list[Any]] = {k: [] for k in ("row", "created", "close", "fraction", "product")}

    def event(local: int, name: str, actor: str, at: dt.datetime, code: str | None = None,
              data: dict[str, Any] | None = None) -> None:
        for key, value in (("recommendation_local", local), ("event", name), ("actor", actor), ("at", at),
                           ("reason_code", code), ("note", None), ("data", data or {})):
            events[key].append(value)

    def file(i: int, r: int, day0: int, action: str, evidence: dict[str, Any]) -> bool:
        """Hold out, or propose, decide and maybe execute `action` for account row `i`; True if executed."""
        account = str(s.ids[i])
        if holdout_bucket(account, action) < HOLDOUT_SHARE:
            for key, value in (("account_id", account), ("action", action), ("at", _at(day0)),
                               ("created_by", "agent"), ("run_id", None), ("share", HOLDOUT_SHARE),
                               ("evidence", evidence)):
                holdouts[key].append(value)
            return False
        local = len(recs["account_id"])
        proposed, decided = _at(day0 - 7), _at(day0 - 5)
        approver = APPROVERS[int(u_owner[i, r]) % len(APPROVERS)]
        owner = s.csm[i]
        approved = u_approve[i, r] < P_APPROVE
        executed = bool(approved and u_execute[i, r] < P_EXECUTE)
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
            return False
        event(local, "approved", approver, decided, None, {"version": 1, "role": "approver"})
        event(local, "assigned", approver, decided, None, {"owner": owner, "version": 2})
        if not executed:
            code = ABANDON_CODES[int(u_reason[i, r]) % len(ABANDON_CODES)]
            event(local, "abandoned", owner, _at(day0), code, {"from_status": "approved", "version": 3})
            return False
        event(local, "executed", owner, _at(day0), None, {"from_status": "approved", "version": 3})
        return True

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
            evidence = {"demo": True, "signal": action, "trouble": round(float(s.trouble[i, week]), 3)}
            if not file(i, r, day0, action, evidence):
                continue
            if day0 < churn_day[i] <= day0 + 90 and u_save[i, r] < TRUE_UPLIFT[action]:
                saved[i] = True
        # growth: a healthy account never in a review round, offered once in the history
        healthy = (alive & ~signal & ~offered & (s.trouble[:, week] < HEALTHY) & ~s.pay[:, week]
                   & ~s.champ_gone[:, week] & (u_offer[:, r] < P_GROWTH_OFFER))
        for i in np.flatnonzero(healthy).tolist():
            offered[i] = True
            action = "plan_upgrade_offer" if s.enterprise[i] else "seat_expansion_offer"
            evidence = {"demo": True, "signal": "healthy", "trouble": round(float(s.trouble[i, week]), 3)}
            if not file(i, r, day0, action, evidence) or u_win[i, r] >= TRUE_P_SUCCESS[action]:
                continue
            created = day0 + int(u_open[i, r])
            close = min(created + int(u_cycle[i, r]), day0 + 90)
            if churn_day[i] <= close:  # a leaving customer buys nothing more
                continue
            for key, value in (("row", i), ("created", created), ("close", close),
                               ("fraction", EXPANSION_FRACTION[action]), ("product", GROWTH_PRODUCT[action])):
                wins[key].append(value)
    return saved, {"recommendations": recs, "recommendation_events": events, "recommendation_holdouts": holdouts,
                   "growth_wins": wins}
