"""The pool's check before it lends a connection (handoff_site.postgres): no round trip for
a healthy idle connection, and never a connection whose server process has gone."""

import time
from collections.abc import Iterator

import psycopg
import pytest
from django.db import connection

pytestmark = pytest.mark.postgres


@pytest.fixture
def pool():
    if connection.vendor != "postgresql" or connection.pool is None:
        pytest.skip("psycopg's pool (DATABASE_URL on PostgreSQL)")
    return connection.pool


def admin() -> psycopg.Connection:
    params = connection.get_connection_params()
    keys = ("host", "port", "user", "password", "dbname")
    return psycopg.connect(autocommit=True, **{k: v for k, v in params.items() if k in keys})


def lent_until(pool, pid: int) -> Iterator[psycopg.Connection]:
    """Connections the pool lends, held, until the one of server process `pid`: as many as
    it has idle (they come in turn)."""
    held = []
    try:
        for _ in range(max(1, pool.get_stats().get("pool_available", 0))):
            conn = pool.getconn(timeout=2)
            held.append(conn)
            yield conn
            if conn.info.backend_pid == pid:
                return
    finally:
        for conn in held:
            pool.putconn(conn)


def idle_connection(pool, marker: str) -> int:
    """A pooled connection back in the pool after `marker`'s query: its server process."""
    conn = pool.getconn(timeout=2)
    conn.execute(f"SELECT 1 /* {marker} */")
    pid = conn.info.backend_pid
    pool.putconn(conn)
    return pid


@pytest.mark.django_db(transaction=True)
def test_a_healthy_idle_connection_is_lent_without_a_query(pool):
    pid = idle_connection(pool, "last-query")
    pids = [conn.info.backend_pid for conn in lent_until(pool, pid)]
    assert pids[-1] == pid
    with admin() as other:
        (query,) = other.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()
    assert "last-query" in query  # not the empty query of a check (Django's own would send it)


@pytest.mark.django_db(transaction=True)
def test_a_connection_whose_server_process_ended_is_never_lent(pool):
    pid = idle_connection(pool, "before-terminate")
    with admin() as other:
        assert other.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone()[0]
    time.sleep(0.2)  # the server's goodbye reaches the idle socket
    for conn in lent_until(pool, pid):
        assert conn.info.backend_pid != pid
        assert conn.execute("SELECT 1").fetchone() == (1,)  # every lent one works
