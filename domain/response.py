"""Response targets and update reminders: how soon the team must answer an incident, and
how often it must tell the public.

The response is the first status update after the declaration posted by someone (the
service's own updates at its deadlines, `infra/timers.py`, are not a response); it is due
the target for the incident's severity after the declaration. A maintenance has no
response target: it is planned, not answered. An active incident is overdue for an update
when the public has heard nothing (a status update with a public message, or the
declaration) for the reminder interval. Pure: the moment to judge at comes from the caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType

from domain.values import IncidentType, Severity, Status

# From the product description: critical first, minor last.
DEFAULT_TARGETS: Mapping[Severity, timedelta] = MappingProxyType({
    Severity.CRITICAL: timedelta(minutes=15),
    Severity.HIGH: timedelta(hours=1),
    Severity.MEDIUM: timedelta(hours=4),
    Severity.LOW: timedelta(hours=24),
    Severity.MINOR: timedelta(hours=48),
})
DEFAULT_REMINDER = timedelta(minutes=30)
# The request keys of the service's own status updates start with this (clients' are
# refused): the mark, in the event itself, of an update whose actor is `system`.
SYSTEM_KEY_PREFIX = "system:"


def is_response(request_key: str | None) -> bool:
    """Whether a status update with this request key can be the response: one posted by
    someone, not by the service itself."""
    return not (request_key or "").startswith(SYSTEM_KEY_PREFIX)


def has_target(incident_type: IncidentType | str) -> bool:
    """Whether incidents of this type have a response target (a maintenance has none)."""
    return IncidentType(incident_type) is not IncidentType.MAINTENANCE


@dataclass(frozen=True)
class ResponseFacts:
    due_at: datetime | None  # None: no target (a maintenance)
    breached: bool
    update_overdue: bool


@dataclass(frozen=True)
class ResponsePolicy:
    """The target per severity (those not given keep the defaults) and the reminder."""

    targets: Mapping[Severity, timedelta] = field(default_factory=lambda: DEFAULT_TARGETS)
    reminder: timedelta = DEFAULT_REMINDER

    def target(self, severity: Severity | str) -> timedelta:
        severity = Severity(severity)
        return self.targets.get(severity, DEFAULT_TARGETS[severity])

    def due_at(self, declared_at: datetime, severity: Severity | str) -> datetime:
        return declared_at + self.target(severity)

    def met(self, declared_at: datetime, severity: Severity | str,
            acknowledged_at: datetime | None, now: datetime) -> bool | None:
        """Whether the response came in time; None while it may still come in time."""
        due = self.due_at(declared_at, severity)
        if acknowledged_at is not None:
            return acknowledged_at <= due
        return None if now <= due else False

    def facts(self, *, declared_at: datetime, severity: Severity | str, status: Status | str,
              incident_type: IncidentType | str, acknowledged_at: datetime | None,
              public_update_at: datetime, now: datetime) -> ResponseFacts:
        """The response's due time, whether it is breached, and whether an update is
        overdue, as they stand at `now`."""
        targeted = has_target(incident_type)
        return ResponseFacts(
            due_at=self.due_at(declared_at, severity) if targeted else None,
            # A scheduled maintenance waits for its window, not for a response.
            breached=targeted and Status(status) is not Status.SCHEDULED
            and self.met(declared_at, severity, acknowledged_at, now) is False,
            update_overdue=Status(status).is_active and now - public_update_at > self.reminder,
        )

    def steady_until(self, *, declared_at: datetime, severity: Severity | str,
                     status: Status | str, incident_type: IncidentType | str,
                     acknowledged_at: datetime | None, public_update_at: datetime,
                     now: datetime) -> datetime | None:
        """The last moment up to which `facts` judge as they do at `now`, the incident
        unchanged (None: for good): an answer showing them holds until then."""
        moments = []
        # Breached once past due, while no response came (and none is waited for).
        if has_target(incident_type) and Status(status) is not Status.SCHEDULED and (
                acknowledged_at is None):
            due = self.due_at(declared_at, severity)
            if now <= due:
                moments.append(due)
        # Overdue once the public heard nothing for longer than the reminder.
        if Status(status).is_active and now - public_update_at <= self.reminder:
            moments.append(public_update_at + self.reminder)
        return min(moments, default=None)
