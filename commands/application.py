"""The write application: one short method per command (load, decide, save).

Concurrency: a save that loses a race on the incident's version raises IntegrityError.
With an expected version (If-Match) that is final (VersionMismatch); without one the
command is decided again on the fresh state after a jittered back-off, so concurrent
updates all land.

Idempotency lives in the event store itself, so it survives restarts and races: a create
with a key gets an incident id derived from the key (two racing creates collide on it),
and a status update records its key, which the aggregate remembers.

Each command saves once (commands/exactly_once.py): a save whose commit landed although its
answer was lost is recognised by the command's id, not taken for a lost race.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from uuid import NAMESPACE_URL, uuid4, uuid5

from eventsourcing.application import Application
from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import Environment, get_topic

from commands.cloudevents import SYSTEM_ACTOR, CloudEventMapper
from commands.exactly_once import save_once
from domain.fields import DETAIL_FIELDS, INCIDENT_FIELDS, UPDATE_FIELDS, given_values
from domain.incident import Incident, IncidentEvent

T = TypeVar("T")


class CommandError(Exception):
    """A command that cannot be carried out for a reason outside the incident's rules."""


class IncidentNotFound(CommandError):
    def __init__(self, incident_id: str) -> None:
        super().__init__(f"no incident with id {incident_id}")
        self.incident_id = incident_id


class VersionMismatch(CommandError):
    def __init__(self, expected: int, current: int) -> None:
        super().__init__(
            f"the incident is at version {current}, not the expected version {expected}"
        )
        self.expected = expected
        self.current = current


class IdempotencyKeyReused(CommandError):
    def __init__(self, key: str) -> None:
        super().__init__(
            f"Idempotency-Key {key!r} was already used for a different request"
        )
        self.key = key


class Contended(CommandError):
    def __init__(self, incident_id: str) -> None:
        super().__init__(
            f"incident {incident_id} is changing too fast to apply this command; retry"
        )
        self.incident_id = incident_id


class NewIncident:
    """An incident to declare: the fields a client gives (`domain.fields`), defaults for
    those left out, and the names of the fields the client actually sent (an idempotent
    retry must match them)."""

    def __init__(self, given: frozenset[str] = frozenset(), **details: Any) -> None:
        self.details = given_values(INCIDENT_FIELDS, details)
        self.given = given


class NewUpdate:
    """A status update to add: the fields a client gives (`domain.fields.UPDATE_FIELDS`),
    defaults for those left out (a status of None leaves the status as it is)."""

    def __init__(self, **values: Any) -> None:
        self.values = given_values(UPDATE_FIELDS, values)


@dataclass(frozen=True)
class Written:
    """The outcome of a command: the incident's events up to the answer, and where the
    new events landed in the store (None when the command recorded nothing new)."""

    incident_id: str
    history: Sequence[IncidentEvent]
    position: int | None
    recorded: bool

    @property
    def version(self) -> int:
        return self.history[-1].originator_version


