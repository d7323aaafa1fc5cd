"""`valuechain review ...`: the recommendation review queue from the command line.

`approve` and `reject` act as a user whose role must be approver or admin (checked again in
tools/review.py), and must quote the version the reviewer saw (`--expected-version`, shown by
`review show`), exactly like the HTTP API. Who decides is bound to a credential, never to a
typed name alone: an API key (`--key` or `VALUECHAIN_API_KEY`, resolved through the key store
the API uses) or, without a key, the local operator — the OS login, which must be a user of
that name. The audit event records which (`data.credential`).
"""

from __future__ import annotations

import getpass

import typer
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.auth import authenticate
from core.runtime import get_sessionmaker
from crm.models import User
from tools.review import (
    ABANDON_REASONS,
    APPROVE_REASONS,
    REJECT_REASONS,
    Decision,
    DecisionRefused,
    RecommendationNotFound,
    Transition,
    decide_and_commit,
    expire_stale,
    follow_up_and_commit,
    get_recommendation,
    list_recommendations,
)
from valuechain.cli.common import (
    DatabaseUrlOption,
    JsonOption,
    console,
    date_option,
    fail,
    print_json,
    settings_for,
    tool_errors,
)

app = typer.Typer(no_args_is_help=True)

# Exit codes: 2 = a mistake in the command, 3 = the decision was refused (decided, changed, expired).
REFUSED_EXIT = 3


def _money(x: float | None) -> str:
    return "—" if x is None else f"{x:,.0f}"


