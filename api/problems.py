"""Every error the API sends is an `application/problem+json` body (RFC 9457).

`{"type", "title", "status", "detail"}`: `detail` is what it always was, so clients reading
`detail` keep working: a message (string) for most errors, the list of invalid inputs (each
with `loc` and `msg`) for a request that does not match the schema, an object naming the
winner for a decision conflict. A 500 adds `error_id`, the key of its traceback in the log.
"""

from __future__ import annotations

import http
import json
import logging
from typing import Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tools.errors import DataFault, internal_summary, new_error_id

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:valuechain:problem:"


KINDS: dict[int, tuple[str, str]] = {
    400: ("bad-request", "Bad Request"),
    401: ("unauthorized", "Unauthorized"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not Found"),
    405: ("method-not-allowed", "Method Not Allowed"),
    409: ("conflict", "Conflict"),
    410: ("gone", "Gone"),
    413: ("too-large", "Content Too Large"),
    422: ("invalid-input", "Invalid Input"),
    429: ("too-many-requests", "Too Many Requests"),
    500: ("internal-error", "Internal Error"),
    503: ("unavailable", "Service Unavailable"),
}
"""The `type` suffix and `title` per status, fixed here (Python's own phrases change between versions)."""


def problem_type(status: int) -> str:
    """`urn:valuechain:problem:not-found` for 404, and so on."""
    return TYPE_PREFIX + _kind(status)[0]


def _kind(status: int) -> tuple[str, str]:
    if status in KINDS:
        return KINDS[status]
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return phrase.lower().replace(" ", "-").replace("'", ""), phrase


class ProblemResponse(JSONResponse):
    """problem+json, rendered ASCII-only: an echoed input with a lone surrogate cannot break it."""

    media_type = MEDIA_TYPE

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def problem(
    status: int,
    detail: Any,
    *,
    headers: dict[str, str] | None = None,
    kind: str | None = None,
    title: str | None = None,
    **extra: Any,
) -> JSONResponse:
    """A problem+json response for `status` carrying `detail` (and any `extra` members); `kind`
    and `title` default to the status's own (`not-found`, "Not Found")."""
    default_kind, default_title = _kind(status)
    body = {
        "type": TYPE_PREFIX + (kind or default_kind),
        "title": title or default_title,
        "status": status,
        "detail": detail,
        **extra,
    }
    return ProblemResponse(status_code=status, content=jsonable_encoder(body), headers=headers)


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    """`HTTPException` (ours, FastAPI's and Starlette's: 404 route, 405 method) as a problem."""
    if not isinstance(exc, StarletteHTTPException):  # registered for this type only
        raise exc
    return problem(exc.status_code, exc.detail, headers=getattr(exc, "headers", None))


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    """A request that does not match the schema: 422 with the list of problems as `detail`."""
    if not isinstance(exc, RequestValidationError):  # registered for this type only
        raise exc
    errors = [
        {key: value for key, value in err.items() if key != "url"}  # the pydantic docs link is noise
        for err in exc.errors()
    ]
    return problem(422, errors)


async def tool_input_error(request: Request, exc: Exception) -> JSONResponse:
    """A `ToolInputError` escaping a route: the caller can fix it, the message says how."""
    return problem(422, str(exc))


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    """A `DataFault` or a bug: a 500 problem naming an error id; the traceback only in the log."""
    error_id = new_error_id()
    log.error("internal error %s on %s %s", error_id, request.method, request.url.path, exc_info=exc)
    fault = isinstance(exc, DataFault)
    return problem(
        500,
        f"internal error (id {error_id}): {internal_summary(exc)}",
        kind="data-fault" if fault else "internal-error",
        title="Data or configuration fault" if fault else "Internal error",
        error_id=error_id,
    )


async def database_error(request: Request, exc: Exception) -> JSONResponse:
    """The database is unreachable or not initialised: 503, saying what to check."""
    orig = getattr(exc, "orig", None)
    first = (str(orig) if orig is not None else str(exc)).splitlines()[0]
    return problem(
        503,
        f"database error ({first}); is the database reachable and initialised (`valuechain init`)?",
    )


PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": "An error (RFC 9457 problem details). `detail` is a message; for a request that does "
    "not match the schema, the list of problems (each with `loc` and `msg`); for a decision conflict, an "
    "object naming the winner.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "urn:valuechain:problem:<kind>"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}, {"type": "object"}]},
        "error_id": {"type": "string", "description": "500 only: the key of the traceback in the server log"},
    },
}
