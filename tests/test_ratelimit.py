"""API rate limits (handoff_site.ratelimit): per agent token, per reviewer token and per
client address, counted in front of Django on the ASGI and WSGI servers, shared on Redis."""

import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

import httpx
import pytest
from django.db import connection

from escalations import services
from escalations.models import Escalation
from handoff_site import ratelimit
from handoff_site.ratelimit import client_address, counted
from tests.conftest import free_port, make_package, make_user, need

ROOT = Path(__file__).resolve().parent.parent
GATE = {"confidence": 0.9, "run_id": "r-1"}


# ---------------------------------------------------------------- what is counted (pure)
def test_the_client_address_is_the_peer_unless_proxies_are_trusted():
    assert client_address("198.51.100.7", "203.0.113.9", 0) == "198.51.100.7"
    # One trusted proxy (nginx): the entry it appended, whatever the client wrote before it.
    assert client_address("10.0.0.2", "1.2.3.4, 203.0.113.9", 1) == "203.0.113.9"
    assert client_address("10.0.0.2", "1.2.3.4, 203.0.113.9, 10.0.0.3", 2) == "203.0.113.9"
    # Fewer entries than trusted proxies: the request did not come through them.
    assert client_address("198.51.100.7", None, 1) == "198.51.100.7"
    assert client_address("198.51.100.7", "203.0.113.9", 2) == "198.51.100.7"
    assert client_address("::ffff:198.51.100.7", None, 0) == "198.51.100.7"
    assert client_address(None, None, 0) == "unknown"


def test_an_ipv6_client_counts_per_64():
    assert counted("/api/v1/gate", None, "2001:db8:1:2:a::1") == [("address", "2001:db8:1:2::/64")]
    assert counted("/api/v1/gate", None, "2001:db8:1:2:b::9") == [("address", "2001:db8:1:2::/64")]


def test_api_calls_count_against_their_token_then_their_address():
    agent = counted("/api/v1/gate", "Bearer abc", "203.0.113.9")
    assert [name for name, _ in agent] == ["agent", "address"]
    assert agent[1] == ("address", "203.0.113.9")
    assert "abc" not in agent[0][1]  # counted by its hash, never stored as it is
    reviewer = counted("/api/v1/review/queue", "bearer abc", "203.0.113.9")
    assert [name for name, _ in reviewer] == ["reviewer", "address"]
    assert counted("/api/v1/openapi.json", None, "203.0.113.9") == [("address", "203.0.113.9")]
    assert counted("/api/v1/gate", "Basic abc", "a") == [("address", "a")]
    assert counted("/queue/", "Bearer abc", "a") == []  # pages: sign-in throttling, not these
    assert [name for name, _ in counted("/mcp", "Bearer abc", "a")] == ["agent", "address"]
    # the single sign-on hops: by address only, whatever the request carries
    assert counted("/accounts/oidc/callback", "Bearer abc", "a") == [("address", "a")]


# ---------------------------------------------------------------- through the ASGI server
def quick_calls(base_url: str, token: str, count: int, *, forwarded_for: str, path="/api/v1/gate"):
    """`count` POSTs from 8 threads at once; the responses, in no particular order."""
    headers = {"Authorization": f"Bearer {token}", "X-Forwarded-For": forwarded_for}
    # A client per thread: threads sharing one client's pool met a connection another had
    # closed (httpx.ReadError: Bad file descriptor, once in CI).
    own, clients = threading.local(), []

    def one(_):
        if not hasattr(own, "client"):
            own.client = httpx.Client(base_url=base_url, timeout=30)
            clients.append(own.client)
        return own.client.post(path, json=GATE, headers=headers)

    try:
        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(one, range(count)))
    finally:
        for client in clients:
            client.close()


def limiter_stood_aside(said: str) -> bool:
    """Whether the limiter's breaker opened (Redis did not answer within its timeout, so
    calls went through uncounted for a second), by what the server logged."""
    return "rate limits not checked" in said


def statuses(responses) -> dict[int, int]:
    found: dict[int, int] = {}
    for response in responses:
        found[response.status_code] = found.get(response.status_code, 0) + 1
    return found


