"""Page views run under PostgreSQL's statement_timeout (DB_STATEMENT_TIMEOUT): a statement
past it is cancelled by the server and the page answers 503 with its own words, logged; the
pooled connection goes back without the bound; the agent API is not bounded.

On real PostgreSQL through the request path: Django's handler with the project's middleware
and handler500 (a page's query made slow with pg_sleep), and the production web-http
(gunicorn, handoff_site.wsgi) whose page waits on a lock held past the bound.
"""

import logging
import time

import httpx
import psycopg
import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from reviews import queue
from tests.conftest import need, post_package
from tests.processes import gunicorn, manage, production_env, reviewer_session

pytestmark = pytest.mark.postgres

BOUND = 0.3  # seconds: DB_STATEMENT_TIMEOUT in these tests
SLEEP = 20  # seconds: the slow statement, far past it (it fails the test by its length)


@pytest.fixture
def bounded(settings):
    if connection.vendor != "postgresql":
        pytest.skip("statement_timeout is PostgreSQL's")
    settings.DB_STATEMENT_TIMEOUT = BOUND  # a new Client builds the middleware with it


def signed_in(user) -> Client:
    client = Client(raise_request_exception=False)  # the answer a browser gets
    client.force_login(user)
    return client


def statement_timeout() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        return cursor.fetchone()[0]


@pytest.fixture
def slow_queue(monkeypatch):
    """The queue page's read runs a statement of SLEEP seconds first."""
    page = queue.page

    def slow_page(*args, **kwargs):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(%s)", [SLEEP])
        return page(*args, **kwargs)

    monkeypatch.setattr(queue, "page", slow_page)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("bounded", "slow_queue")
def test_a_page_past_the_bound_answers_503_with_its_own_words_and_is_logged(reviewer, caplog):
    client = signed_in(reviewer)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        response = client.get(reverse("reviews:queue"), {"q": "refund"})
    elapsed = time.monotonic() - started

    assert response.status_code == 503
    assert elapsed < SLEEP / 2  # cut off by the server, not waited out
    assert response["Retry-After"]
    body = response.content.decode()
    assert "This page took too long" in body
    assert "took longer than 0.3 seconds, so it was stopped" in body
    assert "narrow the search or the filters" in body
    assert "Traceback" not in body
    (record,) = [r for r in caplog.records if "statement timeout" in r.getMessage()]
    assert "DB_STATEMENT_TIMEOUT 0.3s" in record.getMessage()
    assert "GET /?q=refund" in record.getMessage()
    assert "canceling statement due to statement timeout" in record.getMessage()
    # Logged once, as that warning: not again by Django's request logger, as an ERROR with a traceback.
    assert [r.name for r in caplog.records if r.levelno >= logging.ERROR] == []

    # The connection (kept open by the test client) goes back without the bound, and works.
    assert statement_timeout() == "0"


def watch(monkeypatch, module, name: str) -> list[str]:
    """statement_timeout as each call of module.name sees it."""
    seen: list[str] = []
    function = getattr(module, name)

    def watched(*args, **kwargs):
        seen.append(statement_timeout())
        return function(*args, **kwargs)

    monkeypatch.setattr(module, name, watched)
    return seen


@pytest.fixture
def seen_bound(monkeypatch) -> list[str]:
    """statement_timeout as the queue page's read sees it."""
    return watch(monkeypatch, queue, "page")


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("bounded")
def test_a_page_runs_bounded_and_resets_the_connection(reviewer, seen_bound):
    client = signed_in(reviewer)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("reviews:queue"))
    assert response.status_code == 200
    assert seen_bound == ["300ms"]
    assert statement_timeout() == "0"  # back as it came
    # Connection set-up, as Django's own: not among the page's queries
    assert not [q for q in queries.captured_queries if q["sql"].startswith(("SET", "RESET"))]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("bounded")
def test_the_agent_api_is_not_bounded(api, monkeypatch):
    from escalations import selectors

    escalation = post_package(api)
    seen = watch(monkeypatch, selectors, "escalation_read_for_token")
    assert api.get(f"/api/v1/escalations/{escalation.pk}").status_code == 200
    assert seen == ["0"]


@pytest.mark.django_db(transaction=True)
def test_no_bound_with_zero(reviewer, settings, seen_bound):
    if connection.vendor != "postgresql":
        pytest.skip("statement_timeout is PostgreSQL's")
    settings.DB_STATEMENT_TIMEOUT = 0
    assert signed_in(reviewer).get(reverse("reviews:queue")).status_code == 200
    assert seen_bound == ["0"]


# ---------------------------------------------------------------- production web-http

def admin() -> psycopg.Connection:
    params = connection.get_connection_params()
    keys = ("host", "port", "user", "password", "dbname")
    return psycopg.connect(**{k: v for k, v in params.items() if k in keys})


@pytest.mark.django_db(transaction=True)
def test_gunicorn_cuts_a_page_blocked_past_the_bound_and_serves_the_next(tmp_path):
    """The production web-http (gunicorn, handoff_site.wsgi, DEBUG off): the queue page waits
    on a lock another session holds (statement_timeout counts the wait), is cut off at the
    bound with the 503 page, and logged; once the lock is gone the same page loads."""
    need(connection.vendor == "postgresql", "PostgreSQL (DATABASE_URL)")
    env = production_env(redis_url="", var_dir=tmp_path, DB_STATEMENT_TIMEOUT="1", DB_POOL_MIN="1")
    manage("collectstatic", "--noinput", "-v", "0", env=env)  # production hashes static names
    session_key = reviewer_session("tess", env)
    process, url = gunicorn(env, tmp_path)
    try:
        cookies = {"sessionid": session_key}
        assert httpx.get(url + "/", cookies=cookies, timeout=10).status_code == 200
        with admin() as other:  # a transaction holding the queue's table
            other.execute("LOCK TABLE escalations_escalation IN ACCESS EXCLUSIVE MODE")
            started = time.monotonic()
            response = httpx.get(url + "/", cookies=cookies, timeout=10)
            elapsed = time.monotonic() - started
            other.rollback()
        assert response.status_code == 503, response.text[:500]
        assert 1 <= elapsed < 4
        assert "This page took too long" in response.text
        assert "took longer than 1 second," in response.text
        time.sleep(0.3)  # the log line reaches the file
        assert "statement timeout (DB_STATEMENT_TIMEOUT 1s) on GET /" in process.log()
        # The next request (the same pooled connection, reset) is served.
        assert httpx.get(url + "/", cookies=cookies, timeout=10).status_code == 200
        with admin() as other:  # no connection of the server is left bounded
            rows = other.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND query LIKE 'SET statement_timeout%' AND state = 'idle'"
            ).fetchone()
            assert rows == (0,)
    finally:
        process.stop()
