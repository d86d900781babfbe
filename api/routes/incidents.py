"""Commands on incidents, one incident (also as it stood at an instant), and its events."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from api.answer_cache import Rendered, answer_for, json_body
from api.auth import AnyCaller, Writer
from api.consistency import Barrier, Consistent, position_headers, wait_for_read_tables
from api.deps import Commands, ExpectedVersion, IdempotencyKey, IncidentId, Log, Queries
from api.problems import incident_not_found
from api.render import event_list_response, incident_response
from api.routes.queries import CONDITIONAL, JSON
from api.schemas import (
    Incident,
    IncidentChange,
    IncidentCreate,
    Moment,
    PostmortemWrite,
    PublicIncident,
    Timeline,
    UpdateCreate,
)
from commands.application import IncidentCommands, IncidentNotFound, NewIncident, NewUpdate, Written
from domain.visibility import AUDITABLE, VISIBLE, Audience, event_for, shows
from projections.incident_history import fold
from projections.queries import IncidentQueries

router = APIRouter(prefix="/api/v1/incidents", tags=["incidents"])
_EITHER: dict[int | str, dict[str, Any]] = {200: {
    "description": "with a reader token an `Incident`; without one a `PublicIncident` "
                   "(public incidents only, no internal fields)"}}


def _answer(written: Written, audience: Audience, queries: IncidentQueries,
            status_code: int = 200) -> JSONResponse:
    """A command's answer: the incident after its events, as a read of it shows it."""
    record = fold(written.history)
    assert record is not None
    headers = {"Location": f"/api/v1/incidents/{written.incident_id}",
               **position_headers(written.position)}
    if not written.recorded:
        headers["Idempotent-Replayed"] = "true"
    return incident_response(queries.folded(record, audience), status_code=status_code,
                             headers=headers)


@router.post("", status_code=201, response_model=Incident)
def create_incident(
    body: IncidentCreate, caller: Writer, commands: Commands, queries: Queries,
    key: IdempotencyKey
) -> JSONResponse:
    new = NewIncident(**body.values(), given=frozenset(body.model_fields_set))
    return _answer(commands.create(new, request_key=key, actor=caller.actor), caller.audience,
                   queries, 201)


@router.get("/{incident_id}", response_model=Incident | PublicIncident,
            responses={**_EITHER, **CONDITIONAL})
async def get_incident(
    request: Request,
    incident_id: IncidentId,
    caller: AnyCaller,
    commands: Commands,
    queries: Queries,
    _: Consistent,
    as_of: Annotated[Moment | None, Query(description="show it as it stood then")] = None,
) -> Response:
    """From the read tables; with `as_of`, folded from the incident's stored events (the
    audit log): shown if the caller may read its events now (`AUDITABLE`: without a token,
    only while it is public and not deleted) and could see it as it stood then. Its ETag
    is its version: for the public, the version of its last public change, so that a
    change only readers see leaves the public's answer, ETag included, as it was."""
    if as_of is not None:
        return await to_thread.run_sync(_incident_then, incident_id, caller.audience,
                                        commands, queries, as_of)

    def render(audience: Audience) -> Rendered:
        body = queries.get_incident(incident_id, audience=audience)
        if body is None:
            raise incident_not_found(incident_id)
        return Rendered(json_body(body), JSON, etag=f'"{body["version"]}"')

    return await answer_for(request, caller.audience, ("incident", incident_id), render)


def _incident_then(incident_id: str, audience: Audience, commands: IncidentCommands,
                   queries: IncidentQueries, as_of: datetime) -> Response:
    try:
        history = commands.history(incident_id)
    except IncidentNotFound:
        history = []
    now, then = fold(history), fold(history, as_of=as_of)
    shown = (now is not None and then is not None and shows(AUDITABLE[audience], now)
             and shows(VISIBLE[audience], then))
    body = queries.folded(then, audience, as_of=as_of) if shown and then is not None else None
    if body is None:
        raise incident_not_found(incident_id)
    return incident_response(body)


@router.put("/{incident_id}", response_model=Incident)
def change_incident(
    incident_id: IncidentId,
    body: IncidentChange,
    caller: Writer,
    commands: Commands,
    queries: Queries,
    expected: ExpectedVersion,
) -> JSONResponse:
    written = commands.change_details(incident_id, body.given(), expected, actor=caller.actor)
    return _answer(written, caller.audience, queries)


@router.delete("/{incident_id}", status_code=204)
def delete_incident(
    incident_id: IncidentId, caller: Writer, commands: Commands, expected: ExpectedVersion
) -> Response:
    written = commands.delete(incident_id, expected, actor=caller.actor)
    return Response(status_code=204, headers=position_headers(written.position))


@router.post("/{incident_id}/updates", status_code=201, response_model=Incident)
def add_update(
    incident_id: IncidentId,
    body: UpdateCreate,
    caller: Writer,
    commands: Commands,
    queries: Queries,
    expected: ExpectedVersion,
    key: IdempotencyKey,
) -> JSONResponse:
    update = NewUpdate(**body.values())
    return _answer(commands.add_update(incident_id, update, expected, key, actor=caller.actor),
                   caller.audience, queries, 201)


@router.put("/{incident_id}/postmortem", response_model=Incident)
def write_postmortem(
    incident_id: IncidentId,
    body: PostmortemWrite,
    caller: Writer,
    commands: Commands,
    queries: Queries,
    expected: ExpectedVersion,
) -> JSONResponse:
    """Replaces the incident's postmortem (Markdown), once the incident is resolved or in
    post-incident review (409 before). The public sees it once `published`; the same text
    and publication again changes nothing (`Idempotent-Replayed: true`)."""
    values = body.values()
    written = commands.write_postmortem(incident_id, values["body"], values["published"],
                                        expected, actor=caller.actor)
    return _answer(written, caller.audience, queries)


@router.get("/{incident_id}/timeline", response_model=Timeline)
def incident_timeline(
    incident_id: IncidentId,
    caller: AnyCaller,
    log: Log,
    queries: Queries,
    barrier: Barrier,
    _: Consistent,
) -> Response:
    """Every stored event of the incident, oldest first; without a reader token only
    public, undeleted incidents, with internal fields removed. Whatever a caller may not
    see is answered exactly as an unknown id."""
    audience = caller.audience
    events = log.read_all(subject=incident_id)
    if not events:
        raise incident_not_found(incident_id)
    conditions = AUDITABLE[audience]
    if conditions:
        # Visible now: as the read model has it once it reached the last event read (until
        # then it may still show as public an incident since made private).
        wait_for_read_tables(barrier, events[-1].position)
        if not queries.visible_ids([incident_id], conditions, as_of=events[-1].position):
            raise incident_not_found(incident_id)
    answer = [d for d in (event_for(audience, e.document) for e in events) if d is not None]
    return event_list_response(answer, incident_id=incident_id)
