"""Reports over the `incident_lifecycle` read model: how fast incidents are acknowledged
and resolved, how often the response targets are met, and how long incidents spend in
each active status, overall, per severity and per week.

Every duration is measured from the declaration (`created_at`): the acknowledgement is the
first status update posted by someone (not the service's own), the resolution the last time
it was resolved (a reopened incident counts once it is resolved again). A maintenance has
no response target: it counts in `count`, `resolved` and time in status, but not in the
times to acknowledge and to resolve nor in the target ratio (its end is planned, not a
repair, and would only blur how fast incidents are answered and fixed). Time in a status
adds up every stay in it, the current one up to now while the incident is active. Medians
and 90th percentiles interpolate linearly between the closest ranks (numpy's default), in
seconds. The filters select incidents by start time (as the incident list's `since` and
`until` do), affected service and severity; deleted incidents never count.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from domain.response import ResponsePolicy, has_target
from domain.values import Severity, Status
from domain.visibility import VISIBLE, Audience, where
from projections.base import ReadStore, micros, moment
from projections.columns import select
from projections.incident_lifecycle import COLUMNS, load_durations

# The statuses an incident works through, whose time is reported.
WORKING = tuple(s for s in Status if s.is_active)
_CLOSED = frozenset({Status.RESOLVED.value, Status.POST_INCIDENT.value})
_INSTANT = timedelta(microseconds=1)


@dataclass(frozen=True)
class ReportFilters:
    since: datetime | None = None
    until: datetime | None = None
    service: tuple[str, ...] = ()
    severity: tuple[str, ...] = ()


@dataclass(frozen=True)
class Lived:
    """One incident's life as a report sees it at `now`."""

    severity: str
    incident_type: str
    start_time: datetime
    declared_at: datetime
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    status: str
    in_status: dict[str, float]  # seconds in each status it has been in

    @property
    def resolved(self) -> bool:
        return self.status in _CLOSED

    @property
    def targeted(self) -> bool:
        """Whether it has a response target and counts in the times to acknowledge and to
        resolve (not a maintenance)."""
        return has_target(self.incident_type)

    @property
    def to_acknowledge(self) -> float | None:
        if self.acknowledged_at is None or not self.targeted:
            return None
        return (self.acknowledged_at - self.declared_at).total_seconds()

    @property
    def to_resolve(self) -> float | None:
        if not self.resolved or self.resolved_at is None or not self.targeted:
            return None
        return (self.resolved_at - self.declared_at).total_seconds()


def quantile(values: Sequence[float], share: float) -> float:
    """Linear interpolation between the closest ranks of the sorted values."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * share
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def spread(values: Sequence[float]) -> dict[str, float] | None:
    """Median and 90th percentile; None when there is nothing to measure."""
    if not values:
        return None
    return {"median": quantile(values, 0.5), "p90": quantile(values, 0.9)}


def median(values: Sequence[float]) -> float | None:
    return quantile(values, 0.5) if values else None


def figures(incidents: Sequence[Lived], policy: ResponsePolicy, now: datetime
            ) -> dict[str, Any]:
    """One report's figures (`R` of the API) for these incidents."""
    judged = [met for i in incidents if i.targeted
              and (met := policy.met(i.declared_at, i.severity, i.acknowledged_at, now))
              is not None]
    return {
        "count": len(incidents),
        "resolved": sum(1 for i in incidents if i.resolved),
        "mtta_seconds": spread([s for i in incidents if (s := i.to_acknowledge) is not None]),
        "mttr_seconds": spread([s for i in incidents if (s := i.to_resolve) is not None]),
        "response_target_met_ratio": sum(judged) / len(judged) if judged else None,
        "time_in_status_seconds": {
            status.value: median([i.in_status[status.value] for i in incidents
                                  if status.value in i.in_status])
            for status in WORKING},
    }


def lifecycle_report(incidents: Sequence[Lived], policy: ResponsePolicy, now: datetime
                     ) -> dict[str, Any]:
    return {
        "overall": figures(incidents, policy, now),
        "by_severity": {s.value: figures([i for i in incidents if i.severity == s.value],
                                         policy, now) for s in Severity},
    }


