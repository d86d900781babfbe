"""RSS 2.0, Atom 1.0 and JSON Feed 1.1 feeds of the public incidents, served from the
`feed_items` read model.

Caching: a feed's ETag is a hash of the URL it names itself by (its self link, made of its
validated parameters: see `self_url`) and of the (id, position) of each incident it shows,
where position is the store position of the incident's last public change. It stays the
same while those rows stay the same, whatever happens to other incidents or to internal
notes, and it changes with every public change of a shown incident.
Last-Modified is the time of the newest public change in the read model (an incident
leaving a feed is such a change too). `If-None-Match` is answered first; only without it
`If-Modified-Since` is.

Each answer (ETag, document) is kept with the app's public answers (api/answer_cache.py)
by the URL the feed names itself by, not the one requested (parameters a feed does not
take, and other spellings of those it takes, neither cost a reading nor show in it), with
the read model's position it was read at: while the read models have not moved it is
answered from memory (no I/O); otherwise the feed is read again (one query; an incident's
feed one, and one more for its entries when its document changed), and its document
rendered again only if the ETag changed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StringConstraints

from api import feeds_xml, schemas
from api.answer_cache import VARY, Answer, Reading, etag_of, public_answers, self_url
from api.consistency import Consistent
from api.deps import IncidentId
from api.feeds_json import JSON_FEED_TYPE, json_feed
from api.feeds_xml import ATOM_TYPE, RSS_TYPE, Channel
from api.problems import Problem
from infra.bootstrap import Services
from infra.settings import Settings
from projections.feed_queries import MAX_ENTRIES, FeedQueries

router = APIRouter(prefix="/api/v1", tags=["feeds"])


ServiceName = Annotated[str, StringConstraints(min_length=1, max_length=100)]
MAX_ITEMS = 20  # incidents in a general feed unless `max_items` says otherwise
_CONDITIONAL: dict[int | str, dict[str, Any]] = {
    304: {"description": "Not Modified: the ETag or date sent still holds"}}


@dataclass(frozen=True)
class FeedReader:
    """What the feeds of one app read with: its settings and the feed queries."""

    settings: Settings
    queries: FeedQueries


async def feed_reader(request: Request) -> FeedReader:
    """This app's feed reader (made on first use), when feeds are on
    (`INCIDENT_RSS_ENABLED`); 404 otherwise. It never blocks: `async`, so it runs on
    the event loop rather than costing a trip through the thread pool."""
    state = request.app.state
    reader: FeedReader | None = getattr(state, "feed_reader", None)
    if reader is None:
        services: Services = state.services
        reader = state.feed_reader = FeedReader(services.settings, services.feed_queries)
    if not reader.settings.incident_rss_enabled:
        raise Problem(404, "feeds are turned off on this server")
    return reader


Feeds = Annotated[FeedReader, Depends(feed_reader)]


def _responses(media_type: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"content": {media_type.split(";")[0]: {}}}, **_CONDITIONAL,
            404: {"description": "feeds are turned off, or (an incident's feed) no such "
                                 "incident is public and in feeds"}}


_TYPES = {"rss": RSS_TYPE, "atom": ATOM_TYPE, "json": JSON_FEED_TYPE}
_RENDERERS: dict[str, Callable[[Channel, list[feeds_xml.Item]], bytes]] = {
    "rss": feeds_xml.rss, "atom": feeds_xml.atom, "json": json_feed}


class JsonFeedResponse(JSONResponse):
    """Documents the answer as JSON (its schema, not a string) of the feed's own type."""

    media_type = JSON_FEED_TYPE


async def _serve(kind: str, request: Request, feeds: FeedReader, query: list[tuple[str, str]],
                 read: Callable[[str], Reading | None]) -> Response:
    """The feed's answer, kept by the URL it names itself by (`query`: its parameters as
    validated): from memory while the read model has not moved, else `read` (None: 404);
    a 304 when the client's copy is current."""
    settings = feeds.settings
    url = self_url(request, settings, query)

    def produce(kept: Answer | None) -> Answer | None:
        reading = read(url)
        if reading is None:
            return None
        body = kept.body if kept is not None and kept.etag == reading.etag else \
            reading.render()
        return Answer(reading.position, reading.etag, reading.newest, body, _TYPES[kind])

    public = public_answers(request)
    answer = await public.get(request, (kind, url), produce)
    if answer is None:
        raise Problem(404, "no feed for this incident")
    return public.respond(request, (kind, url), answer, vary=VARY,
                          cache_control=f"public, max-age={settings.rss_ttl_minutes * 60}")


