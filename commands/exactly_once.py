"""Exactly-once saves: a command whose commit may have landed is recognised, not repeated.

A connection can drop after COMMIT was sent and before its answer came back. The store
then retries the insert (eventsourcing does, on PostgreSQL), which collides with the rows
that did land, or it gives up with a connection error. Event ids cannot tell whose rows
those are (they are derived from incident id and version), so every command stamps its
events with a command id of its own (the `commandid` extension attribute), and after a
collision or a connection error the event at the first new version is read back: ours
means the command landed, anything else is a real race or an unknown outcome.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.application import Application
from eventsourcing.persistence import IntegrityError, InterfaceError, OperationalError
from eventsourcing.utils import get_topic

from commands.cloudevents import SYSTEM_ACTOR, command_id_of, recording_command

# Errors of the store's connection: the outcome of a save that raised one is open.
CONNECTION_ERRORS = (OperationalError, InterfaceError)
# How many store positions the first look for a landed event covers (it doubles).
_LOOK_BACK = 256
_MAX_LOOK_BACK = 16384


class StoreUnavailable(Exception):
    """The store could not be reached, and whether the command was recorded is unknown."""

    def __init__(self) -> None:
        super().__init__(
            "the event store could not be reached; the command may not have been "
            "recorded: retry it (with the same Idempotency-Key to be safe)"
        )


def save_once(app: Application[str], new_events: Sequence[Any], command_id: str,
              actor: str = SYSTEM_ACTOR) -> int:
    """Stores one command's events atomically, stamped with `command_id`; returns the
    store position of the last. Raises IntegrityError when a rival took the version,
    StoreUnavailable when the outcome cannot be known."""
    try:
        with recording_command(command_id, actor):
            recordings = app.save(*new_events)
    except IntegrityError:
        position = _landed(app, new_events, command_id)
        if position is None:
            raise
        return position
    except CONNECTION_ERRORS as error:
        position = _landed(app, new_events, command_id)
        if position is None:
            raise StoreUnavailable from error
        return position
    return max(r.notification.id for r in recordings)


def _landed(app: Application[str], new_events: Sequence[Any], command_id: str) -> int | None:
    """The position of the last of `new_events` if this command stored them (a save is
    atomic: the first tells), else None."""
    first, last = new_events[0], new_events[-1]
    try:
        found = app.recorder.select_events(
            first.originator_id, gt=first.originator_version - 1, lte=first.originator_version
        )
        if not found or command_id_of(found[0].state) != command_id:
            return None
        return _position_of(app, last)
    except CONNECTION_ERRORS as error:
        raise StoreUnavailable from error


def _position_of(app: Application[str], event: Any) -> int:
    """Where a stored event sits in the store. The recorder gives positions only in store
    order, so the search goes backwards from the head (the event landed moments ago)."""
    recorder = app.recorder
    topics = [get_topic(type(event))]
    stop = recorder.max_notification_id() or 0
    window = _LOOK_BACK
    while stop > 0:
        start = max(1, stop - window + 1)
        for notification in recorder.select_notifications(start, window, stop=stop,
                                                          topics=topics):
            if (notification.originator_id, notification.originator_version) == (
                    event.originator_id, event.originator_version):
                return notification.id
        stop, window = start - 1, min(window * 2, _MAX_LOOK_BACK)
    raise LookupError(f"{event.originator_id} v{event.originator_version} is not stored")
