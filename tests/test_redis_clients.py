"""operations.redis_clients: one blocking client per address and timeouts, across threads and forks."""

import os

import pytest
from django.conf import settings

from operations.redis_clients import redis_client
from tests.conftest import need


def test_the_same_address_and_timeouts_share_one_client():
    url = "redis://127.0.0.1:1/0"  # clients connect on first use: nothing listens there
    client = redis_client(url, timeout=2)
    assert redis_client(url, timeout=2) is client
    assert redis_client(url, timeout=2.0, connect_timeout=2) is client  # the default is the timeout
    assert redis_client(url, timeout=2, connect_timeout=1) is not client
    assert redis_client(url, timeout=0.5) is not client
    assert redis_client("redis://127.0.0.1:1/1", timeout=2) is not client
    options = redis_client(url, timeout=5, connect_timeout=2).connection_pool.connection_kwargs
    assert (options["socket_timeout"], options["socket_connect_timeout"]) == (5, 2)


@pytest.mark.redis
def test_a_forked_child_uses_the_client_on_a_connection_of_its_own():
    """The child's first command starts an empty pool (redis-py's pid check); the parent's
    connection, inherited by the child, is still the parent's after the child is gone."""
    need(bool(settings.REDIS_URL), "Redis (REDIS_URL)")
    client = redis_client(settings.REDIS_URL, timeout=2)
    parents = client.client_id()
    pid = os.fork()
    if pid == 0:  # the child: only its exit status goes back
        try:
            same = redis_client(settings.REDIS_URL, timeout=2) is client
            os._exit(0 if same and client.client_id() != parents else 1)
        finally:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert client.client_id() == parents  # not shut down by the child, not replaced
