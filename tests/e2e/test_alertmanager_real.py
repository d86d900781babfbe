"""Against a real Prometheus Alertmanager (Debian's `prometheus-alertmanager`), whose webhook
receiver points at a `product-status serve` process with a writer token: alerts posted to
Alertmanager's own API open one incident per group with the mapped severity and services,
a second alert in a group adds one update, resolving them resolves the incident, a group
firing again opens a new one, and Alertmanager's repeats record nothing.

Without the binary the test is skipped loudly, and fails when CI is set."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.processes import ServeProcess
from tests.servers import free_port

BINARY = os.environ.get("ALERTMANAGER_PATH", "/usr/bin/prometheus-alertmanager")
MISSING = (f"no Alertmanager at {BINARY}: apt-get install -y prometheus-alertmanager "
           "(CI, with env CI set, fails instead of skipping)")
TOKENS = "alertmanager:writer:am-secret,reader:reader-secret"
READER = {"Authorization": "Bearer reader-secret"}
T = TypeVar("T")

CONFIG = """\
route:
  receiver: product-status
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 2s
receivers:
  - name: product-status
    webhook_configs:
      - url: {url}/api/v1/integrations/alertmanager
        send_resolved: true
        http_config:
          authorization:
            credentials: am-secret
"""


def _binary() -> str:
    if not (Path(BINARY).is_file() and os.access(BINARY, os.X_OK)):
        if os.environ.get("CI"):
            pytest.fail(MISSING)
        pytest.skip(MISSING)
    return BINARY


class Alertmanager:
    """A throwaway Alertmanager on a loopback port, gossip off, state in `base`."""

    def __init__(self, binary: str, base: Path, receiver_url: str) -> None:
        config = base / "alertmanager.yml"
        config.write_text(CONFIG.format(url=receiver_url))
        self.log = base / "alertmanager.log"
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [binary, f"--config.file={config}", f"--storage.path={base / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                stdout=out, stderr=subprocess.STDOUT)
        self.http = httpx.Client(base_url=self.url, timeout=30)
        wait_for(lambda: self._ready(), "Alertmanager to answer /-/ready", self.output)

    def _ready(self) -> bool:
        assert self.process.poll() is None, self.output()
        try:
            return self.http.get("/-/ready").status_code == 200
        except httpx.TransportError:
            return False

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def post_alerts(self, *alerts: dict[str, Any]) -> None:
        answer = self.http.post("/api/v2/alerts", json=list(alerts))
        assert answer.status_code == 200, answer.text

    def webhook_notifications(self) -> tuple[int, int]:
        """Notifications Alertmanager sent to the webhook, and those that failed."""
        text = self.http.get("/metrics").text

        def total(name: str) -> int:
            found = re.search(rf'^{name}{{[^}}]*integration="webhook"[^}}]*}} (\S+)$', text,
                              re.MULTILINE)
            return int(float(found.group(1))) if found else 0

        return (total("alertmanager_notifications_total"),
                total("alertmanager_notifications_failed_total"))

    def stop(self) -> None:
        self.http.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)


def wait_for(check: Callable[[], T | None], what: str, output: Callable[[], str] = str,
             within: float = 120) -> T:
    """The first truthy answer of `check`, asked until a (generous) deadline."""
    deadline = time.monotonic() + within
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"waited {within} s for {what}\n{output()}"
        time.sleep(0.2)


@pytest.fixture
def stack(database_url: str, tmp_path: Path) -> Iterator[tuple[Alertmanager, httpx.Client]]:
    binary = _binary()
    serve = ServeProcess({"DATABASE_URL": database_url, "API_TOKENS": TOKENS,
                          "RATE_LIMIT_WRITES_PER_MINUTE": "100000"}, tmp_path / "serve.log")
    manager = None
    try:
        manager = Alertmanager(binary, tmp_path, serve.url)
        with httpx.Client(base_url=serve.url, timeout=30, headers=READER) as http:
            yield manager, http
    finally:
        if manager is not None:
            manager.stop()
        serve.stop()


def _alert(name: str, instance: str, *, resolved: bool = False, **labels: str
           ) -> dict[str, Any]:
    now = datetime.now(UTC)
    body: dict[str, Any] = {
        "labels": {"alertname": name, "instance": instance, **labels},
        "annotations": {"summary": f"{name} is failing", "description": f"{name} on {instance}"},
        "startsAt": (now - timedelta(minutes=5)).isoformat(),
        "generatorURL": "http://prometheus.example.org/graph",
    }
    if resolved:
        body["endsAt"] = (now - timedelta(seconds=1)).isoformat()
    return body


def _incidents(http: httpx.Client) -> list[dict[str, Any]]:
    answer = http.get("/api/v1/incidents", params={"limit": 100})
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return sorted(items, key=lambda i: i["created_at"])


def _when(count: int, items: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    return items if len(items) == count else None


def _incident(http: httpx.Client, incident_id: str) -> dict[str, Any]:
    answer = http.get(f"/api/v1/incidents/{incident_id}")
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def _stored(http: httpx.Client) -> list[dict[str, Any]]:
    answer = http.get("/api/v1/events", params={"limit": 1000})
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def _repeats_pass(manager: Alertmanager, count: int = 3) -> None:
    """Waits until Alertmanager has sent `count` more notifications, all accepted."""
    sent, _ = manager.webhook_notifications()
    wait_for(lambda: manager.webhook_notifications()[0] >= sent + count,
             f"{count} more webhook notifications", manager.output)
    assert manager.webhook_notifications()[1] == 0, manager.output()


def test_alerts_posted_to_alertmanager_open_update_and_resolve_incidents(
    stack: tuple[Alertmanager, httpx.Client],
) -> None:
    manager, http = stack
    manager.post_alerts(
        _alert("CheckoutDown", "a", severity="critical", service="checkout", region="eu"),
        _alert("SearchSlow", "s1", severity="warning", job="search"))
    incidents = wait_for(lambda: _when(2, _incidents(http)), "one incident per alert group",
                         manager.output)
    by_title = {i["title"]: i for i in incidents}
    checkout = by_title["CheckoutDown is failing"]
    assert (checkout["severity"], checkout["affected_services"], checkout["affected_regions"],
            checkout["incident_type"], checkout["is_public"]) == (
        "critical", ["checkout"], ["eu"], "outage", False)
    search = by_title["SearchSlow is failing"]
    assert (search["severity"], search["affected_services"]) == ("medium", ["search"])
    assert httpx.get(f"{str(http.base_url).rstrip('/')}/api/v1/incidents/{checkout['id']}"
                     ).status_code == 404  # private until an operator publishes it

    # A second alert in the checkout group: one update.
    manager.post_alerts(
        _alert("CheckoutDown", "b", severity="critical", service="checkout", region="eu"))
    wait_for(lambda: _incident(http, checkout["id"])["updates"], "the update",
             manager.output)
    # Alertmanager repeats both groups every repeat_interval: nothing more is recorded.
    stored = len(_stored(http))
    _repeats_pass(manager)
    assert len(_stored(http)) == stored
    updates = _incident(http, checkout["id"])["updates"]
    assert len(updates) == 1
    assert updates[0]["message"].startswith("2 alerts firing:")

    # Both checkout alerts end: the incident is resolved; the search group stays open.
    manager.post_alerts(
        _alert("CheckoutDown", "a", resolved=True, severity="critical", service="checkout",
               region="eu"),
        _alert("CheckoutDown", "b", resolved=True, severity="critical", service="checkout",
               region="eu"))
    wait_for(lambda: _incident(http, checkout["id"])["status"] == "resolved",
             "the incident to be resolved", manager.output)
    _repeats_pass(manager)
    assert _incident(http, search["id"])["status"] == "investigating"
    assert [u["update_type"] for u in _incident(http, checkout["id"])["updates"]] == [
        "status_update", "resolution"]

    # The group fires again: a new incident.
    manager.post_alerts(
        _alert("CheckoutDown", "a", severity="critical", service="checkout", region="eu"))
    again = wait_for(lambda: _when(3, _incidents(http)), "a new incident for the group",
                     manager.output)[-1]
    assert again["title"] == "CheckoutDown is failing"
    assert again["id"] != checkout["id"]
    _repeats_pass(manager)
    stored_events = _stored(http)
    kinds = [(e["subject"], e["type"].rsplit(".", 1)[1]) for e in stored_events]
    assert sorted(kinds) == sorted([
        (checkout["id"], "created"), (search["id"], "created"),
        (checkout["id"], "update_added"), (checkout["id"], "update_added"),
        (checkout["id"], "resolved"), (again["id"], "created")])
    assert {e["actor"] for e in stored_events} == {"alertmanager"}
