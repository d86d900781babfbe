"""Answers of the public status reads: the services' day bars (`/api/v1/services`) and the
Statuspage-compatible JSON (`/api/v2/*.json`), documented as they are sent.

The `/api/v2` models follow Atlassian Statuspage's public status API v2 (the `/api` page of
every Statuspage, e.g. https://confluence.status.atlassian.com/api): the same field names,
nesting and value sets, so tools written for it read ours. Its answers carry more fields
than its examples show; those tools ignore what they do not know, so these models allow
no field but the ones we send.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from domain.values import Severity


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServiceDay(_Answer):
    date: str = Field(description="the UTC day, YYYY-MM-DD", pattern=r"^\d{4}-\d{2}-\d{2}$")
    worst_severity: Severity | None = Field(
        description="the worst severity of an unplanned incident active that day; null if "
                    "none was")
    minutes_affected: int = Field(
        ge=0, le=1440, description="minutes of the day during which an unplanned incident "
                                   "was active (overlaps counted once; a part of a minute "
                                   "counts as one)")
    incidents: list[str] = Field(description="ids of the incidents active that day, "
                                             "maintenance included")


ServiceStatus = Literal["operational", "degraded_performance", "partial_outage",
                        "major_outage", "under_maintenance"]


class ServiceBars(_Answer):
    name: str
    state: ServiceStatus = Field(
        description="from the worst severity of its active unplanned incidents: critical "
                    "and high major_outage, medium partial_outage, low and minor "
                    "degraded_performance; under_maintenance while only a maintenance is "
                    "active")
    uptime_ratio: float = Field(ge=0, le=1, description="1 - time affected / time of the "
                                                        "window")
    days: list[ServiceDay] = Field(description="oldest first, the last one today")


class ServiceList(_Answer):
    """Each service named by an incident the caller sees (public ones without a token)."""

    items: list[ServiceBars]


# --- Statuspage public status API v2 ---------------------------------------------------

Indicator = Literal["none", "minor", "major", "critical"]
Impact = Literal["none", "minor", "major", "critical", "maintenance"]
IncidentStatus = Literal["investigating", "identified", "monitoring", "resolved",
                         "postmortem"]
MaintenanceStatus = Literal["scheduled", "in_progress", "verifying", "completed"]


class PageInfo(_Answer):
    id: str
    name: str
    url: str
    time_zone: str
    updated_at: AwareDatetime


class PageStatus(_Answer):
    indicator: Indicator
    description: str


class Component(_Answer):
    id: str
    name: str
    status: ServiceStatus
    created_at: AwareDatetime
    updated_at: AwareDatetime
    position: int
    description: str | None
    showcase: bool
    start_date: str | None
    group_id: str | None
    page_id: str
    group: bool
    only_show_if_degraded: bool


class AffectedComponent(_Answer):
    code: str
    name: str
    old_status: ServiceStatus
    new_status: ServiceStatus


class IncidentUpdate(_Answer):
    id: str
    status: IncidentStatus | MaintenanceStatus
    body: str
    incident_id: str
    created_at: AwareDatetime
    updated_at: AwareDatetime
    display_at: AwareDatetime
    affected_components: list[AffectedComponent] | None
    deliver_notifications: bool
    custom_tweet: str | None
    tweet_id: str | None


class _IncidentBase(_Answer):
    id: str
    name: str
    impact: Impact
    created_at: AwareDatetime
    updated_at: AwareDatetime
    monitoring_at: AwareDatetime | None
    resolved_at: AwareDatetime | None
    started_at: AwareDatetime
    shortlink: str
    page_id: str
    incident_updates: list[IncidentUpdate] = Field(description="newest first")
    components: list[Component]


class V2Incident(_IncidentBase):
    status: IncidentStatus


class V2Maintenance(_IncidentBase):
    status: MaintenanceStatus
    scheduled_for: AwareDatetime
    scheduled_until: AwareDatetime


class V2Status(_Answer):
    page: PageInfo
    status: PageStatus


class V2Components(_Answer):
    page: PageInfo
    components: list[Component]


class V2Incidents(_Answer):
    page: PageInfo
    incidents: list[V2Incident]


class V2Maintenances(_Answer):
    page: PageInfo
    scheduled_maintenances: list[V2Maintenance]


class V2Summary(_Answer):
    page: PageInfo
    status: PageStatus
    components: list[Component]
    incidents: list[V2Incident]
    scheduled_maintenances: list[V2Maintenance]
