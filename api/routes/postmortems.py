"""A preview of a postmortem's Markdown, rendered and sanitised as the public page does it."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api import markdown
from api.auth import Writer
from api.schemas import PostmortemDraft, RenderedMarkdown

router = APIRouter(prefix="/api/v1/postmortems", tags=["incidents"])


@router.post("/preview", response_model=RenderedMarkdown)
def preview_postmortem(body: PostmortemDraft, _: Writer) -> JSONResponse:
    """The Markdown as sanitised HTML (nothing is stored)."""
    return JSONResponse({"html": markdown.render(body.values()["body"])},
                        headers={"Cache-Control": "no-store"})
