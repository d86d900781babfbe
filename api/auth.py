"""Bearer tokens with roles: reader < writer < admin. Reads without a token are public."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from anyio import to_thread
from fastapi import Depends, Request

from api.problems import Problem
from api.rate_limits import failed_authentication, refuse_blocked_address, take_write
from domain.visibility import Audience
from infra.token_settings import Role
from infra.tokens import Authenticator, Principal

_RANK: dict[str, int] = {"reader": 1, "writer": 2, "admin": 3}
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="product-status"'}


@dataclass(frozen=True)
class Caller:
    role: Role | None
    name: str | None = None  # the token's name: the actor of the caller's commands

    @property
    def audience(self) -> Audience:
        """What it may see (`domain.visibility`): any token sees everything."""
        return Audience.PUBLIC if self.role is None else Audience.READER

    @property
    def actor(self) -> str:
        """Who the audit log says issued the caller's commands: its token's name."""
        assert self.name is not None, "only a caller with a token issues commands"
        return self.name

    def at_least(self, role: Role) -> bool:
        return self.role is not None and _RANK[self.role] >= _RANK[role]


def _bearer(header: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` value (None: not of that form)."""
    scheme, _, token = header.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


async def identify(request: Request) -> Caller:
    header = request.headers.get("authorization")
    if header is None:
        return Caller(None)
    refuse_blocked_address(request)
    token = _bearer(header)
    if token is None:
        raise await failed_authentication(request, Problem(
            401, "Authorization must be 'Bearer <token>'", headers=_CHALLENGE))
    principal = await _authenticate(request.app.state.services.authenticator, token)
    if principal is None:
        raise await failed_authentication(request, Problem(
            401, "the bearer token is not valid", headers=_CHALLENGE))
    return Caller(principal.role, principal.name)


def remembered_caller(request: Request) -> Caller | None:
    """The caller `identify` finds, when this process knows its token valid without I/O
    (one of API_TOKENS, or a stored one remembered valid) and its address is not refused;
    None otherwise (no token, or `identify` must decide: a refusal, a token to look up)."""
    header = request.headers.get("authorization")
    if header is None or (token := _bearer(header)) is None:
        return None
    try:
        refuse_blocked_address(request)
    except Problem:
        return None
    authenticator: Authenticator = request.app.state.services.authenticator
    principal = authenticator.configured(token)
    if principal is None:
        _, principal = authenticator.cached(token)
    return None if principal is None else Caller(principal.role, principal.name)


async def _authenticate(authenticator: Authenticator, token: str) -> Principal | None:
    """From memory when it can; the token table is asked off the event loop."""
    principal = authenticator.configured(token)
    if principal is not None:
        return principal
    known, principal = authenticator.cached(token)
    if known:
        return principal
    return await to_thread.run_sync(authenticator.lookup, token)


# The role each of `Reader`, `Writer` and `Admin`'s checks asks for (api.answers documents
# the 401 and 403 of the routes that depend on one).
REQUIRED_ROLE: dict[object, Role] = {}


def _requiring(role: Role) -> object:
    """The caller, if its token has at least `role`; a write (any method but GET, HEAD,
    OPTIONS) also takes one of the token's writes of the minute."""

    async def check(request: Request, caller: Annotated[Caller, Depends(identify)]) -> Caller:
        if caller.role is None:
            raise Problem(401, f"this needs a bearer token with the {role} role",
                          headers=_CHALLENGE)
        if not caller.at_least(role):
            raise Problem(403, f"this needs the {role} role; the token has {caller.role}")
        await take_write(request, caller.name or caller.role)
        return caller

    REQUIRED_ROLE[check] = role
    return check


AnyCaller = Annotated[Caller, Depends(identify)]
Reader = Annotated[Caller, Depends(_requiring("reader"))]
Writer = Annotated[Caller, Depends(_requiring("writer"))]
Admin = Annotated[Caller, Depends(_requiring("admin"))]
