"""The read side: the incident list, one incident, and the summary cards, all answered
from the read tables."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from api.answer_cache import Rendered, answer_for, json_body
from api.auth import AnyCaller
from api.consistency import Consistent
from api.deps import Queries
from api.filters import ListQuery
from api.problems import Problem
from api.reader_answers import kept_answer_for
from api.schemas import IncidentPage, PublicIncidentPage, Summary
from domain.visibility import Audience
from projections.queries import BadCursor

JSON = "application/json"
# Without a token the answers are kept and shared (api/answer_cache.py): a client may
# send back their ETag.
CONDITIONAL: dict[int | str, dict[str, Any]] = {
    304: {"description": "Not Modified: the ETag sent still holds"}}

router = APIRouter(prefix="/api/v1/incidents", tags=["queries"])


@router.get("", response_model=IncidentPage | PublicIncidentPage, responses={200: {
    "description": "with a reader token an `IncidentPage`; without one a "
                   "`PublicIncidentPage` (public incidents only, no internal fields)"},
    **CONDITIONAL})
async def list_incidents(
    request: Request, caller: AnyCaller, queries: Queries, _: Consistent, filters: ListQuery
) -> Response:
    """Newest first. Filters repeat (`status=investigating&status=identified`); `since`
    and `until` bound the start time; pass `next_cursor` back as `cursor` for the next
    page."""
    chosen = filters.list_filters()

    def render(audience: Audience) -> Rendered:
        try:
            page = queries.list_incidents(chosen, audience=audience, limit=filters.limit,
                                          cursor=filters.cursor)
        except BadCursor as error:
            raise Problem(400, str(error)) from None
        return Rendered(json_body(
            {"items": page.items, "total": page.total, "next_cursor": page.next_cursor}), JSON,
            holds_until=page.steady_until)

    # Kept for readers too (api/reader_answers.py): a script polling the list with a token
    # is answered from memory while nothing changed.
    return await kept_answer_for(request, caller.audience,
                                 ("list", chosen, filters.limit, filters.cursor), render)


@router.get("/status/summary", response_model=Summary, responses=CONDITIONAL)
async def incident_summary(request: Request, caller: AnyCaller, queries: Queries,
                           _: Consistent) -> Response:
    """Counts for the summary cards, and each affected service's current state."""
    return await answer_for(request, caller.audience, ("summary",), lambda audience: Rendered(
        json_body(queries.summary(audience=audience)), JSON))
