"""`valuechain keys ...`: create, list and revoke API keys (stored hashed; shown once)."""

from __future__ import annotations

import typer
from rich.table import Table

from api.auth import create_key, list_keys, revoke_key
from core.runtime import get_sessionmaker
from valuechain.cli.common import (
    DatabaseUrlOption,
    JsonOption,
    console,
    err_console,
    print_json,
    settings_for,
    tool_errors,
)

app = typer.Typer(no_args_is_help=True)


def _dt(value: object) -> str:
    return "—" if value is None else str(value)[:19]


@app.command("create", help="Create an API key for a user (created if new); the key is printed once.")
def create_cmd(
    name: str = typer.Option(..., "--name", help="User name (letters, digits, . _ @ + -)"),
    role: str = typer.Option(..., "--role", help="viewer, analyst, approver or admin"),
    email: str | None = typer.Option(None, "--email", help="The user's e-mail, for a new user"),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    with get_sessionmaker(settings_for(database_url))() as session:
        with tool_errors():
            created = create_key(session=session, name=name, role=role, email=email)
        session.commit()
    if as_json:
        print_json(created)
        return
    console.print(f"API key for {created.user} ({created.role}), prefix {created.prefix}:")
    console.print(created.key, soft_wrap=True, highlight=False)
    err_console.print("Store it now: it is shown only this once. Send it as 'Authorization: Bearer <key>'.")


@app.command("list", help="List API keys: prefix, user, role, created, last used, revoked.")
def list_cmd(
    active_only: bool = typer.Option(False, "--active", help="Leave out revoked keys"),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    with get_sessionmaker(settings_for(database_url))() as session:
        keys = list_keys(session=session, include_revoked=not active_only)
    if as_json:
        print_json([k.model_dump(mode="json") for k in keys])
        return
    table = Table("prefix", "user", "role", "created", "last used", "revoked")
    for k in keys:
        table.add_row(k.prefix, k.user, k.role, _dt(k.created_at), _dt(k.last_used_at), _dt(k.revoked_at))
    console.print(table)
    if not keys:
        console.print("no API keys yet: valuechain keys create --name NAME --role ROLE")


@app.command("revoke", help="Revoke an API key by its prefix (e.g. vck_1a2b3c4d); idempotent.")
def revoke_cmd(
    prefix: str = typer.Argument(..., help="The key's prefix, as shown by `keys list`"),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    with get_sessionmaker(settings_for(database_url))() as session:
        with tool_errors():
            info = revoke_key(session=session, prefix=prefix)
        session.commit()
    if as_json:
        print_json(info)
        return
    console.print(f"revoked {info.prefix} ({info.user}, {info.role}) at {_dt(info.revoked_at)}")
