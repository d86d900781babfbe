"""The event store on PostgreSQL: eventsourcing's persistence, whose connection pool does
not hand out a connection the server has ended (see infra.database.DeadConnectionCheck).

eventsourcing retries a statement on a dropped connection 10 times, 0.2 s apart; its pool
hands idle connections out oldest first, so after every connection was ended (a restart,
terminated backends) those retries would all meet dead ones. Its own pre-ping option
costs a round trip per statement, and pauses up to seconds between dead connections.
"""

from __future__ import annotations

from eventsourcing.postgres import ConnectionPool, PostgresFactory
from eventsourcing.utils import Environment

from infra.database import DeadConnectionCheck


class PostgresEventStore(PostgresFactory):
    def __init__(self, env: Environment) -> None:
        super().__init__(env)
        datastore = self.datastore
        built = datastore.pool  # not opened yet: replaced by the same pool with a check
        check = DeadConnectionCheck()
        datastore.pool = ConnectionPool(
            get_password_func=built.get_password_func,
            connection_class=built.connection_class,
            kwargs=built.kwargs,
            min_size=built.min_size,
            max_size=built.max_size,
            open=False,
            configure=datastore.after_connect_func(),
            timeout=built.timeout,
            max_waiting=built.max_waiting,
            max_lifetime=built.max_lifetime,
            check=check,
        )
        check.pool = datastore.pool
