"""Response targets: RESPONSE_TARGETS and UPDATE_REMINDER_MINUTES as start-up reads them,
and the facts judged from them at a given moment."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from domain.response import DEFAULT_TARGETS, ResponsePolicy, is_response
from domain.values import IncidentType, Severity, Status
from infra.settings import SettingsError, load_settings

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CLI = str(Path(sys.executable).parent / "product-status")


def test_the_product_targets_by_default() -> None:
    policy = load_settings({}).response_policy
    assert {s: policy.target(s) for s in Severity} == {
        Severity.CRITICAL: timedelta(minutes=15), Severity.HIGH: timedelta(hours=1),
        Severity.MEDIUM: timedelta(hours=4), Severity.LOW: timedelta(hours=24),
        Severity.MINOR: timedelta(hours=48)}
    assert policy.reminder == timedelta(minutes=30)


def test_response_targets_override_the_severities_they_name() -> None:
    settings = load_settings({"RESPONSE_TARGETS": " critical=5m, HIGH=1.5h ,low=90s,minor=2d",
                              "UPDATE_REMINDER_MINUTES": "12.5"})
    policy = settings.response_policy
    assert policy.target("critical") == timedelta(minutes=5)
    assert policy.target("high") == timedelta(minutes=90)
    assert policy.target("medium") == DEFAULT_TARGETS[Severity.MEDIUM]
    assert policy.target("low") == timedelta(seconds=90)
    assert policy.target("minor") == timedelta(days=2)
    assert policy.reminder == timedelta(minutes=12.5)


@pytest.mark.parametrize(("value", "named"), [
    ("urgent=5m", ["'urgent' is not a severity"]),
    ("critical=5", ["critical: '5' is not a duration"]),
    ("critical=five minutes", ["critical: 'five minutes' is not a duration"]),
    ("critical=0m", ["critical: '0m' must be more than 0"]),
    ("critical=400d", ["critical: '400d' must be more than 0 and at most 365d"]),
    ("critical", ["'critical' is not severity=duration"]),
    ("high=1h,high=2h", ["'high' is given twice"]),
    ("urgent=5m,high=x", ["'urgent' is not a severity", "high: 'x' is not a duration"]),
])
def test_bad_response_targets_are_refused_naming_each(value: str, named: list[str]) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings({"RESPONSE_TARGETS": value})
    message = str(refused.value)
    assert message.startswith("RESPONSE_TARGETS: ")
    for part in named:
        assert part in message


@pytest.mark.parametrize("value", ["0", "-5", "thirty", "nan", "20000"])
def test_a_bad_reminder_is_refused(value: str) -> None:
    with pytest.raises(SettingsError, match=r"^UPDATE_REMINDER_MINUTES: "):
        load_settings({"UPDATE_REMINDER_MINUTES": value})


def test_serve_refuses_to_start_with_bad_targets() -> None:
    result = subprocess.run([CLI, "serve"], capture_output=True, text=True, check=False,
                            env={"RESPONSE_TARGETS": "critical=soon,urgent=1m",
                                 "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert "RESPONSE_TARGETS" in result.stderr
    assert "'urgent' is not a severity" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_response_is_judged_at_the_moment_asked() -> None:
    policy = ResponsePolicy({Severity.CRITICAL: timedelta(minutes=5)}, timedelta(minutes=30))

    def facts(now: datetime, acknowledged: datetime | None = None,
              told: datetime = T0, status: Status = Status.INVESTIGATING) -> tuple[bool, bool]:
        found = policy.facts(declared_at=T0, severity="critical", status=status,
                             incident_type="outage", acknowledged_at=acknowledged,
                             public_update_at=told, now=now)
        assert found.due_at == T0 + timedelta(minutes=5)
        return found.breached, found.update_overdue

    minute = timedelta(minutes=1)
    assert facts(T0 + 5 * minute) == (False, False)  # due, not late yet
    assert facts(T0 + 5 * minute + timedelta(microseconds=1)) == (True, False)
    assert facts(T0 + 9 * minute, acknowledged=T0 + 5 * minute) == (False, False)
    assert facts(T0 + 9 * minute, acknowledged=T0 + 6 * minute) == (True, False)
    assert facts(T0 + 30 * minute, acknowledged=T0 + minute) == (False, False)
    assert facts(T0 + 31 * minute, acknowledged=T0 + minute) == (False, True)
    assert facts(T0 + 31 * minute, acknowledged=T0 + minute, told=T0 + 2 * minute) \
        == (False, False)
    assert facts(T0 + 31 * minute, acknowledged=T0 + minute, status=Status.RESOLVED) \
        == (False, False)
    assert facts(T0 + 31 * minute, status=Status.SCHEDULED) == (False, False)


def test_a_maintenance_has_no_response_target() -> None:
    policy = ResponsePolicy()
    found = policy.facts(declared_at=T0, severity="critical", status=Status.MONITORING,
                         incident_type="maintenance", acknowledged_at=None,
                         public_update_at=T0, now=T0 + timedelta(days=1))
    assert found.due_at is None
    assert not found.breached
    assert found.update_overdue  # the public still hears of it


def test_only_the_services_own_request_keys_mark_an_update_that_is_not_a_response() -> None:
    assert is_response(None)
    assert is_response("client-key-1")
    assert not is_response("system:auto_resolve:v3")


def test_the_facts_hold_until_the_moment_they_say_and_change_right_after() -> None:
    """`steady_until` is the last moment the facts judge as at `now` (a reader's kept list
    holds until then): every earlier moment judges the same, the next microsecond not."""
    policy = ResponsePolicy()
    tick = timedelta(microseconds=1)
    seen: set[str] = set()
    for status in Status:
        for incident_type in IncidentType:
            for acknowledged in (None, T0 + timedelta(minutes=5), T0 + timedelta(hours=2)):
                for since in (timedelta(0), timedelta(minutes=20), timedelta(days=3)):
                    record: dict[str, Any] = {"declared_at": T0, "severity": Severity.CRITICAL,
                              "status": status, "incident_type": incident_type,
                              "acknowledged_at": acknowledged, "public_update_at": T0}
                    now = T0 + since
                    until = policy.steady_until(**record, now=now)
                    facts = policy.facts(**record, now=now)
                    if until is None:
                        seen.add("steady")
                        assert policy.facts(**record, now=now + timedelta(days=400)) == facts
                        continue
                    seen.add("until")
                    assert until >= now
                    assert policy.facts(**record, now=until) == facts
                    assert policy.facts(**record, now=until + tick) != facts
    assert seen == {"steady", "until"}
