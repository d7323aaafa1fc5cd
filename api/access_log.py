"""Credentials never reach the access log: uvicorn logs each request's path with its query string,
so a key sent as `?api_key=…` (refused with 401) would be written to disk. A filter on the
`uvicorn.access` logger replaces the values of credential-looking query parameters."""

from __future__ import annotations

import logging
import re

SECRET_PARAMS = re.compile(
    r"(?i)(?<=[?&])((?:[\w.-]*[_-])?(?:api[_-]?key|key|token|access[_-]?token|secret|password|passwd|pwd|auth|"
    r"authorization|signature|sig|session)(?:[_-][\w.-]*)?)=([^&#\s]*)"
)
REDACTED = "[redacted]"


def redact(path: str) -> str:
    """`path` with the values of credential-looking query parameters replaced."""
    return SECRET_PARAMS.sub(lambda m: f"{m.group(1)}={REDACTED}", path) if "?" in path else path


class RedactQuery(logging.Filter):
    """Redacts the path argument of uvicorn's access records (client, method, path, version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact(args[2]), *args[3:])
        return True


def install() -> None:
    """Add the filter to `uvicorn.access` once (create_app may run more than once in a process)."""
    logger = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactQuery) for f in logger.filters):
        logger.addFilter(RedactQuery())
