"""Queries over the `feed_items` read model: what the RSS and Atom feeds show.

Feeds are public: they show only incidents that are public, in feeds (`rss_enabled`) and
not deleted, and only the public columns of those. Each answer costs a fixed number of
queries (one for a feed's items, plus one for an incident's entries), whatever the size
of the tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from domain.visibility import IN_FEEDS, where
from projections.base import ReadStore, load_list
from projections.columns import named, select
from projections.feed_items import NEVER_IN_FEEDS, FeedItems

# Statuses a feed without resolved incidents leaves out.
CLOSED_STATUSES = ("resolved", "post_incident")
MAX_ENTRIES = 100  # per-incident feeds show at most the newest 100 entries

_POSTMORTEM_COLUMNS = ("postmortem", "postmortem_published_at", "postmortem_updated_at")
_INCIDENT_COLUMNS = ("id", "title", "description", "status", "severity", "incident_type",
                     "affected_services", "public_message", "created_at",
                     "last_public_change", "position", "scheduled_start", "scheduled_end",
                     *_POSTMORTEM_COLUMNS)
# An incident's row with its published postmortem, if any (`f` and `p`).
_INCIDENT_SELECT = ", ".join(
    [f"f.{c}" for c in _INCIDENT_COLUMNS if c not in _POSTMORTEM_COLUMNS]
    + ["p.body", "p.published_at", "p.updated_at"])
_WITH_POSTMORTEM = "feed_incidents f LEFT JOIN feed_postmortems p ON p.incident_id = f.id"
_READ_COLUMNS = (*_INCIDENT_COLUMNS, "read_at")
_RECENT_COLUMNS = (*_INCIDENT_COLUMNS, "newest", "read_at")
_ENTRY_COLUMNS = ("number", "status", "public_message", "published_at", "position")
# The incidents a feed may show (`domain.visibility`).
_VISIBLE, _VISIBLE_PARAMS = where(IN_FEEDS, "f")
# The newest public change of any incident (one that left the feeds included); None while
# no incident was ever in them.
_NEWEST = f"NULLIF(max(last_public_change), {NEVER_IN_FEEDS})"
# The read model's position: it moves with every batch the projection applies.
_POSITION = f"(SELECT position FROM projection_positions WHERE name = '{FeedItems.name}')"


@dataclass(frozen=True)
class FeedIncident:
    """An incident as the feeds show it. `position` is the store position of its last
    public change: a row whose position did not move shows the same in every feed."""

    id: str
    title: str
    description: str
    status: str
    severity: str
    incident_type: str
    affected_services: tuple[str, ...]
    public_message: str
    created_at: int  # microseconds since the epoch
    last_public_change: int
    position: int
    scheduled_start: int | None = None  # a maintenance window, microseconds
    scheduled_end: int | None = None
    postmortem: FeedPostmortem | None = None


@dataclass(frozen=True)
class FeedPostmortem:
    """An incident's published postmortem (Markdown)."""

    body: str
    published_at: int  # when it was first published (since it was last withdrawn)
    updated_at: int


@dataclass(frozen=True)
class FeedEntry:
    """A public entry of an incident: number 0 is its declaration, n its status update n."""

    number: int
    status: str
    public_message: str
    published_at: int
    position: int


@dataclass(frozen=True)
class RecentIncidents:
    """The incidents of a general feed, newest public change first; the time of the
    newest public change of any incident in the read model (`newest`, None when there is
    none): an incident that leaves a feed changes that time, so it is what the feed's
    Last-Modified is made of; and the read model's position they were read at."""

    incidents: list[FeedIncident]
    newest: int | None
    position: int


def _incident(row: dict[str, Any]) -> FeedIncident:
    return FeedIncident(
        id=str(row["id"]), title=str(row["title"]), description=str(row["description"]),
        status=str(row["status"]), severity=str(row["severity"]),
        incident_type=str(row["incident_type"]),
        affected_services=tuple(load_list(row["affected_services"])),
        public_message=str(row["public_message"]), created_at=int(row["created_at"]),
        last_public_change=int(row["last_public_change"]), position=int(row["position"]),
        scheduled_start=row["scheduled_start"], scheduled_end=row["scheduled_end"],
        postmortem=None if row["postmortem"] is None else FeedPostmortem(
            str(row["postmortem"]), int(row["postmortem_published_at"]),
            int(row["postmortem_updated_at"])),
    )


