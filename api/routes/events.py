"""The stored CloudEvents in store order: the audit log for reader tokens."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from api.auth import Reader
from api.deps import Log
from api.problems import Problem
from api.render import event_list_response
from api.schemas import EventPage
from domain.incident import event_type_named

router = APIRouter(prefix="/api/v1", tags=["events"])

def _full_types(given: list[str]) -> list[str]:
    try:
        return [event_type_named(name) for name in given]
    except ValueError as error:
        raise Problem(422, "the request has invalid fields",
                      errors=[{"field": "query.type", "message": str(error)}]) from None


@router.get("/events", response_model=EventPage)
def list_events(
    _: Reader,
    log: Log,
    after: Annotated[int, Query(ge=0, le=2**62, description="store position to start after")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    type: Annotated[list[str], Query(description="full or short event type")] = [],  # noqa: A002, B006
    subject: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    actor: Annotated[str | None, Query(
        min_length=1, max_length=64,
        description="only events of commands issued by this token name (or `system`)")] = None,
) -> Response:
    """`items` are the stored CloudEvents documents, byte for byte; `next_after` is the
    position to pass as `after` for the next page (null at the end)."""
    events = log.read(after, limit, _full_types(type), subject, actor)
    next_after = events[-1].position if len(events) == limit else None
    last = events[-1].position if events else after
    return event_list_response(
        [e.document for e in events], next_after=next_after, last_position=last
    )
