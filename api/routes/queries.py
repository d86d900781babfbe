"""The read side: the incident list, one incident, and the summary cards, all answered
from the read tables."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.auth import AnyCaller
from api.consistency import Consistent
from api.deps import Queries
from api.filters import ListQuery
from api.problems import Problem
from commands.application import IncidentNotFound
from projections.queries import BadCursor

router = APIRouter(prefix="/api/v1/incidents", tags=["queries"])


@router.get("")
def list_incidents(
    caller: AnyCaller, queries: Queries, _: Consistent, filters: ListQuery
) -> dict[str, Any]:
    """Newest first. Filters repeat (`status=investigating&status=identified`); `since`
    and `until` bound the start time; pass `next_cursor` back as `cursor` for the next
    page."""
    try:
        page = queries.list_incidents(filters.list_filters(), internal=caller.is_reader,
                                      limit=filters.limit, cursor=filters.cursor)
    except BadCursor as error:
        raise Problem(400, str(error)) from None
    return {"items": page.items, "total": page.total, "next_cursor": page.next_cursor}


@router.get("/status/summary")
def incident_summary(caller: AnyCaller, queries: Queries, _: Consistent) -> dict[str, Any]:
    """Counts for the summary cards, and each affected service's current state."""
    return queries.summary(internal=caller.is_reader)


def read_incident(incident_id: str, caller: AnyCaller, queries: Queries) -> JSONResponse:
    body = queries.get_incident(incident_id, internal=caller.is_reader)
    if body is None:
        raise IncidentNotFound(incident_id)  # the same answer as for an unknown id
    return JSONResponse(body, headers={"ETag": f'"{body["version"]}"'})
