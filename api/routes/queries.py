"""The read side: the incident list, one incident, and the summary cards, all answered
from the read tables."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import StringConstraints

from api.auth import AnyCaller
from api.consistency import Consistent
from api.deps import Queries
from api.problems import Problem
from api.schemas import Moment
from commands.application import IncidentNotFound
from domain.values import IncidentType, Severity, Status
from projections.queries import BadCursor, ListFilters

router = APIRouter(prefix="/api/v1/incidents", tags=["queries"])
Names = Annotated[list[Annotated[str, StringConstraints(min_length=1, max_length=100)]], Query()]


@router.get("")
def list_incidents(
    caller: AnyCaller,
    queries: Queries,
    _: Consistent,
    status: Annotated[list[Status], Query()] = [],  # noqa: B006
    severity: Annotated[list[Severity], Query()] = [],  # noqa: B006
    incident_type: Annotated[list[IncidentType], Query()] = [],  # noqa: B006
    service: Names = [],  # noqa: B006
    region: Names = [],  # noqa: B006
    q: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    since: Moment | None = None,
    until: Moment | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    """Newest first. Filters repeat (`status=investigating&status=identified`); `since`
    and `until` bound the start time; pass `next_cursor` back as `cursor` for the next
    page."""
    filters = ListFilters(
        status=tuple(s.value for s in status), severity=tuple(s.value for s in severity),
        incident_type=tuple(t.value for t in incident_type), service=tuple(service),
        region=tuple(region), q=q, since=since, until=until,
    )
    try:
        page = queries.list_incidents(filters, internal=caller.is_reader, limit=limit,
                                      cursor=cursor)
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