class IncidentCommands(Application[str]):
    """Decides incident commands and stores their events as CloudEvents documents."""

    name = "incidents"

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        clock: Callable[[], datetime],
        new_incident_id: Callable[[], str],
        max_updates: int,
        retry_budget_seconds: float = 10.0,
        new_command_id: Callable[[], str] = lambda: uuid4().hex,
    ) -> None:
        self.clock = clock
        self.new_incident_id = new_incident_id
        self.new_command_id = new_command_id
        self.max_updates = max_updates
        self.retry_budget_seconds = retry_budget_seconds
        # Called with the store position after each commit (read-your-writes, wake-ups).
        self.listeners: list[Callable[[int], None]] = []
        # Called with the CloudEvents types of the events of each commit (metrics).
        self.type_listeners: list[Callable[[Sequence[str]], None]] = []
        super().__init__(
            {
                **env,
                "MAPPER_TOPIC": get_topic(CloudEventMapper),
                "ORIGINATOR_ID_TYPE": "text",
            }
        )

    def construct_env(self, name: str, env: Mapping[str, str] | None = None) -> Environment:
        # Only the settings given by the composition root: never the process environment.
        return Environment(name, dict(env or {}))

    # Commands.

    # Each takes the `actor` who issued it (a token's name), recorded with its events.

    def create(self, new: NewIncident, request_key: str | None = None, *,
               actor: str = SYSTEM_ACTOR, incident_id: str | None = None) -> Written:
        """Declares an incident. Its id is `incident_id` when given, else derived from the
        request key when there is one (a racing twin collides on it), else new."""
        if incident_id is None:
            incident_id = (incident_id_for_key(request_key) if request_key
                           else self.new_incident_id())
        incident = Incident.declare(incident_id=incident_id, at=self.clock(),
                                    request_key=request_key, **new.details)
        try:
            return self._save(incident, [], self.new_command_id(), actor)
        except IntegrityError:
            if request_key is None:
                raise
        # A retry (or a racing twin) of a create with the same key: answer as the first.
        history = self.history(incident_id)
        created = history[0]
        if not _matches(created, new, new.given):
            raise IdempotencyKeyReused(request_key)
        return Written(incident_id, history[:1], None, recorded=False)

    def change_details(
        self, incident_id: str, changes: Mapping[str, Any], expected_version: int | None = None,
        *, actor: str = SYSTEM_ACTOR,
    ) -> Written:
        def decide(incident: Incident, history: Sequence[IncidentEvent]) -> None:
            current = details_of(history)
            differing = {k: v for k, v in changes.items() if current.get(k) != v}
            incident.change_details(at=self.clock(), changes=differing)

        return self._command(incident_id, expected_version, actor, decide)

    def add_update(
        self,
        incident_id: str,
        update: NewUpdate,
        expected_version: int | None = None,
        request_key: str | None = None,
        *,
        actor: str = SYSTEM_ACTOR,
    ) -> Written:
        def replay(incident: Incident, history: Sequence[IncidentEvent]) -> Written | None:
            version = incident.version_of_update(request_key) if request_key else None
            if version is None:
                return None
            recorded = history[version - 1]
            if not _update_matches(recorded, update):
                raise IdempotencyKeyReused(str(request_key))
            # The first answer: the incident as it stood after that command's events.
            end = version
            while end < len(history) and history[end].timestamp == recorded.timestamp:
                end += 1
            return Written(incident_id, history[:end], None, recorded=False)

        def decide(incident: Incident, _: Sequence[IncidentEvent]) -> None:
            incident.add_update(at=self.clock(), max_updates=self.max_updates,
                                request_key=request_key, **update.values)

        return self._command(incident_id, expected_version, actor, decide, replay)

    def write_postmortem(
        self, incident_id: str, body: str, published: bool,
        expected_version: int | None = None, *, actor: str = SYSTEM_ACTOR,
    ) -> Written:
        """Replaces the postmortem; the same text and publication again records nothing."""
        def decide(incident: Incident, history: Sequence[IncidentEvent]) -> None:
            if postmortem_of(history) == (body, published) and not incident.deleted:
                return
            incident.write_postmortem(at=self.clock(), body=body, published=published)

        return self._command(incident_id, expected_version, actor, decide)

    def delete(self, incident_id: str, expected_version: int | None = None, *,
               actor: str = SYSTEM_ACTOR) -> Written:
        def decide(incident: Incident, _: Sequence[IncidentEvent]) -> None:
            if incident.deleted:
                raise IncidentNotFound(incident_id)
            incident.delete(at=self.clock())

        return self._command(incident_id, expected_version, actor, decide)

    # Reading the write side's own events (audit, answers to commands).

    def exists(self, incident_id: str) -> bool:
        """Whether an incident with this id was ever declared (deleted ones included)."""
        return bool(self.recorder.select_events(incident_id, limit=1))

    def history(self, incident_id: str) -> list[IncidentEvent]:
        events: list[IncidentEvent] = list(self.events.get(incident_id))  # type: ignore[arg-type]
        if not events:
            raise IncidentNotFound(incident_id)
        return events

    # Machinery.

    def _load(self, incident_id: str) -> tuple[Incident, list[IncidentEvent]]:
        history = self.history(incident_id)
        return state_of(history), history

    def _save(
        self, incident: Incident, history: Sequence[IncidentEvent], command_id: str, actor: str
    ) -> Written:
        new_events: list[IncidentEvent] = list(incident.collect_events())  # type: ignore[arg-type]
        if not new_events:
            return Written(incident.id, history, None, recorded=False)
        position = save_once(self, new_events, command_id, actor)
        for listener in self.listeners:
            listener(position)
        types = [get_topic(type(event)) for event in new_events]
        for type_listener in self.type_listeners:
            type_listener(types)
        return Written(incident.id, [*history, *new_events], position, recorded=True)

    def _command(
        self,
        incident_id: str,
        expected_version: int | None,
        actor: str,
        decide: Callable[[Incident, Sequence[IncidentEvent]], None],
        replay: Callable[[Incident, Sequence[IncidentEvent]], Written | None] | None = None,
    ) -> Written:
        deadline = time.monotonic() + self.retry_budget_seconds
        attempt = 0
        command_id = self.new_command_id()
        while True:
            incident, history = self._load(incident_id)
            answered = replay(incident, history) if replay else None
            if answered is not None:
                return answered
            if expected_version is not None and expected_version != incident.version:
                raise VersionMismatch(expected_version, incident.version)
            decide(incident, history)
            try:
                return self._save(incident, history, command_id, actor)
            except IntegrityError:
                if expected_version is not None:
                    # Lost the race for the expected version. A racing twin with the
                    # same request key may have won it: then its answer is ours.
                    incident, history = self._load(incident_id)
                    answered = replay(incident, history) if replay else None
                    if answered is not None:
                        return answered
                    raise VersionMismatch(expected_version, incident.version) from None
                attempt += 1
                if time.monotonic() >= deadline:
                    raise Contended(incident_id) from None
                time.sleep(random.uniform(0, min(0.05, 0.002 * 2**attempt)))


