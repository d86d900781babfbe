"""The read-your-writes contract at the HTTP edge.

A write answers `Store-Position: N` (and sets the `store_position` cookie). A read waits
until the read tables reached the position the client names (`Min-Position: N` header,
`min_position=N` parameter or the cookie) and, for a reader who names a position or sends a
token, this process's last write, whichever is later; after `READ_WAIT_SECONDS` it answers
503 rather than stale data. An anonymous reader who names no position waits for nothing.

A caller with a token who names no position (a script without a cookie jar) may have
written through another process of the deployment: another worker of `serve --workers`
behind the same port (the kernel gives each new connection to any of them), or another
API process behind a balancer. What it reads covers every write committed before it
asked, whichever process took it: the store's head, read with one indexed query (the
process's wake-up source hears of other processes' writes only later), which requests
arriving together share as long as it started after they arrived (api/store_head.py).

A position named explicitly that the store has not written is a 400. The cookie is not
named by the client: it may come from another instance on the same host (cookies are not
scoped by port) or from before a restore, and an HttpOnly cookie cannot be cleared by a
page. A cookie position beyond the store's head is therefore ignored, and the answer
expires the cookie.
"""

from __future__ import annotations

import re
from typing import Annotated

import anyio.to_thread
from fastapi import Cookie, Depends, Header, Query, Request
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import Problem
from api.store_head import shared_head
from infra.consistency import ReadBarrier

READ_WAIT_SECONDS = 2.0
_POSITION = re.compile(r"^[0-9]{1,18}$")
POSITION_HEADER = "Store-Position"
POSITION_COOKIE = "store_position"
_COOKIE_ATTRIBUTES = "Path=/; HttpOnly; SameSite=Lax"
# Set in the request's state when its cookie named a position the store never wrote.
_STALE_COOKIE = "stale_position_cookie"
# Set in the request's state: the store position its answer must reflect at least.
READ_TARGET = "read_target"


def parse_position(text: str, name: str) -> int:
    """A store position sent by a client (ASCII digits), or a 400 naming where it was."""
    if not _POSITION.match(text):
        raise Problem(400, f"{name} must be a store position (a whole number), got {text!r}")
    return int(text)


async def read_after_writes(
    request: Request,
    min_position: Annotated[str | None, Query(description="wait for this store position")]
    = None,
    header: Annotated[str | None, Header(alias="Min-Position")] = None,
    cookie: Annotated[str | None, Cookie(alias=POSITION_COOKIE)] = None,
) -> None:
    named = [parse_position(text, name) for text, name in (
        (min_position, "min_position"), (header, "Min-Position")) if text]
    remembered = parse_position(cookie, POSITION_COOKIE) if cookie else 0
    barrier: ReadBarrier = request.app.state.services.barrier
    # This process's last write binds only a reader who may have written: one who names a
    # position or carries a token (an anonymous crowd reads what the read tables hold).
    last = barrier.last_written if names_more(request.scope) else 0
    # A token caller who names no position: every process's writes (the store's head).
    everyone = not named and carries_token(request.scope)
    head = None
    if everyone and not remembered:
        head = await shared_head(request.app.state, barrier.store_head).read()
        last = max(last, head)
    target = max([*named, remembered, last])
    setattr(request.state, READ_TARGET, target)
    if barrier.has_reached(target):
        return  # the usual case: no waiting (an anonymous reader: no thread either)
    if head is None:
        head = await anyio.to_thread.run_sync(barrier.store_head)
    if remembered > head:  # a cookie of another store: ignored, and expired
        setattr(request.state, _STALE_COOKIE, True)
        target = max([*named, last, head if everyone else 0])
        setattr(request.state, READ_TARGET, target)
    if target > head:
        # The store's head is not told: it would count everyone's writes, private ones too.
        raise Problem(400, f"store position {target} has not been written")
    await anyio.to_thread.run_sync(wait_for_read_tables, barrier, target)


def names_more(scope: Scope) -> bool:
    """Whether a request says more than its URL: a token, or a position to wait for."""
    for name, value in scope["headers"]:
        if name in (b"authorization", b"min-position") or (
                name == b"cookie" and POSITION_COOKIE.encode() in value):
            return True
    return b"min_position" in scope.get("query_string", b"")


def carries_token(scope: Scope) -> bool:
    """Whether a request sends a token (checked by the routes' `identify`)."""
    return any(name == b"authorization" for name, _ in scope["headers"])


def read_target(request: Request) -> int:
    """The store position the answer to `request` must reflect at least (0 before
    `read_after_writes` ran)."""
    found: int = getattr(request.state, READ_TARGET, 0)
    return found


def wait_for_read_tables(barrier: ReadBarrier, position: int) -> None:
    """Returns once every read table reached `position` (blocking: call it from a worker
    thread); 503 after `READ_WAIT_SECONDS`."""
    if not barrier.wait(position, READ_WAIT_SECONDS):
        raise Problem(503, "the read tables have not caught up with your last write yet; "
                      "retry shortly", headers={"Retry-After": "1"})


async def read_barrier(request: Request) -> ReadBarrier:
    found: ReadBarrier = request.app.state.services.barrier
    return found


Consistent = Annotated[None, Depends(read_after_writes)]
Barrier = Annotated[ReadBarrier, Depends(read_barrier)]


def position_headers(position: int | None) -> dict[str, str]:
    if position is None:
        return {}
    return {
        POSITION_HEADER: str(position),
        "Set-Cookie": f"{POSITION_COOKIE}={position}; {_COOKIE_ATTRIBUTES}",
    }


class ExpireStaleCookie:
    """Adds a Set-Cookie expiring `store_position` to the answer of a request whose cookie
    named a position beyond the store's head (routes answer with their own response
    objects, so a dependency cannot add the header itself)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_expiring(message: Message) -> None:
            if message["type"] == "http.response.start" and scope.get("state", {}).get(
                    _STALE_COOKIE):
                MutableHeaders(scope=message).append(
                    "Set-Cookie", f"{POSITION_COOKIE}=; Max-Age=0; {_COOKIE_ATTRIBUTES}")
            await send(message)

        await self.app(scope, receive, send_expiring)
