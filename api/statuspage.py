"""Our public read models in the shapes of Atlassian Statuspage's public status API v2
(models in `api.status_schemas`), for the tools that poll `/api/v2/*.json`.

Always for `Audience.PUBLIC`: these answers are public whoever asks. Services are the
components (their id is derived from the name, so it is stable); incidents of type
`maintenance` are the scheduled maintenances, every other incident an incident.

One table says what a severity means: the component status it gives a service
(`projections.service_queries.STATE_OF_SEVERITY`: critical and high a major outage, as the
status page's banner says; medium a partial outage; low and minor degraded performance),
and, as Statuspage derives an incident's impact and the page's indicator from component
statuses, the impact that status stands for (major outage -> critical, partial outage ->
major, degraded performance -> minor). So an incident's impact, its services' statuses and
the page's indicator (the worst impact of the unresolved incidents and of the components;
`none` without any) always agree. A maintenance is planned: its impact is `none`, as in
Statuspage's examples of scheduled maintenances, and a service under maintenance raises no
indicator. A maintenance is `scheduled` before its start (its `scheduled` status, or a
start time still ahead), `in_progress` while active, `completed` once resolved. Its window
is `scheduled_start` to `scheduled_end` when it has them, else its start time to its
resolution (or, while it has no end yet, to its start: Statuspage's `scheduled_until` is
never null).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from api.pages.views import ACTIVE, SCHEDULED
from domain.values import IncidentType
from domain.visibility import Audience
from projections.base import micros, rfc3339_micros
from projections.queries import IncidentQueries, ListFilters
from projections.service_queries import (
    CLOSED,
    OPERATIONAL,
    STATE_OF_SEVERITY,
    UNDER_MAINTENANCE,
    ServiceBar,
    ServiceQueries,
)

PUBLIC = Audience.PUBLIC
MAINTENANCE = IncidentType.MAINTENANCE.value
UNPLANNED = tuple(t.value for t in IncidentType if t is not IncidentType.MAINTENANCE)
# The impact a component status stands for, as Statuspage derives one from the other.
IMPACT_OF_STATUS = {"major_outage": "critical", "partial_outage": "major",
                    "degraded_performance": "minor", UNDER_MAINTENANCE: "none",
                    OPERATIONAL: "none"}
IMPACT = {severity: IMPACT_OF_STATUS[status] for severity, status in STATE_OF_SEVERITY.items()}
NO_IMPACT = "none"  # a maintenance's
INDICATORS = {"none": "All Systems Operational", "minor": "Minor Service Outage",
              "major": "Partial System Outage", "critical": "Major Service Outage"}
_WORST_FIRST = ("critical", "major", "minor", "none")
OPEN_STATUSES = SCHEDULED + ACTIVE  # a maintenance not yet completed
MOST_RECENT = 50  # as Statuspage: the 50 most recent
Body = dict[str, Any]


def short_id(text: str) -> str:
    """A stable 12-character id, as Statuspage's ids look."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def impact(severity: str) -> str:
    return IMPACT[severity]


def incident_status(status: str) -> str:
    return "postmortem" if status == "post_incident" else status


