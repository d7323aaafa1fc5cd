"""Find and remove the demo company's rows, leaving imported data in place (issue #16).

The generator marks what it writes with `origin = 'demo'` (accounts, value-chain activities,
initiatives; migration 0004). Everything else hangs off those rows or was computed from them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import Connection, Engine, Select, delete, func, insert, or_, select, update

from crm.demo.generator import DEMO_REMOVED_KEY, META_KEYS
from crm.models import (
    DEMO_ORIGIN,
    Account,
    AppMeta,
    ChurnFeatureState,
    ChurnModel,
    ChurnScore,
    Contact,
    DealModel,
    Initiative,
    Interaction,
    Invoice,
    NpsResponse,
    Opportunity,
    OpportunityStage,
    Recommendation,
    RecommendationEvent,
    RecommendationHoldout,
    SalesAgent,
    Subscription,
    SupportTicket,
    UsageWeekly,
    ValueChainActivity,
)

# The population a churn model records it learned from (tools/churn/population.py); a model
# that does not say "imported" was trained while the demo was in the database.
IMPORTED_POPULATION: Final = "imported"

# Tables whose rows hang off an account, children before parents.
_ACCOUNT_CHILDREN: tuple[Any, ...] = (
    NpsResponse,
    Opportunity,
    Interaction,
    Invoice,
    SupportTicket,
    UsageWeekly,
    Subscription,
    Contact,
)


@dataclass(frozen=True)
class DemoRows:
    """How many rows of the demo company a database holds."""

    accounts: int
    activities: int
    initiatives: int

    @property
    def present(self) -> bool:
        return bool(self.accounts or self.activities or self.initiatives)

    def describe(self) -> str:
        """`2,000 demo accounts, 32 value-chain activities and 13 initiatives` (non-zero parts)."""
        parts = [
            f"{n:,} {what}"
            for n, what in (
                (self.accounts, "demo accounts"),
                (self.activities, "demo value-chain activities"),
                (self.initiatives, "demo initiatives"),
            )
            if n
        ]
        return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


@dataclass
class DemoRemoval:
    """What `remove_demo` deleted, per table, and which churn model is active afterwards."""

    rows: dict[str, int] = field(default_factory=dict)
    active_model: str | None = None

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def demo_rows(conn: Connection) -> DemoRows:
    """Count the demo company's accounts, activities and initiatives."""

    def count(model: Any) -> int:
        return int(
            conn.scalar(select(func.count()).select_from(model).where(model.origin == DEMO_ORIGIN)) or 0
        )

    return DemoRows(
        accounts=count(Account), activities=count(ValueChainActivity), initiatives=count(Initiative)
    )


def demo_refusal(rows: DemoRows) -> str:
    """Why real data may not be imported next to the demo, and the two ways on."""
    return (
        f"this database holds the demo company ({rows.describe()}); importing your own data next "
        "to it would mix two populations (the churn model would learn from both). Remove the demo "
        "first with `valuechain demo remove`, or import next to it anyway with --keep-demo"
    )


def _demo_accounts() -> Select[str]:
    return select(Account.id).where(Account.origin == DEMO_ORIGIN)


def _demo_activities() -> Select[str]:
    return select(ValueChainActivity.id).where(ValueChainActivity.origin == DEMO_ORIGIN)


def _demo_models(conn: Connection) -> list[str]:
    """Churn models trained while the demo was in the database: every one that does not record
    that it learned from imported accounts only."""
    rows = conn.execute(select(ChurnModel.version, ChurnModel.metrics)).all()
    return [v for v, metrics in rows if (metrics or {}).get("population") != IMPORTED_POPULATION]


