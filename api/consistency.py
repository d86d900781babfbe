"""The read-your-writes contract at the HTTP edge.

A write answers `Store-Position: N` (and sets the `store_position` cookie). A read waits
until the read tables reached the position the client names (`Min-Position: N` header,
`min_position=N` parameter or the cookie) and this process's last write, whichever is later;
after `READ_WAIT_SECONDS` it answers 503 rather than stale data.
"""

from __future__ import annotations

import re
from typing import Annotated

import anyio.to_thread
from fastapi import Cookie, Depends, Header, Query, Request

from api.problems import Problem

READ_WAIT_SECONDS = 2.0
_POSITION = re.compile(r"^[0-9]{1,18}$")
POSITION_HEADER = "Store-Position"
POSITION_COOKIE = "store_position"


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
        (min_position, "min_position"), (header, "Min-Position"), (cookie, POSITION_COOKIE))
        if text]
    barrier = request.app.state.services.barrier
    target = max([*named, barrier.last_written])
    if barrier.has_reached(target):
        return  # the usual case: no waiting, no thread
    head = await anyio.to_thread.run_sync(request.app.state.services.event_log.last_position)
    if target > head:
        raise Problem(400, f"store position {target} has not been written (the store is at "
                      f"{head})")
    if not await anyio.to_thread.run_sync(barrier.wait, target, READ_WAIT_SECONDS):
        raise Problem(503, "the read tables have not caught up with your last write yet; "
                      "retry shortly", headers={"Retry-After": "1"})


Consistent = Annotated[None, Depends(read_after_writes)]


def position_headers(position: int | None) -> dict[str, str]:
    if position is None:
        return {}
    return {
        POSITION_HEADER: str(position),
        "Set-Cookie": f"{POSITION_COOKIE}={position}; Path=/; HttpOnly; SameSite=Lax",
    }