@dataclass
class StatusPage:
    """One answer's worth of reads (each asked once, when first needed)."""

    queries: IncidentQueries
    services: ServiceQueries
    base_url: str
    clock: Callable[[], datetime]

    def __post_init__(self) -> None:
        self.now = self.clock()
        self.page_id = short_id(self.base_url)
        self._bars: list[ServiceBar] | None = None
        self._unresolved: list[Body] | None = None
        self._open: list[Body] | None = None
        self._latest: list[int] = []

    # --- parts ---------------------------------------------------------------------

    def page(self) -> Body:
        """Asked last: `updated_at` is the latest change of what the answer shows."""
        self.components()
        latest = max(self._latest, default=micros(self.now))
        return {"id": self.page_id, "name": "Product Status", "url": self.base_url,
                "time_zone": "Etc/UTC", "updated_at": rfc3339_micros(latest)}

    def components(self) -> list[Body]:
        if self._bars is None:
            self._bars = self.services.bars(audience=PUBLIC, days=1, now=self.now)
            self._latest += [b.updated_at for b in self._bars]
        return [{
            "id": short_id(bar.name), "name": bar.name, "status": bar.state,
            "created_at": rfc3339_micros(bar.created_at),
            "updated_at": rfc3339_micros(bar.updated_at), "position": n,
            "description": None, "showcase": True, "start_date": None, "group_id": None,
            "page_id": self.page_id, "group": False, "only_show_if_degraded": False,
        } for n, bar in enumerate(self._bars, start=1)]

    def status(self) -> Body:
        impacts = {impact(i["severity"]) for i in self.unresolved_items()}
        impacts |= {IMPACT_OF_STATUS[c["status"]] for c in self.components()}
        indicator = next((i for i in _WORST_FIRST if i in impacts), "none")
        return {"indicator": indicator, "description": INDICATORS[indicator]}

    def unresolved_items(self) -> list[Body]:
        if self._unresolved is None:
            self._unresolved = list(self._all(ListFilters(incident_type=UNPLANNED,
                                                          status=ACTIVE)))
        return self._unresolved

    def incidents(self, *, unresolved: bool = False) -> list[Body]:
        items = (self.unresolved_items() if unresolved else self.queries.list_incidents(
            ListFilters(incident_type=UNPLANNED), audience=PUBLIC, limit=MOST_RECENT).items)
        return self._answers(items, maintenance=False)

    def maintenances(self, *, which: str = "all") -> list[Body]:
        """`all` (the 50 most recent), `upcoming` (scheduled) or `active` (in progress)."""
        if which == "all":
            items = self.queries.list_incidents(ListFilters(incident_type=(MAINTENANCE,)),
                                                audience=PUBLIC, limit=MOST_RECENT).items
        else:
            items = self._open_maintenances(upcoming=which == "upcoming")
        return self._answers(items, maintenance=True)

    def summary(self) -> Body:
        components = self.components()
        incidents = self.incidents(unresolved=True)
        upcoming = self._answers(self._open_maintenances(upcoming=True)
                                 + self._open_maintenances(upcoming=False), maintenance=True)
        status = self.status()
        return {"page": self.page(), "status": status, "components": components,
                "incidents": incidents, "scheduled_maintenances": upcoming}

    # --- helpers -------------------------------------------------------------------

    def _open_maintenances(self, *, upcoming: bool) -> list[Body]:
        """The upcoming or the active maintenances (newest first), of one query of the
        open ones (scheduled or active) alone: the completed ones, however many, are never
        read."""
        if self._open is None:
            self._open = list(self._all(ListFilters(incident_type=(MAINTENANCE,),
                                                    status=OPEN_STATUSES)))
        return [i for i in self._open
                if (self._maintenance_status(i) == "scheduled") == upcoming]

    def _all(self, filters: ListFilters) -> Iterator[Body]:
        """Every matching incident (newest first), page by page."""
        cursor: str | None = None
        while True:
            page = self.queries.list_incidents(filters, audience=PUBLIC, limit=100,
                                               cursor=cursor)
            yield from page.items
            cursor = page.next_cursor
            if cursor is None:
                return

    def _maintenance_status(self, incident: Body) -> str:
        status = incident["status"]
        if status in CLOSED:
            return "completed"
        start = incident.get("scheduled_start") or incident["start_time"]
        if status == "scheduled" or datetime.fromisoformat(start) > self.now:
            return "scheduled"
        return "in_progress"

    def _answers(self, items: list[Body], *, maintenance: bool) -> list[Body]:
        ids = [i["id"] for i in items]
        # The public's updates: without notes for the team (`domain.visibility`).
        updates = self.queries.updates_of(ids, audience=PUBLIC) if ids else {}
        changed = self.services.public_changes(ids) if ids else {}
        components = {c["name"]: c for c in self.components()}
        return [self._answer(i, updates.get(i["id"], []),
                             changed.get(i["id"]), components, maintenance)
                for i in items]

    def _answer(self, incident: Body, updates: list[Body], changed: int | None,
                components: dict[str, Body], maintenance: bool) -> Body:
        """`updates` are the public ones; `changed`, when the incident last changed
        publicly (None while that read model has not reached it: then its last public
        update, or its declaration)."""
        if changed is None:
            changed = max(micros(datetime.fromisoformat(at)) for at in
                          [incident["created_at"], *(u["created_at"] for u in updates)])
        self._latest.append(changed)
        status = (self._maintenance_status(incident) if maintenance
                  else incident_status(incident["status"]))
        declared = updates[0]["previous_status"] if updates else incident["status"]
        steps = [(0, declared, incident["public_message"], incident["created_at"]),
                 *((u["number"], u["status"], u["public_message"], u["created_at"])
                   for u in updates)]
        starts = ((incident.get("scheduled_start") or incident["start_time"])
                  if maintenance else None)
        monitoring = [u["created_at"] for u in updates if u["status"] == "monitoring"]
        body: Body = {
            "id": incident["id"], "name": incident["title"], "status": status,
            "impact": NO_IMPACT if maintenance else impact(incident["severity"]),
            "created_at": incident["created_at"], "updated_at": rfc3339_micros(changed),
            "monitoring_at": monitoring[-1] if monitoring else None,
            "resolved_at": incident["resolved_at"], "started_at": incident["start_time"],
            "shortlink": f"{self.base_url}/incidents/{incident['id']}",
            "page_id": self.page_id,
            "incident_updates": [{
                "id": f"{incident['id']}-{number}",
                "status": self._update_status(step_status, at, starts),
                "body": message, "incident_id": incident["id"], "created_at": at,
                "updated_at": at, "display_at": at, "affected_components": None,
                "deliver_notifications": True, "custom_tweet": None, "tweet_id": None,
            } for number, step_status, message, at in reversed(steps)],
            "components": [components[name] for name in incident["affected_services"]
                           if name in components],
        }
        if maintenance:
            start = incident.get("scheduled_start") or incident["start_time"]
            body["scheduled_for"] = start
            body["scheduled_until"] = (incident.get("scheduled_end") or incident["resolved_at"]
                                       or start)
        return body

    @staticmethod
    def _update_status(status: str, at: str, starts: str | None) -> str:
        """An update's status; of a maintenance (which `starts` then), `scheduled` for
        updates before its start."""
        if starts is None:
            return incident_status(status)
        if status in CLOSED:
            return "completed"
        before = datetime.fromisoformat(at) < datetime.fromisoformat(starts)
        return "scheduled" if status == "scheduled" or before else "in_progress"

