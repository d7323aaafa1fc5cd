"""Storage of the kept churn feature state (tools/churn/state.py): the state itself, its
account index, and its one-blob format in `churn_feature_state`.

The blob is a JSON header (format, watermarks, ids, plans, the arrays' layout) followed by
the parts' raw bytes; parts holding only whole numbers in range are stored as int32 and come
back as exactly the same floats.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Connection, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from crm.models import ChurnFeatureState
from tools.churn.features import KEPT_PARTS, OPEN_PARTS, USAGE_PARTS


def locate(sorted_ids: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each of `ids` is, or would go, in `sorted_ids`, and whether it is there."""
    at = np.searchsorted(sorted_ids, ids)
    found = at < len(sorted_ids)
    found[found] = sorted_ids[at[found]] == ids[found]
    return at, found


class AccountIndex:
    """Row positions of account ids in a sorted id array, looked up in bulk (numpy binary
    search over fixed-width strings: no million-entry dict to build on every run)."""

    def __init__(self, ids: np.ndarray) -> None:
        self.ids = ids

    def positions(self, keys: Sequence[Any] | np.ndarray) -> np.ndarray:
        if not len(keys):
            return np.zeros(0, dtype=np.int64)
        wanted = np.asarray(keys, dtype=str)  # its own width: a longer key is never cut to match
        at, found = locate(self.ids, wanted)
        if not found.all():
            raise KeyError("an account id is missing from the churn feature state")
        return at.astype(np.int64)


def _id_array(ids: list[str]) -> np.ndarray:
    return np.array(ids, dtype=str) if ids else np.array([], dtype="<U1")


STATE_KEY = "history"
FORMAT = 2
CSAT_LEVELS = (1, 2, 3, 4, 5)
CSAT_PARTS = tuple(f"csat_{v}" for v in CSAT_LEVELS)
INVOICE_PARTS = ("inv_failed", "inv_late")
# KEPT_PARTS plus the windowed groups kept in a form that can be moved on: the latest
# champion departure of all time (the window's latest is it, if it is in the window), the
# invoice counts of the due-date window, and a CSAT histogram of the closed-date window.
STATE_PARTS = (*KEPT_PARTS, "champ_latest", *INVOICE_PARTS, *CSAT_PARTS)
ZERO_PARTS = (*USAGE_PARTS, *OPEN_PARTS, *INVOICE_PARTS, *CSAT_PARTS)


@dataclass
class FeatureState:
    """Kept parts of every account's history features as of `as_of` (ids sorted)."""

    as_of: dt.date
    ids: np.ndarray  # sorted, fixed-width strings
    parts: dict[str, np.ndarray]
    sub_plan: np.ndarray
    watermarks: dict[str, int]

    def index(self) -> AccountIndex:
        return AccountIndex(self.ids)


# --------------------------------------------------------------------------- storage


_MAGIC = b"valuechain-churn-state\n"


def _pack(state: FeatureState) -> bytes:
    """The state as one blob: a JSON header (format, watermarks, ids, plans, array layout)
    and the parts' raw bytes. Plainer and faster than a zip archive for ~100 MB at 1M."""
    parts = {name: np.ascontiguousarray(_compact(values)) for name, values in state.parts.items()}
    layout = []
    offset = 0
    for name, values in parts.items():
        layout.append([name, values.dtype.str, len(values), offset])
        offset += values.nbytes
    header = {
        "format": FORMAT,
        "watermarks": state.watermarks,
        "ids": state.ids.tolist(),
        "sub_plan": state.sub_plan.tolist(),
        "parts": layout,
    }
    head = json.dumps(header).encode()
    return b"".join([_MAGIC, len(head).to_bytes(8, "little"), head, *(v.tobytes() for v in parts.values())])


_NONE32 = np.iinfo(np.int32).min  # NaN in a compacted part


def _compact(values: np.ndarray) -> np.ndarray:
    """A part as int32 when every value is a whole number in range or NaN (counts, day
    ordinals, most ids): half the bytes to write and read, and exactly the same floats back."""
    known = values[~np.isnan(values)]
    if known.size and (
        (known != np.round(known)).any() or known.min() <= _NONE32 or known.max() > np.iinfo(np.int32).max
    ):
        return values
    return np.where(np.isnan(values), _NONE32, values).astype(np.int32)


def _expand(values: np.ndarray) -> np.ndarray:
    if values.dtype != np.int32:
        return values
    out = values.astype(np.float64)
    out[values == _NONE32] = np.nan
    return out


def _unpack(as_of: dt.date, payload: bytes) -> FeatureState | None:
    if not payload.startswith(_MAGIC):
        return None
    start = len(_MAGIC) + 8
    size = int.from_bytes(payload[len(_MAGIC) : start], "little")
    header = json.loads(payload[start : start + size])
    if header.get("format") != FORMAT:
        return None
    base = start + size
    parts = {
        name: _expand(np.frombuffer(payload, dtype=np.dtype(kind), count=count, offset=base + offset))
        for name, kind, count, offset in header["parts"]
    }
    if set(parts) != set(STATE_PARTS):
        return None
    return FeatureState(
        as_of=as_of,
        ids=_id_array(header["ids"]),
        parts=parts,
        sub_plan=np.array(header["sub_plan"], dtype=object),
        watermarks={k: int(v) for k, v in header["watermarks"].items()},
    )


def load(session: Session) -> FeatureState | None:
    row = session.execute(
        select(ChurnFeatureState.as_of, ChurnFeatureState.payload).where(ChurnFeatureState.key == STATE_KEY)
    ).first()
    if row is None:
        return None
    return _unpack(row[0], bytes(row[1]))


def save(session: Session, state: FeatureState) -> None:
    """Keep `state`, replacing the kept one in one statement (an upsert on SQLite and
    PostgreSQL), so two batches finishing together leave the later one's state rather than
    failing on the key."""
    values = {"key": STATE_KEY, "as_of": state.as_of, "payload": _pack(state)}
    dialect = session.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        module = sqlite if dialect == "sqlite" else postgresql
        stmt = module.insert(ChurnFeatureState).values(**values)
        session.execute(
            stmt.on_conflict_do_update(
                index_elements=[ChurnFeatureState.key],
                set_={"as_of": stmt.excluded.as_of, "payload": stmt.excluded.payload},
            )
        )
    else:  # pragma: no cover - the product runs on SQLite and PostgreSQL
        session.execute(delete(ChurnFeatureState).where(ChurnFeatureState.key == STATE_KEY))
        session.add(ChurnFeatureState(**values))
        session.flush()


def drop(conn: Connection) -> int:
    """Forget the kept state (the next batch reads from scratch); returns rows removed."""
    return conn.execute(delete(ChurnFeatureState)).rowcount or 0
