"""The `product-status` command line, run as a user would run it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from commands.application import NewIncident, NewUpdate
from domain.values import Status
from infra.bootstrap import Services
from tests.servers import free_port

CLI = str(Path(sys.executable).parent / "product-status")


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})}, check=False)


@pytest.mark.parametrize("args", [[], ["serve"], ["events"], ["project"], ["publish"],
                                  ["projections", "rebuild"]])
def test_help(args: list[str]) -> None:
    result = run(*args, "--help")
    assert result.returncode == 0
    assert "usage: product-status" in result.stdout


@pytest.mark.parametrize(("name", "value"), [
    ("PORT", "eighty"), ("PORT", "70000"), ("API_TOKENS", "root:x"),
    ("DATABASE_URL", "mysql://db/x"), ("INCIDENT_MAX_UPDATES", "0"),
    ("INCIDENT_RSS_ENABLED", "perhaps"), ("CLOUDEVENT_TOPIC", "a b"),
    ("RSS_TTL_MINUTES", "-1"), ("PUBLIC_BASE_URL", "not a url"),
])
def test_a_bad_setting_stops_start_up_naming_the_variable(name: str, value: str) -> None:
    result = run("serve", env={name: value})
    assert result.returncode == 2
    assert name in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_answers_health_on_the_sqlite_default(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "PORT": str(port), "DATA_DIR": str(tmp_path / "data")}
    env.pop("DATABASE_URL", None)
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        server = subprocess.Popen([CLI, "serve"], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert server.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "serve did not answer within 30 s"
                time.sleep(0.1)
        assert response.json() == {"status": "ok"}
        assert (tmp_path / "data" / "product-status.db").exists()
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)


def test_events_prints_json_lines_with_filters(services: Services) -> None:
    commands = services.commands
    first = commands.create(NewIncident(title="one", given=frozenset({"title"})))
    second = commands.create(NewIncident(title="two", given=frozenset({"title"})))
    commands.add_update(first.incident_id, NewUpdate(status=Status.RESOLVED))
    env = {"DATABASE_URL": services.settings.database_url or ""}

    lines = run("events", env=env).stdout.splitlines()
    assert [json.loads(x)["type"].rsplit(".", 1)[1] for x in lines] == [
        "created", "created", "update_added", "resolved"]
    assert [line.encode() for line in lines] == [
        e.document for e in services.event_log.read(0, 10)]
    created = run("events", "--type", "created", env=env).stdout.splitlines()
    assert [json.loads(x)["subject"] for x in created] == [first.incident_id,
                                                          second.incident_id]
    mine = run("events", "--subject", second.incident_id, env=env).stdout.splitlines()
    assert len(mine) == 1
    later = run("events", "--after", "2", env=env).stdout.splitlines()
    assert len(later) == len(lines) - 2
    assert len(run("events", "--limit", "1", env=env).stdout.splitlines()) == 1


@pytest.mark.parametrize("args", [["--type", "exploded"], ["--after", "-3"], ["--after", "x"]])
def test_events_refuses_bad_arguments_naming_them(args: list[str], sqlite_url: str) -> None:
    result = run("events", *args, env={"DATABASE_URL": sqlite_url})
    assert result.returncode == 2
    assert args[0] in result.stderr
    assert "Traceback" not in result.stderr


def _serve(tmp_path: Path, **env: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    full = {**os.environ, "PORT": str(port), "DATA_DIR": str(tmp_path / "data"),
            "API_TOKENS": "writer:w", **env}
    full.pop("DATABASE_URL", None)
    with (tmp_path / "serve.log").open("w") as out:
        server = subprocess.Popen([CLI, "serve"], env=full, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{url}/healthz", timeout=1)
            return server, url
        except httpx.TransportError:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "serve did not answer within 30 s"
            time.sleep(0.1)


def test_serve_with_nats_unreachable_starts_and_takes_commands(tmp_path: Path) -> None:
    server, url = _serve(tmp_path, CLOUDEVENT_BROKER_URL=f"nats://127.0.0.1:{free_port()}")
    try:
        started = time.monotonic()
        created = httpx.post(f"{url}/api/v1/incidents", json={"title": "NATS is down"},
                             headers={"Authorization": "Bearer w"}, timeout=10)
        assert created.status_code == 201
        assert time.monotonic() - started < 2
        deadline = time.monotonic() + 15
        while True:
            ready = httpx.get(f"{url}/readyz", timeout=5)
            relay = ready.json()["relay"]
            if relay["broker"] == "unreachable" or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert ready.status_code == 200  # NATS delays publishing; the API stays ready
        assert relay["broker"] == "unreachable"
        assert relay["lag"] >= 1
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    status = run("publish", "--status", "--json", env={"DATA_DIR": str(tmp_path / "data"),
                                                       "DATABASE_URL": ""})
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["lag"] >= 1


def test_publish_needs_a_broker(sqlite_url: str) -> None:
    result = run("publish", env={"DATABASE_URL": sqlite_url, "CLOUDEVENT_BROKER_URL": ""})
    assert result.returncode == 2
    assert "CLOUDEVENT_BROKER_URL" in result.stderr
