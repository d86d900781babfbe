"""RSS 2.0 and Atom 1.0 feeds of the public incidents, served from the `feed_items` read
model.

Caching: a feed's ETag is a hash of its URL and of the (id, position) of each incident it
shows, where position is the store position of the incident's last public change. It
stays the same while those rows stay the same, whatever happens to other incidents or to
internal notes, and it changes with every public change of a shown incident.
Last-Modified is the time of the newest public change in the read model (an incident
leaving a feed is such a change too). `If-None-Match` is answered first; only without it
`If-Modified-Since` is.

Each answer (ETag, document) is kept in memory by URL with the read model's position it
was read at: a request reads that position (one primary-key read) and, while it has not
moved, answers from memory; otherwise it reads the feed again (one query; an incident's
feed one, and one more for its entries when its document changed), and renders the
document again only if the ETag changed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from email.utils import format_datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field, StringConstraints

from api import feeds_xml
from api.consistency import Consistent
from api.deps import IncidentId
from api.feed_cache import Answer, Answers, Reading, etag_of, not_modified, self_url, settled
from api.feeds_xml import ATOM_TYPE, RSS_TYPE, Channel
from api.problems import Problem
from infra.bootstrap import Services
from infra.settings import Settings
from projections.base import moment
from projections.feed_queries import MAX_ENTRIES, FeedQueries

router = APIRouter(prefix="/api/v1", tags=["feeds"])


ServiceName = Annotated[str, StringConstraints(min_length=1, max_length=100)]
_CONDITIONAL: dict[int | str, dict[str, Any]] = {
    304: {"description": "Not Modified: the ETag or date sent still holds"}}


@dataclass(frozen=True)
class FeedReader:
    """What the feeds of one app read with: its settings, the feed queries, and the
    answers kept in memory."""

    settings: Settings
    queries: FeedQueries
    answers: Answers


async def feed_reader(request: Request) -> FeedReader:
    """This app's feed reader (made on first use), when feeds are on
    (`INCIDENT_RSS_ENABLED`); 404 otherwise. It never blocks: `async`, so it runs on
    the event loop rather than costing a trip through the thread pool."""
    state = request.app.state
    reader: FeedReader | None = getattr(state, "feed_reader", None)
    if reader is None:
        services: Services = state.services
        reader = state.feed_reader = FeedReader(
            services.settings, services.feed_queries, Answers())
    if not reader.settings.incident_rss_enabled:
        raise Problem(404, "feeds are turned off on this server")
    return reader


Feeds = Annotated[FeedReader, Depends(feed_reader)]


def _responses(media_type: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"content": {media_type.split(";")[0]: {}}}, **_CONDITIONAL,
            404: {"description": "feeds are turned off, or (an incident's feed) no such "
                                 "incident is public and in feeds"}}


def _serve(kind: str, request: Request, feeds: FeedReader,
           read: Callable[[str], Reading | None]) -> Response:
    """The feed's answer: from memory while the read model has not moved, else `read`
    (None: 404); a 304 when the client's copy is current."""
    settings = feeds.settings
    url = self_url(request, settings)
    key = (kind, url)
    answer = feeds.answers.get(key, feeds.queries.position())
    if answer is None:
        reading = read(url)
        if reading is None:
            raise Problem(404, "no feed for this incident")
        kept = feeds.answers.get(key)
        body = kept.body if kept is not None and kept.etag == reading.etag else \
            reading.render()
        answer = Answer(reading.position, reading.etag, reading.newest, body)
        feeds.answers.put(key, answer)
    last_modified = settled(answer.newest)
    headers = {"ETag": answer.etag,
               "Cache-Control": f"public, max-age={settings.rss_ttl_minutes * 60}"}
    if last_modified is not None:
        headers["Last-Modified"] = format_datetime(moment(last_modified), usegmt=True)
    if not_modified(request, answer.etag, last_modified):
        return Response(status_code=304, headers=headers)
    return Response(answer.body, media_type=RSS_TYPE if kind == "rss" else ATOM_TYPE,
                    headers=headers)


def _render(kind: str) -> Callable[[Channel, list[feeds_xml.Item]], bytes]:
    return feeds_xml.rss if kind == "rss" else feeds_xml.atom