def incident_id_for_key(request_key: str) -> str:
    return "incident-" + uuid5(NAMESPACE_URL, f"/idempotency-key/{request_key}").hex


def state_of(history: Sequence[IncidentEvent]) -> Incident:
    """The incident's write state, folded from its events."""
    incident: Any = None
    for event in history:
        incident = event.mutate(incident)
    assert isinstance(incident, Incident)
    return incident


def details_of(history: Sequence[IncidentEvent]) -> dict[str, Any]:
    """The incident's current details, folded from its events."""
    details: dict[str, Any] = {}
    for event in history:
        if isinstance(event, Incident.Created):
            details = {name: getattr(event, name) for name in DETAIL_FIELDS}
        elif isinstance(event, Incident.DetailsChanged):
            details.update(event.changes)
    return details


def postmortem_of(history: Sequence[IncidentEvent]) -> tuple[str, bool] | None:
    """The incident's postmortem (body, published) as last written; None before one."""
    found: tuple[str, bool] | None = None
    for event in history:
        if isinstance(event, Incident.PostmortemUpdated):
            found = (event.body, event.published)
    return found


def _matches(created: IncidentEvent, new: NewIncident, given: frozenset[str]) -> bool:
    return all(getattr(created, name) == new.details[name] for name in given)


def _update_matches(recorded: IncidentEvent, update: NewUpdate) -> bool:
    assert isinstance(recorded, Incident.UpdateAdded)
    # A status left out means "unchanged": any recorded status matches it.
    return all(getattr(recorded, name) == value for name, value in update.values.items()
               if not (name == "status" and value is None))
