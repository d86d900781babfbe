"""SVG badges of the public status: overall, or of one service (api/badges.py), kept and
shared per read-model position like every anonymous read (api/answer_cache.py)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from api import badges
from api.answer_cache import Rendered, public_answer
from api.consistency import Consistent
from api.deps import Queries
from domain.visibility import Audience

router = APIRouter(tags=["badges"])


class BadgeResponse(Response):
    media_type = badges.SVG_TYPE


class BadgeParams(BaseModel):
    service: Annotated[str | None, Field(
        min_length=1, max_length=100,
        description="a service's state instead of the overall one; `unknown` for a "
                    "service no public incident names")] = None


# An image that runs nothing, whatever it is opened as.
_HEADERS = (("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'"),
            ("X-Content-Type-Options", "nosniff"))
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {badges.SVG_TYPE: {"schema": {"type": "string"}}},
          "description": "an SVG image"},
    304: {"description": "Not Modified: the ETag sent still holds"},
}


@router.get("/badge.svg", response_class=BadgeResponse, responses=_RESPONSES)
async def badge(request: Request, queries: Queries, _: Consistent,
                params: Annotated[BadgeParams, Query()]) -> Response:
    """The public status as a badge: `operational`, `degraded` or `major outage`."""
    name = params.service

    def render() -> Rendered:
        summary = queries.summary(audience=Audience.PUBLIC)
        body = badges.overall(summary) if name is None else badges.service(summary, name)
        return Rendered(body, badges.SVG_TYPE, headers=_HEADERS)

    return await public_answer(request, ("badge", name), render)
