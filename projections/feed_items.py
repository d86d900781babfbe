"""Read model `feed_items`: what the RSS and Atom feeds read.

`feed_incidents` holds one row per incident with its latest public message and the time
and store position of its last public change. A public change is one the feeds can show:
a change of what they show of an incident in them, or an incident entering or leaving
them. A change of internal notes is not one, and nothing that happens to an incident
outside the feeds (not public, not in feeds, or deleted) is one either, so none of these
moves a feed's ETag, Last-Modified or body. An incident never in the feeds has
`last_public_change` 0. `feed_entries` holds one row per public entry of an incident: its
declaration and each update that says something public or moves its status.
`feed_postmortems` holds the published postmortem of an incident (when it was first
published and last changed): publishing one, changing a published one and withdrawing it
are public changes; a draft never enters the table. Internal notes and internal messages
never enter these tables.
"""

from __future__ import annotations

from typing import Any, ClassVar

from domain.fields import INCIDENT, INCIDENT_FIELDS, WINDOW_FIELDS
from domain.incident import Incident
from domain.visibility import (
    IN_FEEDS,
    POSTMORTEM_VISIBLE,
    Audience,
    is_team_note,
    shows,
    visible_fields,
)
from projections.base import (
    AppendBuffer,
    Cursor,
    Projection,
    RowBuffer,
    dump_list,
    handles,
    micros,
)
from projections.columns import to_column

NEVER_IN_FEEDS = 0  # the `last_public_change` and `position` of an incident never shown
COLUMNS = ("id", "created_position", "title", "description", "status", "severity",
           "incident_type", "affected_services", "public_message", "is_public", "rss_enabled",
           "deleted", "created_at", "last_public_change", "position", "scheduled_start",
           "scheduled_end")
# The details whose change the feeds show: the public ones (`domain.visibility`) this
# table holds. A change of anything else (internal notes) is not a public change.
_PUBLIC_DETAILS = frozenset(f.name for f in visible_fields(INCIDENT_FIELDS, Audience.PUBLIC)
                            if f.changeable and f.name in COLUMNS)


def in_feeds(row: dict[str, Any]) -> bool:
    """Whether the feeds show the incident whose row (or creation) this is
    (`domain.visibility.IN_FEEDS`)."""
    return shows(IN_FEEDS, row)


