"""The time of day the demo company's support tickets were opened and closed (issue #20).

The service queue counts SLAs in hours. The *days* a demo ticket was opened and closed come
from the churn mechanism in `crm.demo.simulate` (unchanged since generator version 1: the
churn features, the timelines and the recorded evals rest on them); the *time of day* within
those days comes from a random stream of its own, drawn here, so adding it changed no other
generated figure:

* opened: 80 % within business hours 08:00–18:00 (uniform), 20 % at any time of day;
* closed on a later day: 85 % within 08:00–20:00, placed by the category: quick categories
  (how_to, account_access, billing) early in the day, Beta(1.5, 3); slow ones (bug,
  performance, integration) late, Beta(3, 1.5); feature_request Beta(2, 2); 15 % at any time;
* closed the day it was opened: after the opening, by the same category Beta share of the
  time left until midnight (a quick how-to is answered within hours, an integration problem
  the same evening).

So resolution times in hours follow the days (priority and the account's trouble set them: a
median of 1 day for urgent tickets up to 8 days for low ones, longer in trouble, with a stuck
tail) and, within a day, the category.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
from numpy.typing import NDArray

DAY_MINUTES = 24 * 60
# Beta(a, b) of the time of day a ticket is closed, per category (simulate.TICKET_CATEGORIES order):
# bug, how_to, performance, integration, feature_request, account_access, billing
CLOSE_SHAPE = np.array([[3.0, 1.5], [1.5, 3.0], [3.0, 1.5], [3.0, 1.5], [2.0, 2.0], [1.5, 3.0], [1.5, 3.0]])
_EPOCH = dt.date(1970, 1, 1).toordinal()


def ticket_minutes(
    rng: np.random.Generator, category: NDArray[np.int64], same_day: NDArray[np.bool_]
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Minute of the day each ticket was opened and closed (every ticket of the chunk, before
    any is filtered, so a ticket's times depend only on its position)."""
    n = len(category)
    business = rng.random(n) < 0.8
    opened = np.where(business, rng.uniform(8 * 60, 18 * 60, n), rng.uniform(0, DAY_MINUTES - 2, n))
    opened = np.floor(opened).astype(np.int64)
    share = rng.beta(CLOSE_SHAPE[category, 0], CLOSE_SHAPE[category, 1])
    working = rng.random(n) < 0.85
    later = np.where(working, 8 * 60 + share * 12 * 60, rng.uniform(0, DAY_MINUTES, n))
    same = opened + 1 + share * (DAY_MINUTES - 2 - opened)
    closed = np.floor(np.where(same_day, same, later)).astype(np.int64)
    return opened, np.clip(closed, 0, DAY_MINUTES - 1)


def to_datetimes(
    ordinals: NDArray[np.int64], minutes: NDArray[np.int64], missing: NDArray[np.bool_] | None = None
) -> list[dt.datetime | None]:
    """Datetimes of (day ordinal, minute of day); None where `missing` is set."""
    stamps = (np.asarray(ordinals, dtype=np.int64) - _EPOCH) * DAY_MINUTES + np.asarray(minutes, dtype=np.int64)
    out: list[dt.datetime | None] = stamps.astype("datetime64[m]").astype("datetime64[s]").tolist()
    if missing is not None:
        out = [None if m else v for v, m in zip(out, missing.tolist(), strict=True)]
    return out
