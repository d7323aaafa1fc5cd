"""`valuechain llm status` without a model: configured endpoints, errors, JSON shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.settings import Settings
from valuechain.cli import llm as llm_cli
from valuechain.cli.main import app

runner = CliRunner()


def _use(monkeypatch: pytest.MonkeyPatch, **values: object) -> None:
    settings = Settings.model_validate({"data_dir": Path("unused"), **values})
    monkeypatch.setattr(llm_cli, "get_settings", lambda: settings)


def test_status_reports_a_configured_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    _use(monkeypatch, llm_base_url="https://llm.example/v1", llm_model="m1")
    result = runner.invoke(app, ["llm", "status", "--json", "--no-measure"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["embedded"] is False
    assert body["base_url"] == "https://llm.example/v1"
    assert body["model"] == "m1"
    assert body["speed"] is None


def test_status_explains_an_incomplete_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    _use(monkeypatch, llm_base_url="https://llm.example/v1")
    result = runner.invoke(app, ["llm", "status", "--no-measure"])
    assert result.exit_code == 1
    assert "LLM_MODEL" in result.output


def test_status_reports_an_unreachable_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    _use(monkeypatch, llm_base_url="http://127.0.0.1:9/v1", llm_model="m", llm_timeout_s=2)
    result = runner.invoke(app, ["llm", "status"])
    assert result.exit_code == 1
    assert "did not answer" in result.output


def test_embedded_status_with_a_missing_gguf_override(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _use(monkeypatch, llm_gguf_path=tmp_path / "missing.gguf")
    result = runner.invoke(app, ["llm", "status", "--json"])
    assert result.exit_code == 1
    assert "LLM_GGUF_PATH points at" in result.output
