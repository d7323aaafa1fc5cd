"""API keys and roles.

A key looks like ``vck_1a2b3c4d_<43 url-safe characters>``: ``vck_1a2b3c4d`` is its public
prefix (stored, shown in listings, used to find the row), the rest is 256 bits of secret.
Only the sha256 of the whole key is stored, so a key is shown once, on creation, and a
leaked database does not leak usable keys (a high-entropy secret needs no slow hash).

Roles and what they may do (`PERMISSIONS`):

| role     | read | analyze (tools, chat, knowledge ingest) | decide recommendations | admin |
|----------|------|------------------------------------------|------------------------|-------|
| viewer   | yes  |                                          |                        |       |
| analyst  | yes  | yes                                      |                        |       |
| approver | yes  | yes                                      | yes                    |       |
| admin    | yes  | yes                                      | yes                    | yes   |
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from crm.models import ApiKey, User
from tools.errors import ToolInputError, unknown
from tools.review import ROLES, Role

Permission = Literal["read", "analyze", "decide", "admin"]

PERMISSIONS: dict[Role, frozenset[Permission]] = {
    "viewer": frozenset({"read"}),
    "analyst": frozenset({"read", "analyze"}),
    "approver": frozenset({"read", "analyze", "decide"}),
    "admin": frozenset({"read", "analyze", "decide", "admin"}),
}

KEY_SCHEME = "vck"
_KEY = re.compile(r"^(vck_[0-9a-f]{8})_([A-Za-z0-9_-]{43})$")
_NAME = re.compile(r"^[\w.@+-]{1,100}$")
# last_used_at is written at most this often per key, so busy clients do not turn every
# read into a database write.
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the user behind an API key, with their role."""

    user_id: int
    name: str
    role: Role
    key_prefix: str | None

    def can(self, permission: Permission) -> bool:
        return permission in PERMISSIONS[self.role]


class CreatedKey(BaseModel):
    """A new key. `key` is shown this once and cannot be recovered."""

    key: str
    prefix: str
    user: str
    role: Role
    created_at: dt.datetime


class KeyInfo(BaseModel):
    """A key as listed: never the secret."""

    prefix: str
    user: str
    role: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None
    active: bool


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def hash_key(key: str) -> str:
    """sha256 hex of the full key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh (key, prefix)."""
    prefix = f"{KEY_SCHEME}_{secrets.token_hex(4)}"
    return f"{prefix}_{secrets.token_urlsafe(32)}", prefix


def create_key(
    *, session: Session, name: str, role: str, email: str | None = None, now: dt.datetime | None = None
) -> CreatedKey:
    """Create an API key for user `name` (created with `role` if new; an existing user must
    already have that role). The caller commits."""
    name = name.strip()
    if not _NAME.match(name):
        raise ToolInputError(f"user name must be 1-100 letters, digits or . _ @ + -; got {name!r}")
    if role not in ROLES:
        raise unknown("role", role, ROLES)
    at = now or _utc_now()
    user = session.scalars(select(User).where(User.name == name)).first()
    if user is None:
        user = User(name=name, email=email, role=role, created_at=at)
        session.add(user)
        session.flush()
    elif user.role != role:
        raise ToolInputError(
            f"user {name!r} exists with role {user.role!r}; give --role {user.role} to add a key, "
            "or use another name"
        )
    key, prefix = new_key()
    while session.scalars(select(ApiKey.id).where(ApiKey.prefix == prefix)).first() is not None:
        key, prefix = new_key()  # 2^32 prefixes: a clash is rare but possible
    session.add(ApiKey(user_id=user.id, prefix=prefix, key_hash=hash_key(key), created_at=at))
    session.flush()
    return CreatedKey(key=key, prefix=prefix, user=user.name, role=role, created_at=at)


def list_keys(*, session: Session, include_revoked: bool = True) -> list[KeyInfo]:
    """Every API key (prefix, user, role, dates), oldest first; never the secret."""
    query = select(ApiKey, User).join(User, User.id == ApiKey.user_id).order_by(ApiKey.id)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    return [
        KeyInfo(
            prefix=k.prefix,
            user=u.name,
            role=u.role,
            created_at=k.created_at,
            last_used_at=k.last_used_at,
            revoked_at=k.revoked_at,
            active=k.revoked_at is None,
        )
        for k, u in session.execute(query)
    ]


def revoke_key(*, session: Session, prefix: str, now: dt.datetime | None = None) -> KeyInfo:
    """Revoke the key with this prefix (idempotent). The caller commits."""
    prefix = prefix.strip()
    row = session.execute(
        select(ApiKey, User).join(User, User.id == ApiKey.user_id).where(ApiKey.prefix == prefix)
    ).first()
    if row is None:
        known = session.scalars(select(ApiKey.prefix).order_by(ApiKey.id)).all()
        raise unknown("key prefix", prefix, known)
    key, user = row
    if key.revoked_at is None:
        key.revoked_at = now or _utc_now()
        session.flush()
    return KeyInfo(
        prefix=key.prefix,
        user=user.name,
        role=user.role,
        created_at=key.created_at,
        last_used_at=key.last_used_at,
        revoked_at=key.revoked_at,
        active=False,
    )


def authenticate(session: Session, key: str, *, now: dt.datetime | None = None) -> Principal | None:
    """The principal for a presented key, or None for a malformed, unknown or revoked key.

    Records last use (at most once a minute per key) and commits that in `session`.
    """
    match = _KEY.match(key.strip())
    if match is None:
        return None
    prefix = match.group(1)
    row = session.execute(
        select(ApiKey, User).join(User, User.id == ApiKey.user_id).where(ApiKey.prefix == prefix)
    ).first()
    if row is None:
        hmac.compare_digest(hash_key(key), hash_key(key))  # same work for unknown prefixes
        return None
    api_key, user = row
    if not hmac.compare_digest(api_key.key_hash, hash_key(key.strip())):
        return None
    if api_key.revoked_at is not None or user.role not in ROLES:
        return None
    at = now or _utc_now()
    if api_key.last_used_at is None or at - api_key.last_used_at >= LAST_USED_RESOLUTION:
        session.execute(
            update(ApiKey)
            .where(
                ApiKey.id == api_key.id,
                or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at <= at - LAST_USED_RESOLUTION),
            )
            .values(last_used_at=at)
            .execution_options(synchronize_session=False)
        )
        session.commit()
    return Principal(user_id=user.id, name=user.name, role=user.role, key_prefix=prefix)
