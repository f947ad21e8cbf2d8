"""Django's PostgreSQL backend with one change: the check psycopg's pool runs on a connection
before lending it.

Django's health check for a pool (CONN_HEALTH_CHECKS) is ConnectionPool.check_connection,
an empty query: a round trip, and a wake-up of the PostgreSQL backend, on every request
(on the agent API's hot read it was ~13% of the app's CPU; Django takes no other check).
An idle pooled connection has nothing to read, since its last result was read in full;
when PostgreSQL stops or restarts, or the backend is terminated, the server sends an error
and closes the socket, which makes it readable. So the empty query is only sent then (or
when psycopg already knows the connection is closed), and a connection a restart broke is
still never lent: the check raises, and the pool drops it and tries the next one.
"""

import select
from collections.abc import Callable
from typing import ClassVar

from django.db.backends.base.base import NO_DB_ALIAS
from django.db.backends.postgresql import base
from psycopg import Connection, OperationalError
from psycopg_pool import ConnectionPool


def check_connection(conn: Connection) -> None:
    """Raise if `conn` cannot serve a request."""
    if conn.closed or conn.broken:
        raise OperationalError("the pooled connection is closed")
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    if poller.poll(0):
        ConnectionPool.check_connection(conn)


class DatabaseWrapper(base.DatabaseWrapper):
    # Django's (not in its type stubs): the pools by alias, and the pool's configure callback.
    _connection_pools: ClassVar[dict[str, ConnectionPool]]
    _configure_connection: Callable[[Connection], None]

    @property
    def pool(self) -> ConnectionPool | None:
        """Django's pool (base.DatabaseWrapper.pool), checked by check_connection."""
        options = self.settings_dict["OPTIONS"].get("pool")
        if self.alias == NO_DB_ALIAS or not options:
            return None
        if self.alias not in self._connection_pools:
            params = {**self.get_connection_params(), "autocommit": True}  # Django sets it later
            pool = ConnectionPool(
                kwargs=params,
                open=False,
                configure=self._configure_connection,
                check=check_connection,
                **({} if options is True else options),
            )
            self._connection_pools.setdefault(self.alias, pool)  # the first thread's wins
        return self._connection_pools[self.alias]
