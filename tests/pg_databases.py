"""Throw-away PostgreSQL databases for tests (used by conftest fixtures and migration tests).

A module of its own, not conftest: `from conftest import ...` resolves to whichever of the
tests' conftest files was imported first.
"""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import create_engine, text

PG_URL = os.environ.get("TEST_DATABASE_URL")


def fresh_pg_database() -> tuple[str, str]:
    """Create a throw-away database on the test server; returns (url, name)."""
    if not PG_URL:
        pytest.skip("TEST_DATABASE_URL not set (PostgreSQL tests run in .ci/run)")
    name = f"vc_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    base, _, _ = PG_URL.rpartition("/")
    return f"{base}/{name}", name


def drop_pg_database(name: str) -> None:
    assert PG_URL is not None
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
