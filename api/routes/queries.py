"""The read side: the incident list, one incident, and the summary cards, all answered
from the read tables."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.auth import AnyCaller
from api.consistency import Consistent
from api.deps import Queries
from api.filters import ListQuery
from api.problems import Problem
from api.schemas import IncidentPage, PublicIncidentPage, Summary
from projections.queries import BadCursor

router = APIRouter(prefix="/api/v1/incidents", tags=["queries"])


@router.get("", response_model=IncidentPage | PublicIncidentPage, responses={200: {
    "description": "with a reader token an `IncidentPage`; without one a "
                   "`PublicIncidentPage` (public incidents only, no internal fields)"}})
def list_incidents(
    caller: AnyCaller, queries: Queries, _: Consistent, filters: ListQuery
) -> JSONResponse:
    """Newest first. Filters repeat (`status=investigating&status=identified`); `since`
    and `until` bound the start time; pass `next_cursor` back as `cursor` for the next
    page."""
    try:
        page = queries.list_incidents(filters.list_filters(), audience=caller.audience,
                                      limit=filters.limit, cursor=filters.cursor)
    except BadCursor as error:
        raise Problem(400, str(error)) from None
    return JSONResponse(
        {"items": page.items, "total": page.total, "next_cursor": page.next_cursor})


@router.get("/status/summary", response_model=Summary)
def incident_summary(caller: AnyCaller, queries: Queries, _: Consistent) -> JSONResponse:
    """Counts for the summary cards, and each affected service's current state."""
    return JSONResponse(queries.summary(audience=caller.audience))
