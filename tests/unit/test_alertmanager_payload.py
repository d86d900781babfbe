"""What an Alertmanager notification (webhook payload version 4) declares: title,
description, severity, services and regions from its annotations and labels."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from api.alertmanager import AlertmanagerPayload
from commands.alert_groups import firing_digest
from domain.values import IncidentType, Severity
from tests.alertmanager_payloads import alert, payload


def declared(body: dict[str, Any], public: bool = False) -> dict[str, Any]:
    details: dict[str, Any] = AlertmanagerPayload.model_validate(body).notification(
        public=public).incident.details
    return details


@pytest.mark.parametrize(("label", "severity"), [
    ("critical", Severity.CRITICAL), ("high", Severity.HIGH), ("error", Severity.HIGH),
    ("warning", Severity.MEDIUM), ("low", Severity.LOW), ("info", Severity.LOW),
    ("Critical ", Severity.CRITICAL), ("page", Severity.MEDIUM), ("", Severity.MEDIUM),
])
def test_the_severity_label_maps_to_a_severity(label: str, severity: Severity) -> None:
    assert declared(payload(alert("a", "f1", severity=label)))["severity"] is severity


def test_without_a_severity_label_it_is_medium_and_the_most_severe_alert_counts() -> None:
    unlabelled = alert("a", "f1")
    del unlabelled["labels"]["severity"]
    assert declared(payload(unlabelled))["severity"] is Severity.MEDIUM
    mixed = payload(alert("a", "f1", severity="info"), alert("b", "f2", severity="error"),
                    alert("c", "f3", severity="critical", status="resolved"))
    assert declared(mixed)["severity"] is Severity.HIGH  # a resolved alert does not count


def test_title_and_description_come_from_common_annotations_else_alertname() -> None:
    details = declared(payload(alert("a", "f1")))
    assert details["title"] == "BlackBox Probe Failure: a"
    assert details["description"] == "Instance a has been down for over 5m."
    assert details["incident_type"] is IncidentType.OUTAGE
    assert details["is_public"] is False
    # Two alerts with different summaries: no common summary, so the alertname.
    details = declared(payload(alert("a", "f1"), alert("b", "f2")))
    assert details["title"] == "ProbeFailure"
    assert details["description"] == ""
    blank = payload(alert("a", "f1"))
    blank["commonAnnotations"]["summary"] = "   "
    assert declared(blank)["title"] == "ProbeFailure"
    assert declared(payload(alert("a", "f1")), public=True)["is_public"] is True


def test_services_come_from_the_service_label_else_job_and_regions_from_region() -> None:
    body = payload(alert("a", "f1", service="checkout", region="eu"),
                   alert("b", "f2", region="eu"), alert("c", "f3", service="checkout"),
                   alert("d", "f4", service="gone", status="resolved"))
    details = declared(body)
    assert details["affected_services"] == ("checkout", "http_checks")
    assert details["affected_regions"] == ("eu",)


def test_the_firing_set_is_the_fingerprints_of_the_firing_alerts() -> None:
    body = payload(alert("a", "f1"), alert("b", "f2", status="resolved"))
    notification = AlertmanagerPayload.model_validate(body).notification(public=False)
    assert notification.firing == frozenset({"f1"})
    assert firing_digest(frozenset({"f1", "f2"})) == firing_digest(frozenset({"f2", "f1"}))
    assert firing_digest(frozenset({"f1"})) != firing_digest(frozenset({"f1", "f2"}))


@pytest.mark.parametrize("change", [
    {"version": "3"}, {"version": 4}, {"status": "resolved"}, {"alerts": []},
    {"groupKey": ""}, {"truncatedAlerts": "0"}, {"commonLabels": {"a": 1}},
])
def test_malformed_payloads_are_refused(change: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        AlertmanagerPayload.model_validate({**payload(alert("a", "f1")), **change})


def test_fields_alertmanager_may_add_are_ignored() -> None:
    body = {**payload(alert("a", "f1")), "orgId": 1}
    body["alerts"][0]["silenceURL"] = "http://am/silence"
    assert declared(body)["title"] == "BlackBox Probe Failure: a"