def week_of(moment_: datetime) -> datetime:
    """The Monday 00:00 UTC that starts the moment's week."""
    day = moment_.replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday())


@dataclass(frozen=True)
class Week:
    start: datetime
    by_severity: dict[str, int]
    mtta_median: float | None
    mttr_median: float | None


def weekly(incidents: Sequence[Lived], first: datetime, last: datetime) -> list[Week]:
    """Per week from `first`'s to `last`'s (by start time): incidents by severity, and the
    median times to acknowledge and to resolve of those incidents."""
    weeks: list[Week] = []
    start = week_of(first)
    while start <= last:
        end = start + timedelta(days=7)
        those = [i for i in incidents if start <= i.start_time < end]
        weeks.append(Week(
            start,
            {s.value: sum(1 for i in those if i.severity == s.value) for s in Severity},
            median([s for i in those if (s := i.to_acknowledge) is not None]),
            median([s for i in those if (s := i.to_resolve) is not None])))
        start = end
    return weeks


class LifecycleReports:
    """Reports for readers (every undeleted incident, public or not)."""

    def __init__(self, store: ReadStore, policy: ResponsePolicy,
                 clock: Callable[[], datetime]) -> None:
        self.store = store
        self.policy = policy
        self.clock = clock

    def incidents(self, filters: ReportFilters, now: datetime) -> list[Lived]:
        visible, params = where(VISIBLE[Audience.READER], "l")
        conditions = [visible]
        if filters.since is not None:
            conditions.append("l.start_time >= ?")
            params.append(micros(filters.since))
        if filters.until is not None:
            conditions.append("l.start_time < ?")
            params.append(micros(filters.until))
        if filters.severity:
            conditions.append(f"l.severity IN ({', '.join('?' * len(filters.severity))})")
            params += list(filters.severity)
        if filters.service:
            conditions.append(
                "EXISTS (SELECT 1 FROM lifecycle_services s WHERE s.incident_id = l.id "
                f"AND s.name IN ({', '.join('?' * len(filters.service))}))")
            params += list(filters.service)
        with self.store.transaction() as tx:
            rows = select(tx, [f"l.{c}" for c in COLUMNS],
                          f"FROM lifecycle_incidents l WHERE {' AND '.join(conditions)} "
                          "ORDER BY l.start_time, l.id", params)
        return [self._lived({k[2:]: v for k, v in row.items()}, now) for row in rows]

    @staticmethod
    def _lived(row: dict[str, Any], now: datetime) -> Lived:
        in_status = {name: us / 1e6 for name, us in load_durations(row["status_micros"]).items()}
        status = row["status"]
        if Status(status).is_active:  # the current stay, so far
            in_status[status] = (in_status.get(status, 0.0)
                                 + (now - moment(row["status_since"])).total_seconds())
        return Lived(
            severity=row["severity"], incident_type=row["incident_type"],
            start_time=moment(row["start_time"]),
            declared_at=moment(row["created_at"]),
            acknowledged_at=None if row["acknowledged_at"] is None
            else moment(row["acknowledged_at"]),
            resolved_at=None if row["resolved_at"] is None else moment(row["resolved_at"]),
            status=status, in_status=in_status)

    def lifecycle(self, filters: ReportFilters) -> dict[str, Any]:
        """The answer of `GET /api/v1/reports/lifecycle`."""
        now = self.clock()
        return lifecycle_report(self.incidents(filters, now), self.policy, now)

    def overview(self, filters: ReportFilters, weeks: int = 12, most_weeks: int = 53
                 ) -> tuple[ReportFilters, dict[str, Any], list[Week]]:
        """The dashboard's report: the filters applied (without `since`, the last `weeks`
        weeks), the figures, and per week (at most `most_weeks`, the last ones) from one
        read of the read model."""
        now = self.clock()
        if filters.since is None:
            filters = replace(filters, since=week_of(now) - timedelta(weeks=weeks - 1))
        assert filters.since is not None
        incidents = self.incidents(filters, now)
        last = now if filters.until is None else min(now, filters.until - _INSTANT)
        first = max(filters.since, week_of(last) - timedelta(weeks=most_weeks - 1))
        return (filters, lifecycle_report(incidents, self.policy, now),
                weekly(incidents, first, last))
