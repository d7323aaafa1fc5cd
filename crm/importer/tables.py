"""What each importable table accepts: field types, required fields, allowed values and ranges.

Everything here is derived from the SQLAlchemy models in `crm.models`, plus the value sets and
ranges the analysis tools rely on (a ticket priority the churn features do not know would be
silently ignored downstream, so the importer refuses it up front).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, Literal

from sqlalchemy import JSON, Boolean, Date, DateTime, Float, Integer, String, Table, Text, UniqueConstraint

from crm.models import (
    ACCOUNT_STATUSES,
    INITIATIVE_TYPES,
    PORTER_CATEGORIES,
    SEGMENTS,
    Account,
    Base,
    Contact,
    Initiative,
    Interaction,
    Invoice,
    NpsResponse,
    Opportunity,
    OpportunityStage,
    SalesAgent,
    Subscription,
    SupportTicket,
    UsageWeekly,
    ValueChainActivity,
)
from crm.stages import canonical_stage

FieldKind = Literal["str", "int", "float", "bool", "date", "datetime", "list", "dict"]

# CLI command name -> model. The command names are what users type: `valuechain import usage ...`.
COMMANDS: dict[str, type[Base]] = {
    "accounts": Account,
    "contacts": Contact,
    "subscriptions": Subscription,
    "usage": UsageWeekly,
    "tickets": SupportTicket,
    "invoices": Invoice,
    "interactions": Interaction,
    "nps": NpsResponse,
    "opportunities": Opportunity,
    "opportunity-stages": OpportunityStage,
    "sales-team": SalesAgent,
    "activities": ValueChainActivity,
    "initiatives": Initiative,
}

# Fixed value sets (SPEC §4 and the model comments). Matching is case-, space- and
# dash-insensitive; the stored value is the canonical spelling on the right.
CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("accounts", "status"): ACCOUNT_STATUSES,
    ("accounts", "segment"): SEGMENTS,
    ("subscriptions", "status"): ("active", "ended"),
    ("support_tickets", "priority"): ("low", "medium", "high", "urgent"),
    ("invoices", "status"): ("paid", "late", "failed", "open"),
    ("interactions", "type"): ("email", "call", "meeting", "qbr"),
    ("opportunities", "type"): ("new", "upsell", "renewal"),
    ("value_chain_activities", "kind"): ("primary", "support"),
    ("value_chain_activities", "porter_category"): PORTER_CATEGORIES,
    ("value_chain_activities", "perf_direction"): ("higher_is_better", "lower_is_better"),
    ("initiatives", "type"): INITIATIVE_TYPES,
    ("initiatives", "advantage"): ("cost", "differentiation"),
}

# Inclusive numeric ranges (None = unbounded on that side).
RANGES: dict[tuple[str, str], tuple[float | None, float | None]] = {
    ("accounts", "arr"): (0, None),
    ("subscriptions", "seats"): (0, None),
    ("subscriptions", "mrr"): (0, None),
    ("subscriptions", "discount"): (0, 1),
    ("usage_weekly", "active_users"): (0, None),
    ("usage_weekly", "sessions"): (0, None),
    ("usage_weekly", "features_adopted"): (0, None),
    ("support_tickets", "csat"): (1, 5),
    ("nps_responses", "score"): (0, 10),
    ("interactions", "sentiment"): (-1, 1),
    ("opportunities", "amount"): (0, None),
    ("sales_agents", "quarterly_quota"): (0, None),
    ("value_chain_activities", "annual_cost"): (0, None),
    ("value_chain_activities", "value_score"): (0, 10),
    ("value_chain_activities", "std_quantity"): (0, None),
    ("value_chain_activities", "actual_quantity"): (0, None),
    ("value_chain_activities", "std_price"): (0, None),
    ("initiatives", "est_cost"): (0, None),
}

# Fields filled from other fields of the same row when the mapping does not supply them.
IMPLICIT_TEMPLATES: dict[tuple[str, str], str] = {
    ("accounts", "name"): "{id}",
    # a help-desk timestamp mapped to `opened_time` / `closed_time` also gives the day (#20)
    ("support_tickets", "opened_at"): "{opened_time}",
    ("support_tickets", "closed_at"): "{closed_time}",
}

INT32 = (-(2**31), 2**31 - 1)

# Tables imported by the CRM's own id, kept beside an internal integer key the database assigns
# (migration 0007): the CRM's id is the import key (duplicates, --upsert), the internal one is
# never mapped.
EXTERNAL_KEYS: dict[str, str] = {"opportunities": "external_id"}

# Fields whose text is brought to one spelling after conversion (see crm.stages).
NORMALISED: dict[tuple[str, str], Callable[[str], str]] = {
    ("opportunities", "stage"): canonical_stage,
    ("opportunity_stages", "stage"): canonical_stage,
}

# Columns no mapping may fill: `origin` tells the demo company's rows from everything else
# (migration 0004); an import always writes the model default, "import".
NOT_IMPORTABLE = frozenset({"origin"})


@dataclass(frozen=True)
class FieldSpec:
    """One importable column of a table."""

    name: str
    kind: FieldKind
    nullable: bool
    has_default: bool
    default: Any
    primary_key: bool
    max_length: int | None
    choices: tuple[str, ...] | None
    minimum: float | None
    maximum: float | None

    @property
    def choice_lookup(self) -> dict[str, str]:
        """Normalised spelling -> canonical value ("Mid market" -> "Mid-Market")."""
        return _choice_lookup(self.choices or ())

    def model_default(self) -> Any:
        """A fresh copy of the model's default (lists and dicts are built per row)."""
        if self.kind == "list":
            return []
        if self.kind == "dict":
            return {}
        return self.default


