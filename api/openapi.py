"""The OpenAPI document says what every operation can answer, errors included (issue #18).

FastAPI documents the statuses a route declares; the app can also answer, on any operation:
400 (a body that is not JSON or not UTF-8), 413 (a body over its cap), 422 (input that does not
match the schema, or a NUL in a query), 500 (a bug or a data fault, with an error id) and 503
(the database is unreachable). `document_errors(app)` adds those and describes every error as
the `application/problem+json` body it is (`api.problems`), so a client, and the schemathesis
suite in tests/api/test_contract_schema.py, can hold each response to the document.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from api.input_guard import GUARDED_PREFIX
from api.problems import MEDIA_TYPE, PROBLEM_SCHEMA

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
VALIDATION_REF = "#/components/schemas/HTTPValidationError"

ALWAYS: dict[str, str] = {"500": "Internal error (a bug or a data fault): the body names an error id kept in the log"}
WITH_BODY: dict[str, str] = {
    "400": "The body could not be parsed (not JSON, not UTF-8, or a broken multipart form)",
    "413": "The body is larger than this operation accepts",
}
GUARDED: dict[str, str] = {
    "422": "Invalid input: the problems are listed in `detail` (a NUL character in any query parameter "
    "is invalid too)",
    "503": "The database is unreachable or not initialised",
}


def document_errors(app: FastAPI) -> None:
    """Make `app.openapi()` document the errors above on every operation, as problem+json."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            _patch(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _patch(schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = PROBLEM_SCHEMA
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            responses: dict[str, Any] = operation.setdefault("responses", {})
            added = dict(ALWAYS)
            if "requestBody" in operation:
                added.update(WITH_BODY)
            if path.startswith(GUARDED_PREFIX):
                added.update(GUARDED)
            for status, description in added.items():
                responses.setdefault(status, {"description": description})
            for status, response in responses.items():
                if status.isdigit() and int(status) >= 400:
                    _as_problem(response, components, own_protocol=not path.startswith(GUARDED_PREFIX))


def _as_problem(response: dict[str, Any], components: dict[str, Any], *, own_protocol: bool) -> None:
    """Describe an error response as problem+json, keeping a route's own error model for `detail`;
    a response whose body is not an error (the readiness report of a 503) is left as it is. Routes
    outside /api/ that speak another party's protocol (Slack's answers come from slack-bolt) may
    also answer plain JSON (`own_protocol`)."""
    content: dict[str, Any] = response.get("content") or {}
    declared = (content.get("application/json") or {}).get("schema")
    if declared is None or declared.get("$ref") == VALIDATION_REF:
        body: dict[str, Any] = PROBLEM_REF
    elif "detail" in _properties(declared, components):
        # a route's own error body (e.g. the decision conflicts' `detail` object); a role check on the
        # same route still answers with a message
        body = {"allOf": [PROBLEM_REF], "anyOf": [declared, {"properties": {"detail": {"type": "string"}}}]}
    else:
        return
    response["content"] = {MEDIA_TYPE: {"schema": body}}
    if own_protocol and declared is None:
        response["content"]["application/json"] = {"schema": {}}


def _properties(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref", "")
    if ref.startswith("#/components/schemas/"):
        schema = components.get(ref.rsplit("/", 1)[1], {})
    properties: dict[str, Any] = schema.get("properties", {})
    return properties
