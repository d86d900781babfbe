"""Wakes the projector when PostgreSQL notifies that the event store has new events
(eventsourcing's recorder NOTIFYs a channel named after the events table)."""

from __future__ import annotations

import logging
import threading

import psycopg
from psycopg import sql

from infra.database import PostgresDatabase

log = logging.getLogger("product_status.projector")


class StoreListener:
    def __init__(self, database: PostgresDatabase, wake: threading.Event) -> None:
        self.database = database
        self.wake = wake

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                with psycopg.connect(self.database.conninfo, autocommit=True,
                                     connect_timeout=5) as connection:
                    connection.execute(sql.SQL("LISTEN {}").format(
                        sql.Identifier(self.database.events_table.replace(".", "_"))))
                    self.wake.set()  # catch up on whatever was written meanwhile
                    while not stop.is_set():
                        for _ in connection.notifies(timeout=0.5, stop_after=1):
                            self.wake.set()
            except psycopg.Error as error:
                log.warning("store notifications unavailable (%s); retrying", error)
                stop.wait(1.0)
