"""Value types of an incident: its lifecycle states and its classifications."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    SCHEDULED = "scheduled"  # maintenance declared before its window: only those
    INVESTIGATING = "investigating"
    IDENTIFIED = "identified"
    MONITORING = "monitoring"
    RESOLVED = "resolved"
    POST_INCIDENT = "post_incident"

    @property
    def is_active(self) -> bool:
        return self in ACTIVE_STATUSES


ACTIVE_STATUSES = frozenset({Status.INVESTIGATING, Status.IDENTIFIED, Status.MONITORING})


class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    MINOR = "minor"


class IncidentType(StrEnum):
    OUTAGE = "outage"
    DEGRADED_PERFORMANCE = "degraded_performance"
    MAINTENANCE = "maintenance"
    SECURITY = "security"
    FEATURE_DISABLED = "feature_disabled"
    OTHER = "other"


class UpdateType(StrEnum):
    STATUS_UPDATE = "status_update"
    INVESTIGATION = "investigation"
    IDENTIFIED = "identified"
    MONITORING = "monitoring"
    RESOLUTION = "resolution"
    POST_INCIDENT = "post_incident"
    MAINTENANCE = "maintenance"
    OTHER = "other"


def may_move(current: Status, requested: Status) -> bool:
    """The lifecycle: active states move freely among themselves, any active state may
    resolve, a resolved incident may go to post-incident review or be reopened, and
    post-incident is final. Scheduled maintenance starts (any active state) or is
    cancelled (resolved); nothing moves back to scheduled. Staying in the same state is
    not a move."""
    if current is requested:
        return True
    if requested is Status.SCHEDULED:
        return False
    if current is Status.SCHEDULED:
        return requested.is_active or requested is Status.RESOLVED
    if current.is_active:
        return requested.is_active or requested is Status.RESOLVED
    if current is Status.RESOLVED:
        return requested.is_active or requested is Status.POST_INCIDENT
    return False


def resolves(current: Status, requested: Status) -> bool:
    """A move from an active state to resolved (or a scheduled maintenance cancelled)."""
    return (current.is_active or current is Status.SCHEDULED) and requested is Status.RESOLVED


def closes(current: Status, requested: Status) -> bool:
    """A move that closes the incident: resolving it, or moving it from resolved to
    post-incident review."""
    return resolves(current, requested) or (current is Status.RESOLVED
                                            and requested is Status.POST_INCIDENT)


def reopens(current: Status, requested: Status) -> bool:
    """A move from resolved back to an active state (a scheduled maintenance that starts
    is not reopened)."""
    return requested.is_active and current is Status.RESOLVED
