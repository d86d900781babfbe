"""Prometheus metrics (infra/metrics.py): everything for a token, else the public part."""

from __future__ import annotations

from anyio import to_thread
from fastapi import APIRouter, Request, Response

from api.auth import AnyCaller
from infra.metrics import CONTENT_TYPE, StoreCollector, exposition

router = APIRouter(tags=["operations"])


@router.get("/metrics", response_class=Response, responses={200: {
    "content": {CONTENT_TYPE: {"schema": {"type": "string"}}},
    "description": "Prometheus text exposition format 0.0.4"}})
async def metrics(request: Request, caller: AnyCaller) -> Response:
    """Requests by route template and status with latency histograms, open event streams;
    with a token (any role) also events stored, the store's head, and each follower's
    position and lag (they count private activity too)."""
    services = request.app.state.services
    store = StoreCollector(services.event_log)
    body = await to_thread.run_sync(lambda: exposition(store, everything=caller.role is not None))
    return Response(body, media_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})
