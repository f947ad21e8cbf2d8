"""Shared fixtures. Tests use the real database, broker and channel layer of the mode they
run in: SQLite and in-memory by default, PostgreSQL and Redis when DATABASE_URL and
REDIS_URL are set (as CI sets them)."""

import importlib
import inspect
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from escalations import services

IN_CI = bool(os.environ.get("CI"))


def index_plan(sql: str) -> str:
    """PostgreSQL's plan of `sql` as a large table would get it: a test's few rows would be
    cheaper to read from the table, so that is off for this transaction."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + sql)
        return "\n".join(row for (row,) in cursor.fetchall())


def need(condition: bool, what: str) -> None:
    """Skip locally when a service or tool is missing; in CI, fail instead."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI must provide {what}")
    pytest.skip(f"needs {what}")


def now() -> datetime:
    return datetime.now(UTC)


def make_package(**overrides: Any) -> dict[str, Any]:
    """A valid escalation package (tier 3 in the default domain); override any field."""
    t = now()
    package: dict[str, Any] = {
        "run_id": "run-42",
        "title": "Update the 14 callers of charge() or add a shim?",
        "uncertainty": (
            "charge() changed signature; 14 callers in billing/ break. Updating them touches "
            "billing/legacy which has no tests; a shim keeps them working but doubles the API."
        ),
        "reason": "approach_choice",
        "confidence": 0.62,
        "history": [
            {"at": (t - timedelta(minutes=30)).isoformat(), "action": "read billing/charge.py", "outcome": "ok"},
            {
                "at": (t - timedelta(minutes=10)).isoformat(),
                "action": "ran the test suite",
                "outcome": "failed",
                "detail": "14 failures in billing/",
            },
        ],
        "options": [
            {
                "key": "update-callers",
                "label": "Update all 14 callers",
                "recommended": True,
                "args": {"paths": ["billing/"]},
            },
            {"key": "shim", "label": "Add a compatibility shim"},
        ],
        "cost_of_delay": {"blocking": True, "impact": "high", "blocked_tasks": 3},
    }
    package.update(overrides)
    return package


@pytest.fixture
def package() -> Callable[..., dict[str, Any]]:
    return make_package


def ensure_default_policies() -> None:
    """Transactional tests flush the tables, the migration's policies included: put them back."""
    from django.apps import apps

    importlib.import_module("escalations.migrations.0002_default_policies").seed(apps, None)


def flush_to_migrated() -> None:
    """Empty every table and put back what the migrations wrote (the default policies, the
    reviewer and manager groups): the database as the tests that run next expect it."""
    from django.core.management import call_command

    call_command("flush", interactive=False, verbosity=0)
    restore_migrated_rows()


def restore_migrated_rows() -> None:
    """Put back what the migrations wrote and a flush removed (it is there already: nothing)."""
    from django.apps import apps

    ensure_default_policies()
    importlib.import_module("reviews.migrations.0002_groups").create_groups(apps, None)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    from tests.scheduling import longest_first

    longest_first(items)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """`make test`'s --dist loadfile, longest files first (tests/scheduling.py)."""
    if config.getvalue("dist") != "loadfile":
        return None
    from tests.scheduling import LongestFilesFirst

    return LongestFilesFirst(config, log)


