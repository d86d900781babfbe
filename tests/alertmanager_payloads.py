"""Alertmanager's webhook payloads (version 4) as its documentation shows them
(https://prometheus.io/docs/alerting/latest/configuration/#webhook_config)."""

from __future__ import annotations

from typing import Any

GROUP = '{}/{severity="critical"}:{alertname="ProbeFailure"}'


def alert(instance: str, fingerprint: str, *, status: str = "firing",
          **labels: str) -> dict[str, Any]:
    """One alert as Alertmanager's webhook sends it."""
    return {
        "status": status,
        "labels": {"alertname": "ProbeFailure", "instance": instance, "job": "http_checks",
                   "severity": "critical", **labels},
        "annotations": {"description": f"Instance {instance} has been down for over 5m.",
                        "summary": f"BlackBox Probe Failure: {instance}"},
        "startsAt": "2023-02-06T13:08:45.828Z",
        "endsAt": ("2023-02-06T13:30:45.828Z" if status == "resolved"
                   else "0001-01-01T00:00:00Z"),
        "generatorURL": "http://prometheus.example.org:9090/graph?g0.expr=probe_success+%3D%3D+0",
        "fingerprint": fingerprint,
    }


def payload(*alerts: dict[str, Any], group_key: str = GROUP) -> dict[str, Any]:
    """A version 4 notification of one group, its common labels and annotations computed
    as Alertmanager does (those all its alerts share)."""
    def common(part: str) -> dict[str, str]:
        first = alerts[0][part]
        return {k: v for k, v in first.items() if all(a[part].get(k) == v for a in alerts)}

    firing = any(a["status"] == "firing" for a in alerts)
    return {
        "receiver": "product-status",
        "status": "firing" if firing else "resolved",
        "alerts": list(alerts),
        "groupLabels": {"alertname": "ProbeFailure"},
        "commonLabels": common("labels"),
        "commonAnnotations": common("annotations"),
        "externalURL": "http://alertmanager.example.org:9093",
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
    }
