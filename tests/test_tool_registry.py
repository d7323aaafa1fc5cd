"""The tool registry is the one declaration: every tool reaches every surface, or says why not.

Coverage: each registered tool has an eval case, a typed API route and a CLI command, or a
listed, reasoned exemption; the agent's tools, the evals' tool names and the API/CLI surfaces
are derived from the registry (nothing to add by hand for a new tool).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from agent.tools import build_tools
from api.app import create_app
from api.routes.tool_calls import api_tools
from core.db import make_engine, make_sessionmaker
from core.settings import Settings
from evals import tools_suite
from tools.ranking import rank
from tools.registry import ALL_TOOLS, MODEL_TOOLS, TOOL_NAMES, ToolSpec, strict_params
from valuechain.cli.main import app
from valuechain.cli.tools_call import CLI_TOOLS

runner = CliRunner()


def test_names_are_unique_and_the_agent_is_offered_the_registry_in_order() -> None:
    assert len(set(TOOL_NAMES)) == len(TOOL_NAMES) == len(ALL_TOOLS)
    assert [t.name for t in build_tools()] == [t.name for t in MODEL_TOOLS]
    assert [t.args_schema for t in build_tools()] == [t.params for t in MODEL_TOOLS]
    hidden = [t for t in ALL_TOOLS if not t.offered]
    assert [t.name for t in hidden] == ["list_accounts"]


@pytest.mark.parametrize("spec", ALL_TOOLS, ids=lambda s: s.name)
def test_every_tool_has_an_eval_case_an_api_route_and_a_cli_command_or_a_reason(spec: ToolSpec[Any, Any]) -> None:
    cases = [c for c in tools_suite.load_cases() if c.tool == spec.name]
    assert cases, f"{spec.name} has no case in {tools_suite.CASES_FILE.name}"
    assert set(spec.exempt) <= {"api", "cli"}, "an eval case is never optional"
    for surface, reason in spec.exempt.items():
        assert len(reason.split()) >= 8, f"{spec.name}: the {surface} exemption needs a reason"
    assert (spec in api_tools()) == ("api" not in spec.exempt)
    assert (spec.name in CLI_TOOLS) == ("cli" not in spec.exempt)
    if spec.writes:  # a writing tool is filed with provenance; the generic surfaces only read
        assert {"api", "cli"} <= set(spec.exempt), spec.name


def test_the_api_has_a_typed_route_per_tool(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    served = {p.removeprefix("/api/v1/tools/call/") for p in paths if p.startswith("/api/v1/tools/call/")}
    assert served == {t.name for t in api_tools()}
    for spec in api_tools():
        op = paths[f"/api/v1/tools/call/{spec.name}"]["post"]
        assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
            "/" + spec.result.__name__
        )
        assert "422" in op["responses"] and "401" in op["responses"]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path, llm_autostart=False, chroma_host=None, llm_base_url=None)
    with TestClient(create_app(settings)) as c:
        yield c


def test_cli_call_runs_a_tool_as_the_agent_does(golden_db_url: str) -> None:
    result = runner.invoke(app, ["tools", "call", "rank", "-a", "entity=accounts", "-a", "metric=arr",
                                 "-a", "limit=2", "--database-url", golden_db_url])
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    with make_sessionmaker(make_engine(golden_db_url))() as s:
        expected = rank(session=s, entity="accounts", metric="arr", filters={}, limit=2)
    assert got == expected.model_dump(mode="json")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["rank", "-a", "entity=accounts", "-a", "metrc=arr"], "metric: Field required; metrc: Extra inputs"),
        (["rank", "-a", "entity=accounts", "-a", "metric=nope"], 'unknown metric "nope" for accounts'),
        (["rank", "--args", "[1]"], "--args must be a JSON object"),
        (["no_such_tool"], 'unknown tool "no_such_tool"'),
        (["propose_recommendation"], "propose_recommendation is not called from the command line"),
    ],
)
def test_cli_call_refuses_bad_input_with_exit_2(golden_db_url: str, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["tools", "call", *args, "--database-url", golden_db_url])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split()), result.output


def test_strict_params_refuse_unknown_fields_but_the_model_schema_does_not_say_so() -> None:
    for spec in ALL_TOOLS:
        assert "additionalProperties" not in spec.params.model_json_schema()
        assert strict_params(spec.params).model_json_schema()["additionalProperties"] is False