@pytest.mark.django_db(transaction=True)
def test_a_thousand_quick_calls_get_the_limit_then_429(live_server_asgi, agent_with_token, settings, caplog):
    """1,000 gate calls from one token: exactly the limit's count of 200s, the rest 429
    problem+json with Retry-After, no 5xx; another token is unaffected."""
    settings.RATE_LIMIT_AGENT = "100/minute"
    settings.RATE_LIMIT_ADDRESS = "5000/minute"
    settings.TRUSTED_PROXY_COUNT = 1
    _, token = agent_with_token
    other = services.agent_create(name="agent-other").token

    for attempt in (1, 2):
        address = f"203.0.113.{uuid.uuid4().int % 250 + 1}"  # an address bucket of this attempt's own
        caplog.clear()
        started = time.monotonic()
        responses = quick_calls(live_server_asgi, token, 1000, forwarded_for=address)
        took = time.monotonic() - started
        if not limiter_stood_aside(caplog.text):
            break
        # Redis did not answer in time once: the limiter let a second's calls through, as it
        # must (it never fails the API). That is not what this test measures: once more, anew.
        token = services.agent_create(name=f"agent-again-{attempt}").token

    assert statuses(responses) == {200: 100, 429: 900}, statuses(responses)
    refusal = next(r for r in responses if r.status_code == 429)
    assert refusal.headers["Content-Type"] == "application/problem+json"
    assert 1 <= int(refusal.headers["Retry-After"]) <= 60
    assert refusal.json()["status"] == 429
    assert "this agent token" in refusal.json()["detail"]
    assert statuses(quick_calls(live_server_asgi, other, 50, forwarded_for=address)) == {200: 50}
    print(f"\n1,000 quick calls: {statuses(responses)} in {took:.2f} s")


@pytest.mark.django_db(transaction=True)
def test_long_polls_count_too(live_server_asgi, agent_with_token, settings):
    """The long-poll path answers before Django: it is limited all the same."""
    settings.RATE_LIMIT_AGENT = "3/minute"
    _, token = agent_with_token
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=live_server_asgi, headers=headers, timeout=30) as client:
        escalation_id = client.post("/api/v1/escalations", json=make_package()).json()["id"]
        services.escalation_withdraw(escalation=Escalation.objects.get(pk=escalation_id))
        answers = [
            client.get(f"/api/v1/escalations/{escalation_id}", params={"wait": 5}).status_code
            for _ in range(4)
        ]
    assert answers == [200, 200, 429, 429]


@pytest.mark.django_db(transaction=True)
def test_single_sign_on_hops_count_against_the_address(live_server_asgi, settings):
    """Each callback makes Handoff call the provider: a flood of them is refused before that."""
    settings.RATE_LIMIT_ADDRESS = "5/minute"
    settings.TRUSTED_PROXY_COUNT = 1
    address = f"192.0.2.{uuid.uuid4().int % 250 + 1}"
    with httpx.Client(base_url=live_server_asgi, timeout=30) as client:
        answers = [
            client.get("/accounts/oidc/callback?code=x&state=y", headers={"X-Forwarded-For": address})
            for _ in range(8)
        ]
    assert statuses(answers) == {404: 5, 429: 3}  # no provider configured here: 404 until limited
    assert "from this address" in answers[-1].json()["detail"]


@pytest.mark.django_db(transaction=True)
def test_made_up_tokens_are_stopped_by_the_address_limit(live_server_asgi, settings, db):
    settings.RATE_LIMIT_ADDRESS = "20/minute"
    settings.TRUSTED_PROXY_COUNT = 1
    address = f"198.51.100.{uuid.uuid4().int % 250 + 1}"
    with httpx.Client(base_url=live_server_asgi, timeout=30) as client:
        answers = [
            client.get(
                "/api/v1/decisions",
                headers={"Authorization": f"Bearer guess-{i}", "X-Forwarded-For": address},
            )
            for i in range(30)
        ]
    assert statuses(answers) == {401: 20, 429: 10}
    assert "from this address" in answers[-1].json()["detail"]


