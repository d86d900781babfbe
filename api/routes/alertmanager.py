"""Inbound alerts: Prometheus Alertmanager's webhook receiver (writer token)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from api.alertmanager import AlertmanagerPayload, AlertReceipt
from api.auth import Writer
from api.consistency import position_headers
from commands.alert_groups import AlertGroups
from infra.bootstrap import Services

router = APIRouter(prefix="/api/v1/integrations", tags=["integrations"])


async def _services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


Built = Annotated[Services, Depends(_services)]


@router.post("/alertmanager", response_model=AlertReceipt)
def receive_alerts(body: AlertmanagerPayload, caller: Writer, services: Built) -> JSONResponse:
    """Takes Alertmanager's webhook payload (version 4). Each alert group is one incident:
    the first firing notification declares it, a change of the firing alerts adds an
    update, `resolved` resolves it, a repeat records nothing; a group firing again after
    its incident was resolved declares a new one. Malformed or not version 4: 422."""
    groups: AlertGroups = services.alert_groups
    notification = body.notification(public=services.settings.alertmanager_public)
    received = groups.receive(notification, actor=caller.actor)
    answer = AlertReceipt(outcome=received.outcome, incident_id=received.incident_id)
    return JSONResponse(answer.model_dump(mode="json"),
                        headers=position_headers(received.position))
