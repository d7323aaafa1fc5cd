"""PLAYBOOK_PATH replaces the shipped playbook for `valuechain tools next-best-action`."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from sqlalchemy import Engine
from typer.testing import CliRunner

from core.settings import get_settings
from crm.demo import generate_demo
from valuechain.cli.main import app

SHIPPED = Path(__file__).parents[1] / "tools" / "playbook.yaml"


@pytest.fixture
def user_playbook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    playbook = yaml.safe_load(SHIPPED.read_text())
    # A user playbook with one unconditional retention action only.
    action = dict(playbook["actions"][0], id="call_the_ceo", when=[])
    playbook["actions"] = [action]
    path = tmp_path / "playbook.yaml"
    path.write_text(yaml.safe_dump(playbook))
    monkeypatch.setenv("PLAYBOOK_PATH", str(path))
    get_settings.cache_clear()
    yield path
    get_settings.cache_clear()


def test_playbook_path_setting_is_used_by_the_cli(sqlite_engine: Engine, user_playbook: Path) -> None:
    generate_demo(sqlite_engine, accounts=60, seed=3, as_of=dt.date(2026, 9, 30))
    url = sqlite_engine.url.render_as_string(hide_password=False)
    result = CliRunner().invoke(
        app, ["tools", "next-best-action", "ACME-0042", "--database-url", url, "--json"]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    offered = {a["action"] for a in payload["actions"] + payload["unprofitable"]}
    assert offered == {"call_the_ceo"}
    assert payload["eligible_count"] + payload["ineligible_count"] == 1
