"""Issue #19 item 12: a key sent in the query string (refused with 401) is not written to the access log."""

from __future__ import annotations

import logging
import socket
import threading
import time

import httpx
import pytest
import uvicorn

from api.access_log import redact
from api.app import create_app
from core.settings import Settings


def test_redact_replaces_credential_values_only() -> None:
    assert redact("/api/v1/accounts?api_key=vcc_secret123&limit=5") == "/api/v1/accounts?api_key=[redacted]&limit=5"
    assert redact("/x?limit=5&access_token=abc&X-Api-Key=k#f") == "/x?limit=5&access_token=[redacted]&X-Api-Key=[redacted]#f"
    assert redact("/x?monkey=1&keyword=churn") == "/x?monkey=1&keyword=churn"
    assert redact("/api/v1/accounts/ACME-0001") == "/api/v1/accounts/ACME-0001"


def test_a_key_in_the_query_string_is_not_in_the_access_log(
        settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(settings)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # log_config=None: uvicorn's loggers propagate to the root logger, where caplog listens
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=True, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    caplog.set_level(logging.INFO, logger="uvicorn.access")
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        resp = httpx.get(f"http://127.0.0.1:{port}/api/v1/recommendations?api_key=vcc_leaked_secret_42&limit=1", timeout=30)
        assert resp.status_code == 401
        time.sleep(0.2)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
    access = [r.getMessage() for r in caplog.records if r.name == "uvicorn.access"]
    assert any("api_key=[redacted]&limit=1" in line and "401" in line for line in access), access
    assert not any("vcc_leaked_secret_42" in r.getMessage() for r in caplog.records)
