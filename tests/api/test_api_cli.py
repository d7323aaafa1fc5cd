"""`valuechain keys ...`, `valuechain review ...` and `valuechain serve --help`."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import factories as f
import pytest
from apihelp import utcnow
from sqlalchemy import select
from typer.testing import CliRunner

from api.auth import authenticate, hash_key
from core.db import make_engine, make_sessionmaker
from crm.migrate import upgrade
from crm.models import ApiKey, Recommendation
from tools.recommendations import propose_recommendation
from valuechain.cli.main import app

runner = CliRunner()


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    engine = make_engine(url)
    upgrade(engine)
    with make_sessionmaker(engine)() as s:
        f.golden_accounts(s)
        for action in ("exec_sponsor_call", "qbr"):
            propose_recommendation(
                session=s,
                account_id="ACME-0001",
                action=action,
                rationale="Renewal in 30 days and two urgent tickets.",
                evidence={"open_tickets": 2},
                now=utcnow() - dt.timedelta(hours=1),
            )
        s.commit()
    engine.dispose()
    return url


def _json(args: list[str], code: int = 0) -> object:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == code, result.output
    return json.loads(result.stdout)


def test_keys_create_list_revoke(db_url: str) -> None:
    created = _json(["keys", "create", "--name", "carol", "--role", "approver", "--database-url", db_url])
    assert isinstance(created, dict)
    key, prefix = created["key"], created["prefix"]
    assert key.startswith(prefix + "_") and created["role"] == "approver"
    engine = make_engine(db_url)
    with make_sessionmaker(engine)() as s:
        stored = s.scalars(select(ApiKey)).one()
        assert stored.key_hash == hash_key(key) and key not in stored.key_hash  # only the hash is kept
        principal = authenticate(s, key)
        assert principal is not None and (principal.name, principal.role) == ("carol", "approver")

    listed = _json(["keys", "list", "--database-url", db_url])
    assert isinstance(listed, list) and [(k["prefix"], k["user"], k["active"]) for k in listed] == [
        (prefix, "carol", True)
    ]
    assert "key" not in listed[0]

    table = runner.invoke(app, ["keys", "list", "--database-url", db_url])
    assert prefix in table.stdout and key not in table.stdout

    wrong_role = runner.invoke(
        app, ["keys", "create", "--name", "carol", "--role", "viewer", "--database-url", db_url]
    )
    assert wrong_role.exit_code == 2 and "exists with role 'approver'" in wrong_role.output
    bad_role = runner.invoke(
        app, ["keys", "create", "--name", "dave", "--role", "boss", "--database-url", db_url]
    )
    assert bad_role.exit_code == 2 and 'unknown role "boss"' in bad_role.output

    revoked = _json(["keys", "revoke", prefix, "--database-url", db_url])
    assert isinstance(revoked, dict) and revoked["active"] is False and revoked["revoked_at"]
    with make_sessionmaker(engine)() as s:
        assert authenticate(s, key) is None
    engine.dispose()
    unknown = runner.invoke(app, ["keys", "revoke", "vck_00000000", "--database-url", db_url])
    assert unknown.exit_code == 2 and 'unknown key prefix "vck_00000000"' in unknown.output


def _key(db_url: str, name: str, role: str) -> str:
    created = _json(["keys", "create", "--name", name, "--role", role, "--database-url", db_url])
    assert isinstance(created, dict)
    return str(created["key"])


def test_review_list_show_approve_reject(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VALUECHAIN_API_KEY", raising=False)
    carol = _key(db_url, "carol", "approver")
    vic = _key(db_url, "vic", "viewer")

    page = _json(["review", "list", "--status", "pending", "--database-url", db_url])
    assert isinstance(page, dict) and page["total"] == 2
    first = page["items"][-1]["id"]
    shown = _json(["review", "show", str(first), "--database-url", db_url])
    assert isinstance(shown, dict) and shown["version"] == 1 and shown["events"][0]["event"] == "proposed"
    table = runner.invoke(app, ["review", "show", str(first), "--database-url", db_url])
    assert f"valuechain review approve {first} --key KEY --expected-version 1" in table.stdout

    viewer = runner.invoke(
        app,
        ["review", "approve", str(first), "--key", vic, "--expected-version", "1", "--database-url", db_url],
    )
    assert viewer.exit_code == 3 and "role 'viewer' may not decide" in viewer.output
    bad_key = runner.invoke(
        app,
        [
            "review",
            "approve",
            str(first),
            "--key",
            carol[:-1] + "x",
            "--expected-version",
            "1",
            "--database-url",
            db_url,
        ],
    )
    assert bad_key.exit_code == 2 and "invalid or revoked API key" in bad_key.output
    unbound = runner.invoke(app, ["review", "approve", str(first), "--key", carol, "--database-url", db_url])
    assert unbound.exit_code == 2 and "give expected_version and/or content_hash" in unbound.output

    monkeypatch.setenv("VALUECHAIN_API_KEY", carol)  # the key from the environment
    approved = _json(["review", "approve", str(first), "--expected-version", "1", "--database-url", db_url])
    assert (
        isinstance(approved, dict) and approved["status"] == "approved" and approved["decided_by"] == "carol"
    )
    refused = _json(
        [
            "review",
            "reject",
            str(first),
            "--reason",
            "bad_timing",
            "--expected-version",
            "1",
            "--database-url",
            db_url,
        ],
        code=3,
    )
    assert isinstance(refused, dict) and refused["error"] == "already_decided"
    monkeypatch.delenv("VALUECHAIN_API_KEY")

    second = page["items"][0]["id"]
    rejected = runner.invoke(
        app,
        [
            "review",
            "reject",
            str(second),
            "--key",
            carol,
            "--reason",
            "not_worth_it",
            "--note",
            "Costs more than it saves.",
            "--expected-version",
            "1",
            "--database-url",
            db_url,
        ],
    )
    assert rejected.exit_code == 0, rejected.output
    assert "Rejected recommendation" in rejected.stdout
    engine = make_engine(db_url)
    with make_sessionmaker(engine)() as s:
        statuses = dict(s.execute(select(Recommendation.id, Recommendation.status)).all())
    engine.dispose()
    assert statuses == {first: "approved", second: "rejected"}


def test_review_decisions_are_bound_to_a_credential_not_a_typed_name(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#19 item 10: `--as NAME` alone named any approver; now a key or the local OS user decides."""
    monkeypatch.delenv("VALUECHAIN_API_KEY", raising=False)
    for var in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LOGNAME", "mallory")  # the OS login of whoever runs the command
    carol = _key(db_url, "carol", "approver")
    _key(db_url, "mallory", "approver")
    page = _json(["review", "list", "--status", "pending", "--database-url", db_url])
    assert isinstance(page, dict)
    first, second = page["items"][-1]["id"], page["items"][0]["id"]

    posing = runner.invoke(
        app,
        [
            "review",
            "approve",
            str(first),
            "--as",
            "carol",
            "--expected-version",
            "1",
            "--database-url",
            db_url,
        ],
    )
    assert posing.exit_code == 2, posing.output
    assert "--as 'carol' is not you" in posing.output and "local operator, OS user 'mallory'" in posing.output

    as_operator = _json(
        ["review", "approve", str(first), "--expected-version", "1", "--database-url", db_url]
    )
    assert isinstance(as_operator, dict) and as_operator["decided_by"] == "mallory"
    with_key = _json(
        [
            "review",
            "reject",
            str(second),
            "--key",
            carol,
            "--as",
            "carol",
            "--reason",
            "bad_timing",
            "--expected-version",
            "1",
            "--database-url",
            db_url,
        ]
    )
    assert isinstance(with_key, dict) and with_key["decided_by"] == "carol"

    shown = [_json(["review", "show", str(rid), "--database-url", db_url]) for rid in (first, second)]
    credentials = [
        next(e for e in r["events"] if e["event"] != "proposed")["data"]["credential"]  # type: ignore[index]
        for r in shown
    ]
    assert credentials[0] == {"channel": "cli", "kind": "local_operator", "os_user": "mallory"}
    assert credentials[1] == {"channel": "cli", "kind": "api_key", "key_prefix": carol[:12]}

    monkeypatch.setenv("LOGNAME", "nobody-here")
    stranger = runner.invoke(
        app, ["review", "approve", str(first), "--expected-version", "1", "--database-url", db_url]
    )
    assert stranger.exit_code == 2 and "no user 'nobody-here' for the local operator" in stranger.output
    listing = runner.invoke(app, ["review", "list", "--database-url", db_url])
    assert "approved" in listing.stdout and "rejected" in listing.stdout


def test_review_expire(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.settings import get_settings

    monkeypatch.setenv("RECOMMENDATION_TTL_DAYS", "0")
    get_settings.cache_clear()
    try:
        assert _json(["review", "expire", "--database-url", db_url]) == {"expired": [], "ttl_days": 0}
    finally:
        get_settings.cache_clear()


def test_serve_help() -> None:
    result = runner.invoke(app, ["serve", "--help"])
    assert result.exit_code == 0
    assert "--host" in result.stdout and "--port" in result.stdout
