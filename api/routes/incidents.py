"""Commands on incidents, and one incident read back from its events."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse

from api.auth import AnyCaller, Writer
from api.consistency import Barrier, Consistent, position_headers, wait_for_read_tables
from api.deps import Commands, ExpectedVersion, IdempotencyKey, IncidentId, Log, Queries
from api.render import event_list_response, incident_response, may_see_as_of, public_document
from api.routes.queries import read_incident
from api.schemas import IncidentChange, IncidentCreate, IncidentOut, Moment, UpdateCreate
from commands.application import IncidentNotFound, NewIncident, NewUpdate, Written
from domain.incident import IncidentEvent
from projections.incident_history import IncidentRecord, fold

router = APIRouter(prefix="/api/v1/incidents", tags=["incidents"])


def _record(history: Sequence[IncidentEvent]) -> IncidentRecord:
    record = fold(history)
    assert record is not None, "an incident has at least its creation event"
    return record


def _answer(written: Written, status_code: int = 200) -> JSONResponse:
    headers = {"Location": f"/api/v1/incidents/{written.incident_id}",
               **position_headers(written.position)}
    if not written.recorded:
        headers["Idempotent-Replayed"] = "true"
    return incident_response(_record(written.history), internal=True, status_code=status_code,
                             headers=headers)


@router.post("", status_code=201, response_model=IncidentOut)
def create_incident(
    body: IncidentCreate, _: Writer, commands: Commands, key: IdempotencyKey
) -> JSONResponse:
    fields = body.model_dump(exclude={"affected_services", "affected_regions"})
    new = NewIncident(
        **fields,
        affected_services=tuple(body.affected_services),
        affected_regions=tuple(body.affected_regions),
        given=frozenset(body.model_fields_set),
    )
    return _answer(commands.create(new, request_key=key), 201)


@router.get("/{incident_id}", response_model=IncidentOut)
def get_incident(
    incident_id: IncidentId,
    caller: AnyCaller,
    commands: Commands,
    queries: Queries,
    _: Consistent,
    as_of: Annotated[Moment | None, Query(description="show it as it stood then")] = None,
) -> JSONResponse:
    """From the read tables; with `as_of`, folded from the incident's stored events.
    Whatever a caller may not see is answered exactly as an unknown id."""
    if as_of is None:
        return read_incident(incident_id, caller, queries)
    history = commands.history(incident_id)
    then = fold(history, as_of=as_of)
    if not may_see_as_of(_record(history), then, internal=caller.is_reader):
        raise IncidentNotFound(incident_id)
    assert then is not None
    return incident_response(then, internal=caller.is_reader)


@router.put("/{incident_id}", response_model=IncidentOut)
def change_incident(
    incident_id: IncidentId,
    body: IncidentChange,
    _: Writer,
    commands: Commands,
    expected: ExpectedVersion,
) -> JSONResponse:
    return _answer(commands.change_details(incident_id, body.changes(), expected))


@router.delete("/{incident_id}", status_code=204)
def delete_incident(
    incident_id: IncidentId, _: Writer, commands: Commands, expected: ExpectedVersion
) -> Response:
    written = commands.delete(incident_id, expected)
    return Response(status_code=204, headers=position_headers(written.position))


@router.post("/{incident_id}/updates", status_code=201, response_model=IncidentOut)
def add_update(
    incident_id: IncidentId,
    body: UpdateCreate,
    _: Writer,
    commands: Commands,
    expected: ExpectedVersion,
    key: IdempotencyKey,
) -> JSONResponse:
    update = NewUpdate(**body.model_dump())
    return _answer(commands.add_update(incident_id, update, expected, key), 201)


@router.get("/{incident_id}/timeline")
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
    events = log.read_all(subject=incident_id)
    if not events:
        raise IncidentNotFound(incident_id)
    documents = [e.document for e in events]
    if not caller.is_reader:
        # Visible now: as the read model has it once it reached the last event read (until
        # then it may still show as public an incident since made private).
        wait_for_read_tables(barrier, events[-1].position)
        if not queries.public_ids([incident_id], as_of=events[-1].position):
            raise IncidentNotFound(incident_id)
        documents = [d for d in map(public_document, documents) if d is not None]
    return event_list_response(documents, incident_id=incident_id)
