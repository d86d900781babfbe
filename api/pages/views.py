"""What the pages show that is not a stored value: the overall state, a service's state, the
choices of the dashboard's forms."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from domain.values import ACTIVE_STATUSES, IncidentType, Severity, Status, UpdateType, may_move
from projections.service_queries import UNDER_MAINTENANCE, Day

ACTIVE = tuple(s.value for s in Status if s in ACTIVE_STATUSES)
CLOSED = (Status.RESOLVED.value, Status.POST_INCIDENT.value)
SCHEDULED = (Status.SCHEDULED.value,)
_MAJOR = (Severity.CRITICAL.value, Severity.HIGH.value)
_LIMITS = (10, 20, 50, 100)


# The overall state, from the public summary: an active critical or high incident is a major
# outage; any other active incident a degradation. A maintenance is planned, not an outage:
# with nothing else active, a maintenance in progress puts the page under maintenance (as
# Statuspage's components say `under_maintenance` and its indicator `none`).
def overall_state(summary: Mapping[str, Any]) -> tuple[str, str]:
    """(css class, sentence) for the banner of the status page."""
    active_by_severity: Mapping[str, int] = summary["active_by_severity"]
    if any(active_by_severity.get(s, 0) for s in _MAJOR):
        return "major", "Major outage"
    if any(active_by_severity.values()):
        return "degraded", "Some systems are degraded"
    if summary["maintenance"]["in_progress"]:
        return "maintenance", "Service under maintenance"
    return "operational", "All systems operational"


def in_window(incident: Mapping[str, Any]) -> bool:
    """Whether an active incident is a maintenance within its window (in progress)."""
    return incident["incident_type"] == IncidentType.MAINTENANCE.value \
        and incident.get("scheduled_start") is not None


HISTORY_PAGE = 20


def by_month(items: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Incidents (newest first, each with its `month`) as (month, incidents) runs."""
    months: list[tuple[str, list[dict[str, Any]]]] = []
    for item in items:
        if not months or months[-1][0] != item["month"]:
            months.append((item["month"], []))
        months[-1][1].append(item)
    return months


def day_words(day: Day) -> str:
    """What a day of a service's bar says: its worst severity, or that it was quiet."""
    if day.worst_severity is not None:
        return f"{day.worst_severity.capitalize()} severity, {day.minutes_affected} " \
               f"minute{'' if day.minutes_affected == 1 else 's'} affected"
    return "Maintenance" if day.incidents else "No incidents"


def bar_state(state: str) -> tuple[str, str]:
    """(css class, words) for a service's state (`/api/v1/services`)."""
    words = state.replace("_", " ").capitalize()
    if state == "operational":
        return "operational", words
    if state == "major_outage":
        return "major", words
    if state == UNDER_MAINTENANCE:
        return "maintenance", words
    return "degraded", words


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
