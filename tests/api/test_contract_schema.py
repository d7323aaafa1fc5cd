"""Issue #18: schemathesis over the app's own OpenAPI document, every operation, with an admin key.

Each operation gets positive cases (valid by the schema) and, where it takes input, negative ones
(invalid by it); every bounded input is also sent at its bounds, one past them and far beyond (ids
past 2**63 - 1, `as_of=0001-01-01`, NUL and lone surrogates in text). No response may be a 5xx, and
every response must have a documented status, content type, headers and body schema. Chat runs on
the scripted fake model; Slack is configured (unsigned requests are refused) so its route is
exercised rather than switched off. Examples are derandomized and bounded (`CONTRACT_EXAMPLES` per
operation and mode, default 40) so the run is the same on every machine and stays within CI time;
`CONTRACT_EXAMPLES=200` digs deeper. `CONTRACT_REPORT=path.json` writes what was sent.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import factories as f
import pytest
import schemathesis
from agent_fakes import Script, ScriptedChatModel, say
from apihelp import bearer, settings_for
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pg_databases import PG_URL, drop_pg_database, fresh_pg_database
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

import api.app
from agent.copilot import Copilot
from api.app import create_app
from api.auth import create_key
from api.llm import LLMState
from core.db import make_engine, make_sessionmaker
from core.settings import Settings
from crm.migrate import upgrade
from tools.recommendations import propose_recommendation

EXAMPLES = int(os.environ.get("CONTRACT_EXAMPLES", "40"))
"""Examples per operation and generation mode."""
REPORT = os.environ.get("CONTRACT_REPORT")
"""A path: write there the operations, the requests sent and their statuses (for docs/RELIABILITY.md)."""
SENT: Counter[tuple[str, str, int]] = Counter()
"""(operation, mode, status) -> requests sent."""


@schemathesis.check
def not_a_server_error_but_readiness(ctx: Any, response: Any, case: Any) -> bool | None:
    """`not_a_server_error`, except the readiness probe's documented 503 (the test has no model
    server, so `/readyz` says the LLM is down: that is its answer, not a failure)."""
    if case.operation.path == "/readyz" and response.status_code == 503 and response.json()["ready"] is False:
        return None
    return not_a_server_error(ctx, response, case)


CHECKS = [
    not_a_server_error_but_readiness,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


KNOWN_IDS: dict[str, list[Any]] = {
    "account_id": ["ACME-0001", "ACME-0002", "ACME-0003"],
    "recommendation_id": [1, 2],
}
"""Ids that exist in the served database: half of the generated path ids are swapped for one, so
the routes behind the 404 (a real account with `as_of=0001-01-01`) are reached too."""


def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> st.SearchStrategy[Any]:
    """A schemathesis hook (registered on the schema below): generated path parameters, or the
    same with a known id in place of each id parameter."""
    known = {name: st.sampled_from(ids) for name, ids in KNOWN_IDS.items() if name in (path_parameters or {})}
    if not path_parameters or not known:
        return st.just(path_parameters)
    with_known = st.fixed_dictionaries({**{k: st.just(v) for k, v in path_parameters.items()}, **known})
    return st.one_of(st.just(path_parameters), with_known)


def _operations() -> list[tuple[str, str, GenerationMode]]:
    """Every operation, positive; and negative where it takes input (nothing to negate otherwise)."""
    spec = create_app(Settings(llm_autostart=False)).openapi()
    out = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            out.append((method.upper(), path, GenerationMode.POSITIVE))
            if op.get("parameters") or op.get("requestBody"):
                out.append((method.upper(), path, GenerationMode.NEGATIVE))
    return out


OPERATIONS = _operations()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str]]:
    """One app for the whole module (the operations share it, as clients share a server): a migrated
    database (PostgreSQL when TEST_DATABASE_URL is set, else SQLite) with the golden accounts, two pending recommendations (ids 1 and 2), an admin
    key, a chat model that always answers, and Slack configured. Yields (schema, admin key)."""
    tmp = tmp_path_factory.mktemp("contract")
    pg_name = None
    if PG_URL:  # CI: PostgreSQL refuses more than SQLite does (NUL, ids past 32 bits)
        url, pg_name = fresh_pg_database()
        engine = make_engine(url)
    else:
        engine = make_engine(f"sqlite:///{tmp / 'contract.db'}")
    upgrade(engine)
    factory = make_sessionmaker(engine)
    with factory() as s:
        f.golden_accounts(s)
        f.golden_activities(s)
        f.golden_initiatives(s)
        key = create_key(session=s, name="admin1", role="admin").key
        for account in ("ACME-0001", "ACME-0002"):
            propose_recommendation(session=s, account_id=account, action="exec_sponsor_call",
                                   rationale="Two urgent tickets open and renewal in 30 days.",
                                   evidence={"open_tickets": 2}, expected_value=4_500.0,
                                   holdout_share=0.0)  # ACME-0002 is in the holdout of this action
        s.commit()
    settings = settings_for(
        engine, tmp, slack_bot_token="xoxb-1-contract", slack_signing_secret="contract-signing-secret-0123456789",
        slack_api_url="http://127.0.0.1:9/",  # never reached: unsigned requests are refused first
    )
    script = Script([say("Sales leaks the most margin.") for _ in range(5000)])

    def start_llm(settings: Settings, *, sessions: Any, knowledge: Any) -> LLMState:
        # schemathesis runs the app's lifespan once per test: each start gets the scripted agent
        state = LLMState(base_url=None, model="scripted", embedded=False, status="ready")
        state.copilot = Copilot(
            sessions=sessions,
            knowledge=knowledge,
            router=ScriptedChatModel(script=script, label="router"),
            answerer=ScriptedChatModel(script=script, label="answerer"),
            model_name="scripted",
        )
        return state

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(api.app, "start_llm", start_llm)
        app = create_app(settings)
        try:
            schema = schemathesis.openapi.from_asgi("/openapi.json", app)
            schema.hook(flatmap_path_parameters)
            yield schema, key
        finally:
            asgi.shutdown_lifespans()
            engine.dispose()
            if pg_name is not None:
                drop_pg_database(pg_name)
            if REPORT:
                _write_report(Path(REPORT))


def _write_report(path: Path) -> None:
    by_status: Counter[int] = Counter()
    by_operation: dict[str, Counter[int]] = {}
    for (operation, _, status), n in SENT.items():
        by_status[status] += n
        by_operation.setdefault(operation, Counter())[status] += n
    path.write_text(json.dumps({
        "operations": len(by_operation),
        "examples_per_operation_and_mode": EXAMPLES,
        "requests": sum(SENT.values()),
        "by_status": {str(status): n for status, n in sorted(by_status.items())},
        "by_operation": {op: {str(st): n for st, n in sorted(c.items())} for op, c in sorted(by_operation.items())},
    }, indent=2) + "\n")


@pytest.mark.parametrize(("method", "path", "mode"), OPERATIONS, ids=[f"{m} {p} {g.value}" for m, p, g in OPERATIONS])
def test_no_server_error_and_responses_match_the_schema(
    served: tuple[Any, str], method: str, path: str, mode: GenerationMode
) -> None:
    schema, key = served
    operation = schema[path][method]
    headers = bearer(key)

    @given(case=operation.as_strategy(generation_mode=mode))
    @hsettings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
               phases=[Phase.explicit, Phase.generate, Phase.shrink],
               suppress_health_check=list(HealthCheck))
    def check(case: Any) -> None:
        response = case.call_and_validate(headers=headers, checks=CHECKS)
        SENT[(f"{method} {path}", mode.value, response.status_code)] += 1

    check()


def test_every_operation_is_covered() -> None:
    """The suite above takes its operations from the document, so a new route is covered with no
    change here; this names the count the docs quote."""
    positive = [op for op in OPERATIONS if op[2] is GenerationMode.POSITIVE]
    assert len(positive) == len({(m, p) for m, p, _ in OPERATIONS})
    assert len(positive) >= 44


# --------------------------------------------------------------------------- boundary cases
# Random generation rarely lands on the edges that broke the service (`as_of=0001-01-01` minus a
# look-back window, an id one past 2**63 - 1), so every bounded input is also sent at its bounds, one
# past them and far beyond, with the other inputs at valid values, under the same checks.

BASELINE: dict[str, Any] = {
    "account_id": "ACME-0001", "recommendation_id": 1, "run_id": "run-contract", "conversation_id": "conv-contract",
    "entity": "accounts", "metric": "arr_at_risk", "action": "exec_sponsor_call", "message": "Who may churn?",
    "query": "value chain", "q": "value chain", "rationale": "Renewal in 30 days.", "reason_code": "not_worth_it",
    "title": "Renamed", "rating": "up", "opportunity_id": "D-1",
}


def _resolve(schema: dict[str, Any], components: dict[str, Any]) -> list[dict[str, Any]]:
    """`schema` and its anyOf/allOf/oneOf members, references followed."""
    out, stack = [], [schema]
    while stack:
        s = stack.pop()
        if "$ref" in s:
            s = components[s["$ref"].rsplit("/", 1)[1]]
        out.append(s)
        for key in ("anyOf", "allOf", "oneOf"):
            stack.extend(s.get(key, []))
    return out


def _edges(schema: dict[str, Any], components: dict[str, Any], *, in_json: bool) -> list[Any]:
    values: list[Any] = []
    for s in _resolve(schema, components):
        if s.get("type") == "integer":
            if "maximum" in s:
                values += [int(s["maximum"]), int(s["maximum"]) + 1]
            if "minimum" in s:
                values += [int(s["minimum"]), int(s["minimum"]) - 1]
            values.append(2**64)
        elif s.get("format") == "date":
            values += [s.get("formatMinimum", "1900-01-01"), s.get("formatMaximum", "2199-12-31"),
                       "0001-01-01", "9999-12-31"]
        elif s.get("type") == "string" and "enum" not in s and "format" not in s:
            values += ["a\x00b", "x" * 10_000] + (["a\ud800b"] if in_json else [])
    return values


def _value(name: str, schema: dict[str, Any], components: dict[str, Any]) -> Any:
    if name in BASELINE:
        return BASELINE[name]
    for s in _resolve(schema, components):
        if "enum" in s:
            return s["enum"][0]
        if s.get("type") == "integer":
            return int(s.get("minimum", 1))
        if s.get("type") == "string":
            return "2026-06-30" if s.get("format") == "date" else "x"
        if s.get("type") == "object":
            return {}
    return "x"


def _boundary_cases() -> list[tuple[str, str, str, dict[str, Any]]]:
    """(method, path, label, Case keyword arguments) for every bounded input of every operation."""
    spec = create_app(Settings(llm_autostart=False)).openapi()
    components = spec["components"]["schemas"]
    cases = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            params = [p for p in op.get("parameters", []) if p["in"] in ("path", "query")]
            base_path = {p["name"]: _value(p["name"], p["schema"], components) for p in params if p["in"] == "path"}
            body_schema = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            base_body: dict[str, Any] | None = None
            properties: dict[str, Any] = {}
            if body_schema is not None:
                for s in _resolve(body_schema, components):
                    properties.update(s.get("properties", {}))
                required = {r for s in _resolve(body_schema, components) for r in s.get("required", [])}
                base_body = {name: _value(name, properties[name], components) for name in sorted(required)}
                if path.endswith(("/approve", "/reject")):
                    base_body["expected_version"] = 1
            for p in params:
                for value in _edges(p["schema"], components, in_json=False):
                    kwargs: dict[str, Any] = {"path_parameters": {**base_path}, "query": {}}
                    kwargs["path_parameters" if p["in"] == "path" else "query"][p["name"]] = value
                    if base_body is not None:
                        kwargs["body"], kwargs["media_type"] = base_body, "application/json"
                    cases.append((method.upper(), path, f"{p['in']}.{p['name']}={str(value)[:24]!r}", kwargs))
            for name, prop in sorted(properties.items()):
                for value in _edges(prop, components, in_json=True):
                    body = {**(base_body or {}), name: value}
                    cases.append((method.upper(), path, f"body.{name}={str(value)[:24]!r}",
                                  {"path_parameters": {**base_path}, "body": body, "media_type": "application/json"}))
    return cases


BOUNDARY_CASES = _boundary_cases()
BOUNDARY_OPERATIONS = sorted({(m, p) for m, p, _, _ in BOUNDARY_CASES})


@pytest.mark.parametrize(("method", "path"), BOUNDARY_OPERATIONS, ids=[f"{m} {p}" for m, p in BOUNDARY_OPERATIONS])
def test_bounded_inputs_at_and_past_their_edges(served: tuple[Any, str], method: str, path: str) -> None:
    schema, key = served
    operation = schema[path][method]
    failures = []
    for _, _, label, kwargs in (c for c in BOUNDARY_CASES if c[:2] == (method, path)):
        case = operation.Case(**kwargs)
        try:
            response = case.call_and_validate(headers=bearer(key), checks=CHECKS)
        except Exception as exc:  # collect every edge that fails, not only the first
            failures.append(f"{label}: {str(exc).strip().splitlines()[0:12]}")
            continue
        SENT[(f"{method} {path}", "boundary", response.status_code)] += 1
    assert failures == []
