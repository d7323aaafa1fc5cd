"""Input no route can store is refused before any route runs (issue #18), on every `/api/` path.

- A NUL character in the path or a query parameter: PostgreSQL refuses it and SQLite's `LIKE`
  stops at it (`search=%00` listed every account). 422.
- A JSON body with a NUL or a lone UTF-16 surrogate (`"\\ud800"` parses in Python but cannot
  be encoded as UTF-8, so storing it failed with a 500), or with `NaN` / `Infinity` (Python's
  parser reads them; they are not JSON, and no figure can be computed from them). 422.
- A body larger than its cap: JSON bodies `max_json_bytes`, uploads (multipart) `max_upload_bytes`.
  A declared `Content-Length` over the cap is refused at once; a body streamed past it stops being
  read and is refused too. 413.

Routes owned by other interfaces (`/slack/...`, signed by Slack, byte for byte) are not touched.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from starlette.exceptions import HTTPException

from api.problems import problem
from core.contract import has_bad_text

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

GUARDED_PREFIX = "/api/"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class RequestTooLarge(HTTPException):
    """A streamed request body went past its cap: raised from `receive` while a route reads it, and
    answered like any HTTPException (FastAPI passes those through its body parsing), with 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {_size(limit)}; at most that is accepted here")


def _size(n: int) -> str:
    return f"{n / 2**20:g} MiB" if n >= 2**20 else f"{n:,} bytes"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _nul_in_query(query_string: bytes) -> str | None:
    """The name of the first query parameter whose name or value has a NUL, or None."""
    for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True, encoding="utf-8",
                                errors="replace"):
        if "\x00" in key or "\x00" in value:
            return key.replace("\x00", "\\0")
    return None


class InputGuard:
    """ASGI middleware applying the rules above to `/api/` requests."""

    def __init__(self, app: ASGIApp, *, max_json_bytes: int, max_upload_bytes: int) -> None:
        self.app = app
        self.max_json_bytes = max_json_bytes
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope["path"]).startswith(GUARDED_PREFIX):
            await self.app(scope, receive, send)
            return
        refusal = self._refuse_url(scope)
        if refusal is None and scope["method"] in BODY_METHODS:
            content_type = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
            is_json = content_type == "application/json" or content_type.endswith("+json")
            limit = self.max_json_bytes if is_json else self.max_upload_bytes
            declared = _header(scope, b"content-length")
            if declared is not None and declared.strip().isdigit() and int(declared) > limit:
                refusal = (413, f"the request body is {_size(int(declared))}; at most {_size(limit)} is accepted here")
            elif is_json:
                body, over = await _read_body(receive, limit)
                if over:
                    refusal = (413, f"the request body is larger than {_size(limit)}; at most that is accepted here")
                else:
                    refusal = _refuse_json(body)
                    receive = _replay(body, receive)
            else:
                receive = _capped(receive, limit)
        if refusal is not None:
            status, detail = refusal
            await problem(status, detail)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    @staticmethod
    def _refuse_url(scope: Scope) -> tuple[int, str] | None:
        if "\x00" in str(scope["path"]):
            return 422, "the path contains a NUL character (%00); ids and names never do"
        name = _nul_in_query(bytes(scope.get("query_string", b"")))
        if name is not None:
            return 422, f"query parameter {name!r} contains a NUL character (%00), which no text may contain"
        return None


class _NotJsonNumber(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise _NotJsonNumber(name)


def _refuse_json(body: bytes) -> tuple[int, str] | None:
    try:
        data = json.loads(body, parse_constant=_no_constant)
    except _NotJsonNumber as exc:  # Python's json reads them; JSON has no such numbers
        return 422, f"the JSON body has {exc}, which is not a JSON number"
    except ValueError:
        return None  # not JSON (or not UTF-8): the route's own parsing says so (400/422)
    reason = has_bad_text(data)
    return (422, f"the JSON body cannot be stored: {reason}") if reason else None


async def _read_body(receive: Receive, limit: int) -> tuple[bytes, bool]:
    """The whole body, or (what was read, True) once it goes past `limit`."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = bytes(message.get("body", b""))
        size += len(chunk)
        if size > limit:
            return b"", True
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks), False


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the app the body already read, then the client's later messages."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _capped(receive: Receive, limit: int) -> Receive:
    """A `receive` that raises `RequestTooLarge` once the body goes past `limit`."""
    size = 0

    async def capped() -> Message:
        nonlocal size
        message = await receive()
        if message["type"] == "http.request":
            size += len(message.get("body", b""))
            if size > limit:
                raise RequestTooLarge(limit)
        return message

    return capped