@dataclass(frozen=True)
class ForeignKeyRef:
    field: str
    table: str
    column: str


@dataclass(frozen=True)
class TableSpec:
    """An importable table: its fields, key, references and uniqueness rules."""

    command: str
    table: Table
    fields: dict[str, FieldSpec]
    key: tuple[str, ...]
    generated_key: bool  # single integer primary key the database assigns when the CSV has none
    foreign_keys: tuple[ForeignKeyRef, ...]
    unique_together: tuple[tuple[str, ...], ...]

    @property
    def name(self) -> str:
        return self.table.name

    @property
    def has_attributes(self) -> bool:
        return "attributes" in self.fields

    @property
    def mappable_fields(self) -> list[str]:
        """Fields a mapping may target (`attributes` is filled from unmapped columns instead)."""
        return [f for f in self.fields if f != "attributes"]

    def required_fields(self) -> list[str]:
        """Fields that need a value from the mapping: not nullable, no default, not generated."""
        out = []
        for f in self.mappable_fields:
            spec = self.fields[f]
            if spec.nullable or spec.has_default or (self.generated_key and spec.primary_key):
                continue
            if (self.name, f) in IMPLICIT_TEMPLATES:
                continue
            if self.name == "value_chain_activities" and f == "kind":
                continue  # derived from porter_category when absent
            out.append(f)
        return out


def _kind(column_type: Any, name: str) -> FieldKind:
    if isinstance(column_type, Boolean):
        return "bool"
    if isinstance(column_type, Integer):
        return "int"
    if isinstance(column_type, Float):
        return "float"
    if isinstance(column_type, DateTime):
        return "datetime"
    if isinstance(column_type, Date):
        return "date"
    if isinstance(column_type, JSON):
        return "dict" if name == "attributes" else "list"
    if isinstance(column_type, String | Text):
        return "str"
    raise TypeError(f"unsupported column type {column_type!r} for {name!r}")


def _field(table: Table, column: Any) -> FieldSpec:
    default = column.default
    has_default = default is not None
    scalar_default = default.arg if has_default and default.is_scalar else None
    lo, hi = RANGES.get((table.name, column.name), (None, None))
    kind = _kind(column.type, column.name)
    if kind == "int":
        lo = INT32[0] if lo is None else lo
        hi = INT32[1] if hi is None else hi
    max_length = getattr(column.type, "length", None) if kind == "str" else None
    return FieldSpec(
        name=column.name,
        kind=kind,
        nullable=bool(column.nullable),
        has_default=has_default,
        default=scalar_default,
        primary_key=bool(column.primary_key),
        max_length=max_length,
        choices=CHOICES.get((table.name, column.name)),
        minimum=lo,
        maximum=hi,
    )


def table_spec(command_or_table: str) -> TableSpec:
    """The spec for a CLI command name (`usage`) or a table name (`usage_weekly`)."""
    model = COMMANDS.get(command_or_table)
    if model is None:
        by_table = {m.__table__.name: (c, m) for c, m in COMMANDS.items()}  # type: ignore[attr-defined]
        if command_or_table not in by_table:
            valid = ", ".join(sorted(COMMANDS))
            raise KeyError(f"unknown table {command_or_table!r}; importable tables: {valid}")
        command, model = by_table[command_or_table]
    else:
        command = command_or_table
    table: Table = model.__table__  # type: ignore[assignment]
    fields = {c.name: _field(table, c) for c in table.columns if c.name not in NOT_IMPORTABLE}
    key = tuple(c.name for c in table.primary_key.columns)
    generated = len(key) == 1 and fields[key[0]].kind == "int"
    if table.name in EXTERNAL_KEYS:
        fields.pop(key[0])
        key, generated = (EXTERNAL_KEYS[table.name],), False
        fields[key[0]] = replace(fields[key[0]], nullable=False)  # blank in the table, never in a file
    fks = tuple(
        ForeignKeyRef(field=fk.parent.name, table=fk.column.table.name, column=fk.column.name)
        for fk in sorted(table.foreign_keys, key=lambda fk: fk.parent.name)
    )
    uniques = tuple(
        tuple(c.name for c in con.columns)
        for con in table.constraints
        if isinstance(con, UniqueConstraint) and tuple(c.name for c in con.columns) != key
    )
    return TableSpec(
        command=command,
        table=table,
        fields=fields,
        key=key,
        generated_key=generated,
        foreign_keys=fks,
        unique_together=uniques,
    )


def normalise_choice(value: str) -> str:
    return value.strip().lower().replace("-", "_").replace(" ", "_")


@lru_cache(maxsize=64)
def _choice_lookup(choices: tuple[str, ...]) -> dict[str, str]:
    return {normalise_choice(c): c for c in choices}
