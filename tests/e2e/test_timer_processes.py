"""Timers in `serve` processes on one PostgreSQL: every deadline acted on exactly once by
two processes, and deadlines missed while none ran applied by the next one to start."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import READER, TOKENS, WRITER
from tests.processes import ServeProcess

pytestmark = pytest.mark.postgres
IDLE_HOURS = "0.001"  # 3.6 s


def env(database_url: str) -> dict[str, str]:
    return {"DATABASE_URL": database_url,
            "API_TOKENS": ",".join(f"{role}:{token}" for role, token in TOKENS.items()),
            "RATE_LIMIT_WRITES_PER_MINUTE": "1000000",
            "INCIDENT_AUTO_RESOLVE_HOURS": IDLE_HOURS}


def declare(urls: list[str], count: int, prefix: str) -> list[str]:
    made = []
    for n in range(count):
        answer = httpx.post(f"{urls[n % len(urls)]}/api/v1/incidents", headers=WRITER,
                            json={"title": f"{prefix} {n}"}, timeout=30)
        assert answer.status_code == 201, answer.text
        made.append(answer.json()["id"])
    return made


def events(url: str, kind: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    after: int | None = 0
    while after is not None:
        page = httpx.get(f"{url}/api/v1/events", headers=READER, timeout=30,
                         params={"type": kind, "after": after, "limit": 1000}).json()
        found.extend(page["items"])
        after = page["next_after"]
    return found


def metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", headers=READER).text
    found = [line.rsplit(" ", 1)[1] for line in text.splitlines() if line.startswith(name)]
    return float(found[0]) if found else 0.0


def wait_resolved(url: str, ids: list[str], processes: list[ServeProcess],
                  within: float = 180) -> list[dict[str, Any]]:
    deadline = time.monotonic() + within
    while True:
        resolved = [e for e in events(url, "resolved") if e["subject"] in ids]
        if len({e["subject"] for e in resolved}) == len(ids):
            return resolved
        assert time.monotonic() < deadline, "\n".join(p.output()[-3000:] for p in processes)
        time.sleep(0.5)


def test_two_processes_resolve_each_idle_incident_once_and_a_later_one_catches_up(
        tmp_path: Path, postgres_url: str) -> None:
    settings = env(postgres_url)
    first = ServeProcess(settings, tmp_path / "first.log")
    second = ServeProcess(settings, tmp_path / "second.log")
    both = [first, second]
    try:
        idle = declare([first.url, second.url], 50, "Idle")
        resolved = wait_resolved(first.url, idle, both)
        time.sleep(5)  # long enough for a second resolution of any, were there one
        resolved = [e for e in events(second.url, "resolved") if e["subject"] in idle]
        assert Counter(e["subject"] for e in resolved) == Counter(idle)  # once each
        assert {e["actor"] for e in resolved} == {"system"}
        updates = [e for e in events(first.url, "update_added") if e["subject"] in idle]
        assert len(updates) == 50
        assert {(e["actor"], e["data"]["author"], e["data"]["update_type"])
                for e in updates} == {("system", "system", "resolution")}
        assert all("automatically" in e["data"]["public_message"] for e in updates)
        fired = sum(metric(p.url, 'product_status_timer_commands_total{kind="auto_resolve"}')
                    for p in both)
        assert fired == 50
        states = sorted(httpx.get(f"{p.url}/readyz").json()["timers"]["state"] for p in both)
        assert states == ["active", "standby"]
    finally:
        for process in both:
            process.stop()

    # While no process acts on deadlines (`--no-timers`), incidents pass theirs.
    writer = ServeProcess(settings, tmp_path / "writer.log", "--no-timers")
    try:
        missed = declare([writer.url], 20, "Missed")
        time.sleep(8)
        assert [e for e in events(writer.url, "resolved") if e["subject"] in missed] == []
        assert httpx.get(f"{writer.url}/readyz").json()["timers"]["state"] == "off"
    finally:
        writer.stop()

    third = ServeProcess(settings, tmp_path / "third.log")
    try:
        resolved = wait_resolved(third.url, missed, [third])
        assert Counter(e["subject"] for e in resolved) == Counter(missed)
        # Oldest deadline first: in the order they were declared.
        assert [e["subject"] for e in resolved] == missed
        assert len(events(third.url, "resolved")) == 70
    finally:
        third.stop()