def remove_demo(engine: Engine, *, now: dt.datetime) -> DemoRemoval:
    """Delete the demo company and everything hanging off it, in one transaction.

    Deleted: demo accounts and all their rows (contacts, subscriptions, usage, tickets,
    invoices, interactions, NPS, opportunities, churn scores), the demo's prospects (opportunities
    without an account), stage history, sales team and deal models learned from its deals, demo
    value-chain activities and every initiative on them, recommendations (and their events) about demo accounts or
    activities, churn models trained while the demo was present and the scores they made, the
    kept churn feature state, and the demo's `app_meta` keys. Kept: imported rows, users, API
    keys, conversation logs. Records `demo_removed` in `app_meta` so `valuechain init` does not
    load the demo again. If the active churn model is deleted, the newest remaining one (trained
    on imported accounts only) becomes active.

    Args:
        engine: the migrated database.
        now: timestamp recorded as `demo_removed` (the CLI passes the wall clock).
    """
    out = DemoRemoval()
    with engine.begin() as conn:
        seeded = conn.scalar(select(AppMeta.key).where(AppMeta.key == "demo_seed"))
        if not demo_rows(conn).present and seeded is None:
            return out
        accounts, activities = _demo_accounts(), _demo_activities()
        about_demo = or_(Recommendation.account_id.in_(accounts), Recommendation.activity_id.in_(activities))
        recommendations = select(Recommendation.id).where(about_demo)
        models = _demo_models(conn)

        def run(name: str, stmt: Any) -> None:
            out.rows[name] = out.rows.get(name, 0) + (conn.execute(stmt).rowcount or 0)

        run(
            "recommendation_events",
            delete(RecommendationEvent).where(RecommendationEvent.recommendation_id.in_(recommendations)),
        )
        run("recommendations", delete(Recommendation).where(about_demo))
        run(
            "recommendation_holdouts",
            delete(RecommendationHoldout).where(RecommendationHoldout.account_id.in_(accounts)),
        )
        run(
            "churn_scores",
            delete(ChurnScore).where(
                or_(ChurnScore.account_id.in_(accounts), ChurnScore.model_version.in_(models))
            ),
        )
        # The kept feature state is one archive over all accounts: it goes with them.
        run("churn_feature_state", delete(ChurnFeatureState))
        run("churn_models", delete(ChurnModel).where(ChurnModel.version.in_(models)))
        # the demo's deals: its accounts' and its prospects' (no account), with their stage history
        demo_deals = or_(Opportunity.origin == DEMO_ORIGIN, Opportunity.account_id.in_(accounts))
        run(
            "opportunity_stages",
            delete(OpportunityStage).where(
                OpportunityStage.opportunity_id.in_(select(Opportunity.external_id).where(demo_deals))
            ),
        )
        run("opportunities", delete(Opportunity).where(demo_deals))
        run("sales_agents", delete(SalesAgent).where(SalesAgent.origin == DEMO_ORIGIN))
        demo_deal_models = [
            v
            for v, params in conn.execute(select(DealModel.version, DealModel.params))
            if params.get("population") == "demo"
        ]
        run("deal_models", delete(DealModel).where(DealModel.version.in_(demo_deal_models)))
        for model in _ACCOUNT_CHILDREN:
            run(model.__tablename__, delete(model).where(model.account_id.in_(accounts)))
        run("accounts", delete(Account).where(Account.origin == DEMO_ORIGIN))
        run(
            "initiatives",
            delete(Initiative).where(
                or_(Initiative.origin == DEMO_ORIGIN, Initiative.activity_id.in_(activities))
            ),
        )
        run(
            "value_chain_activities",
            delete(ValueChainActivity).where(ValueChainActivity.origin == DEMO_ORIGIN),
        )
        run("app_meta", delete(AppMeta).where(AppMeta.key.in_(META_KEYS)))
        conn.execute(delete(AppMeta).where(AppMeta.key == DEMO_REMOVED_KEY))
        conn.execute(insert(AppMeta).values(key=DEMO_REMOVED_KEY, value=now.isoformat(timespec="seconds")))
        out.active_model = _keep_a_model_active(conn)
    return out


def _keep_a_model_active(conn: Connection) -> str | None:
    active = conn.scalar(select(ChurnModel.version).where(ChurnModel.active.is_(True)).limit(1))
    if active is not None:
        return str(active)
    newest = conn.scalar(
        select(ChurnModel.version).order_by(ChurnModel.created_at.desc(), ChurnModel.version).limit(1)
    )
    if newest is not None:
        conn.execute(update(ChurnModel).where(ChurnModel.version == newest).values(active=True))
    return None if newest is None else str(newest)
