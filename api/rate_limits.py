"""The contract's limits, answered 429 with Retry-After as a problem: writes per token,
failed authentications and subscriber sign-ups per client address. Anonymous reads are
never limited. The counts are shared by every process on the database (infra.rate_limits).

The client address is the peer's, or the one a trusted proxy (FORWARDED_ALLOW_IPS, by
default loopback only) names in X-Forwarded-For."""

from __future__ import annotations

from typing import Annotated

from anyio import to_thread
from fastapi import Depends, Request

from api.problems import Problem
from infra.rate_limits import Limit, RateLimits

FAILED_AUTHENTICATIONS = Limit("failed-auth", 20, 60)
SIGN_UPS = Limit("sign-ups", 10, 3600)
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _limits(request: Request) -> RateLimits:
    found: RateLimits = request.app.state.services.rate_limits
    return found


def _too_many(wait: int, detail: str) -> Problem:
    return Problem(429, f"{detail}; retry in {wait} s", headers={"Retry-After": str(wait)})


def refuse_blocked_address(request: Request) -> None:
    """Before a token is looked at (no I/O): an address over its failed authentications."""
    wait = _limits(request).remembered(FAILED_AUTHENTICATIONS, client_address(request))
    if wait is not None:
        raise _too_many(wait, "too many failed authentications from this address")


async def failed_authentication(request: Request, refusal: Problem) -> Problem:
    """Counts a failed authentication: the refusal to answer, or 429 once over the limit."""
    limits, address = _limits(request), client_address(request)
    wait = await to_thread.run_sync(limits.take, FAILED_AUTHENTICATIONS, address)
    if wait is None:
        return refusal
    return _too_many(wait, "too many failed authentications from this address")


async def take_write(request: Request, token_name: str) -> None:
    """One write of this token, unless it already made its writes of the minute."""
    if request.method in _SAFE_METHODS:
        return
    limit = Limit("writes", request.app.state.services.settings.rate_limit_writes_per_minute, 60)
    wait = await to_thread.run_sync(_limits(request).take, limit, token_name)
    if wait is not None:
        raise _too_many(wait, f"this token made its {limit.count} writes of the minute")


async def take_sign_up(request: Request) -> None:
    """For the subscriber sign-up route: 10 an hour per client address."""
    wait = await to_thread.run_sync(_limits(request).take, SIGN_UPS, client_address(request))
    if wait is not None:
        raise _too_many(wait, "too many sign-ups from this address")


SignUpLimited = Annotated[None, Depends(take_sign_up)]
