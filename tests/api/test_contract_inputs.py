"""Issue #18: each input the probe turned into a 500 is now a clear 4xx problem, and the bounds
hold at their edges (the first and last day allowed work on every as-of route). On SQLite, and
on PostgreSQL when TEST_DATABASE_URL is set (each refuses different things: NUL, 64-bit overflow)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from apihelp import bearer
from fastapi.testclient import TestClient

from core.contract import MAX_DAY, MIN_DAY

PROBLEM = "application/problem+json"


@pytest.fixture
def server(client: TestClient) -> TestClient:
    """The app's client, answering a bug with its 500 instead of raising it into the test."""
    client.raise_server_exceptions = False  # type: ignore[attr-defined]
    return client


def problem(r: Any, status: int) -> dict[str, Any]:
    """The problem+json body of `r`, which must have `status`."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body: dict[str, Any] = r.json()
    assert {"type", "title", "status", "detail"} <= set(body) and body["status"] == status
    return body


def messages(body: dict[str, Any]) -> str:
    detail = body["detail"]
    return " ".join(f"{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in detail) if isinstance(detail, list) else detail


AS_OF_ROUTES = [
    "/api/v1/tools/accounts/ACME-0001",
    "/api/v1/tools/accounts/ACME-0001/timeline",
    "/api/v1/tools/churn-risk/ACME-0001",
    "/api/v1/tools/churn-risk",
    "/api/v1/tools/next-best-action/ACME-0001",
    "/api/v1/tools/rank/accounts/arr_at_risk",
]


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("/api/v1/recommendations/99999999999999999999999", "path.recommendation_id: Input should be less than or equal to 2147483647"),
        ("/api/v1/recommendations/2147483648/approve", "less than or equal to 2147483647"),
        ("/api/v1/recommendations?offset=9223372036854775808", "query.offset: Input should be less than or equal to 1000000000"),
        ("/api/v1/tools/accounts?offset=9223372036854775808", "query.offset: Input should be less than or equal to 1000000000"),
        ("/api/v1/conversations?offset=99999999999999999999999", "query.offset"),
        ("/api/v1/tools/next-best-action/ACME-0001?cooldown_days=1000000000", "query.cooldown_days: Input should be less than or equal to 3650"),
        ("/api/v1/tools/next-best-action/ACME-0001?rejection_days=1000000000", "query.rejection_days"),
        ("/api/v1/recommendations?created_to=9999-12-31", "query.created_to: Input should be less than or equal to 2199-12-31"),
        ("/api/v1/recommendations?created_from=0001-01-01", "query.created_from: Input should be greater than or equal to 1900-01-01"),
        ("/api/v1/tools/accounts/ACME-0001/timeline?since=0001-01-01", "query.since"),
        *[(f"{route}?as_of=0001-01-01", "query.as_of: Input should be greater than or equal to 1900-01-01") for route in AS_OF_ROUTES],
        *[(f"{route}?as_of=9999-12-31", "query.as_of: Input should be less than or equal to 2199-12-31") for route in AS_OF_ROUTES],
        ("/api/v1/chat/runs/run-1/events?after=9223372036854775808", "query.after"),
    ],
)
def test_out_of_range_numbers_and_dates_are_422_naming_the_bound(
    server: TestClient, keys: dict[str, str], url: str, says: str
) -> None:
    method = server.post if url.endswith("/approve") else server.get
    kwargs: dict[str, Any] = {"json": {"expected_version": 1}} if url.endswith("/approve") else {}
    body = problem(method(url, headers=bearer(keys["admin"]), **kwargs), 422)
    assert body["type"] == "urn:valuechain:problem:invalid-input"
    assert says in messages(body)


@pytest.mark.parametrize("day", [MIN_DAY, MAX_DAY], ids=["first-day", "last-day"])
@pytest.mark.parametrize("route", AS_OF_ROUTES)
def test_the_first_and_last_days_allowed_work_on_every_as_of_route(
    server: TestClient, keys: dict[str, str], route: str, day: Any
) -> None:
    r = server.get(route, params={"as_of": day.isoformat()}, headers=bearer(keys["analyst"]))
    assert r.status_code < 500, r.text  # 200, or a 4xx the tool explains (e.g. no data then)
    if r.status_code != 200:
        problem(r, r.status_code)


def test_the_widest_windows_and_dates_work(server: TestClient, keys: dict[str, str]) -> None:
    h = bearer(keys["admin"])
    r = server.get("/api/v1/tools/next-best-action/ACME-0001", params={"cooldown_days": 3650, "rejection_days": 3650}, headers=h)
    assert r.status_code == 200, r.text
    r = server.get("/api/v1/recommendations", params={"created_from": "1900-01-01", "created_to": "2199-12-31",
                                                      "offset": 1_000_000_000}, headers=h)
    assert r.status_code == 200 and r.json()["items"] == []
    assert server.get("/api/v1/recommendations/2147483647", headers=h).status_code == 404


def test_a_nul_in_a_query_is_refused_not_a_match_for_everything(server: TestClient, keys: dict[str, str]) -> None:
    h = bearer(keys["analyst"])
    body = problem(server.get("/api/v1/tools/accounts", params={"search": "\x00"}, headers=h), 422)
    assert body["detail"] == "query parameter 'search' contains a NUL character (%00), which no text may contain"
    problem(server.get("/api/v1/tools/accounts/ACME%000001", headers=h), 422)
    # the tool itself refuses it too (the agent and the CLI call it directly)
    body = problem(server.post("/api/v1/tools/call/list_accounts", json={"search": "a\x00"}, headers=h), 422)
    assert "NUL" in body["detail"]
    # a search that matches nothing still finds nothing
    assert server.get("/api/v1/tools/accounts", params={"search": "no such"}, headers=h).json()["total"] == 0


def test_the_list_accounts_tool_refuses_a_nul_search(session: Any) -> None:
    from tools.accounts import list_accounts
    from tools.errors import ToolInputError

    with pytest.raises(ToolInputError, match="search may not contain a NUL character"):
        list_accounts(session=session, search="\x00")


LONE_SURROGATE = b'{"message": "which accounts \\ud800 churn?"}'


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("POST", "/api/v1/chat", LONE_SURROGATE),
        ("POST", "/api/v1/chat", b'{"message": "nul \\u0000 here"}'),
        ("PATCH", "/api/v1/conversations/conv-x", b'{"title": "\\udfff"}'),
        ("POST", "/api/v1/tools/call/list_accounts", b'{"search": "\\ud83d"}'),
        ("POST", "/api/v1/recommendations/1/approve", b'{"expected_version": 1, "note": "\\ud800"}'),
    ],
)
def test_json_text_that_cannot_be_stored_is_422(
    server: TestClient, keys: dict[str, str], method: str, url: str, body: bytes
) -> None:
    r = server.request(method, url, content=body, headers={**bearer(keys["admin"]), "Content-Type": "application/json"})
    got = problem(r, 422)
    assert got["detail"].startswith("the JSON body cannot be stored: text contains a ")


def test_a_surrogate_pair_is_fine(server: TestClient, keys: dict[str, str]) -> None:
    r = server.post("/api/v1/tools/call/list_accounts", content=b'{"search": "\\ud83d\\ude00"}',
                    headers={**bearer(keys["analyst"]), "Content-Type": "application/json"})
    assert r.status_code == 200 and r.json()["total"] == 0


def test_a_json_body_over_its_cap_is_413(server: TestClient, keys: dict[str, str]) -> None:
    big = json.dumps({"message": "x" * (1024 * 1024 + 1)}).encode()
    body = problem(server.post("/api/v1/chat", content=big, headers={**bearer(keys["analyst"]),
                                                                       "Content-Type": "application/json"}), 413)
    assert body["detail"].startswith("the request body is 1.0000") and body["detail"].endswith("at most 1 MiB is accepted here")


def test_no_type_coercion_in_bodies(server: TestClient, keys: dict[str, str], propose: Any) -> None:
    rid = propose()
    r = server.post(f"/api/v1/recommendations/{rid}/approve", json={"expected_version": True},
                    headers=bearer(keys["approver"]))
    assert "body.expected_version: Input should be a valid integer" in messages(problem(r, 422))
    h = bearer(keys["analyst"])
    for body, says in [
        ({"limit": True}, "body.limit: Input should be a valid integer"),
        ({"limit": "5"}, "body.limit: Input should be a valid integer"),
        ({"offset": 2**64}, "body.offset: Input should be less than or equal to 1000000000"),
        ({"limit": 10**30}, "body.limit: Input should be less than or equal to 1000"),
    ]:
        assert says in messages(problem(server.post("/api/v1/tools/call/list_accounts", json=body, headers=h), 422))


def test_every_error_is_problem_json(server: TestClient, keys: dict[str, str]) -> None:
    r = server.get("/api/v1/recommendations")
    assert problem(r, 401)["detail"].startswith("missing API key") and r.headers["www-authenticate"] == "Bearer"
    assert problem(server.get("/api/v1/nowhere", headers=bearer(keys["viewer"])), 404)["type"] == "urn:valuechain:problem:not-found"
    problem(server.delete("/api/v1/recommendations", headers=bearer(keys["viewer"])), 405)
    assert problem(server.post("/api/v1/tools/call/rank", json={}, headers=bearer(keys["viewer"])), 403)
    bad_json = server.post("/api/v1/tools/call/rank", content=b"{not json", headers={
        **bearer(keys["analyst"]), "Content-Type": "application/json"})
    assert bad_json.status_code in (400, 422) and bad_json.headers["content-type"] == PROBLEM


def test_the_openapi_document_names_the_errors_every_operation_can_give(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["components"]["schemas"]["Problem"]["required"] == ["type", "title", "status", "detail"]
    for path, operations in spec["paths"].items():
        for op in operations.values():
            assert "500" in op["responses"], path
            if path.startswith("/api/"):
                assert {"422", "503"} <= set(op["responses"]), path
            if "requestBody" in op:
                assert {"400", "413"} <= set(op["responses"]), path
    approve = spec["paths"]["/api/v1/recommendations/{recommendation_id}/approve"]["post"]["responses"]
    assert list(approve["409"]["content"]) == [PROBLEM]
    readiness = spec["paths"]["/readyz"]["get"]["responses"]["503"]["content"]
    assert list(readiness) == ["application/json"]  # the readiness report, not an error body


def test_nan_and_infinity_are_not_json_numbers(server: TestClient, keys: dict[str, str]) -> None:
    for constant in ("NaN", "Infinity", "-Infinity"):
        r = server.post("/api/v1/tools/call/pipeline_health", content=f'{{"target": {constant}}}'.encode(),
                        headers={**bearer(keys["analyst"]), "Content-Type": "application/json"})
        assert problem(r, 422)["detail"] == f"the JSON body has {constant}, which is not a JSON number"


def _flat(schema: dict[str, Any], components: dict[str, Any]) -> list[dict[str, Any]]:
    """`schema` and the schemas inside it (anyOf/allOf/oneOf, items, $ref), one level of properties."""
    out, stack = [], [schema]
    while stack:
        s = stack.pop()
        if "$ref" in s:
            s = components[s["$ref"].rsplit("/", 1)[1]]
        out.append(s)
        for key in ("anyOf", "allOf", "oneOf"):
            stack.extend(s.get(key, []))
        if isinstance(s.get("items"), dict):
            stack.append(s["items"])
    return out


def test_every_number_and_date_a_client_sends_is_bounded(client: TestClient) -> None:
    """The static half of the contract: every integer parameter or body field in the OpenAPI
    document has a maximum and every date one a last day, so a new route cannot reintroduce a
    64-bit overflow or a date-arithmetic overflow without failing here."""
    spec = client.get("/openapi.json").json()
    components = spec["components"]["schemas"]
    unbounded = []
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            inputs = [(f"{p['in']}.{p['name']}", p["schema"]) for p in op.get("parameters", [])]
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if body:
                for s in _flat(body, components):
                    inputs.extend((f"body.{name}", prop) for name, prop in s.get("properties", {}).items())
            for where, schema in inputs:
                for s in _flat(schema, components):
                    if s.get("type") == "integer" and "maximum" not in s:
                        unbounded.append(f"{method.upper()} {path} {where}: integer without a maximum")
                    if s.get("format") == "date" and "formatMaximum" not in s:
                        unbounded.append(f"{method.upper()} {path} {where}: date without a last day")
    assert unbounded == []
