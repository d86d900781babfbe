"""The dashboard's Integrations page (admin tokens): a shell with the form to add one, and a
fragment listing each integration with its delivery state, last attempts and controls."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from api.auth import Reader
from api.pages.templating import render
from api.routes.integrations import Integrations
from domain.incident import EVENT_TYPE_PREFIX, EVENT_TYPES
from infra.integrations.config import Integration

router = APIRouter(include_in_schema=False)
KINDS = (("webhook", "Webhook (signed CloudEvents)"), ("slack", "Slack"),
         ("pagerduty", "PagerDuty"), ("email", "Email"))
KIND_NAMES = {"webhook": "Webhook", "slack": "Slack", "pagerduty": "PagerDuty",
              "email": "Email"}
LAST_DELIVERIES = 5


def delivery_state(integration: Integration) -> str:
    if integration.state.disabled_reason is not None:
        return "disabled"
    if not integration.enabled:
        return "paused"
    if integration.state.failing_since is not None:
        return "failing"
    return "delivering"


def destination(integration: Integration) -> str:
    """Where it sends, without paths or credentials (a Slack URL is a secret)."""
    if integration.kind == "email":
        return ", ".join(integration.to)
    parts = urlsplit(integration.url or "")
    return f"{parts.scheme}://{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")


def receives(integration: Integration) -> str:
    filters = integration.filters
    types = ", ".join(t.removeprefix(EVENT_TYPE_PREFIX) for t in filters.event_types) or "all"
    said = [f"{types} events", f"severity {filters.min_severity.value} and up"]
    if filters.services:
        said.append("services " + ", ".join(filters.services))
    said.append("internal view" if filters.include_internal else "public view")
    return "; ".join(said)


@router.get("/dashboard/integrations", response_class=HTMLResponse)
def integrations_page() -> HTMLResponse:
    types = [t.removeprefix(EVENT_TYPE_PREFIX) for t in EVENT_TYPES]
    return render("dashboard/integrations.html", kinds=KINDS, event_types=types)


@router.get("/dashboard/fragments/integrations", response_class=HTMLResponse)
def integrations_fragment(caller: Reader, admin: Integrations) -> HTMLResponse:
    if not caller.at_least("admin"):
        return HTMLResponse("<p class=\"muted\">Integrations need an admin token.</p>")
    rows: list[dict[str, Any]] = []
    for integration in admin.all():
        attempts, _ = admin.deliveries(integration.id, None, LAST_DELIVERIES)
        rows.append({
            "integration": admin.describe(integration), "state": delivery_state(integration),
            "destination": destination(integration), "receives": receives(integration),
            "deliveries": [{**a.as_dict(), "at": a.at.isoformat()} for a in attempts],
        })
    return render("dashboard/integrations_table.html", rows=rows, kind_names=KIND_NAMES)