def _flushes_the_database(item: pytest.Item) -> bool:
    """Whether pytest-django runs `item` as a TransactionTestCase, which empties every table
    after it (the same signs its _django_db_helper reads)."""
    marker = item.get_closest_marker("django_db")
    if marker and (marker.kwargs.get("transaction") or (marker.args and marker.args[0])):
        return True
    names = getattr(item, "fixturenames", ())
    return any(name in names for name in ("transactional_db", "live_server", "live_server_asgi"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None):
    """After a transactional test's flush (its fixtures' teardown), the migrations' rows come
    back: whatever test runs next in this process finds the database as migrated, in whatever
    order pytest-xdist hands out the files."""
    yield
    if nextitem is not None and _flushes_the_database(item):
        from pytest_django.plugin import blocking_manager_key

        with item.config.stash[blocking_manager_key].unblock():
            restore_migrated_rows()


@pytest.fixture
def agent_with_token(db):
    """(agent, token) in the `default` domain, without a resume_url."""
    ensure_default_policies()
    new = services.agent_create(name="agent-007", domain="default")
    return new.agent, new.token


@pytest.fixture
def agent(agent_with_token):
    return agent_with_token[0]


class AgentClient(Client):
    """Django's test client speaking as an agent: bearer token and JSON bodies."""

    def __init__(self, token: str, **kwargs: Any) -> None:
        super().__init__(HTTP_AUTHORIZATION=f"Bearer {token}", **kwargs)

    def post_json(self, path: str, data: Any = None, **extra: Any):
        body = data if isinstance(data, str | bytes) else json.dumps(data)
        return self.post(path, body, content_type="application/json", **extra)

    def escalate(self, package: dict[str, Any] | None = None, **extra: Any):
        return self.post_json("/api/v1/escalations", package or make_package(), **extra)


@pytest.fixture
def api(agent_with_token) -> AgentClient:
    return AgentClient(agent_with_token[1])


@pytest.fixture
def receiver():
    """A real HTTP server on 127.0.0.1 standing in for an agent's webhook endpoint."""
    from tests.receiver import Receiver

    with Receiver() as receiver:
        yield receiver


@pytest.fixture
def hooked(agent, receiver):
    """The agent, with its resume_url at the receiver."""
    agent.resume_url = receiver.url
    agent.save(update_fields=["resume_url"])
    return agent


def make_user(username: str, *roles: str, password: str = "correct-horse-battery"):
    """A user in the given groups (reviewer, manager); the groups come from a migration."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    user = get_user_model().objects.create_user(username, f"{username}@example.com", password)
    for role in roles:
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


@pytest.fixture
def reviewer(db):
    return make_user("alice", "reviewer")


@pytest.fixture
def other_reviewer(db):
    return make_user("bob", "reviewer")


@pytest.fixture
def manager(db):
    return make_user("maya", "manager")


@pytest.fixture
def manager_client(manager) -> Client:
    client = Client()
    client.force_login(manager)
    return client


@pytest.fixture
def reviewer_client(reviewer) -> Client:
    client = Client()
    client.force_login(reviewer)
    return client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(autouse=True)
def _async_tests_get_a_channel_layer_of_their_own(request) -> None:
    """An async test runs in an event loop of its own, and gets a channel layer of its own.
    channels-redis keeps per-channel locks on the layer: a loop that closed with a receive's
    backup cleaner still pending leaves its channel's lock locked and bound to that loop, and
    the next loop's receive on the channel fails ("... is bound to a different event loop":
    CI at 3ce5e68, all of test_presence after another file in the same process)."""
    if request.node.get_closest_marker("asyncio") is not None or inspect.iscoroutinefunction(
        getattr(request.node, "obj", None)
    ):
        from channels.layers import channel_layers

        channel_layers.backends.clear()


@pytest.fixture
def live_server_asgi(transactional_db) -> Iterator[str]:
    """The real ASGI application under uvicorn on 127.0.0.1, in a thread of this process
    (so it shares the test database and, in the embedded mode, the in-process layers)."""
    with serve_asgi() as base:
        yield base


@contextmanager
def serve_asgi() -> Iterator[str]:
    """live_server_asgi's server, for a fixture of any scope: its base URL while it runs."""
    import uvicorn
    from channels.layers import channel_layers

    from handoff_site.asgi import application

    # A channel layer of its own: channels-redis refuses receives from two event loops at
    # once, and the server before this one (another loop, in another thread) may still be
    # closing its sockets on a loaded machine ("Two event loops are trying to receive()").
    channel_layers.backends.clear()
    port = free_port()
    config = uvicorn.Config(application, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    old_public = settings.PUBLIC_URL
    settings.PUBLIC_URL = f"http://127.0.0.1:{port}"
    try:
        yield settings.PUBLIC_URL
    finally:
        settings.PUBLIC_URL = old_public
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session", autouse=True)
def _processes_run_the_production_settings() -> None:
    """This process runs handoff_site.settings_test (pyproject.toml); the servers, workers and
    commands the tests start inherit the environment and run handoff_site.settings, as they
    do in production."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "handoff_site.settings"


@pytest.fixture(scope="session", autouse=True)
def _migrated_rows_at_start(request, django_db_setup, django_db_blocker) -> None:
    """A test database kept from the last run (--reuse-db) has what that run's last test left:
    a transactional test's flush, perhaps. The first test finds it as migrated, whatever."""
    # pytest-django sets up only the databases the run's tests use (its own rule, read here)
    from pytest_django.fixtures import _get_databases_for_setup

    if "default" not in _get_databases_for_setup(request.session.items)[0]:
        return
    with django_db_blocker.unblock():
        restore_migrated_rows()


@pytest.fixture(scope="session", autouse=True)
def _close_connection_pools(django_db_setup, django_db_blocker):
    """Threads of live servers leave connections in psycopg's pool; close it before the test
    database is dropped (teardown runs in reverse order, so this runs first)."""
    yield
    from django.db import connections

    with django_db_blocker.unblock():
        connection = connections["default"]  # the pool is shared by every thread's wrapper
        if hasattr(connection, "close_pool"):
            connection.close_pool()
            _end_stray_sessions(connection.settings_dict)


def _end_stray_sessions(settings_dict) -> None:
    """A subprocess or thread still finishing (a worker child, a server thread) must not stop
    the test database from being dropped: end its session, and say so."""
    import psycopg

    params = {k: v for k, v in {
        "host": settings_dict["HOST"], "port": settings_dict["PORT"] or None,
        "user": settings_dict["USER"], "password": settings_dict["PASSWORD"] or None,
    }.items() if v}
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as admin:
        ended = admin.execute(
            "SELECT pid, application_name, left(query, 80), pg_terminate_backend(pid) "
            "FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [settings_dict["NAME"]],
        ).fetchall()
    for pid, application, query, _ in ended:
        print(f"\nended a stray session on the test database: pid {pid} {application!r}: {query}")


def post_package(api, **overrides):
    """Post a package through the agent API; the stored Escalation."""
    from escalations.models import Escalation

    response = api.escalate(make_package(**overrides))
    assert response.status_code == 201, response.content
    return Escalation.objects.get(pk=response.json()["id"])
