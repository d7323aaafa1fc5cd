"""The `next_best_action` tool: rank playbook interventions for one account by expected value.

The playbook is data (``tools/playbook.yaml``, overridable with ``playbook_path``) in a small,
safe condition language: lists of ``{feature, op, value}`` comparisons (ANDed), ``{any: [...]}``
groups (ORed) and ``{driver, in_top}`` tests on the account's churn drivers. Nothing in it
is ever evaluated as code.

Expected value: retention = ``arr × p_churn × uplift − cost``; growth =
``p_success × expansion_value − cost``. An action with a recommendation for the account that
was proposed (pending) or approved within ``cooldown_days`` of ``as_of`` — or rejected within
``rejection_days`` — is suppressed and listed with the reason. Recommendations dated after
``as_of`` count too: a decision made today about data as of last month still stands.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from crm.models import PORTER_CATEGORIES, Recommendation, RecommendationEvent
from tools.churn.features import (
    ATTR_PREFIX,
    CATEGORICAL_FEATURES,
    INFO_FEATURES,
    NUMERIC_FEATURES,
    AccountScope,
)
from tools.churn.phrases import PHRASES, driver_phrase
from tools.churn.schemas import Band, Method
from tools.churn.scoring import assess, band_of, explain_rows, model_info
from tools.common import data_as_of, require_account
from tools.errors import ToolInputError
from tools.outcomes.holdout import DEFAULT_SHARE, check_share, holdout_reason, is_held_out
from tools.outcomes.learning import DEFAULT_PRIOR_STRENGTH, LearnedEffect, learn
from tools.outcomes.measure import counts, load_units
from tools.projection import pick

SHIPPED_PLAYBOOK = Path(__file__).with_name("playbook.yaml")
CONTEXT_FEATURES = ("p_churn", "band", "health", "arr", "segment", "plan", "status")
KNOWN_FEATURES = frozenset(NUMERIC_FEATURES + INFO_FEATURES + CATEGORICAL_FEATURES + CONTEXT_FEATURES)
KNOWN_DRIVERS = frozenset(NUMERIC_FEATURES + CATEGORICAL_FEATURES)
Op = Literal["<", "<=", ">", ">=", "==", "!=", "in", "not_in", "is_missing", "is_present"]
Scalar = float | str


# --------------------------------------------------------------------------- playbook schema


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _show(value: Scalar | None) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _check_feature(name: str) -> str:
    if name in KNOWN_FEATURES or (name.startswith(ATTR_PREFIX) and len(name) > len(ATTR_PREFIX)):
        return name
    raise ValueError(f"unknown feature {name!r}; valid: {', '.join(sorted(KNOWN_FEATURES))} or attr:<field>")


class FeatureCondition(_Strict):
    feature: str
    op: Op
    value: Scalar | list[Scalar] | None = None

    @model_validator(mode="after")
    def _valid(self) -> FeatureCondition:
        _check_feature(self.feature)
        if self.op in ("in", "not_in") and not isinstance(self.value, list):
            raise ValueError(f"op {self.op!r} needs a list value")
        if self.op not in ("in", "not_in", "is_missing", "is_present") and (
            self.value is None or isinstance(self.value, list)
        ):
            raise ValueError(f"op {self.op!r} needs a single value")
        return self

    def text(self) -> str:
        if self.op in ("is_missing", "is_present"):
            return f"{self.feature} {self.op}"
        if isinstance(self.value, list):
            return f"{self.feature} {self.op} [{', '.join(_show(v) for v in self.value)}]"
        return f"{self.feature} {self.op} {_show(self.value)}"


class DriverCondition(_Strict):
    driver: str
    in_top: int = Field(default=3, ge=1, le=20)

    @model_validator(mode="after")
    def _valid(self) -> DriverCondition:
        if self.driver not in KNOWN_DRIVERS and not self.driver.startswith(ATTR_PREFIX):
            raise ValueError(
                f"unknown driver {self.driver!r}; valid: {', '.join(sorted(KNOWN_DRIVERS))} or attr:<field>"
            )
        return self

    def text(self) -> str:
        return f"{self.driver} among the top {self.in_top} churn drivers"


class AnyCondition(_Strict):
    any: list[Condition] = Field(min_length=1)


Condition = Annotated[FeatureCondition | DriverCondition | AnyCondition, Field(union_mode="left_to_right")]
AnyCondition.model_rebuild()


class Amount(_Strict):
    """A money amount: ``fixed + arr_fraction × arr``."""

    fixed: float = 0.0
    arr_fraction: float = Field(default=0.0, ge=0.0)

    def of(self, arr: float) -> float:
        return self.fixed + self.arr_fraction * arr

    def text(self, arr: float) -> str:
        if self.arr_fraction == 0:
            return _money(self.fixed)
        parts = [f"{self.arr_fraction:g} × arr {_money(arr)}"]
        if self.fixed:
            parts.insert(0, _money(self.fixed))
        return "(" + " + ".join(parts) + ")"


class RetentionEffect(_Strict):
    uplift: float = Field(gt=0.0, le=1.0, description="Relative reduction of the churn probability")


class GrowthEffect(_Strict):
    p_success: float = Field(ge=0.0, le=1.0)
    expansion_value: float | Amount


class PlaybookAction(_Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)
    description: str
    activity: str
    kind: Literal["retention", "growth"]
    cost: float | Amount = 0.0
    effect: RetentionEffect | GrowthEffect
    when: list[Condition] = Field(default_factory=list)

    @model_validator(mode="after")
    def _valid(self) -> PlaybookAction:
        if self.activity not in PORTER_CATEGORIES:
            raise ValueError(f"unknown activity {self.activity!r}; valid: {', '.join(PORTER_CATEGORIES)}")
        want = RetentionEffect if self.kind == "retention" else GrowthEffect
        if not isinstance(self.effect, want):
            raise ValueError(f"a {self.kind} action needs effect fields {list(want.model_fields)}")
        return self

    def cost_of(self, arr: float) -> float:
        return self.cost.of(arr) if isinstance(self.cost, Amount) else float(self.cost)


class Playbook(_Strict):
    version: int = 1
    prior_strength: float = Field(
        default=DEFAULT_PRIOR_STRENGTH, gt=0,
        description="Pseudo-observations each action's effect counts for when learning from outcomes",
    )
    actions: list[PlaybookAction] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> Playbook:
        ids = [a.id for a in self.actions]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate action ids: {dupes}")
        return self


@lru_cache(maxsize=16)
def _load_cached(path: str, _mtime_ns: int, _size: int) -> tuple[Playbook, str]:
    raw = Path(path).read_bytes()
    try:
        data = yaml.safe_load(raw)
        playbook = Playbook.model_validate(data)
    except (yaml.YAMLError, ValidationError) as exc:
        raise ToolInputError(f"playbook {path!r} is not valid: {exc}") from exc
    return playbook, hashlib.sha256(raw).hexdigest()[:12]


def load_playbook(path: str | Path | None = None) -> tuple[Playbook, str, str]:
    """The playbook, its content hash, and its name ("shipped" or the file path)."""
    target = Path(path) if path else SHIPPED_PLAYBOOK
    if not target.is_file():
        raise ToolInputError(f"playbook file {str(target)!r} does not exist")
    stat = target.stat()
    playbook, digest = _load_cached(str(target.resolve()), stat.st_mtime_ns, stat.st_size)
    return playbook, digest, "shipped" if path is None else str(path)


# --------------------------------------------------------------------------- results


class EvidenceItem(BaseModel):
    feature: str
    value: float | str | None
    condition: str
    phrase: str


class ActionOption(BaseModel):
    """One eligible action with its expected value and why it fits."""

    action: str
    description: str
    activity: str
    kind: Literal["retention", "growth"]
    expected_value: float = Field(
        description="retention: arr × p_churn × uplift − cost; growth: p_success × expansion_value − cost"
    )
    cost: float
    uplift: float | None = None
    p_success: float | None = None
    expansion_value: float | None = None
    formula: str = Field(description="The expected-value arithmetic with this account's numbers")
    evidence: list[EvidenceItem]
    rationale: str
    learning: LearnedEffect | None = Field(
        default=None,
        description="The effect used (uplift or p_success): playbook prior, learned estimate, sample sizes",
    )


class HeldOutAction(BaseModel):
    """An eligible, worthwhile action this account is held out of (the control group): not proposed."""

    action: str
    expected_value: float
    share: float
    reason: str


class SuppressedAction(BaseModel):
    action: str
    eligible: bool = Field(description="Whether the account meets the action's conditions today")
    expected_value: float | None
    recommendation_id: int
    status: str
    on: dt.date
    by: str | None
    reason: str


class UnprofitableAction(BaseModel):
    action: str
    expected_value: float


class NextBestActionInputs(BaseModel):
    account_id: str
    limit: int
    as_of: dt.date
    playbook: str
    cooldown_days: int
    rejection_days: int
    holdout_share: float = DEFAULT_SHARE


class NextBestActionResult(BaseModel):
    """Ranked interventions for one account."""

    account_id: str
    name: str
    as_of: dt.date
    arr: float
    p_churn: float
    band: Band
    churn_method: Method
    model_version: str
    actions: list[ActionOption] = Field(
        description="Eligible, not suppressed, positive expected value; best first"
    )
    suppressed: list[SuppressedAction]
    unprofitable: list[UnprofitableAction] = Field(description="Eligible but expected value ≤ 0")
    held_out: list[HeldOutAction] = Field(
        default_factory=list, description="Worthwhile but the account is in the action's holdout: not proposed"
    )
    eligible_count: int
    ineligible_count: int
    playbook_version: str = Field(description="sha256 prefix of the playbook file used")
    explanation: str
    inputs: NextBestActionInputs


def project_nba(r: NextBestActionResult) -> dict[str, Any]:
    """What the model reads of `next_best_action`: the ranked actions with their evidence phrases."""
    return {
        **pick(r, "account_id", "name", "arr", "p_churn", "band"),
        "actions": [
            {
                **pick(a, "action", "kind", "activity", "expected_value", "cost"),
                "because": list(dict.fromkeys(e.phrase for e in a.evidence)),
                # only once outcomes were learned from: without data the playbook value is used as before
                **({"effect": effect_text(a.learning)} if a.learning and a.learning.n_treated else {}),
            }
            for a in r.actions
        ],
        "suppressed": [pick(s, "action", "reason") for s in r.suppressed],
        **({"held_out": [pick(h, "action", "reason") for h in r.held_out]} if r.held_out else {}),
    }


def effect_text(e: LearnedEffect) -> str:
    """One line: the effect used, its prior and the sample it was learned from."""
    if e.n_treated and e.n_holdout:
        return (
            f"{e.parameter} {e.learned:.3f} learned (prior {e.prior:g}; {e.n_treated} treated, "
            f"{e.n_holdout} held out)"
        )
    return f"{e.parameter} {e.prior:g} (playbook prior; {e.n_treated} treated, no holdout outcome to compare yet)"


# --------------------------------------------------------------------------- evaluation


def _money(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"


def _compare(value: Any, op: str, target: Any) -> bool:
    if op == "is_missing":
        return value is None
    if op == "is_present":
        return value is not None
    if value is None:
        return False
    if op in ("in", "not_in"):
        members = {str(t) for t in target} | {t for t in target if isinstance(t, float | int)}
        inside = value in members or str(value) in members
        return inside if op == "in" else not inside
    if op in ("==", "!="):
        equal = value == target or (isinstance(value, str) and str(target) == value)
        return equal if op == "==" else not equal
    try:
        a, b = float(value), float(target)
    except (TypeError, ValueError):
        return False
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def _phrase(feature: str, context: dict[str, Any]) -> str:
    value = context.get(feature)
    if feature == "p_churn":
        return f"churn probability {value:.0%}"
    if feature == "health":
        return f"health {value:.0f} of 100"
    if feature == "band":
        return f"{value} churn-risk band"
    if feature == "arr":
        return f"ARR {_money(float(value or 0.0))}"
    if feature in PHRASES or feature.startswith(ATTR_PREFIX):
        return driver_phrase(feature, context)
    return f"{feature} {value if value is not None else 'unknown'}"


def _check(cond: Any, context: dict[str, Any], drivers: list[str]) -> tuple[bool, list[EvidenceItem]]:
    if isinstance(cond, FeatureCondition):
        value = context.get(cond.feature)
        ok = _compare(value, cond.op, cond.value)
        shown = value if isinstance(value, float | str) or value is None else float(value)
        return ok, [
            EvidenceItem(
                feature=cond.feature,
                value=shown,
                condition=cond.text(),
                phrase=_phrase(cond.feature, context),
            )
        ]
    if isinstance(cond, DriverCondition):
        top = drivers[: cond.in_top]
        ok = cond.driver in top
        rank = drivers.index(cond.driver) + 1 if cond.driver in drivers else None
        phrase = driver_phrase(cond.driver, context) + (f" (churn driver #{rank})" if rank else "")
        return ok, [
            EvidenceItem(feature=f"driver:{cond.driver}", value=rank, condition=cond.text(), phrase=phrase)
        ]
    met: list[EvidenceItem] = []
    for sub in cond.any:
        ok, items = _check(sub, context, drivers)
        if ok:
            met.extend(items)
    return bool(met), met


def _eligible(
    action: PlaybookAction, context: dict[str, Any], drivers: list[str]
) -> tuple[bool, list[EvidenceItem]]:
    evidence: list[EvidenceItem] = []
    for cond in action.when:
        ok, items = _check(cond, context, drivers)
        if not ok:
            return False, []
        evidence.extend(items)
    return True, evidence


def _value(
    action: PlaybookAction, arr: float, p_churn: float, effect: LearnedEffect | None = None
) -> ActionOption:
    cost = action.cost_of(arr)
    cost_text = action.cost.text(arr) if isinstance(action.cost, Amount) else _money(cost)
    if isinstance(action.effect, RetentionEffect):
        uplift = effect.learned if effect is not None else action.effect.uplift
        ev = arr * p_churn * uplift - cost
        formula = (
            f"arr {_money(arr)} × p_churn {p_churn:.4f} × uplift {uplift:g} − cost {cost_text} = {_money(ev)}"
        )
        extra: dict[str, Any] = {"uplift": uplift}
    else:
        growth = action.effect
        p_success = effect.learned if effect is not None else growth.p_success
        expansion = (
            growth.expansion_value.of(arr)
            if isinstance(growth.expansion_value, Amount)
            else float(growth.expansion_value)
        )
        exp_text = (
            growth.expansion_value.text(arr)
            if isinstance(growth.expansion_value, Amount)
            else _money(expansion)
        )
        ev = p_success * expansion - cost
        formula = f"p_success {p_success:g} × expansion_value {exp_text} − cost {cost_text} = {_money(ev)}"
        extra = {"p_success": p_success, "expansion_value": expansion}
    return ActionOption(
        action=action.id,
        description=action.description,
        activity=action.activity,
        kind=action.kind,
        expected_value=ev,
        cost=cost,
        formula=formula,
        evidence=[],
        rationale="",
        learning=effect,
        **extra,
    )


def _suppressions(
    session: Session, account_id: str, as_of: dt.date, cooldown_days: int, rejection_days: int
) -> dict[str, tuple[Recommendation, str, dt.date, str | None]]:
    """The most recent suppressing recommendation per action, with its reason text."""
    cooldown_from = as_of - dt.timedelta(days=cooldown_days)
    rejection_from = as_of - dt.timedelta(days=rejection_days)
    recs = session.scalars(
        select(Recommendation)
        .where(
            Recommendation.account_id == account_id,
            Recommendation.status.in_(("pending", "approved", "rejected", "in_progress", "executed")),
        )
        .order_by(Recommendation.id)
    ).all()
    found: dict[str, tuple[Recommendation, str, dt.date, str | None]] = {}
    for rec in recs:
        if rec.status == "rejected":
            when = (rec.decided_at or rec.created_at).date()
            if when <= rejection_from:
                continue
            note = session.scalar(
                select(RecommendationEvent.note)
                .where(
                    RecommendationEvent.recommendation_id == rec.id, RecommendationEvent.event == "rejected"
                )
                .order_by(RecommendationEvent.at.desc(), RecommendationEvent.id.desc())
                .limit(1)
            )
            reason = f"rejected on {when} by {rec.decided_by or 'unknown'}" + (f": {note}" if note else "")
            reason += f" (suppressed for {rejection_days} days after a rejection)"
            by = rec.decided_by
        elif rec.status == "in_progress":
            when = (rec.decided_at or rec.created_at).date()
            by = rec.owner or rec.decided_by
            reason = f"in progress (approved on {when}, owner {rec.owner or 'unassigned'})"
        else:
            stamps = [rec.created_at] + (
                [rec.decided_at] if rec.status in ("approved", "executed") and rec.decided_at else []
            ) + ([rec.executed_at] if rec.status == "executed" and rec.executed_at else [])
            when = max(stamps).date()
            if when <= cooldown_from:
                continue
            if rec.status == "executed":
                reason = f"executed on {when} by {rec.owner or rec.decided_by or 'unknown'}"
                by = rec.owner or rec.decided_by
            elif rec.status == "approved":
                reason = f"approved on {when} by {rec.decided_by or 'unknown'}"
                by = rec.decided_by
            else:
                reason = f"proposed on {when} by {rec.created_by}, awaiting approval"
                by = rec.created_by
            reason += f" (cooldown {cooldown_days} days)"
        previous = found.get(rec.action)
        if previous is None or (when, rec.id) >= (previous[2], previous[0].id):
            found[rec.action] = (rec, reason, when, by)
    return found


def next_best_action(
    *,
    session: Session,
    account_id: str,
    limit: int = 3,
    as_of: dt.date | None = None,
    playbook_path: str | None = None,
    cooldown_days: int = 30,
    rejection_days: int = 90,
    holdout_share: float = DEFAULT_SHARE,
) -> NextBestActionResult:
    """Recommend the next best actions for one account, ranked by expected value.

    Matches the account's churn features and drivers against the playbook's eligibility
    conditions and values each eligible action: retention = arr × p_churn × uplift − cost,
    growth = p_success × expansion_value − cost (ties by action id). Actions proposed or
    approved for the account in the last `cooldown_days`, or rejected in the last
    `rejection_days`, are suppressed and listed with the reason. An account in an action's
    holdout (the control group, a fixed share of accounts per action) is told so instead.
    Uplift and p_success are learned from the outcomes of executed actions vs the holdout
    (playbook value as the prior). Each action comes with the evidence that made it eligible
    and a rationale. To act on one, file it with propose_recommendation; this tool never
    changes anything.

    Args:
        account_id: the account, e.g. "ACME-0042".
        limit: how many actions to return (1–20).
        as_of: evaluate as of this date (YYYY-MM-DD); defaults to the data's as-of date.
        playbook_path: a playbook YAML file to use instead of the shipped one.
        cooldown_days: suppress actions proposed or approved this many days before as_of.
        rejection_days: suppress actions rejected this many days before as_of.
        holdout_share: share of accounts held out of each action (0-0.5; set by the system).
    """
    share = check_share(holdout_share)
    if not 1 <= limit <= 20:
        raise ToolInputError(f"limit must be between 1 and 20; got {limit!r}")
    if cooldown_days < 0 or rejection_days < 0:
        raise ToolInputError("cooldown_days and rejection_days must be ≥ 0")
    playbook, digest, playbook_name = load_playbook(playbook_path)
    account = require_account(session, account_id)
    day = as_of or data_as_of(session)
    result = assess(session, as_of=day, scope=AccountScope(ids=(account.id,)), with_history=True)
    table = result.table
    p_churn = float(result.probability[0])
    arr = float(table.numeric["arr"][0])
    band = band_of(p_churn)
    drivers_shown, _ = explain_rows(result.model, table, top_drivers=20)[0]
    drivers = [d.feature for d in drivers_shown]
    context: dict[str, Any] = {
        **table.row(0),
        "p_churn": p_churn,
        "band": band,
        "health": float(result.health[0]),
        "arr": arr,
        "status": account.status,
    }
    if context.get("plan") is None:
        context["plan"] = account.plan
    suppressions = _suppressions(session, account.id, day, cooldown_days, rejection_days)
    effects = learned_effects(session, playbook, as_of=day)
    held_out: list[HeldOutAction] = []
    options: list[ActionOption] = []
    suppressed: list[SuppressedAction] = []
    unprofitable: list[UnprofitableAction] = []
    eligible_count = ineligible_count = 0
    for action in playbook.actions:
        ok, evidence = _eligible(action, context, drivers)
        option = _value(action, arr, p_churn, effects[action.id]) if ok else None
        hit = suppressions.get(action.id)
        if hit is not None:
            rec, reason, when, by = hit
            suppressed.append(
                SuppressedAction(
                    action=action.id,
                    eligible=ok,
                    expected_value=option.expected_value if option else None,
                    recommendation_id=rec.id,
                    status=rec.status,
                    on=when,
                    by=by,
                    reason=reason,
                )
            )
            continue
        if option is None:
            ineligible_count += 1
            continue
        eligible_count += 1
        if option.expected_value <= 0:
            unprofitable.append(UnprofitableAction(action=action.id, expected_value=option.expected_value))
            continue
        if is_held_out(account.id, action.id, share):
            held_out.append(
                HeldOutAction(
                    action=action.id,
                    expected_value=option.expected_value,
                    share=share,
                    reason=holdout_reason(account.id, action.id, share),
                )
            )
            continue
        because = "; ".join(dict.fromkeys(e.phrase for e in evidence)) or "no conditions"
        options.append(
            option.model_copy(
                update={
                    "evidence": evidence,
                    "rationale": f"{action.description}. Eligible because {because}. "
                    f"Expected value: {option.formula}.",
                }
            )
        )
    options.sort(key=lambda o: (-o.expected_value, o.action))
    shown = options[:limit]
    info = model_info(result.model)
    method_note = (
        f" Churn probability from the rule-based fallback ({info.reason})."
        if info.method == "rule_based"
        else ""
    )
    if shown:
        best = shown[0]
        head = f"Best action for {account.id}: {best.action} (expected value {_money(best.expected_value)})."
    else:
        head = f"No eligible, unsuppressed action with a positive expected value for {account.id}."
    explanation = (
        f"{head} {len(options)} worthwhile, {len(unprofitable)} unprofitable, {len(suppressed)} suppressed, "
        + (f"{len(held_out)} held out (control group), " if held_out else "")
        + f"{ineligible_count} ineligible of {len(playbook.actions)} playbook actions; p_churn {p_churn:.1%} "
        f"({band}), ARR {_money(arr)}, as of {day}.{method_note}"
    )
    return NextBestActionResult(
        account_id=account.id,
        name=account.name,
        as_of=day,
        arr=arr,
        p_churn=p_churn,
        band=band,
        churn_method=info.method,
        model_version=info.version,
        actions=shown,
        suppressed=suppressed,
        unprofitable=unprofitable,
        held_out=held_out,
        eligible_count=eligible_count,
        ineligible_count=ineligible_count,
        playbook_version=digest,
        explanation=explanation,
        inputs=NextBestActionInputs(
            account_id=account.id,
            limit=limit,
            as_of=day,
            playbook=playbook_name,
            cooldown_days=cooldown_days,
            rejection_days=rejection_days,
            holdout_share=share,
        ),
    )


def learned_effects(session: Session, playbook: Playbook, *, as_of: dt.date) -> dict[str, LearnedEffect]:
    """Every playbook action's effect, learned from executed-vs-holdout outcomes as of `as_of`."""
    ids = [a.id for a in playbook.actions]
    observed = counts(load_units(session, as_of=as_of, actions=ids))
    out: dict[str, LearnedEffect] = {}
    for a in playbook.actions:
        retention = isinstance(a.effect, RetentionEffect)
        prior = a.effect.uplift if isinstance(a.effect, RetentionEffect) else a.effect.p_success
        out[a.id] = learn(
            action=a.id,
            kind="retention" if retention else "growth",
            prior=prior,
            treated=observed.get((a.id, "treated")),
            holdout=observed.get((a.id, "holdout")),
            prior_strength=playbook.prior_strength,
        )
    return out
