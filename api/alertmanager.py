"""Alertmanager's webhook payload (version 4), and what a notification means for its group.

The format is Alertmanager's `webhook_config` payload as documented at
https://prometheus.io/docs/alerting/latest/configuration/#webhook_config. Labels and
annotations are whatever the alerting rules put there: they are bounded here, and cut to
an incident's limits when they become its fields.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    StringConstraints,
    model_validator,
)

from api.schemas import Moment, Storable
from commands.alert_groups import AlertNotification, Outcome
from commands.application import NewIncident
from domain.fields import INCIDENT, TEXT
from domain.values import IncidentType, Severity

_MAX_LABELS = 256
_MAX_ALERTS = 1000

Name = Annotated[StrictStr, StringConstraints(min_length=1, max_length=1024), Storable]
LabelValue = Annotated[StrictStr, StringConstraints(max_length=4096), Storable]
AnnotationValue = Annotated[StrictStr, StringConstraints(max_length=65_536), Storable]
Labels = Annotated[dict[Name, LabelValue], Field(max_length=_MAX_LABELS)]
Annotations = Annotated[dict[Name, AnnotationValue], Field(max_length=_MAX_LABELS)]
Text = Annotated[StrictStr, StringConstraints(max_length=8192), Storable]
AlertStatus = Literal["firing", "resolved"]

# The `severity` label's value -> the incident's severity; anything else is medium.
SEVERITIES: dict[str, Severity] = {
    "critical": Severity.CRITICAL, "high": Severity.HIGH, "error": Severity.HIGH,
    "warning": Severity.MEDIUM, "low": Severity.LOW, "info": Severity.LOW,
}
_RANK = list(Severity)  # most severe first


class _Part(BaseModel):
    # Alertmanager (and look-alikes such as Grafana) may add fields; those are ignored.
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Alert(_Part):
    status: AlertStatus
    labels: Labels
    annotations: Annotations
    starts_at: Moment = Field(alias="startsAt")
    ends_at: Moment = Field(alias="endsAt")
    generator_url: Text = Field("", alias="generatorURL")
    fingerprint: Annotated[StrictStr, StringConstraints(min_length=1, max_length=128),
                           Storable]


class AlertmanagerPayload(_Part):
    """The body Alertmanager's webhook receiver sends."""

    version: Literal["4"]
    group_key: Annotated[StrictStr, StringConstraints(min_length=1, max_length=8192),
                         Storable] = Field(alias="groupKey")
    truncated_alerts: Annotated[StrictInt, Field(ge=0)] = Field(0, alias="truncatedAlerts")
    status: AlertStatus
    receiver: Text
    group_labels: Labels = Field(alias="groupLabels")
    common_labels: Labels = Field(alias="commonLabels")
    common_annotations: Annotations = Field(alias="commonAnnotations")
    external_url: Text = Field(alias="externalURL")
    alerts: Annotated[list[Alert], Field(min_length=1, max_length=_MAX_ALERTS)]

    @model_validator(mode="after")
    def _status_agrees(self) -> Self:
        firing = any(alert.status == "firing" for alert in self.alerts)
        if firing != (self.status == "firing"):
            raise ValueError("status must be 'firing' exactly when an alert is firing")
        return self

    def notification(self, *, public: bool) -> AlertNotification:
        """What this notification says about its group."""
        firing = [alert for alert in self.alerts if alert.status == "firing"]
        incident = NewIncident(
            title=_cut(self._title(firing), INCIDENT["title"].max_length),
            description=_cut(self.common_annotations.get("description", "").strip(), TEXT),
            severity=_severity(firing),
            incident_type=IncidentType.OUTAGE,
            affected_services=_names(a.labels.get("service") or a.labels.get("job")
                                     for a in firing),
            affected_regions=_names(a.labels.get("region") for a in firing),
            internal_notes=_cut(f"Declared by Alertmanager ({self.external_url}, receiver "
                                f"{self.receiver}) for the alert group {self.group_key}", TEXT),
            is_public=public,
        )
        if firing:
            count = f"{len(firing)} alert{'s' if len(firing) != 1 else ''} firing"
            message = _cut(f"{count}:\n" + "\n".join(_line(a) for a in firing), TEXT)
            public_message = f"Our monitoring reports a change: {count}."
        else:
            message = "Alertmanager: every alert of the group is resolved."
            public_message = "Resolved: our monitoring reports every alert cleared."
        return AlertNotification(
            group_key=self.group_key, firing=frozenset(a.fingerprint for a in firing),
            incident=incident, message=message, public_message=public_message)

    def _title(self, firing: list[Alert]) -> str:
        candidates = [self.common_annotations.get("summary"),
                      self.common_labels.get("alertname"), self.group_labels.get("alertname"),
                      *(a.labels.get("alertname") for a in firing)]
        return next((c.strip() for c in candidates if c and c.strip()), "Alertmanager alert")


class AlertReceipt(BaseModel):
    """What a notification did to its group's incident."""

    outcome: Outcome = Field(description="`declared` a new incident, `updated` it (the "
                             "firing alerts changed), `resolved` it, or `unchanged` (a "
                             "repeat, or nothing open to resolve)")
    incident_id: str | None = Field(description="the group's incident, if it has one")


def _severity(firing: list[Alert]) -> Severity:
    found = [SEVERITIES.get(a.labels.get("severity", "").strip().lower(), Severity.MEDIUM)
             for a in firing]
    return min(found, key=_RANK.index, default=Severity.MEDIUM)


def _names(values: Iterable[str | None]) -> tuple[str, ...]:
    """Distinct non-empty names, in order, each cut to an incident's limits."""
    field = INCIDENT["affected_services"]
    assert field.max_length is not None
    assert field.max_items is not None
    found: list[str] = []
    for value in values:
        name = _cut(value.strip(), field.max_length) if value else ""
        if name and name not in found and len(found) < field.max_items:
            found.append(name)
    return tuple(found)


def _line(alert: Alert) -> str:
    name = alert.labels.get("alertname", "alert")
    labels = ", ".join(f'{k}="{v}"' for k, v in sorted(alert.labels.items())
                       if k != "alertname")
    summary = alert.annotations.get("summary", "").strip()
    return f"- {name}{{{labels}}}" + (f": {summary}" if summary else "")


def _cut(text: str, limit: int | None) -> str:
    """`text` within `limit` characters (an ellipsis marks a cut)."""
    if limit is None or len(text) <= limit:
        return text
    return text[: limit - 1].rstrip() + "…"
