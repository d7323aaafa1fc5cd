"""Deterministic demo company generator (being written; see generator module)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine


def generate_demo(engine: Engine, *, accounts: int, seed: int, as_of: dt.date) -> None:
    raise NotImplementedError("demo generator not written yet")
