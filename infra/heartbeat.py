"""A file a follower process (`project`, `publish`, `deliver`) touches every few seconds
while the database answers it (HEARTBEAT_FILE): a container's health check reads the
file's age, as these processes serve no HTTP."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from infra.database import Database

INTERVAL_SECONDS = 10.0
log = logging.getLogger("product_status.heartbeat")


def beat(database: Database, path: Path) -> None:
    """Touches `path` if the database answers."""
    with database.transaction() as cursor:
        cursor.execute("SELECT 1")
    path.touch()


def run(database: Database, path: Path, stop: threading.Event,
        interval: float = INTERVAL_SECONDS) -> None:
    failing = False
    while True:
        try:
            beat(database, path)
            if failing:
                log.info("heartbeat: the database answers again; %s is touched", path)
            failing = False
        except Exception as error:  # the file then ages, and the health check says so
            if not failing:
                log.warning("heartbeat: not touching %s: %s", path, error)
            failing = True
        if stop.wait(interval):
            return
