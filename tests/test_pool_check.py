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


# ---------------------------------------------------------------- the copy of Django's `pool`


def test_the_copied_pool_property_follows_djangos_source():
    """handoff_site.postgres copies Django's DatabaseWrapper.pool to swap its check. When
    Django's source changes, re-read it against the copy (the persistent-connections guard,
    the CONN_HEALTH_CHECKS switch, the connection kwargs, how the pool is opened and kept per
    alias), bring the copy in line, then record the new hash."""
    import hashlib
    import inspect

    import django
    from django.db.backends.postgresql import base as django_base

    from handoff_site.postgres import base as ours

    source = inspect.getsource(django_base.DatabaseWrapper.pool.fget)
    assert hashlib.sha256(source.encode()).hexdigest() == ours.DJANGO_POOL_SOURCE_SHA256, (
        f"Django {django.__version__} changed DatabaseWrapper.pool "
        f"(django/db/backends/postgresql/base.py): re-read it against "
        f"handoff_site/postgres/base.py's copy, then set DJANGO_POOL_SOURCE_SHA256 to the new hash"
    )


def wrapper(**settings_dict):
    """Our backend's wrapper under an alias of its own, its pool not made yet."""
    from handoff_site.postgres.base import DatabaseWrapper

    defaults = {
        "NAME": "handoff", "USER": "", "PASSWORD": "", "HOST": "", "PORT": "",
        "OPTIONS": {"pool": True}, "CONN_MAX_AGE": 0, "CONN_HEALTH_CHECKS": True,
        "AUTOCOMMIT": True, "ATOMIC_REQUESTS": False, "TIME_ZONE": None, "TEST": {},
    }
    return DatabaseWrapper({**defaults, **settings_dict}, alias="pool-guard-test")


@pytest.fixture
def no_test_pool():
    from handoff_site.postgres.base import DatabaseWrapper

    yield
    DatabaseWrapper._connection_pools.pop("pool-guard-test", None)  # never opened


@pytest.mark.usefixtures("no_test_pool")
def test_a_pool_refuses_persistent_connections_as_djangos_does():
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured) as refused:
        _ = wrapper(CONN_MAX_AGE=60).pool
    assert str(refused.value) == "Pooling doesn't support persistent connections."
    with pytest.raises(ImproperlyConfigured, match="persistent connections"):
        _ = wrapper(CONN_MAX_AGE=None).pool  # unlimited persistent connections


@pytest.mark.usefixtures("no_test_pool")
@pytest.mark.parametrize("health_checks", [True, False])
def test_conn_health_checks_turns_the_pools_check_on_or_off(health_checks):
    from handoff_site.postgres.base import check_connection

    pool = wrapper(CONN_HEALTH_CHECKS=health_checks).pool
    assert pool is not None
    assert pool._check is (check_connection if health_checks else None)


def test_the_settings_pool_checks_connections():
    """Production settings: a pool with the check on (how a restart's broken connections are
    never lent: the tests above), and no persistent connections."""
    if connection.vendor != "postgresql" or connection.pool is None:
        pytest.skip("psycopg's pool (DATABASE_URL on PostgreSQL)")
    from handoff_site.postgres.base import check_connection

    assert connection.settings_dict["CONN_HEALTH_CHECKS"] is True
    assert connection.settings_dict["CONN_MAX_AGE"] == 0
    assert connection.pool._check is check_connection
