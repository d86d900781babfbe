"""Alert groups (Prometheus Alertmanager's `groupKey`) as incidents.

A group is a series of incidents, one open at a time: the n-th has an id derived from the
group key and n, so every process finds the group's current incident in the event store
(nothing is kept in memory, nothing is lost on restart). Which alerts an incident last
recorded as firing travels in its events' request keys (a digest of the alerts'
fingerprints): a notification that changes nothing is recognised and records nothing, and
two deliveries of one notification racing each other decide on the same key, so the
command path records one of them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from uuid import NAMESPACE_URL, uuid5

from commands.application import (
    IdempotencyKeyReused,
    IncidentCommands,
    NewIncident,
    NewUpdate,
    state_of,
)
from commands.cloudevents import SYSTEM_ACTOR
from domain.incident import Incident, IncidentEvent
from domain.values import Status, UpdateType

KEY_PREFIX = "alertmanager:"
AUTHOR = "Alertmanager"


@dataclass(frozen=True)
class AlertNotification:
    """One notification of a group: which alerts fire now (their fingerprints; none when
    the group is resolved), the incident to declare if the group has no open one, and
    what an update says about the change."""

    group_key: str
    firing: frozenset[str]
    incident: NewIncident
    message: str  # for the team
    public_message: str


class Outcome(StrEnum):
    DECLARED = "declared"
    UPDATED = "updated"
    RESOLVED = "resolved"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class Received:
    outcome: Outcome
    incident_id: str | None  # the group's incident, if it has one
    position: int | None  # where what was recorded landed in the store


def group_incident_id(group_key: str, generation: int) -> str:
    """The id of a group's `generation`-th incident (1 for the first)."""
    return "incident-" + uuid5(NAMESPACE_URL, f"/alertmanager/{group_key}/{generation}").hex


def firing_digest(fingerprints: frozenset[str]) -> str:
    return hashlib.sha256("\n".join(sorted(fingerprints)).encode()).hexdigest()[:32]


def recorded_digest(history: Sequence[IncidentEvent]) -> str | None:
    """The digest of the firing alerts the incident last recorded (None: never)."""
    found = None
    for event in history:
        key = getattr(event, "request_key", None)
        if isinstance(key, str) and key.startswith(KEY_PREFIX):
            found = key[len(KEY_PREFIX):].split(":", 1)[0]
    return found


class AlertGroups:
    """Turns Alertmanager's notifications into incident commands."""

    def __init__(self, commands: IncidentCommands) -> None:
        self.commands = commands

    def receive(self, notification: AlertNotification, *, actor: str = SYSTEM_ACTOR
                ) -> Received:
        generation, history = self._current(notification.group_key)
        open_history = None if history is None or _closed(history) else history
        digest = firing_digest(notification.firing)
        if open_history is None:
            if not notification.firing:  # resolved, and nothing open to resolve
                return Received(Outcome.UNCHANGED, _id_of(history), None)
            incident_id = group_incident_id(notification.group_key, generation + 1)
            written = self.commands.create(
                notification.incident, KEY_PREFIX + digest, actor=actor,
                incident_id=incident_id)
            if written.recorded:
                return Received(Outcome.DECLARED, incident_id, written.position)
            open_history = self.commands.history(incident_id)  # a twin declared it first
        incident_id = open_history[0].originator_id
        if recorded_digest(open_history) == digest:
            return Received(Outcome.UNCHANGED, incident_id, None)
        resolves = not notification.firing
        update = NewUpdate(
            status=Status.RESOLVED if resolves else None,
            update_type=UpdateType.RESOLUTION if resolves else UpdateType.STATUS_UPDATE,
            message=notification.message, public_message=notification.public_message,
            author=AUTHOR)
        number = state_of(open_history).update_count + 1
        try:
            written = self.commands.add_update(
                incident_id, update, request_key=f"{KEY_PREFIX}{digest}:{number}",
                actor=actor)
        except IdempotencyKeyReused:  # a twin recorded this change, in other words
            return Received(Outcome.UNCHANGED, incident_id, None)
        if not written.recorded:
            return Received(Outcome.UNCHANGED, incident_id, None)
        outcome = Outcome.RESOLVED if resolves else Outcome.UPDATED
        return Received(outcome, incident_id, written.position)

    def _current(self, group_key: str) -> tuple[int, list[IncidentEvent] | None]:
        """The group's latest incident: its generation (0: none yet) and its events.
        Generations exist from 1 up without gaps, so a galloping search finds the last
        in a few look-ups however often the group fired."""
        def exists(generation: int) -> bool:
            return self.commands.exists(group_incident_id(group_key, generation))

        if not exists(1):
            return 0, None
        low, high = 1, 2
        while exists(high):
            low, high = high, high * 2
        while high - low > 1:
            middle = (low + high) // 2
            if exists(middle):
                low = middle
            else:
                high = middle
        return low, self.commands.history(group_incident_id(group_key, low))


def _closed(history: Sequence[IncidentEvent]) -> bool:
    """Resolved, in post-incident review, or deleted: the next firing declares anew."""
    incident: Incident = state_of(history)
    return incident.deleted or not incident.status.is_active


def _id_of(history: Sequence[IncidentEvent] | None) -> str | None:
    return None if history is None else history[0].originator_id
