"""HEARTBEAT_FILE: follower processes show they are alive and reach the database."""

from __future__ import annotations

import time
from pathlib import Path

from tests.processes import CliProcess, run_cli


def test_project_touches_its_heartbeat_file(tmp_path: Path, sqlite_url: str) -> None:
    beat = tmp_path / "heartbeat"
    worker = CliProcess(["project"], {"DATABASE_URL": sqlite_url, "HEARTBEAT_FILE": str(beat)},
                        tmp_path / "project.log")
    try:
        deadline = time.monotonic() + 30
        while not beat.exists():
            assert worker.alive(), worker.output()
            assert time.monotonic() < deadline, "no heartbeat within 30 s"
            time.sleep(0.1)
    finally:
        worker.stop()


def test_a_heartbeat_file_in_no_directory_stops_start_up(sqlite_url: str) -> None:
    result = run_cli("project", env={"DATABASE_URL": sqlite_url,
                                     "HEARTBEAT_FILE": "/no/such/dir/beat"})
    assert result.returncode == 2
    assert "HEARTBEAT_FILE" in result.stderr
