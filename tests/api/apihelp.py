"""Helpers shared by the API tests (imported by name; the fixtures are in conftest.py)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import Engine

from core.settings import Settings

ROLES = ("viewer", "analyst", "approver", "admin")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def settings_for(engine: Engine, tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": engine.url.render_as_string(hide_password=False),
        "data_dir": tmp_path / "data",
        "chroma_path": tmp_path / "chroma",
        "chroma_host": None,
        "llm_base_url": None,
        "llm_autostart": False,
        "playbook_path": None,
        "recommendation_ttl_days": 30,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
