"""What the pages show that is not a stored value: the overall state, a service's state, the
choices of the dashboard's forms."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from domain.values import ACTIVE_STATUSES, IncidentType, Severity, Status, UpdateType, may_move

ACTIVE = tuple(s.value for s in Status if s in ACTIVE_STATUSES)
CLOSED = (Status.RESOLVED.value, Status.POST_INCIDENT.value)
_MAJOR = (Severity.CRITICAL.value, Severity.HIGH.value)
_LIMITS = (10, 20, 50, 100)


# The overall state, from the public summary: an active critical or high incident is a major
# outage; any other active incident (maintenance included) is a degradation.
def overall_state(summary: Mapping[str, Any]) -> tuple[str, str]:
    """(css class, sentence) for the banner of the status page."""
    active_by_severity: Mapping[str, int] = summary["active_by_severity"]
    if any(active_by_severity.get(s, 0) for s in _MAJOR):
        return "major", "Major outage"
    if summary["active"]:
        return "degraded", "Some systems are degraded"
    return "operational", "All systems operational"


def service_state(state: str) -> tuple[str, str]:
    """(css class, words) for a service's `state` in the summary."""
    if state == "operational":
        return "operational", "Operational"
    if state in _MAJOR:
        return "major", "Major outage"
    return "degraded", "Degraded"


def next_statuses(current: str) -> list[str]:
    """The statuses an update may move an incident in `current` to."""
    return [s.value for s in Status if s.value != current and may_move(Status(current), s)]


@dataclass(frozen=True)
class Choices:
    """The values the dashboard's forms offer."""

    active: tuple[str, ...] = ACTIVE
    status: tuple[str, ...] = tuple(s.value for s in Status)
    severity: tuple[str, ...] = tuple(s.value for s in Severity)
    incident_type: tuple[str, ...] = tuple(t.value for t in IncidentType)
    update_type: tuple[str, ...] = tuple(u.value for u in UpdateType)

    @staticmethod
    def limits(limit: int) -> list[int]:
        """Page sizes for the filter form, the one asked for included."""
        return sorted({*_LIMITS, limit})


CHOICES = Choices()
