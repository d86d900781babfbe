"""Domain errors: a command refused by the incident's rules. They say nothing of HTTP."""

from __future__ import annotations

from domain.values import Status


class IncidentRuleError(Exception):
    """A command that the incident's current state does not allow."""


class TransitionRefused(IncidentRuleError):
    def __init__(self, current: Status, requested: Status) -> None:
        super().__init__(f"an incident that is {current.value} cannot move to {requested.value}")
        self.current = current
        self.requested = requested


class InitialStatusRefused(IncidentRuleError):
    def __init__(self, requested: Status) -> None:
        super().__init__(
            f"a new incident must start in an active state, not {requested.value}"
        )
        self.requested = requested


class IncidentDeleted(IncidentRuleError):
    def __init__(self, incident_id: str) -> None:
        super().__init__(f"incident {incident_id} is deleted and takes no more commands")
        self.incident_id = incident_id


class UpdateLimitReached(IncidentRuleError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"an incident holds at most {limit} status updates")
        self.limit = limit


class PostmortemTooEarly(IncidentRuleError):
    def __init__(self, current: Status) -> None:
        super().__init__(f"an incident that is {current.value} takes no postmortem: only "
                         "a resolved one or one in post-incident review does")
        self.current = current


class WindowRefused(IncidentRuleError):
    """A maintenance window that cannot be: on an incident that is not maintenance, with an
    end not after its start, or moved once the maintenance started."""

    def __init__(self, reason: str, field: str = "scheduled_start") -> None:
        super().__init__(reason)
        self.field = field
