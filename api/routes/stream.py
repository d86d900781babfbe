"""The live event stream: the stored CloudEvents as server-sent events, for dashboards."""

from __future__ import annotations

from typing import Annotated

import anyio
import anyio.to_thread
from fastapi import APIRouter, Header, Query, Request
from starlette.responses import Response

from api.auth import AnyCaller
from api.consistency import parse_position
from api.sse import EventStream, StreamFeed, stream_config
from api.stream_slots import stream_slots
from infra.bootstrap import Services

_MAX_POSITION = 2**62

router = APIRouter(prefix="/api/v1", tags=["stream"])


@router.get(
    "/events/stream",
    response_class=Response,
    responses={200: {"content": {"text/event-stream": {}},
                     "description": "server-sent events, one per stored CloudEvent"}},
)
async def event_stream(
    request: Request,
    caller: AnyCaller,
    after: Annotated[int | None, Query(
        ge=0, le=_MAX_POSITION, description="store position to start after")] = None,
    last_event_id: Annotated[int | None, Query(
        ge=0, le=_MAX_POSITION,
        description="as the Last-Event-ID header, for clients that cannot set headers")] = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> Response:
    """The stored CloudEvents as server-sent events, in store order, live.

    Each event is `id: <store position>` and `data: <the stored CloudEvents document>` (one
    line of compact JSON). There is no `event:` line: every event is an SSE `message`, so
    `EventSource.onmessage` receives them all, whatever their type, and the CloudEvents
    `type` attribute in `data` tells them apart.

    The stream starts after the `Last-Event-ID` header (what EventSource sends when it
    reconnects), else after `?last_event_id=`, else after `?after=`, else at the store's
    current head (new events only; `?after=0` replays the whole store). A reader token
    gets every event byte for byte. Without a token, only events of incidents that are
    public and not deleted when the event is sent, without internal fields (an event left
    with nothing public is skipped); `id` values then jump over what is skipped.

    The stream opens with a `retry:` hint; `: keep-alive` comments fill every 15 s of
    silence. A client that stops reading is dropped rather than buffered for: its stream
    ends and it resumes with `Last-Event-ID`. Streams end when the server shuts down.

    At most MAX_EVENT_STREAMS streams are open at once in one server process; beyond that
    the answer is 503 with `Retry-After`.
    """
    start = _start_position(last_event_id_header, last_event_id, after)
    state = request.app.state
    services: Services = state.services
    watch = services.store_watch
    slot = stream_slots(state, services.settings).take()
    try:
        if start is None:
            start = await anyio.to_thread.run_sync(services.event_log.last_position)
    except BaseException:
        slot.release()
        raise
    feed = StreamFeed(services, watch, audience=caller.audience, config=stream_config(state))
    return EventStream(feed, start, slot)


def _start_position(header: str | None, query_id: int | None, after: int | None) -> int | None:
    if header is not None and header.strip():
        return parse_position(header.strip(), "Last-Event-ID")
    return query_id if query_id is not None else after