@app.command("list", help="List recommendations, newest first (filter by status, account, action, dates).")
def list_cmd(
    status: str | None = typer.Option(
        None, "--status", help="pending, approved, rejected, expired, in_progress, executed or abandoned"
    ),
    account_id: str | None = typer.Option(None, "--account", help="Only this account id"),
    action: str | None = typer.Option(None, "--action", help="Only this action id"),
    created_from: str | None = typer.Option(None, "--from", help="First creation day (YYYY-MM-DD)"),
    created_to: str | None = typer.Option(None, "--to", help="Last creation day (YYYY-MM-DD)"),
    limit: int = typer.Option(50, "--limit", help="Rows per page (1-500)"),
    offset: int = typer.Option(0, "--offset", help="Rows to skip"),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    settings = settings_for(database_url)
    with get_sessionmaker(settings)() as session, tool_errors():
        page = list_recommendations(
            session=session,
            status=status,
            account_id=account_id,
            action=action,
            created_from=date_option(created_from, "--from"),
            created_to=date_option(created_to, "--to"),
            limit=limit,
            offset=offset,
            ttl_days=settings.recommendation_ttl_days,
        )
    if as_json:
        print_json(page)
        return
    table = Table("#", "status", "target", "action", "EV", "created", "by", "decided by")
    for r in page.items:
        table.add_row(
            str(r.id),
            r.status,
            r.account_id or r.activity_id or "",
            r.action,
            _money(r.expected_value),
            r.created_at.isoformat(sep=" ", timespec="minutes"),
            r.created_by,
            r.decided_by or "",
        )
    console.print(table)
    console.print(f"{len(page.items)} of {page.total} shown (offset {page.offset})")


@app.command("show", help="Show one recommendation: evidence, version, content hash and audit trail.")
def show_cmd(
    recommendation_id: int = typer.Argument(..., help="The recommendation's number"),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    settings = settings_for(database_url)
    with get_sessionmaker(settings)() as session:
        try:
            rec = get_recommendation(
                session=session,
                recommendation_id=recommendation_id,
                ttl_days=settings.recommendation_ttl_days,
            )
        except RecommendationNotFound as exc:
            raise fail(exc.message, code=2) from None
    if as_json:
        print_json(rec)
        return
    head = Table(show_header=False, box=None)
    head.add_row("recommendation", f"#{rec.id} — {rec.action}")
    head.add_row("target", f"account {rec.account_id}" if rec.account_id else f"activity {rec.activity_id}")
    head.add_row(
        "status", rec.status + (f" (expires {rec.expires_at:%Y-%m-%d %H:%M}Z)" if rec.expires_at else "")
    )
    head.add_row("expected value", _money(rec.expected_value))
    head.add_row("rationale", rec.rationale)
    head.add_row("version / hash", f"{rec.version} / {rec.content_hash}")
    head.add_row("filed", f"{rec.created_at:%Y-%m-%d %H:%M}Z by {rec.created_by}")
    if rec.owner or rec.due_date:
        head.add_row("owner / due", f"{rec.owner or '—'} / {rec.due_date or '—'}")
    if rec.executed_at:
        head.add_row("executed", f"{rec.executed_at:%Y-%m-%d %H:%M}Z")
    if rec.conversation_id:
        head.add_row("conversation", rec.conversation_id)
    console.print(head)
    if rec.evidence:
        ev = Table("evidence", "value")
        for key, value in sorted(rec.evidence.items()):
            ev.add_row(key, str(value))
        console.print(ev)
    trail = Table("when", "event", "actor", "reason", "note")
    for e in rec.events:
        trail.add_row(f"{e.at:%Y-%m-%d %H:%M}", e.event, e.actor, e.reason_code or "", e.note or "")
    console.print(trail)
    if rec.decidable:
        console.print(
            f"decide with: valuechain review approve {rec.id} --key KEY --expected-version {rec.version}"
        )
    elif rec.status in ("approved", "in_progress"):
        console.print(
            f"follow up with: valuechain review start|execute|abandon|assign {rec.id} --key KEY "
            f"--expected-version {rec.version}"
        )


def _os_login() -> str:
    """The local operator's login name (LOGNAME/USER/… then the password database)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name for this uid (e.g. some containers)
        return ""


def _identify(session: Session, actor: str | None, key: str | None) -> tuple[str, str, dict[str, str]]:
    """Who acts: the API key's user, or without a key the local operator (OS login); with the credential."""
    credential: dict[str, str]
    role: str
    if key:
        principal = authenticate(session, key)
        if principal is None:
            raise fail("invalid or revoked API key (--key / VALUECHAIN_API_KEY)", code=2)
        if actor is not None and actor != principal.name:
            raise fail(f"--as {actor!r} does not match the key's user {principal.name!r}", code=2)
        name, role = principal.name, principal.role
        credential = {"kind": "api_key", "key_prefix": principal.key_prefix or ""}
    else:
        login = _os_login()
        user = session.scalars(select(User).where(User.name == login)).first() if login else None
        if actor is not None and actor != login:
            raise fail(
                f"--as {actor!r} is not you: without --key (or VALUECHAIN_API_KEY) a decision is "
                f"made as the local operator, OS user {login!r}",
                code=2,
            )
        if user is None:
            raise fail(
                f"no user {login!r} for the local operator; decide with --key (or "
                f"VALUECHAIN_API_KEY), or create one with "
                f"`valuechain keys create --name {login or 'NAME'} --role approver`",
                code=2,
            )
        name, role = user.name, user.role
        credential = {"kind": "local_operator", "os_user": login}
    return name, role, credential


def _decide(
    decision: Decision,
    recommendation_id: int,
    actor: str | None,
    key: str | None,
    expected_version: int | None,
    content_hash: str | None,
    reason: str | None,
    note: str | None,
    database_url: str | None,
    as_json: bool,
) -> None:
    settings = settings_for(database_url)
    factory = get_sessionmaker(settings)
    with tool_errors(), factory() as session:
        name, role, credential = _identify(session, actor, key)
        try:
            result = decide_and_commit(
                session=session,
                recommendation_id=recommendation_id,
                decision=decision,
                actor=name,
                role=role,
                expected_version=expected_version,
                content_hash=content_hash,
                reason_code=reason,
                note=note,
                ttl_days=settings.recommendation_ttl_days,
                credential={"channel": "cli", **credential},
            )
        except DecisionRefused as exc:
            if as_json:
                print_json(exc.as_dict())
            raise fail(exc.message, code=REFUSED_EXIT) from None
    if as_json:
        print_json(result)
        return
    console.print(result.explanation)


ActorOption = typer.Option(
    None, "--as", help="Optional check: the user you expect to decide as (the key's user or your OS login)"
)
KeyOption = typer.Option(
    None,
    "--key",
    envvar="VALUECHAIN_API_KEY",
    help="Your API key (or VALUECHAIN_API_KEY); without one you decide as the local OS user",
    show_default=False,
)
VersionOption = typer.Option(None, "--expected-version", help="The version you reviewed (from `review show`)")
HashOption = typer.Option(None, "--content-hash", help="Or: the content hash you reviewed")
NoteOption = typer.Option(None, "--note", help="Free text for the audit trail")


@app.command("approve", help="Approve a pending recommendation, bound to the version you reviewed.")
def approve_cmd(
    recommendation_id: int = typer.Argument(..., help="The recommendation's number"),
    actor: str | None = ActorOption,
    key: str | None = KeyOption,
    expected_version: int | None = VersionOption,
    content_hash: str | None = HashOption,
    reason: str | None = typer.Option(None, "--reason", help="Optional: " + ", ".join(APPROVE_REASONS)),
    note: str | None = NoteOption,
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    _decide(
        "approved",
        recommendation_id,
        actor,
        key,
        expected_version,
        content_hash,
        reason,
        note,
        database_url,
        as_json,
    )


@app.command("reject", help="Reject a pending recommendation with a reason code (and a note).")
def reject_cmd(
    recommendation_id: int = typer.Argument(..., help="The recommendation's number"),
    actor: str | None = ActorOption,
    key: str | None = KeyOption,
    reason: str = typer.Option(..., "--reason", help="One of: " + ", ".join(REJECT_REASONS)),
    expected_version: int | None = VersionOption,
    content_hash: str | None = HashOption,
    note: str | None = NoteOption,
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    _decide(
        "rejected",
        recommendation_id,
        actor,
        key,
        expected_version,
        content_hash,
        reason,
        note,
        database_url,
        as_json,
    )


@app.command("expire", help="Mark pending recommendations older than RECOMMENDATION_TTL_DAYS as expired.")
def expire_cmd(database_url: str | None = DatabaseUrlOption, as_json: bool = JsonOption) -> None:
    settings = settings_for(database_url)
    with get_sessionmaker(settings)() as session:
        expired = expire_stale(session=session, ttl_days=settings.recommendation_ttl_days)
        session.commit()
    if as_json:
        print_json({"expired": expired, "ttl_days": settings.recommendation_ttl_days})
        return
    console.print(f"{len(expired)} recommendation(s) expired" + (f": {expired}" if expired else ""))


def _follow_up(
    transition: Transition,
    recommendation_id: int,
    actor: str | None,
    key: str | None,
    expected_version: int,
    database_url: str | None,
    as_json: bool,
    *,
    owner: str | None = None,
    due: str | None = None,
    reason: str | None = None,
    note: str | None = None,
) -> None:
    settings = settings_for(database_url)
    with tool_errors(), get_sessionmaker(settings)() as session:
        name, role, credential = _identify(session, actor, key)
        try:
            result = follow_up_and_commit(
                session=session,
                recommendation_id=recommendation_id,
                transition=transition,
                actor=name,
                role=role,
                expected_version=expected_version,
                owner=owner,
                due_date=date_option(due, "--due"),
                reason_code=reason,
                note=note,
                credential={"channel": "cli", **credential},
            )
        except DecisionRefused as exc:
            if as_json:
                print_json(exc.as_dict())
            raise fail(exc.message, code=REFUSED_EXIT) from None
    if as_json:
        print_json(result)
        return
    console.print(result.explanation)


FollowVersionOption = typer.Option(
    ..., "--expected-version", help="The version you saw (`review show`); each step bumps it"
)


@app.command("assign", help="Set the owner and/or due date of an approved recommendation (approver/admin).")
def assign_cmd(
    recommendation_id: int = typer.Argument(..., help="The recommendation's number"),
    owner: str | None = typer.Option(None, "--owner", help="Who carries it out"),
    due: str | None = typer.Option(None, "--due", help="Due date (YYYY-MM-DD)"),
    expected_version: int = FollowVersionOption,
    actor: str | None = ActorOption,
    key: str | None = KeyOption,
    note: str | None = NoteOption,
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    _follow_up(
        "assign", recommendation_id, actor, key, expected_version, database_url, as_json,
        owner=owner, due=due, note=note,
    )


@app.command("start", help="Mark an approved recommendation in progress (its owner, or an approver/admin).")
def start_cmd(
    recommendation_id: int = typer.Argument(..., help="The recommendation's number"),
    expected_version: int = FollowVersionOption,
    actor: str | None = ActorOption,
    key: str | None = KeyOption,
    note: str | None = NoteOption,
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    _follow_up("start", recommendation_id, actor, key, expected_version, database_url, as_json, note=note)


@app.command("execute", help="Mark an approved or in-progress recommendation executed (outcomes count from now).")
def execute_cmd(
    recommendation_id: int = typer.Argument(..., help="The recommendation's number"),
    expected_version: int = FollowVersionOption,
    actor: str | None = ActorOption,
    key: str | None = KeyOption,
    note: str | None = NoteOption,
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    _follow_up("execute", recommendation_id, actor, key, expected_version, database_url, as_json, note=note)


@app.command("abandon", help="Abandon an approved or in-progress recommendation with a reason code.")
def abandon_cmd(
    recommendation_id: int = typer.Argument(..., help="The recommendation's number"),
    reason: str = typer.Option(..., "--reason", help="One of: " + ", ".join(ABANDON_REASONS)),
    expected_version: int = FollowVersionOption,
    actor: str | None = ActorOption,
    key: str | None = KeyOption,
    note: str | None = NoteOption,
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    _follow_up(
        "abandon", recommendation_id, actor, key, expected_version, database_url, as_json,
        reason=reason, note=note,
    )