def _general(kind: str, request: Request, feeds: FeedReader,
             params: GeneralParams) -> Response:
    settings = feeds.settings
    include_resolved, max_items = params.include_resolved, params.max_items
    services = tuple(dict.fromkeys(params.service))

    def read(url: str) -> Reading:
        found = feeds.queries.recent(include_resolved=include_resolved, services=services,
                                     limit=max_items)
        incidents, base = found.incidents, settings.base_url
        title = feeds_xml.GENERAL_TITLE
        if services:
            title += f" ({', '.join(feeds_xml.closed(s) for s in services)})"
        channel = Channel(
            title=title,
            description=feeds_xml.GENERAL_DESCRIPTION,
            link=base,
            self_url=url,
            atom_id=feeds_xml.atom_id(
                f"feed?include_resolved={include_resolved}&services={sorted(services)!r}"),
            # The newest change shown; an empty feed says when the read model last changed.
            updated=incidents[0].last_public_change if incidents else (found.newest or 0),
            ttl_minutes=settings.rss_ttl_minutes,
        )
        etag = etag_of(kind, url, base, settings.rss_ttl_minutes, channel.updated,
                     [(i.id, i.position) for i in incidents])
        return Reading(found.position, etag, found.newest, lambda: _render(kind)(
            channel, [item for i in incidents for item in feeds_xml.incident_items(base, i)]))

    return _serve(kind, request, feeds, read)


def _one_incident(kind: str, request: Request, feeds: FeedReader, incident_id: str,
                  max_items: int) -> Response:
    settings = feeds.settings

    def read(url: str) -> Reading | None:
        found = feeds.queries.incident(incident_id)
        if found is None:
            return None
        incident, position = found
        base = settings.base_url
        channel = Channel(
            title=feeds_xml.titled(incident.title, feeds_xml.PRODUCT),
            description=f"Status updates of the incident: {feeds_xml.closed(incident.title)}",
            link=feeds_xml.incident_url(base, incident.id),
            self_url=url,
            atom_id=feeds_xml.atom_id(f"incident/{incident.id}/feed"),
            updated=incident.last_public_change,
            ttl_minutes=settings.rss_ttl_minutes,
        )
        # Every public entry moves the incident's position: it alone tells the feed's state.
        etag = etag_of(kind, url, base, settings.rss_ttl_minutes, incident.id, incident.position)

        def render() -> bytes:
            entries = feeds.queries.entries(incident, limit=max_items)
            items = [feeds_xml.entry_item(base, incident, e) for e in entries]
            postmortem = feeds_xml.postmortem_item(base, incident)
            if postmortem is not None:  # newest first, among the entries
                items = sorted([postmortem, *items], key=lambda i: -i.updated)[:max_items]
            return _render(kind)(channel, items)

        return Reading(position, etag, incident.last_public_change, render)

    return _serve(kind, request, feeds, read)


class GeneralParams(BaseModel):
    """The query parameters of a general feed (others, such as `min_position`, are left
    to whom they concern)."""

    include_resolved: bool = Field(
        True, description="false leaves out resolved and post-incident incidents")
    max_items: int = Field(20, ge=1, le=100, description="how many incidents, 1-100")
    service: list[ServiceName] = Field(
        default_factory=list, max_length=50,
        description="only incidents affecting one of these services (repeatable)")


class IncidentParams(BaseModel):
    max_items: int = Field(MAX_ENTRIES, ge=1, le=MAX_ENTRIES,
                           description="how many entries, newest first, 1-100")


@router.get("/incidents/rss/feed", response_class=Response, responses=_responses(RSS_TYPE))
def rss_feed(
    request: Request,
    feeds: Feeds,
    _: Consistent,
    params: Annotated[GeneralParams, Query()],
) -> Response:
    """RSS 2.0: one item per public incident, newest public change first, each followed
    by its postmortem once published."""
    return _general("rss", request, feeds, params)


@router.get("/incidents/atom/feed", response_class=Response, responses=_responses(ATOM_TYPE))
def atom_feed(
    request: Request,
    feeds: Feeds,
    _: Consistent,
    params: Annotated[GeneralParams, Query()],
) -> Response:
    """Atom 1.0: the same as the RSS feed."""
    return _general("atom", request, feeds, params)


@router.get("/incidents/{incident_id}/rss", response_class=Response,
            responses=_responses(RSS_TYPE))
def incident_rss(
    incident_id: IncidentId,
    request: Request,
    feeds: Feeds,
    _: Consistent,
    params: Annotated[IncidentParams, Query()],
) -> Response:
    """RSS 2.0: one item per public entry of the incident (its declaration, each public
    status update, and its postmortem once published), newest first; 404 for an incident
    no feed may show."""
    return _one_incident("rss", request, feeds, incident_id, params.max_items)


@router.get("/incidents/{incident_id}/atom", response_class=Response,
            responses=_responses(ATOM_TYPE))
def incident_atom(
    incident_id: IncidentId,
    request: Request,
    feeds: Feeds,
    _: Consistent,
    params: Annotated[IncidentParams, Query()],
) -> Response:
    """Atom 1.0: the same as the incident's RSS feed."""
    return _one_incident("atom", request, feeds, incident_id, params.max_items)
