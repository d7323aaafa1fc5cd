"""SQLAlchemy 2 typed models for the CRM database (SPEC §4).

Money is stored as float in the account currency and rounded only for display.
Dates without a time of day are `date`; audit timestamps are `datetime` (UTC, naive).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

ACCOUNT_STATUSES = ("active", "churned")
SEGMENTS = ("SMB", "Mid-Market", "Enterprise")
PORTER_CATEGORIES = (
    "inbound_logistics",
    "operations",
    "outbound_logistics",
    "marketing_sales",
    "service",
    "firm_infrastructure",
    "human_resources",
    "technology_development",
    "procurement",
)
PRIMARY_CATEGORIES = PORTER_CATEGORIES[:5]
INITIATIVE_TYPES = ("automate", "streamline", "renegotiate", "invest", "eliminate")
# After approval: in_progress, then executed or abandoned (issue #21, migration 0010).
RECOMMENDATION_STATUSES = ("pending", "approved", "rejected", "expired", "in_progress", "executed", "abandoned")
# Where an account, activity or initiative came from: the generated demo company or anything
# else (imported, or written by the application). Training and imports keep the two apart.
ORIGINS = ("demo", "import")
DEMO_ORIGIN = "demo"


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    segment: Mapped[str | None] = mapped_column(String(32), index=True)
    industry: Mapped[str | None] = mapped_column(String(64))
    region: Mapped[str | None] = mapped_column(String(32))
    plan: Mapped[str | None] = mapped_column(String(32))
    arr: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[dt.date | None] = mapped_column(Date)
    owner: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16), default="active", index=True)
    churned_at: Mapped[dt.date | None] = mapped_column(Date)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    origin: Mapped[str] = mapped_column(String(16), default="import", server_default="import", index=True)

    contacts: Mapped[list[Contact]] = relationship(back_populates="account")


class Contact(Base):
    __tablename__ = "contacts"
    __table_args__ = (Index("ix_contacts_left_at", "left_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[str | None] = mapped_column(String(64))
    is_champion: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.date | None] = mapped_column(Date)
    left_at: Mapped[dt.date | None] = mapped_column(Date)

    account: Mapped[Account] = relationship(back_populates="contacts")


class Subscription(Base):
    __tablename__ = "subscriptions"
    __table_args__ = (
        # covering index of the churn feature "subscription in force" (latest start_date, then id)
        Index(
            "ix_subscriptions_account_latest",
            "account_id",
            "start_date",
            "id",
            "seats",
            "discount",
            "renewal_date",
            "plan",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    plan: Mapped[str] = mapped_column(String(32))
    seats: Mapped[int] = mapped_column(Integer)
    mrr: Mapped[float] = mapped_column(Float)
    start_date: Mapped[dt.date] = mapped_column(Date)
    renewal_date: Mapped[dt.date] = mapped_column(Date)
    discount: Mapped[float] = mapped_column(Float, default=0.0)  # fraction 0..1
    status: Mapped[str] = mapped_column(String(16), default="active")  # active / ended


class UsageWeekly(Base):
    __tablename__ = "usage_weekly"
    # covering index of the churn usage query (migration 0002): no table lookups per week
    __table_args__ = (
        Index("ix_usage_weekly_account_week_users", "account_id", "week_start", "active_users"),
        # the weeks dated after a kept churn feature state (migration 0003)
        Index("ix_usage_weekly_week_account_users", "week_start", "account_id", "active_users"),
    )

    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    week_start: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    active_users: Mapped[int] = mapped_column(Integer)
    sessions: Mapped[int] = mapped_column(Integer)
    features_adopted: Mapped[int] = mapped_column(Integer)


class SupportTicket(Base):
    __tablename__ = "support_tickets"
    __table_args__ = (
        Index("ix_support_tickets_account_open", "account_id", "opened_at", "closed_at", "priority"),
        Index("ix_support_tickets_closed_csat", "closed_at", "account_id", "csat"),
        Index("ix_support_tickets_opened_account", "opened_at", "account_id", "priority", "closed_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    priority: Mapped[str] = mapped_column(String(16))  # low / medium / high / urgent
    category: Mapped[str | None] = mapped_column(String(32))
    opened_at: Mapped[dt.date] = mapped_column(Date)
    closed_at: Mapped[dt.date | None] = mapped_column(Date)
    csat: Mapped[int | None] = mapped_column(Integer)  # 1..5
    # When the export has the time of day (migration 0008, the service queue's SLA clock);
    # blank: the day's noon is assumed (tools/service_queue).
    opened_time: Mapped[dt.datetime | None] = mapped_column(DateTime)
    closed_time: Mapped[dt.datetime | None] = mapped_column(DateTime)


class Invoice(Base):
    __tablename__ = "invoices"
    __table_args__ = (
        Index("ix_invoices_account_due", "account_id", "due_date", "issued_at", "status", "paid_at"),
        Index("ix_invoices_due_account", "due_date", "account_id", "issued_at", "status", "paid_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    issued_at: Mapped[dt.date] = mapped_column(Date)
    due_date: Mapped[dt.date] = mapped_column(Date)
    paid_at: Mapped[dt.date | None] = mapped_column(Date)
    amount: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16))  # paid / late / failed / open


class Interaction(Base):
    __tablename__ = "interactions"
    __table_args__ = (
        Index("ix_interactions_account_occurred", "account_id", "occurred_at"),
        Index("ix_interactions_occurred_account", "occurred_at", "account_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(16))  # email / call / meeting / qbr
    occurred_at: Mapped[dt.date] = mapped_column(Date)
    sentiment: Mapped[float | None] = mapped_column(Float)  # -1..1


class NpsResponse(Base):
    __tablename__ = "nps_responses"
    __table_args__ = (Index("ix_nps_responses_account_latest", "account_id", "responded_at", "id", "score"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))
    responded_at: Mapped[dt.date] = mapped_column(Date)
    score: Mapped[int] = mapped_column(Integer)  # 0..10


WON_STAGE = "closed_won"
LOST_STAGE = "closed_lost"
CLOSED_STAGES = (WON_STAGE, LOST_STAGE)
"""Every other stage is open. Stages are lower-case words joined by `_` (the importer normalises)."""


class Opportunity(Base):
    """A deal as the CRM holds it (migration 0007): `id` is the internal key, `external_id` the
    CRM's own (e.g. '9ME3374G'). While a deal is open, amount, close date and (for a prospect)
    account may be blank; `close_date` is the actual close, `expected_close_date` the forecast."""

    __tablename__ = "opportunities"
    __table_args__ = (
        UniqueConstraint("external_id", name="uq_opportunities_external_id"),
        Index("ix_opportunities_stage_owner", "stage", "owner"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(64))
    account_id: Mapped[str | None] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    type: Mapped[str | None] = mapped_column(String(16))  # new / upsell / renewal
    stage: Mapped[str] = mapped_column(String(32))  # prospecting .. closed_won / closed_lost
    amount: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[dt.date | None] = mapped_column(Date)
    close_date: Mapped[dt.date | None] = mapped_column(Date)
    expected_close_date: Mapped[dt.date | None] = mapped_column(Date)
    owner: Mapped[str | None] = mapped_column(String(100))  # sales agent; see sales_agents
    product: Mapped[str | None] = mapped_column(String(100))
    last_activity_date: Mapped[dt.date | None] = mapped_column(Date)  # as the CRM records it, if it does
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    origin: Mapped[str] = mapped_column(String(16), default="import", server_default="import")


class OpportunityStage(Base):
    """Stage history: the deal entered `stage` on `entered_at` (when the export has it)."""

    __tablename__ = "opportunity_stages"
    __table_args__ = (
        UniqueConstraint("opportunity_id", "entered_at", "stage", name="uq_opportunity_stages_entry"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    opportunity_id: Mapped[str] = mapped_column(
        ForeignKey("opportunities.external_id", ondelete="CASCADE"), index=True
    )
    stage: Mapped[str] = mapped_column(String(32))
    entered_at: Mapped[dt.date] = mapped_column(Date)


class SalesAgent(Base):
    """An opportunity owner with their manager, team (regional office) and optional quarterly quota."""

    __tablename__ = "sales_agents"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    manager: Mapped[str | None] = mapped_column(String(100))
    team: Mapped[str | None] = mapped_column(String(100))
    quarterly_quota: Mapped[float | None] = mapped_column(Float)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    origin: Mapped[str] = mapped_column(String(16), default="import", server_default="import")


class ValueChainActivity(Base):
    __tablename__ = "value_chain_activities"
    __table_args__ = (UniqueConstraint("name", "period", name="uq_activity_name_period"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))  # primary / support
    porter_category: Mapped[str] = mapped_column(String(32))
    owner_team: Mapped[str | None] = mapped_column(String(100))
    systems: Mapped[list[Any]] = mapped_column(JSON, default=list)
    period: Mapped[str] = mapped_column(String(16), index=True)  # e.g. "2026"
    annual_cost: Mapped[float] = mapped_column(Float)
    value_score: Mapped[float] = mapped_column(Float)  # 0..10 customer-value contribution
    perf_metric: Mapped[str | None] = mapped_column(String(100))
    perf_actual: Mapped[float | None] = mapped_column(Float)
    perf_target: Mapped[float | None] = mapped_column(Float)
    perf_direction: Mapped[str | None] = mapped_column(String(20))  # higher_is_better / lower_is_better
    enables: Mapped[list[Any]] = mapped_column(JSON, default=list)  # activity ids (support only)
    # Activity-based costing: the cost driver of the activity, if known.
    cost_driver: Mapped[str | None] = mapped_column(String(100))
    std_quantity: Mapped[float | None] = mapped_column(Float)
    actual_quantity: Mapped[float | None] = mapped_column(Float)
    std_price: Mapped[float | None] = mapped_column(Float)
    necessary: Mapped[bool | None] = mapped_column(Boolean)
    origin: Mapped[str] = mapped_column(String(16), default="import", server_default="import")


class Initiative(Base):
    __tablename__ = "initiatives"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    activity_id: Mapped[str] = mapped_column(
        ForeignKey("value_chain_activities.id", ondelete="CASCADE"), index=True
    )
    description: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(String(16))  # automate / streamline / renegotiate / invest / eliminate
    advantage: Mapped[str | None] = mapped_column(String(16))  # cost / differentiation / None
    est_cost: Mapped[float] = mapped_column(Float)
    est_annual_benefit: Mapped[float] = mapped_column(Float)
    owner: Mapped[str | None] = mapped_column(String(100))
    due: Mapped[dt.date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), default="proposed")
    origin: Mapped[str] = mapped_column(String(16), default="import", server_default="import")


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    email: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))  # viewer / analyst / approver / admin
    slack_user_id: Mapped[str | None] = mapped_column(String(32), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class Conversation(Base):
    __tablename__ = "conversations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    channel: Mapped[str] = mapped_column(String(16), default="cli")  # cli / web / slack / api
    title: Mapped[str | None] = mapped_column(String(200))


class AgentRun(Base):
    __tablename__ = "agent_runs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    started_at: Mapped[dt.datetime] = mapped_column(DateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    model: Mapped[str | None] = mapped_column(String(200))
    # running / ok / error / stopped (by a user) / interrupted (the server stopped first)
    status: Mapped[str] = mapped_column(String(16), default="running")
    error: Mapped[str | None] = mapped_column(Text)
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str | None] = mapped_column(Text)
    llm_calls: Mapped[int] = mapped_column(Integer, default=0)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    # the process answering it, "<host> pid <pid> start <token>" (agent.runlog.process_owner): a run
    # still `running` whose process has ended is marked `interrupted` at the next start (migration 0009)
    owner: Mapped[str | None] = mapped_column(String(200))


class Message(Base):
    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[str] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    run_id: Mapped[str | None] = mapped_column(ForeignKey("agent_runs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))  # user / assistant / tool / system
    content: Mapped[str] = mapped_column(Text)
    tool_calls: Mapped[list[Any] | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)


class RunFeedback(Base):
    """A user's verdict on one answer: thumbs up or down and an optional note (one per user and run)."""

    __tablename__ = "run_feedback"
    __table_args__ = (UniqueConstraint("run_id", "user_id", name="uq_run_feedback_run_user"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("agent_runs.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    rating: Mapped[str] = mapped_column(String(8))  # up / down
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)


class LlmCall(Base):
    __tablename__ = "llm_calls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("agent_runs.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    model: Mapped[str | None] = mapped_column(String(200))
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[float] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)


class ToolCall(Base):
    __tablename__ = "tool_calls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("agent_runs.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(64))
    args: Mapped[dict[str, Any]] = mapped_column(JSON)
    result: Mapped[Any | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    ok: Mapped[bool] = mapped_column(Boolean)
    latency_ms: Mapped[float] = mapped_column(Float)


class Recommendation(Base):
    __tablename__ = "recommendations"
    # At most one pending recommendation per target and action (migration 0002).
    __table_args__ = (
        Index(
            "uq_recommendations_pending_account_action",
            "account_id",
            "action",
            unique=True,
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
        Index(
            "uq_recommendations_pending_activity_action",
            "activity_id",
            "action",
            unique=True,
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[str | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    activity_id: Mapped[str | None] = mapped_column(ForeignKey("value_chain_activities.id"))
    action: Mapped[str] = mapped_column(String(64), index=True)
    rationale: Mapped[str] = mapped_column(Text)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    expected_value: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    content_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    created_by: Mapped[str] = mapped_column(String(100))  # "agent" or a user name
    run_id: Mapped[str | None] = mapped_column(ForeignKey("agent_runs.id", ondelete="SET NULL"))
    decided_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    decided_by: Mapped[str | None] = mapped_column(String(100))
    # Follow-up after approval (migration 0010): who carries it out, by when, and when it was done.
    owner: Mapped[str | None] = mapped_column(String(100))
    due_date: Mapped[dt.date | None] = mapped_column(Date)
    executed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class RecommendationHoldout(Base):
    """An account held out of an action (the control group): next-best-action picked the action,
    but the account's hash put it in the holdout share, so nothing was filed (migration 0010)."""

    __tablename__ = "recommendation_holdouts"
    __table_args__ = (Index("ix_recommendation_holdouts_account_action", "account_id", "action"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime)
    created_by: Mapped[str] = mapped_column(String(100))
    run_id: Mapped[str | None] = mapped_column(ForeignKey("agent_runs.id", ondelete="SET NULL"))
    share: Mapped[float] = mapped_column(Float)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class RecommendationEvent(Base):
    """Append-only audit trail of a recommendation: proposed, approved, rejected, expired, assigned,
    started, executed, abandoned."""

    __tablename__ = "recommendation_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    recommendation_id: Mapped[int] = mapped_column(
        ForeignKey("recommendations.id", ondelete="CASCADE"), index=True
    )
    event: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(100))
    at: Mapped[dt.datetime] = mapped_column(DateTime)
    reason_code: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ChurnModel(Base):
    """A trained, versioned churn model: coefficients and the metrics it was judged by."""

    __tablename__ = "churn_models"

    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    method: Mapped[str] = mapped_column(String(32))  # logistic_regression / rule_based
    source: Mapped[str] = mapped_column(String(16))  # history / attributes
    as_of: Mapped[dt.date | None] = mapped_column(Date)
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)  # features, means, scales, coefs, intercept
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)


class ChurnScore(Base):
    """A kept score snapshot, so an account that churned keeps the score it had."""

    __tablename__ = "churn_scores"
    __table_args__ = (
        Index("ix_churn_scores_account_asof", "account_id", "as_of"),
        Index("uq_churn_scores_asof_model_account", "as_of", "model_version", "account_id", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    as_of: Mapped[dt.date] = mapped_column(Date)
    model_version: Mapped[str] = mapped_column(String(64))
    probability: Mapped[float] = mapped_column(Float)
    band: Mapped[str] = mapped_column(String(8))
    drivers: Mapped[list[Any]] = mapped_column(JSON, default=list)


class ChurnFeatureState(Base):
    """The churn feature state kept between batch runs (tools/churn/state.py): per-account
    parts of the history features as of `as_of`, as one numpy archive."""

    __tablename__ = "churn_feature_state"

    key: Mapped[str] = mapped_column(String(32), primary_key=True)
    as_of: Mapped[dt.date] = mapped_column(Date)
    payload: Mapped[bytes] = mapped_column(LargeBinary)


class DealModel(Base):
    """A trained, versioned deal (win) model (tools/deals, migration 0007): the deployed scorer
    and calibration in `params`, the time-based holdout figures it was chosen by in `metrics`."""

    __tablename__ = "deal_models"

    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    method: Mapped[str] = mapped_column(String(32))  # logistic_regression / gradient_boosting
    as_of: Mapped[dt.date] = mapped_column(Date)
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)


class AppMeta(Base):
    """Small key/value facts about the database: data as-of date, demo seed, index hashes."""

    __tablename__ = "app_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class SlackDelivery(Base):
    """A Slack event or slash command taken for answering (api/slack/delivery.py, migration 0006).

    The key is the delivery's identity (`event:<event_id>`, or `command:<fingerprint>`), so a
    replay, a retry of a delivery already taken, or a second copy arriving at the same moment
    fails to insert and is not answered again."""

    __tablename__ = "slack_deliveries"

    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)
    retry_num: Mapped[int] = mapped_column(Integer, default=0)  # X-Slack-Retry-Num of the delivery taken


class RunEvent(Base):
    """One event of a chat run as its stream sent it (`api.runs`, migration 0011): `seq` is the SSE
    `id:`. Stored as the run goes, so a reader on any API worker can follow or replay the run."""

    __tablename__ = "run_events"

    run_id: Mapped[str] = mapped_column(ForeignKey("agent_runs.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    event: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)


class RunWorker(Base):
    """An API worker answering chat runs and its last heartbeat (`agent.run_events`, migration 0011).

    `owner` is `agent.runlog.process_owner()`, as in `agent_runs.owner`: a run still `running`
    whose owner's heartbeat is older than `RUN_STALE_S` is marked `interrupted` by any worker."""

    __tablename__ = "run_workers"

    owner: Mapped[str] = mapped_column(String(200), primary_key=True)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime)
    heartbeat_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)


class RunStop(Base):
    """A Stop asked on a worker that does not hold the run (migration 0011): the worker holding it
    picks it up within a second and stops the run as if asked there (`api.runs`)."""

    __tablename__ = "run_stops"

    run_id: Mapped[str] = mapped_column(ForeignKey("agent_runs.id", ondelete="CASCADE"), primary_key=True)
    requested_at: Mapped[dt.datetime] = mapped_column(DateTime)
    reason: Mapped[str] = mapped_column(Text)


class Job(Base):
    """A batch job (jobs/, migration 0012): churn scoring, churn retraining, a knowledge ingest.

    Our own record of it, whichever queue runs it (procrastinate on PostgreSQL, a thread on
    SQLite), so status, progress and the result survive a restart and any process can read them.
    `heartbeat_at` is touched while it runs: a `running` job whose heartbeat stops is marked
    `failed` with `retryable` set, never left running forever."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_state_heartbeat", "state", "heartbeat_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16))  # queued / running / done / failed / cancelled
    backend: Mapped[str] = mapped_column(String(16))  # inprocess / procrastinate
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    done: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    message: Mapped[str] = mapped_column(Text, default="")
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    retryable: Mapped[bool] = mapped_column(Boolean, default=False)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(100), nullable=True)


class ModelTurn(Base):
    """A chat turn waiting for or holding the model, deployment-wide (`agent.model_queue`, migration 0013).

    Every API worker takes its turns' places here, so `CHAT_TURNS_AT_ONCE` limits the turns on the
    one model endpoint of the whole deployment and a waiting turn's position counts the turns of
    every worker ahead of it. `ticket` orders the queue; `started_at` is set when the turn holds the
    model; the row is deleted when the turn ends. A row of a worker that is gone is swept."""

    __tablename__ = "model_turns"

    ticket: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(64), unique=True)
    owner: Mapped[str] = mapped_column(String(200), index=True)
    queued_at: Mapped[dt.datetime] = mapped_column(DateTime)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class SlackQuestion(Base):
    """Where a Slack question's run answers (`api.slack.resume`, migration 0014): the thread to post in
    if the run is interrupted (its worker killed or restarted) and another worker answers it again.

    `resumed_at` is set, once, by the worker that answers it again (an UPDATE only one worker wins);
    `resumed_from` marks a run that is itself such a second answer (never answered a third time)."""

    __tablename__ = "slack_questions"

    run_id: Mapped[str] = mapped_column(String(64), ForeignKey("agent_runs.id", ondelete="CASCADE"),
                                        primary_key=True)
    team: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(64))
    thread_ts: Mapped[str] = mapped_column(String(64))
    user: Mapped[str] = mapped_column(String(64))
    asked_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)
    resumed_from: Mapped[str | None] = mapped_column(String(64), nullable=True)
    resumed_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