def _storable(values: Sequence[str]) -> list[str]:
    # No stored text holds NUL (PostgreSQL refuses it, even as a parameter): a name with
    # one matches nothing, so it is left out rather than sent.
    return [v for v in values if "\x00" not in v]


class FeedQueries:
    def __init__(self, store: ReadStore) -> None:
        self.store = store
        if store.dialect == "postgres":
            self._has_service = (
                "EXISTS (SELECT 1 FROM jsonb_array_elements_text(f.affected_services::jsonb)"
                " AS s(name) WHERE s.name IN ({}))"
            )
        else:
            self._has_service = (
                "EXISTS (SELECT 1 FROM json_each(f.affected_services) AS s "
                "WHERE s.value IN ({}))"
            )

    def recent_query(
        self, *, include_resolved: bool, services: Sequence[str], limit: int
    ) -> tuple[str, list[Any]]:
        """The SQL of a general feed: its newest `limit` incidents, each row followed by
        the read model's newest public change and its position."""
        where = [_VISIBLE]
        params: list[Any] = list(_VISIBLE_PARAMS)
        if not include_resolved:
            where.append(f"status NOT IN ({', '.join('?' * len(CLOSED_STATUSES))})")
            params += CLOSED_STATUSES
        if services:
            names = _storable(services)
            if names:
                where.append(self._has_service.format(", ".join("?" * len(names))))
                params += names
            else:
                where.append("1 = 0")
        sql = (
            f"SELECT {_INCIDENT_SELECT}, "
            f"(SELECT {_NEWEST} FROM feed_incidents) AS newest, "
            f"{_POSITION} AS read_at "
            f"FROM {_WITH_POSTMORTEM} WHERE {' AND '.join(where)} "
            "ORDER BY f.last_public_change DESC, f.id DESC LIMIT ?"
        )
        return sql, [*params, limit]

    def position(self) -> int:
        """The read model's position: while it stays, every feed stays as it is."""
        with self.store.transaction() as tx:
            row = tx.execute(
                "SELECT position FROM projection_positions WHERE name = ?", (FeedItems.name,)
            ).fetchone()
        return int(row[0]) if row else 0

    def recent(
        self, *, include_resolved: bool = True, services: Sequence[str] = (), limit: int = 20
    ) -> RecentIncidents:
        """One query; a second only when the feed is empty (for `newest` and position)."""
        sql, params = self.recent_query(include_resolved=include_resolved, services=services,
                                        limit=limit)
        with self.store.transaction() as tx:
            rows = named(_RECENT_COLUMNS, tx.execute(sql, params).fetchall())
            if rows:
                newest, position = rows[0]["newest"], rows[0]["read_at"]
            else:
                found = tx.execute(
                    f"SELECT {_NEWEST}, {_POSITION} FROM feed_incidents"
                ).fetchone()
                newest, position = found if found else (None, 0)
        return RecentIncidents([_incident(r) for r in rows],
                               None if newest is None else int(newest), int(position or 0))

    def incident(self, incident_id: str) -> tuple[FeedIncident, int] | None:
        """The incident if a feed may show it (public, in feeds, not deleted), with the
        read model's position it was read at; None otherwise."""
        if "\x00" in incident_id:
            return None
        with self.store.transaction() as tx:
            rows = named(_READ_COLUMNS, tx.execute(
                f"SELECT {_INCIDENT_SELECT}, {_POSITION} AS read_at "
                f"FROM {_WITH_POSTMORTEM} WHERE f.id = ? AND {_VISIBLE}",
                (incident_id, *_VISIBLE_PARAMS)).fetchall())
        return (_incident(rows[0]), int(rows[0]["read_at"] or 0)) if rows else None

    def entries(self, incident: FeedIncident, limit: int = MAX_ENTRIES) -> list[FeedEntry]:
        """The incident's public entries as they stood at the incident row read (each
        entry moved the incident's position, so later ones are left out), newest first."""
        with self.store.transaction() as tx:
            rows = select(tx, _ENTRY_COLUMNS,
                          "FROM feed_entries WHERE incident_id = ? AND position <= ? "
                          "ORDER BY number DESC LIMIT ?",
                          (incident.id, incident.position, limit))
        return [FeedEntry(int(r["number"]), str(r["status"]), str(r["public_message"]),
                          int(r["published_at"]), int(r["position"])) for r in rows]
