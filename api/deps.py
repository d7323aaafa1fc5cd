"""FastAPI dependencies: settings, a database session per request, the caller and their role.

Routes declare what they need with annotated types:

    def route(session: SessionDep, user: AnalystDep) -> Model: ...

`ReaderDep` (any valid key), `AnalystDep` (tools, chat, knowledge ingest), `ApproverDep`
(decisions) and `AdminDep` check the `Authorization: Bearer <api key>` header and the
role (401 without a valid key, 403 with a role that lacks the permission).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from api.auth import PERMISSIONS, Permission, Principal, authenticate
from core.settings import Settings

if TYPE_CHECKING:
    from knowledge.store import KnowledgeStore

_bearer = HTTPBearer(
    auto_error=False,
    description="An API key from `valuechain keys create --name N --role R`, as `Bearer <key>`.",
)


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _sessionmaker(request: Request) -> sessionmaker[Session]:
    factory: sessionmaker[Session] = request.app.state.sessionmaker
    return factory


def get_session(request: Request) -> Iterator[Session]:
    """One session per request; rolled back unless the route committed."""
    session = _sessionmaker(request)()
    try:
        yield session
    finally:
        session.close()


def get_knowledge_store(request: Request) -> KnowledgeStore:
    """The app's knowledge store, created on first use (loading Chroma and the embedding
    model takes seconds, and most requests never need it)."""
    getter: Callable[[], KnowledgeStore] = request.app.state.knowledge
    return getter()


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
KnowledgeDep = Annotated["KnowledgeStore", Depends(get_knowledge_store)]


def _unauthorised(message: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=message,
        headers={"WWW-Authenticate": "Bearer"},
    )


def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller behind the bearer key (401 when missing, malformed, unknown or revoked)."""
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise _unauthorised("missing API key: send the header 'Authorization: Bearer <api key>'")
    with _sessionmaker(request)() as session:
        principal = authenticate(session, credentials.credentials)
    if principal is None:
        raise _unauthorised("invalid or revoked API key")
    request.state.principal = principal
    return principal


def require(permission: Permission) -> Callable[..., Principal]:
    """A dependency that lets through callers whose role has `permission` (403 otherwise)."""
    allowed = sorted(role for role, perms in PERMISSIONS.items() if permission in perms)

    def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if not principal.can(permission):
            raise HTTPException(
                status_code=status.HTTP_403_FORBIDDEN,
                detail=f"role {principal.role!r} may not {permission}; allowed roles: {', '.join(allowed)}",
            )
        return principal

    check.__name__ = f"require_{permission}"
    return check


ReaderDep = Annotated[Principal, Depends(require("read"))]
AnalystDep = Annotated[Principal, Depends(require("analyze"))]
ApproverDep = Annotated[Principal, Depends(require("decide"))]
AdminDep = Annotated[Principal, Depends(require("admin"))]

#: Documented on every authenticated route.
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing, invalid or revoked API key"},
    403: {"description": "The key's role lacks the permission"},
}