async def _general(kind: str, request: Request, feeds: FeedReader,
                   params: GeneralParams) -> Response:
    settings = feeds.settings
    include_resolved, max_items = params.include_resolved, params.max_items
    services = params.services()

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
        return Reading(found.position, etag, found.newest, lambda: _RENDERERS[kind](
            channel, [item for i in incidents for item in feeds_xml.incident_items(base, i)]))

    return await _serve(kind, request, feeds, params.query(), read)


async def _one_incident(kind: str, request: Request, feeds: FeedReader, incident_id: str,
                        params: IncidentParams) -> Response:
    settings, max_items = feeds.settings, params.max_items

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
            return _RENDERERS[kind](channel, items)

        return Reading(position, etag, incident.last_public_change, render)

    return await _serve(kind, request, feeds, params.query(), read)


class GeneralParams(BaseModel):
    """The query parameters of a general feed (others, such as `min_position`, are left
    to whom they concern)."""

    include_resolved: bool = Field(
        True, description="false leaves out resolved and post-incident incidents")
    max_items: int = Field(MAX_ITEMS, ge=1, le=100, description="how many incidents, 1-100")
    service: list[ServiceName] = Field(
        default_factory=list, max_length=50,
        description="only incidents affecting one of these services (repeatable)")

    def services(self) -> tuple[str, ...]:
        """The services named, each once, in the order of their names: the same feed
        however they are listed."""
        return tuple(sorted(set(self.service)))

    def query(self) -> list[tuple[str, str]]:
        """The parameters as the feed names itself by them: those not at their default,
        by name, each in one spelling."""
        query = [] if self.include_resolved else [("include_resolved", "false")]
        if self.max_items != MAX_ITEMS:
            query.append(("max_items", str(self.max_items)))
        return query + [("service", name) for name in self.services()]


class IncidentParams(BaseModel):
    max_items: int = Field(MAX_ENTRIES, ge=1, le=MAX_ENTRIES,
                           description="how many entries, newest first, 1-100")

    def query(self) -> list[tuple[str, str]]:
        """The parameters as the feed names itself by them (see `GeneralParams.query`)."""
        return [] if self.max_items == MAX_ENTRIES else [("max_items", str(self.max_items))]


@router.get("/incidents/rss/feed", response_class=Response, responses=_responses(RSS_TYPE))
async def rss_feed(
    request: Request,
    feeds: Feeds,
    _: Consistent,
    params: Annotated[GeneralParams, Query()],
) -> Response:
    """RSS 2.0: one item per public incident, newest public change first, each followed
    by its postmortem once published."""
    return await _general("rss", request, feeds, params)


@router.get("/incidents/atom/feed", response_class=Response, responses=_responses(ATOM_TYPE))
async def atom_feed(
    request: Request,
    feeds: Feeds,
    _: Consistent,
    params: Annotated[GeneralParams, Query()],
) -> Response:
    """Atom 1.0: the same as the RSS feed."""
    return await _general("atom", request, feeds, params)


@router.get("/incidents/feed.json", response_class=JsonFeedResponse,
            responses={**_responses(JSON_FEED_TYPE),
                       200: {"model": schemas.JsonFeed,
                             "description": "a JSON Feed 1.1 document"}})
async def json_feed_route(
    request: Request,
    feeds: Feeds,
    _: Consistent,
    params: Annotated[GeneralParams, Query()],
) -> Response:
    """JSON Feed 1.1: the same items as the RSS feed."""
    return await _general("json", request, feeds, params)


@router.get("/incidents/{incident_id}/rss", response_class=Response,
            responses=_responses(RSS_TYPE))
async def incident_rss(
    incident_id: IncidentId,
    request: Request,
    feeds: Feeds,
    _: Consistent,
    params: Annotated[IncidentParams, Query()],
) -> Response:
    """RSS 2.0: one item per public entry of the incident (its declaration, each public
    status update, and its postmortem once published), newest first; 404 for an incident
    no feed may show."""
    return await _one_incident("rss", request, feeds, incident_id, params)


@router.get("/incidents/{incident_id}/atom", response_class=Response,
            responses=_responses(ATOM_TYPE))
async def incident_atom(
    incident_id: IncidentId,
    request: Request,
    feeds: Feeds,
    _: Consistent,
    params: Annotated[IncidentParams, Query()],
) -> Response:
    """Atom 1.0: the same as the incident's RSS feed."""
    return await _one_incident("atom", request, feeds, incident_id, params)