class FeedItems(Projection):
    name: ClassVar[str] = "feed_items"
    tables: ClassVar[tuple[str, ...]] = ("feed_incidents", "feed_entries", "feed_postmortems")

    def __init__(self, suffix: str = "") -> None:
        super().__init__(suffix)
        self.incidents = RowBuffer(self.t("feed_incidents"), "id", COLUMNS,
                                   booleans=("is_public", "rss_enabled", "deleted"))
        self.entries = AppendBuffer(self.t("feed_entries"), (
            "incident_id", "number", "status", "public_message", "published_at", "position"))

    def create_statements(self, dialect: str) -> list[str]:
        incidents, entries = self.t("feed_incidents"), self.t("feed_entries")
        return [
            f"""CREATE TABLE IF NOT EXISTS {incidents} (
                id TEXT PRIMARY KEY,
                created_position BIGINT NOT NULL,
                title TEXT NOT NULL,
                description TEXT NOT NULL,
                status TEXT NOT NULL,
                severity TEXT NOT NULL,
                incident_type TEXT NOT NULL,
                affected_services TEXT NOT NULL,
                public_message TEXT NOT NULL,
                is_public BOOLEAN NOT NULL,
                rss_enabled BOOLEAN NOT NULL,
                deleted BOOLEAN NOT NULL,
                created_at BIGINT NOT NULL,
                last_public_change BIGINT NOT NULL,
                position BIGINT NOT NULL,
                scheduled_start BIGINT,
                scheduled_end BIGINT
            )""",
            f"CREATE INDEX IF NOT EXISTS {incidents}_recent ON {incidents} "
            f"(last_public_change, id)",
            f"""CREATE TABLE IF NOT EXISTS {entries} (
                incident_id TEXT NOT NULL,
                number INTEGER NOT NULL,
                status TEXT NOT NULL,
                public_message TEXT NOT NULL,
                published_at BIGINT NOT NULL,
                position BIGINT NOT NULL,
                PRIMARY KEY (incident_id, number)
            )""",
            f"""CREATE TABLE IF NOT EXISTS {self.t("feed_postmortems")} (
                incident_id TEXT PRIMARY KEY,
                body TEXT NOT NULL,
                published_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL
            )""",
        ]

    @handles(Incident.Created)
    def _created(self, event: Incident.Created, cursor: Cursor, position: int) -> None:
        at = micros(event.timestamp)
        shown = in_feeds({"is_public": event.is_public, "rss_enabled": event.rss_enabled,
                          "deleted": False})
        self.incidents.put({
            "id": event.originator_id, "created_position": position, "title": event.title,
            "description": event.description, "status": event.status.value,
            "severity": event.severity.value, "incident_type": event.incident_type.value,
            "affected_services": dump_list(event.affected_services),
            "public_message": event.public_message, "is_public": event.is_public,
            "rss_enabled": event.rss_enabled, "deleted": False, "created_at": at,
            "last_public_change": at if shown else NEVER_IN_FEEDS,
            "position": position if shown else NEVER_IN_FEEDS,
            **{name: to_column(INCIDENT[name], getattr(event, name)) for name in WINDOW_FIELDS},
        })
        self.entries.add(event.originator_id, 0, event.status.value, event.public_message, at,
                         position)

    @handles(Incident.DetailsChanged)
    def _details_changed(
        self, event: Incident.DetailsChanged, cursor: Cursor, position: int
    ) -> None:
        public: dict[str, Any] = {name: to_column(INCIDENT[name], value)
                                  for name, value in event.changes.items()
                                  if name in _PUBLIC_DETAILS}
        if public:  # a change of internal notes alone changes nothing here
            self._touch(cursor, event, position, public)

    @handles(Incident.UpdateAdded)
    def _update_added(self, event: Incident.UpdateAdded, cursor: Cursor, position: int) -> None:
        if is_team_note(event.public_message, event.status, event.previous_status):
            return  # an internal note
        says_something = bool(event.public_message.strip())
        changes: dict[str, Any] = {"status": event.status.value}
        if says_something:
            changes["public_message"] = event.public_message
        self._touch(cursor, event, position, changes)
        self.entries.add(event.originator_id, event.number, event.status.value,
                         event.public_message, micros(event.timestamp), position)

    @handles(Incident.Resolved)
    def _resolved(self, event: Incident.Resolved, cursor: Cursor, position: int) -> None:
        self._touch(cursor, event, position, {"status": "resolved"})

    @handles(Incident.Deleted)
    def _deleted(self, event: Incident.Deleted, cursor: Cursor, position: int) -> None:
        self._touch(cursor, event, position, {"deleted": True})

    @handles(Incident.PostmortemUpdated)
    def _postmortem(self, event: Incident.PostmortemUpdated, cursor: Cursor, position: int
                    ) -> None:
        # Postmortems are few: written straight through, so a later event of the same
        # batch reads what this one wrote (by executemany, whose result no later read on
        # the shared cursor can take for its own in PostgreSQL's pipeline mode).
        table, incident_id = self.t("feed_postmortems"), event.originator_id
        found = cursor.execute(f"SELECT published_at FROM {table} WHERE incident_id = ?",
                               (incident_id,)).fetchone()
        at = micros(event.timestamp)
        if shows(POSTMORTEM_VISIBLE[Audience.PUBLIC], {"published": event.published}):
            cursor.executemany(
                f"INSERT INTO {table} (incident_id, body, published_at, updated_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (incident_id) DO UPDATE SET "
                "body = excluded.body, updated_at = excluded.updated_at",
                [(incident_id, event.body, at if found is None else found[0], at)])
        elif found is not None:  # withdrawn
            cursor.executemany(f"DELETE FROM {table} WHERE incident_id = ?", [(incident_id,)])
        else:
            return  # a draft: nothing the feeds show changed
        self._touch(cursor, event, position, {})

    def _touch(
        self, cursor: Cursor, event: Incident.Event, position: int, changes: dict[str, Any]
    ) -> None:
        """Applies the changes; they are a public change (stamped with the event's time
        and position) only if the incident is in the feeds before or after them."""
        row = self.incidents.get(cursor, event.originator_id)
        assert row is not None, f"no feed row for {event.originator_id}"
        shown_before = in_feeds(row)
        self.incidents.change(cursor, event.originator_id, **changes)
        if shown_before or in_feeds(row):
            self.incidents.change(cursor, event.originator_id,
                                  last_public_change=micros(event.timestamp),
                                  position=position)

    def end_batch(self, cursor: Cursor) -> None:
        self.incidents.flush(cursor)
        self.entries.flush(cursor)
