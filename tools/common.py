"""Helpers shared by the tools: the data's as-of date, periods, lookups with suggestions.

Nothing here reads the wall clock: "today" for a tool is the date the data runs to.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, overload

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crm.models import Account, AppMeta, Invoice, UsageWeekly, ValueChainActivity
from tools.errors import DataFault, ToolInputError, close_matches

AS_OF_KEY = "as_of"

_YEAR = re.compile(r"^(?:FY)?(\d{4})$", re.IGNORECASE)
_QUARTER = re.compile(r"^(\d{4})[-\s]?Q([1-4])$", re.IGNORECASE)
_MONTH = re.compile(r"^(\d{4})-(\d{1,2})$")
_HALF = re.compile(r"^(\d{4})[-\s]?H([12])$", re.IGNORECASE)


def _month_end(year: int, month: int) -> dt.date:
    if month == 12:
        return dt.date(year, 12, 31)
    return dt.date(year, month + 1, 1) - dt.timedelta(days=1)


def period_end(period: str) -> dt.date | None:
    """Last day of a period label: "2026", "FY2026", "2026-Q1", "2026-H2", "2026-03"; None if unknown."""
    p = period.strip()
    if m := _YEAR.match(p):
        return dt.date(int(m.group(1)), 12, 31)
    if m := _QUARTER.match(p):
        return _month_end(int(m.group(1)), 3 * int(m.group(2)))
    if m := _HALF.match(p):
        return _month_end(int(m.group(1)), 6 * int(m.group(2)))
    if (m := _MONTH.match(p)) and 1 <= int(m.group(2)) <= 12:
        return _month_end(int(m.group(1)), int(m.group(2)))
    return None


@overload
def parse_date(value: str, *, name: str) -> dt.date: ...
@overload
def parse_date(value: None, *, name: str) -> None: ...
@overload
def parse_date(value: str | None, *, name: str) -> dt.date | None: ...
def parse_date(value: str | None, *, name: str) -> dt.date | None:
    """A YYYY-MM-DD date given as text (a command-line option), None for None; a
    `ToolInputError` naming the option `name` when it is not a date."""
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ToolInputError(f"{name} must be a date like 2026-09-30; got {value!r}") from None


def period_sort_key(period: str) -> tuple[dt.date, str]:
    """Order periods by their end date (unparseable labels first), then by label."""
    return (period_end(period) or dt.date.min, period)


def activity_periods(session: Session) -> list[str]:
    """The value-chain periods in the database, oldest first."""
    periods = session.scalars(select(ValueChainActivity.period).distinct()).all()
    return sorted(periods, key=period_sort_key)


def data_as_of(session: Session) -> dt.date:
    """The date the data runs to: AppMeta "as_of", else the latest usage week or invoice, else
    the end of the latest activity period, else the newest account's creation date.

    Tools use it as "today" so the same database gives the same answer on any day.
    """
    meta = session.get(AppMeta, AS_OF_KEY)
    if meta is not None and meta.value.strip():
        try:
            return dt.date.fromisoformat(meta.value.strip()[:10])
        except ValueError as exc:
            raise DataFault(
                f"app_meta {AS_OF_KEY!r} is not an ISO date: {meta.value!r}; set it to a date such as "
                f"2026-09-30, or delete that row so the data's latest date is used"
            ) from exc
    dates = [
        session.scalar(select(func.max(UsageWeekly.week_start))),
        session.scalar(select(func.max(Invoice.issued_at))),
    ]
    found = [d for d in dates if d is not None]
    if found:
        return max(found)
    periods = activity_periods(session)
    ends = [e for e in (period_end(p) for p in periods) if e is not None]
    if ends:
        return max(ends)
    newest = session.scalar(select(func.max(Account.created_at)))
    if newest is not None:
        return newest
    raise ToolInputError("the database holds no dated data; pass an explicit as_of date (YYYY-MM-DD)")


def byte_order(session: Session, column: Any) -> Any:
    """`column` for ORDER BY in code-point order on every engine (ties break by id the same way
    as Python sorts): PostgreSQL databases often use a locale collation that ignores '-'."""
    if session.get_bind().dialect.name == "postgresql":
        return column.collate("C")
    return column


def suggest_account_ids(session: Session, account_id: str, n: int = 3) -> list[str]:
    """Up to `n` existing account ids close to `account_id` (same 3-letter prefix first).

    Looks at no more than a few thousand ids so it stays fast on a million accounts.
    """
    prefix = account_id.strip()[:3].upper()
    candidates = list(
        session.scalars(
            select(Account.id)
            .where(func.upper(Account.id).like(f"{prefix}%"))
            .order_by(Account.id)
            .limit(5000)
        )
    )
    matches = close_matches(account_id, candidates, n=n, cutoff=0.5)
    if len(matches) < n:
        others = session.scalars(select(Account.id).order_by(Account.id).limit(5000)).all()
        matches += [m for m in close_matches(account_id, others, n=n, cutoff=0.5) if m not in matches]
    return matches[:n]


def require_account(session: Session, account_id: str) -> Account:
    """The account with this id, or a ToolInputError naming up to 3 close ids."""
    account = session.get(Account, account_id)
    if account is not None:
        return account
    near = suggest_account_ids(session, account_id)
    hint = "; did you mean " + ", ".join(f'"{s}"' for s in near) + "?" if near else ""
    raise ToolInputError(f'no account "{account_id}"{hint}')


def require_activity(session: Session, activity_id: str) -> ValueChainActivity:
    """The value-chain activity with this id, or a ToolInputError naming close ids."""
    activity = session.get(ValueChainActivity, activity_id)
    if activity is not None:
        return activity
    ids = session.scalars(select(ValueChainActivity.id).order_by(ValueChainActivity.id)).all()
    near = close_matches(activity_id, ids, n=3, cutoff=0.5)
    hint = "; did you mean " + ", ".join(f'"{s}"' for s in near) + "?" if near else ""
    raise ToolInputError(f'no activity "{activity_id}"{hint}')
