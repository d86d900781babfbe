"""Inbound alerts: Prometheus Alertmanager's webhook receiver (writer token)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.alertmanager import AlertmanagerPayload, AlertReceipt
from api.auth import Writer
from api.consistency import position_headers
from commands.alert_groups import AlertGroups

router = APIRouter(prefix="/api/v1/integrations", tags=["integrations"])


@router.post("/alertmanager", response_model=AlertReceipt)
def receive_alerts(body: AlertmanagerPayload, caller: Writer, request: Request) -> JSONResponse:
    """Takes Alertmanager's webhook payload (version 4). Each alert group is one incident:
    the first firing notification declares it, a change of the firing alerts adds an
    update, `resolved` resolves it, a repeat records nothing; a group firing again after
    its incident was resolved declares a new one."""
    services = request.app.state.services
    groups: AlertGroups = services.alert_groups
    received = groups.receive(body.notification(public=services.settings.alertmanager_public),
                              actor=caller.actor)
    answer = AlertReceipt(outcome=received.outcome, incident_id=received.incident_id)
    return JSONResponse(answer.model_dump(mode="json"),
                        headers=position_headers(received.position))
