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

CONN_HEALTH_CHECKS keeps Django's meaning for a pool: on, the pool checks a connection before
lending it (with check_connection here, instead of Django's empty query); off, it lends
without a check. Settings turn it on (a pool that never checks would lend a connection a
database restart broke). CONN_MAX_AGE must be 0, as Django requires of a pool.

`pool` is a copy of Django's property with the check swapped: DJANGO_POOL_SOURCE_SHA256 is
the hash of the source it copies (tests/test_pool_check.py fails when Django's changes).
"""

import select
from collections.abc import Callable
from typing import ClassVar

from django.core.exceptions import ImproperlyConfigured
from django.db.backends.base.base import NO_DB_ALIAS
from django.db.backends.postgresql import base
from psycopg import Connection, OperationalError
from psycopg_pool import ConnectionPool

# sha256 of inspect.getsource(django.db.backends.postgresql.base.DatabaseWrapper.pool.fget)
# in Django 5.2.19, the source DatabaseWrapper.pool below was (re)read against.
DJANGO_POOL_SOURCE_SHA256 = "e5c2654fdf2d50900fec9db41948d0b026da988e24d0eba1b4b9a9d4aacb1b17"


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
        """Django's pool (base.DatabaseWrapper.pool), checked by check_connection when
        CONN_HEALTH_CHECKS is on. The same lines as Django's but the `check` argument."""
        options = self.settings_dict["OPTIONS"].get("pool")
        if self.alias == NO_DB_ALIAS or not options:
            return None
        if self.alias not in self._connection_pools:
            if self.settings_dict.get("CONN_MAX_AGE", 0) != 0:
                raise ImproperlyConfigured("Pooling doesn't support persistent connections.")
            params = {**self.get_connection_params(), "autocommit": True}  # Django sets it later
            pool = ConnectionPool(
                kwargs=params,
                open=False,
                configure=self._configure_connection,
                check=check_connection if self.settings_dict["CONN_HEALTH_CHECKS"] else None,
                **({} if options is True else options),
            )
            self._connection_pools.setdefault(self.alias, pool)  # the first thread's wins
        return self._connection_pools[self.alias]