@pytest.mark.django_db(transaction=True)
def test_reviewer_tokens_have_their_own_limit(live_server_asgi, settings):
    from reviews.services import reviewer_token_issue

    settings.RATE_LIMIT_REVIEWER = "5/minute"
    user = make_user("rita", "reviewer")
    token = reviewer_token_issue(user=user)
    with httpx.Client(
        base_url=live_server_asgi, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as client:
        answers = [client.get("/api/v1/review/queue").status_code for _ in range(7)]
    assert answers == [200] * 5 + [429] * 2


@pytest.mark.django_db(transaction=True)
def test_each_refusal_is_signalled(live_server_asgi, agent_with_token, settings):
    settings.RATE_LIMIT_AGENT = "2/minute"
    seen = []

    def count(sender, **kwargs):
        seen.append((sender, kwargs["limit"]))

    ratelimit.refused.connect(count)
    try:
        quick_calls(live_server_asgi, agent_with_token[1], 5, forwarded_for="x")
    finally:
        ratelimit.refused.disconnect(count)
    assert seen == [("agent", "2 per 1 minute")] * 3


# ---------------------------------------------------------------- WSGI, Redis, cost
def test_a_limiter_without_redis_lets_requests_through(settings, monkeypatch):
    """Redis down: no refusal, no error, and no wait on every request (a 1 s breaker)."""
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    settings.RATE_LIMIT_AGENT = "1/minute"
    limiter = ratelimit.Limiter()
    started = time.monotonic()
    results = [limiter.check([("agent", "t"), ("address", "a")]) for _ in range(50)]
    assert results == [None] * 50
    assert time.monotonic() - started < 1.0


@pytest.mark.django_db(transaction=True)
def test_the_wsgi_application_refuses_with_429(agent_with_token, settings):
    import io

    from handoff_site.wsgi import application

    settings.RATE_LIMIT_AGENT = "2/minute"
    ratelimit._limiter = None  # this process's limiter, made afresh on the test's settings
    _, token = agent_with_token
    environ = {
        "REQUEST_METHOD": "GET", "PATH_INFO": "/api/v1/decisions", "QUERY_STRING": "",
        "HTTP_AUTHORIZATION": f"Bearer {token}", "REMOTE_ADDR": "192.0.2.1",
        "SERVER_NAME": "testserver", "SERVER_PORT": "80",
        "wsgi.input": io.BytesIO(), "wsgi.url_scheme": "http", "wsgi.errors": io.StringIO(),
    }  # fmt: skip
    answers = []
    for _ in range(3):
        started = []
        body = b"".join(application(dict(environ), lambda s, h, started=started: started.append((s, h))))
        answers.append((started[0][0], dict(started[0][1]), body))
    assert [status for status, _, _ in answers] == ["200 OK", "200 OK", "429 Too Many Requests"]
    assert answers[2][1]["Content-Type"] == "application/problem+json"
    assert int(answers[2][1]["Retry-After"]) >= 1


@pytest.mark.redis
def test_a_script_redis_no_longer_has_is_loaded_again(settings):
    """The check runs the script by its digest; when Redis has lost it (a restart, SCRIPT
    FLUSH), the check loads it again and still counts exactly, without tripping the breaker."""
    need(bool(os.environ.get("REDIS_URL")), "Redis (REDIS_URL)")
    settings.REDIS_URL = os.environ["REDIS_URL"]
    settings.RATE_LIMIT_AGENT = "2/minute"
    limiter = ratelimit.Limiter()
    assert limiter.script is not None
    real_sha = limiter.script.sha
    limiter.script.sha = "0" * 40  # a digest Redis does not know, as after a flush
    pairs = counted("/api/v1/gate", f"Bearer reload-{uuid.uuid4()}", "192.0.2.78")
    answers = [limiter.check(pairs) for _ in range(3)]
    assert answers[:2] == [None, None]
    assert answers[2] is not None
    assert answers[2].name == "agent"
    assert limiter.script.sha == real_sha  # loaded again under its real digest
    assert limiter.breaker.closed()


def test_the_check_costs_well_under_a_millisecond(settings):
    """The hot path: one token and one address counted (two moving-window hits)."""
    settings.RATE_LIMIT_AGENT = "1000000/minute"
    settings.RATE_LIMIT_ADDRESS = "1000000/minute"
    limiter = ratelimit.Limiter()
    pairs = counted("/api/v1/gate", f"Bearer cost-{uuid.uuid4()}", "192.0.2.77")
    for _ in range(50):
        limiter.check(pairs)
    samples = []
    for _ in range(1000):
        started = time.perf_counter()
        assert limiter.check(pairs) is None
        samples.append(time.perf_counter() - started)
    median = statistics.median(samples) * 1000
    print(f"\nrate-limit check ({'Redis' if settings.REDIS_URL else 'memory'}): median {median:.3f} ms")
    assert median < 1.0


# ---------------------------------------------------------------- two servers, one limit
def _test_database_url() -> str:
    s = connection.settings_dict
    return f"postgres://{s['USER']}@{s['HOST']}:{s['PORT']}/{s['NAME']}"


def _serve(command: list[str], port: int, env: dict, log: IO[bytes]) -> subprocess.Popen:
    """The server, its output to `log` (a file: a pipe nobody reads would fill and stall it)."""
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, start_new_session=True,
        stdout=log, stderr=log,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return process
        except httpx.HTTPError:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(log.read().decode()[-2000:]) from None
            time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    raise RuntimeError(f"{command[2]} did not start")


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_server_processes_share_one_limit_on_redis(agent_with_token, tmp_path):
    """gunicorn (WSGI) and uvicorn (ASGI), as in production, each answering half of 1,000
    quick calls from one token: together they let the limit's count through."""
    need(bool(os.environ.get("REDIS_URL")), "Redis (REDIS_URL)")
    need(connection.vendor == "postgresql", "PostgreSQL (DATABASE_URL)")
    _, token = agent_with_token
    other = services.agent_create(name="agent-other").token
    env = dict(
        os.environ, DATABASE_URL=_test_database_url(), DEBUG="1", DB_POOL="0",
        RATE_LIMIT_AGENT="100/minute", RATE_LIMIT_ADDRESS="100000/minute",
    )  # fmt: skip
    env.pop("PYTEST_CURRENT_TEST", None)
    http_port, async_port = free_port(), free_port()
    servers = []
    logs = [(tmp_path / name).open("w+b") for name in ("gunicorn.log", "uvicorn.log")]
    try:
        servers.append(_serve(
            [sys.executable, "-m", "gunicorn", "handoff_site.wsgi:application", "-w", "2",
             "-b", f"127.0.0.1:{http_port}", "--log-level", "warning"], http_port, env, logs[0]))
        servers.append(_serve(
            [sys.executable, "-m", "uvicorn", "handoff_site.asgi:application", "--host", "127.0.0.1",
             "--port", str(async_port), "--log-level", "warning", "--lifespan", "off"], async_port, env, logs[1]))
        said_before = ""
        for attempt in (1, 2):
            with ThreadPoolExecutor(8) as pool:
                halves = list(pool.map(
                    lambda port, token=token: quick_calls(f"http://127.0.0.1:{port}", token, 500, forwarded_for="x"),
                    [http_port, async_port],
                ))  # fmt: skip
            said_all = "".join((tmp_path / name).read_text() for name in ("gunicorn.log", "uvicorn.log"))
            said, said_before = said_all[len(said_before):], said_all
            if not limiter_stood_aside(said):
                break
            # Redis did not answer a server in time: its limiter let a second's calls through,
            # as it must. Not what this test measures: once more, with a fresh token.
            token = services.agent_create(name=f"agent-again-{attempt}").token
        both = halves[0] + halves[1]
        assert statuses(both) == {200: 100, 429: 900}, ([statuses(h) for h in halves], said[-3000:])
        assert all(statuses(h).get(200, 0) > 0 for h in halves)  # each server answered some
        assert all(int(r.headers["Retry-After"]) >= 1 for r in both if r.status_code == 429)
        assert statuses(quick_calls(f"http://127.0.0.1:{http_port}", other, 20, forwarded_for="x")) == {200: 20}
    finally:
        for server in servers:
            os.killpg(server.pid, signal.SIGTERM)
        for server in servers:
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
