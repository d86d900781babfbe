"""Turns incidents and stored events into HTTP answers, honouring visibility."""

from __future__ import annotations

import json
from typing import Any

from fastapi.responses import JSONResponse, Response

from api.schemas import IncidentOut
from commands.cloudevents import IDEMPOTENCY_EXTENSION
from projections.incident_history import IncidentRecord

# Fields of stored events that only reader tokens may see.
INTERNAL_DATA_FIELDS = ("internal_notes", "message")


def may_see(record: IncidentRecord | None, *, internal: bool) -> bool:
    """Whether a caller may see the incident as `record` has it: a deleted incident is
    gone for everyone, a non-public one is seen with a reader token only."""
    return record is not None and not record.deleted and (internal or record.is_public)


def may_see_as_of(now: IncidentRecord, then: IncidentRecord | None, *, internal: bool
                  ) -> bool:
    """Whether a caller may see the incident as it stood `then`, given how it stands
    `now`. Without a reader token, only an incident public then and now: a past state of an
    incident since made private or deleted is not public any more."""
    return may_see(then, internal=internal) and (internal or may_see(now, internal=False))


def incident_body(record: IncidentRecord, *, internal: bool) -> dict[str, Any]:
    body = IncidentOut.of(record, internal=internal).model_dump(mode="json")
    if not internal:
        body.pop("internal_notes")
        for update in body["updates"]:
            update.pop("message")
    return body


def incident_response(
    record: IncidentRecord,
    *,
    internal: bool,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        incident_body(record, internal=internal),
        status_code=status_code,
        headers={"ETag": f'"{record.version}"', **(headers or {})},
    )


def public_document(document: bytes) -> bytes | None:
    """A stored CloudEvent without its internal fields; None if nothing public is left
    (a change of internal notes only)."""
    event = json.loads(document)
    event.pop(IDEMPOTENCY_EXTENSION, None)
    data = event.get("data") or {}
    for name in INTERNAL_DATA_FIELDS:
        data.pop(name, None)
    if set(data) <= {"incident_id"} and event["type"].endswith(".updated"):
        return None
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


def event_list_response(documents: list[bytes], **fields: Any) -> Response:
    """A JSON object whose `items` are the stored documents, byte for byte."""
    parts = [b'{"items":[', b",".join(documents), b"]"]
    for name, value in fields.items():
        parts.append(b"," + json.dumps(name).encode() + b":" + json.dumps(value).encode())
    parts.append(b"}")
    return Response(b"".join(parts), media_type="application/json")
