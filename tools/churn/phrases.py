"""Plain-language phrases for churn drivers ("usage down 41% over the last 4 weeks")."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tools.churn.features import ATTR_PREFIX


def _num(value: float) -> str:
    """A number as people write it: 3, 2.5, 1,200, 0.37."""
    if float(value).is_integer():
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _plural(count: float, word: str) -> str:
    n = round(count)
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _usage(row: Mapping[str, Any]) -> str:
    trend = row.get("usage_trend")
    if trend is None:
        return "no usage trend (under 12 weeks of usage on record)"
    pct = round(abs(trend) * 100)
    if pct == 0:
        return "usage flat over the last 4 weeks (vs the previous 8)"
    direction = "down" if trend < 0 else "up"
    return f"usage {direction} {pct}% over the last 4 weeks (vs the previous 8)"


def _seats(row: Mapping[str, Any]) -> str:
    util = row.get("seat_utilisation")
    if util is None:
        return "seat utilisation unknown"
    seats, users = row.get("seats"), row.get("usage_last4")
    detail = f" ({_num(round(users, 1))} of {_num(seats)} seats)" if seats and users is not None else ""
    return f"{round(util * 100)}% of seats active{detail}"


def _interaction(row: Mapping[str, Any]) -> str:
    days = row.get("days_since_interaction")
    if days is None:
        return "no interaction on record"
    return f"last interaction {_plural(days, 'day')} ago"


def _tickets(priority: str) -> Callable[[Mapping[str, Any]], str]:
    def phrase(row: Mapping[str, Any]) -> str:
        count = row.get(f"open_tickets_{priority}") or 0
        if count == 0:
            return f"no {priority} tickets open"
        return f"{_plural(count, f'{priority} ticket')} open"

    return phrase


def _csat(row: Mapping[str, Any]) -> str:
    csat = row.get("csat_median")
    if csat is None:
        return "no CSAT ratings in the last 180 days"
    return f"median CSAT {_num(csat)} of 5 (last 180 days)"


def _invoices(kind: str) -> Callable[[Mapping[str, Any]], str]:
    def phrase(row: Mapping[str, Any]) -> str:
        count = row.get(f"invoices_{kind}_180d") or 0
        if count == 0:
            return f"no {kind} invoices in the last 180 days"
        return f"{_plural(count, f'{kind} invoice')} in the last 180 days"

    return phrase


def _nps(row: Mapping[str, Any]) -> str:
    score = row.get("nps_last")
    if score is None:
        return "no NPS response on record"
    label = "detractor" if score <= 6 else "passive" if score <= 8 else "promoter"
    return f"last NPS {_num(score)} ({label})"


def _champion(row: Mapping[str, Any]) -> str:
    if not row.get("champion_left"):
        return "no champion left in the last 180 days"
    days = row.get("champion_left_days")
    return "champion left recently" if days is None else f"champion left {_plural(days, 'day')} ago"


def _tenure(row: Mapping[str, Any]) -> str:
    days = row.get("tenure_days")
    if days is None:
        return "customer since an unknown date"
    return f"customer for {_plural(days, 'day')}"


def _renewal(row: Mapping[str, Any]) -> str:
    days = row.get("days_to_renewal")
    if days is None:
        return "no subscription on record"
    if days < 0:
        return f"renewal {_plural(-days, 'day')} overdue"
    if days == 0:
        return "renewal today"
    return f"renewal in {_plural(days, 'day')}"


def _discount(row: Mapping[str, Any]) -> str:
    discount = row.get("discount")
    if discount is None:
        return "discount unknown"
    return f"{round(discount * 100)}% discount"


def _plan(row: Mapping[str, Any]) -> str:
    plan = row.get("plan")
    return f"on the {plan} plan" if plan else "plan unknown"


def _segment(row: Mapping[str, Any]) -> str:
    segment = row.get("segment")
    return f"{segment} segment" if segment else "segment unknown"


PHRASES: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "usage_trend": _usage,
    "seat_utilisation": _seats,
    "days_since_interaction": _interaction,
    "open_tickets_urgent": _tickets("urgent"),
    "open_tickets_high": _tickets("high"),
    "open_tickets_medium": _tickets("medium"),
    "open_tickets_low": _tickets("low"),
    "csat_median": _csat,
    "invoices_failed_180d": _invoices("failed"),
    "invoices_late_180d": _invoices("late"),
    "nps_last": _nps,
    "champion_left": _champion,
    "tenure_days": _tenure,
    "days_to_renewal": _renewal,
    "discount": _discount,
    "plan": _plan,
    "segment": _segment,
}


# Phrases that read features besides their own group's value; every other driver's value
# and phrase depend on that value alone (`phrase_inputs`).
_EXTRA_INPUTS: dict[str, tuple[str, ...]] = {
    "seat_utilisation": ("seat_utilisation", "seats", "usage_last4"),
    "champion_left": ("champion_left", "champion_left_days"),
}


def phrase_inputs(group: str) -> tuple[str, ...]:
    """The features a driver's value and phrase are made of (what `driver_value` and
    `driver_phrase` read from the row)."""
    return _EXTRA_INPUTS.get(group, (group,))


def driver_value(group: str, row: Mapping[str, Any]) -> float | str | None:
    """The raw value a driver group is about (for evidence)."""
    value = row.get(group)
    if isinstance(value, float | int | str) or value is None:
        return value
    return str(value)


def driver_phrase(group: str, row: Mapping[str, Any]) -> str:
    """A short sentence a customer-success manager would say about this driver."""
    if group in PHRASES:
        return PHRASES[group](row)
    label = group.removeprefix(ATTR_PREFIX)
    value = row.get(group)
    if value is None:
        return f"{label} not recorded"
    if isinstance(value, float):
        return f"{label} = {_num(value)}"
    return f"{label} = {value}"
