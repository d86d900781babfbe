"""GET /metrics (Prometheus text format, checked with promtool), request ids and JSON logs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from infra.metrics import delivery_failed
from tests.conftest import READER, WRITER
from tests.processes import ServeProcess, run_cli

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def promtool_check(body: bytes) -> subprocess.CompletedProcess[bytes]:
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is needed: apt-get install prometheus"
    return subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True,
                          timeout=60, check=False)


def samples(body: str) -> Samples:
    found: Samples = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def scrape(http: httpx.Client, headers: dict[str, str] | None = None) -> httpx.Response:
    response = http.get("/metrics", headers=headers or {})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return response


def test_metrics_pass_promtool_with_and_without_a_token(http: httpx.Client) -> None:
    http.post("/api/v1/incidents", headers=WRITER, json={"title": "for the metrics"})
    http.get("/api/v1/incidents")
    http.get("/nowhere")
    delivery_failed("ops-webhook")
    for headers in (None, READER):
        checked = promtool_check(scrape(http, headers).content)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_requests_are_counted_by_route_template_and_status(http: httpx.Client) -> None:
    before = samples(scrape(http, READER).text)
    incident = http.post("/api/v1/incidents", headers=WRITER, json={"title": "count"}).json()
    for _ in range(3):
        assert http.get(f"/api/v1/incidents/{incident['id']}").status_code == 200
    assert http.get("/api/v1/incidents/incident-unknown").status_code == 404
    after = samples(scrape(http, READER).text)
    route = "/api/v1/incidents/{incident_id}"
    labels = {"route": route, "method": "GET", "caller": "anonymous"}
    name = "product_status_http_requests_total"
    assert value(after, name, status="200", **labels) - value(before, name, status="200",
                                                              **labels) == 3
    assert value(after, name, status="404", **labels) - value(before, name, status="404",
                                                              **labels) == 1
    histogram = "product_status_http_request_duration_seconds_count"
    assert value(after, histogram, status="200", **labels) - value(
        before, histogram, status="200", **labels) == 3
    assert any(key[0] == "product_status_http_request_duration_seconds_bucket"
               and ("route", route) in key[1] for key in after)
    assert incident["id"] not in scrape(http, READER).text  # a template, never a raw path


def test_a_token_sees_the_store_and_each_follower(http: httpx.Client) -> None:
    created = http.post("/api/v1/incidents", headers=WRITER, json={"title": "head"})
    position = int(created.headers["Store-Position"])
    http.get("/api/v1/incidents", headers={"Min-Position": str(position)})  # projected
    found = samples(scrape(http, READER).text)
    assert value(found, "product_status_store_head_position") == position
    assert value(found, "product_status_store_reachable") == 1
    for name in ("incident_list", "incident_updates", "incident_summary", "feed_items"):
        labels = {"follower": name, "kind": "projection"}
        assert value(found, "product_status_follower_position", **labels) == position
        assert ("product_status_follower_lag_events", frozenset(labels.items())) in found
    delivery_failed("pager")
    delivery_failed("pager")
    again = samples(scrape(http, READER).text)
    assert value(again, "product_status_delivery_failures_total", integration="pager") - value(
        found, "product_status_delivery_failures_total", integration="pager") == 2


def test_without_a_token_nothing_counts_private_activity(http: httpx.Client) -> None:
    http.post("/api/v1/incidents", headers=WRITER, json={"title": "Hidden", "is_public": False})
    body = scrape(http).text
    names = {family.name for family in text_string_to_metric_families(body)}
    assert names <= {"product_status_http_requests", "product_status_http_request_duration_seconds",
                     "product_status_open_event_streams"}
    assert 'caller="token"' not in body
    for private in ("store_head", "follower", "Hidden"):
        assert private not in body


def test_open_event_streams_are_counted_while_open(http: httpx.Client) -> None:
    gauge = "product_status_open_event_streams"
    before = value(samples(scrape(http, READER).text), gauge, caller="anonymous")
    opened = threading.Event()
    done = threading.Event()

    def listen() -> None:
        with httpx.stream("GET", f"{http.base_url}/api/v1/events/stream", timeout=30) as s:
            assert s.status_code == 200
            opened.set()
            done.wait(30)

    listener = threading.Thread(target=listen)
    listener.start()
    try:
        assert opened.wait(30)
        during = value(samples(scrape(http, READER).text), gauge, caller="anonymous")
    finally:
        done.set()
        listener.join(30)
    assert during - before == 1
    deadline = time.monotonic() + 20
    while value(samples(scrape(http, READER).text), gauge, caller="anonymous") != before:
        assert time.monotonic() < deadline, "the closed stream is still counted"
        time.sleep(0.1)


@pytest.mark.parametrize(("sent", "kept"), [
    ("trace-7f3a.1:b/c+d=e@f", True), ("has spaces", False), ("x" * 129, False), ("", False)])
def test_every_answer_carries_a_request_id(http: httpx.Client, sent: str, kept: bool) -> None:
    for method, path, headers in (
        ("GET", "/api/v1/incidents", {}),
        ("GET", "/api/v1/events", {}),  # 401
        ("POST", "/api/v1/incidents", WRITER),  # 422 without a body
        ("GET", "/no/such/route", {}),
    ):
        answer = http.request(method, path, headers={**headers, "X-Request-Id": sent})
        rid = answer.headers["X-Request-Id"]
        assert (rid == sent) if kept else (rid != sent and len(rid) == 32)
    first = http.get("/healthz").headers["X-Request-Id"]
    assert first != http.get("/healthz").headers["X-Request-Id"]


def test_json_logs_carry_the_request_id(tmp_path: Path, sqlite_url: str) -> None:
    log = tmp_path / "serve.log"
    server = ServeProcess({"DATABASE_URL": sqlite_url, "API_TOKENS": "writer:w",
                           "LOG_FORMAT": "json"}, log)
    try:
        answer = httpx.post(f"{server.url}/api/v1/incidents", json={"title": "logged"},
                            headers={"Authorization": "Bearer w", "X-Request-Id": "req-42"})
        assert answer.status_code == 201
        generated = httpx.get(f"{server.url}/api/v1/incidents").headers["X-Request-Id"]
    finally:
        server.stop()
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    mine = [line for line in lines if line.get("request_id") == "req-42"]
    assert [(m["method"], m["route"], m["status"]) for m in mine] == [
        ("POST", "/api/v1/incidents", 201)]
    assert [line["path"] for line in lines if line.get("request_id") == generated] == [
        "/api/v1/incidents"]


def test_worker_processes_sharing_a_directory_are_summed(tmp_path: Path,
                                                         sqlite_url: str) -> None:
    shared = tmp_path / "metrics"
    shared.mkdir()
    env = {"DATABASE_URL": sqlite_url, "API_TOKENS": "reader:r",
           "PROMETHEUS_MULTIPROC_DIR": str(shared)}
    first = ServeProcess(env, tmp_path / "first.log", "--no-relay")
    second = ServeProcess(env, tmp_path / "second.log", "--no-relay", "--no-projectors")
    try:
        for server, count in ((first, 2), (second, 3)):
            for _ in range(count):
                assert httpx.get(f"{server.url}/api/v1/incidents").status_code == 200
        body = httpx.get(f"{first.url}/metrics", headers={"Authorization": "Bearer r"}).content
        assert promtool_check(body).returncode == 0
        found = samples(body.decode())
        assert value(found, "product_status_http_requests_total", route="/api/v1/incidents",
                     method="GET", status="200", caller="anonymous") == 5
    finally:
        first.stop()
        second.stop()


@pytest.mark.parametrize(("name", "bad"), [("LOG_FORMAT", "xml"),
                                           ("PROMETHEUS_MULTIPROC_DIR", "/no/such/dir")])
def test_bad_operating_settings_stop_start_up(name: str, bad: str, sqlite_url: str) -> None:
    result = run_cli("serve", env={"DATABASE_URL": sqlite_url, name: bad})
    assert result.returncode == 2
    assert name in result.stderr


def test_json_logs_carry_errors_of_threads_and_warnings_as_json() -> None:
    script = ("import threading, warnings\n"
              "from infra.logs import configure_logging\n"
              "configure_logging('json')\n"
              "t = threading.Thread(target=lambda: 1 / 0, name='worker'); t.start(); t.join()\n"
              "warnings.warn('careful')\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60, check=False)
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert [line["level"] for line in lines] == ["error", "warning"]
    assert "ZeroDivisionError" in lines[0]["exception"]
    assert "careful" in lines[1]["message"]
