"""Deterministic demo company generator (SPEC §4): `generate_demo(engine, accounts=..., seed=...)`.

See docs/DEMO.md for what is generated, the hidden churn mechanism and how the
history is trimmed above 50,000 accounts.
"""

from __future__ import annotations

from crm.demo.generator import (
    DEFAULT_AS_OF,
    GENERATOR_VERSION,
    DemoDatabaseNotEmptyError,
    DemoSummary,
    count_rows,
    database_has_data,
    generate_demo,
    reset_demo_data,
)
from crm.demo.removal import DemoRemoval, DemoRows, demo_refusal, demo_rows, remove_demo
from crm.demo.simulate import CHUNK, TRIM_THRESHOLD

__all__ = [
    "CHUNK",
    "DEFAULT_AS_OF",
    "GENERATOR_VERSION",
    "TRIM_THRESHOLD",
    "DemoDatabaseNotEmptyError",
    "DemoRemoval",
    "DemoRows",
    "DemoSummary",
    "count_rows",
    "database_has_data",
    "demo_refusal",
    "demo_rows",
    "generate_demo",
    "remove_demo",
    "reset_demo_data",
]
