"""Integrations: destinations that receive incident events (admin token)."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse

from api.auth import Admin
from api.integration_schemas import (
    AttemptList,
    IntegrationChange,
    IntegrationCreate,
    IntegrationCreated,
    IntegrationList,
    IntegrationOut,
    Replay,
    ReplayAccepted,
)
from api.problems import Problem
from infra.integrations.admin import IntegrationAdmin

router = APIRouter(prefix="/api/v1/integrations", tags=["integrations"])
_CURSOR = re.compile(r"^v1:([0-9]{1,18})$")


async def _admin(request: Request) -> IntegrationAdmin:
    found: IntegrationAdmin = request.app.state.services.integrations
    return found


Integrations = Annotated[IntegrationAdmin, Depends(_admin)]


def _created(admin: IntegrationAdmin, integration_id: str, status_code: int,
             headers: dict[str, str] | None = None) -> JSONResponse:
    integration = admin.get(integration_id)
    body = admin.describe(integration)
    if integration.secret is not None:
        body["secret"] = integration.secret
    return JSONResponse(body, status_code=status_code, headers=headers)


def _cursor(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        found = _CURSOR.match(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode())
    except (ValueError, binascii.Error, UnicodeDecodeError):
        found = None
    if found is None:
        raise Problem(400, f"not a cursor from this list: {text!r}")
    return int(found.group(1))


def _encode(before: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{before}".encode()).decode().rstrip("=")


@router.post("", status_code=201, response_model=IntegrationCreated)
def create_integration(body: IntegrationCreate, _: Admin, admin: Integrations) -> JSONResponse:
    """Adds an integration; it receives the matching events stored from now on. A
    webhook's answer carries its signing `secret`, shown again only by rotate-secret."""
    integration = admin.create(body.model_dump(exclude_unset=False))
    return _created(admin, integration.id, 201,
                    {"Location": f"/api/v1/integrations/{integration.id}"})


@router.get("", response_model=IntegrationList)
def list_integrations(_: Admin, admin: Integrations) -> JSONResponse:
    return JSONResponse({"items": [admin.describe(i) for i in admin.all()]})


@router.get("/{integration_id}", response_model=IntegrationOut)
def get_integration(integration_id: str, _: Admin, admin: Integrations) -> JSONResponse:
    """One integration with how its delivery stands (`position`, `lag`, ...)."""
    return JSONResponse(admin.describe(admin.get(integration_id)))


@router.patch("/{integration_id}", response_model=IntegrationOut)
def change_integration(integration_id: str, body: IntegrationChange, _: Admin,
                       admin: Integrations) -> JSONResponse:
    """Changes the settings sent. `{"enabled": false}` pauses delivery;
    `{"enabled": true}` resumes it where it stopped."""
    return JSONResponse(admin.describe(admin.change(integration_id, body.changes())))


@router.delete("/{integration_id}", status_code=204)
def delete_integration(integration_id: str, _: Admin, admin: Integrations) -> Response:
    admin.remove(integration_id)
    return Response(status_code=204)


@router.post("/{integration_id}/rotate-secret", response_model=IntegrationCreated)
def rotate_secret(integration_id: str, _: Admin, admin: Integrations) -> JSONResponse:
    """A new signing secret for a webhook; what is sent from now on is signed with it."""
    admin.rotate_secret(integration_id)
    return _created(admin, integration_id, 200)


@router.get("/{integration_id}/deliveries", response_model=AttemptList)
def list_deliveries(
    integration_id: str,
    _: Admin,
    admin: Integrations,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    """Delivery attempts, newest first; pass `next_cursor` as `cursor` for more."""
    items, more = admin.deliveries(integration_id, _cursor(cursor), limit)
    return {"items": [{**a.as_dict(), "at": a.at.isoformat().replace("+00:00", "Z")}
                      for a in items],
            "next_cursor": None if more is None else _encode(more)}


@router.post("/{integration_id}/replay", status_code=202, response_model=ReplayAccepted)
def replay(integration_id: str, body: Replay, _: Admin, admin: Integrations) -> dict[str, Any]:
    """Delivers again every matching event stored after position `after`, in order."""
    head = admin.replay(integration_id, body.after)
    return {"id": integration_id, "after": body.after, "head": head}


@router.post("/{integration_id}/test")
def send_test(integration_id: str, _: Admin, admin: Integrations) -> dict[str, Any]:
    """Sends a test message now; the answer is the attempt (also listed in deliveries)."""
    attempt = admin.test(integration_id)
    return {**attempt.as_dict(), "at": attempt.at.isoformat().replace("+00:00", "Z")}
