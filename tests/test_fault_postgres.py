"""PostgreSQL restarted mid-run (issue 9; perf-reliability R5), against a private cluster.

The app runs as it does in production, on a PostgreSQL cluster of its own that this test
starts (initdb + pg_ctl on a free port in a temp dir; the shared server is never touched):
uvicorn serving handoff_site.asgi (psycopg's pool, DEBUG off) and a Celery worker. The
cluster is stopped mid-run: the agent API answers 503 problem+json with Retry-After, the
dashboard its own 503 page, a waiting long-poll answers by the end of its wait, all within
a few seconds, never a 500 and never a hang, and the worker keeps running. The cluster is
started again: requests succeed again on their own, without restarting anything, and the
worker delivers the next decision.

Needs Redis (the worker's broker) and PostgreSQL's server binaries.
"""

import json
import os
import threading
import time

import httpx
import pytest

from escalations.tasks import sweep_deliveries_task
from escalations.transport import webhooks
from tests.conftest import make_package, need
from tests.processes import (
    PostgresCluster,
    Worker,
    manage,
    postgres_bin,
    production_env,
    purge_queue,
    reviewer_session,
    uvicorn,
    wait_until,
)
from tests.receiver import Receiver

pytestmark = [pytest.mark.redis, pytest.mark.postgres]

# The bound: a request fails fast (and the pool's timeout is what it waits at most).
FAIL_FAST_SECONDS = 5.0
# Back on its own within this long of the database accepting connections again.
RECOVER_SECONDS = 10.0
LONG_POLL_WAIT = 8

@pytest.fixture(scope="module")
def cluster():
    need(bool(os.environ.get("REDIS_URL")), "Redis (REDIS_URL)")
    bin_dir = postgres_bin()
    need(bin_dir is not None, "PostgreSQL's server binaries (initdb, pg_ctl)")
    cluster = PostgresCluster(bin_dir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="module")
def var_dir(tmp_path_factory):
    """Production settings hash the static files' names: collect them once."""
    path = tmp_path_factory.mktemp("var")
    manage("collectstatic", "--noinput", "-v", "0", env=production_env(redis_url="", var_dir=path))
    return path


@pytest.fixture
def stack(cluster, var_dir, tmp_path):
    """The private database migrated, an agent (its resume_url at a receiver), a reviewer
    with a session and an API token, and the app's web server and worker on it."""
    database_url = cluster.create_database(f"handoff_{os.getpid()}_{time.monotonic_ns()}")
    env = production_env(redis_url=os.environ["REDIS_URL"], var_dir=var_dir, DATABASE_URL=database_url)
    manage("migrate", "--noinput", "-v", "0", env=env)
    purge_queue()
    with Receiver() as receiver:
        agent = json.loads(
            manage("agent_create", "fault-bot", "--resume-url", receiver.url, env=env).strip().splitlines()[-1]
        )
        session_key = reviewer_session("rita", env)
        reviewer_token = manage("reviewer_token", "rita", env=env).strip().splitlines()[-1]
        worker = Worker(tmp_path, {"DATABASE_URL": database_url})
        web = None
        try:
            web, url = uvicorn(env, tmp_path)
            worker.wait_ready()
            yield {
                "web": web,
                "url": url,
                "worker": worker,
                "receiver": receiver,
                "agent": agent,
                "session": session_key,
                "reviewer": reviewer_token,
            }
        finally:
            if not cluster.running():
                cluster.start()
            worker.stop()
            if web is not None:
                web.stop()
            purge_queue()


@pytest.fixture
def clients(stack):
    """HTTP clients of the web server: the agent, the reviewer's API, a signed-in browser."""
    url = stack["url"]
    made = {
        "agent": httpx.Client(base_url=url, headers={"Authorization": f"Bearer {stack['agent']['token']}"}),
        "reviewer": httpx.Client(base_url=url, headers={"Authorization": f"Bearer {stack['reviewer']}"}),
        "browser": httpx.Client(base_url=url, cookies={"sessionid": stack["session"]}),
    }
    for client in made.values():
        client.timeout = httpx.Timeout(30)  # far past every bound here: a hang shows as slow
    yield made
    for client in made.values():
        client.close()


def timed(call):
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def assert_unavailable_problem(response: httpx.Response) -> None:
    assert response.status_code == 503, (response.status_code, response.text[:500])
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) > 0
    body = response.json()
    assert body["status"] == 503
    assert body["title"] == "Service unavailable"


def test_a_postgresql_restart_fails_fast_with_503_and_recovers_on_its_own(cluster, stack, clients):
    web, worker, receiver = stack["web"], stack["worker"], stack["receiver"]
    agent, reviewer, browser = clients["agent"], clients["reviewer"], clients["browser"]

    def escalate(run_id: str) -> httpx.Response:
        return agent.post("/api/v1/escalations", json=make_package(run_id=run_id))

    # Up: the agent, the reviewer's API and the dashboard all work.
    first = escalate("before")
    assert first.status_code == 201, first.text
    waiting_on = first.json()["id"]
    assert browser.get("/").status_code == 200

    # A long-poll is waiting when the database goes away.
    long_poll = {}

    def poll() -> None:
        response, took = timed(lambda: agent.get(f"/api/v1/escalations/{waiting_on}", params={"wait": LONG_POLL_WAIT}))
        long_poll.update(response=response, took=took)

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(1)

    cluster.stop("fast")
    try:
        down = {}
        response, down["create"] = timed(lambda: escalate("during"))
        assert_unavailable_problem(response)
        response, down["read"] = timed(lambda: agent.get(f"/api/v1/escalations/{waiting_on}"))
        assert_unavailable_problem(response)
        response, down["decide"] = timed(
            lambda: reviewer.post(
                f"/api/v1/review/escalations/{waiting_on}/decision", json={"kind": "option", "option": "shim"}
            )
        )
        assert_unavailable_problem(response)
        page, down["page"] = timed(lambda: browser.get("/"))
        assert page.status_code == 503, page.text[:500]
        assert page.headers["content-type"].startswith("text/html")
        assert "Handoff is unavailable for a moment" in page.text
        assert 'class="topbar"' in page.text  # the product's own page, not a bare error
        assert int(page.headers["retry-after"]) > 0
        response, down["new long-poll"] = timed(
            lambda: agent.get(f"/api/v1/escalations/{waiting_on}", params={"wait": LONG_POLL_WAIT})
        )
        assert_unavailable_problem(response)

        poller.join(LONG_POLL_WAIT + 10)
        assert not poller.is_alive(), "the long-poll hung past its wait"
        assert long_poll["response"].status_code in (200, 503), long_poll["response"].text[:500]
        assert long_poll["took"] < LONG_POLL_WAIT + FAIL_FAST_SECONDS

        sweep_deliveries_task.delay()  # the worker runs a task into the outage, and stays up
        time.sleep(2)
        assert worker.alive(), worker.log()
        assert web.alive(), web.log()
    finally:
        restarted = time.monotonic()
        cluster.start()
    started_in = time.monotonic() - restarted

    # Back on its own: the first new escalation that succeeds after the restart.
    attempts = []

    def created() -> bool:
        response = escalate("after")
        attempts.append(response.status_code)
        return response.status_code == 201

    wait_until(created, timeout=RECOVER_SECONDS + 20, what="a 201 after the restart", log=web.log, every=0.2)
    recovered_in = time.monotonic() - restarted - started_in
    assert set(attempts) <= {201, 503}, attempts
    assert browser.get("/").status_code == 200

    # The worker too: a decision made now reaches the agent.
    decision = reviewer.post(
        f"/api/v1/review/escalations/{waiting_on}/decision", json={"kind": "option", "option": "shim"}
    )
    assert decision.status_code == 201, decision.text
    (request,) = receiver.wait_for(1, timeout=30)
    assert webhooks.verify(stack["agent"]["signing_secret"], request.body, request.header("handoff-signature"))
    assert worker.ping()

    print(
        "\nPostgreSQL stopped: 503 in "
        + ", ".join(f"{name} {took:.2f} s" for name, took in down.items())
        + f"; the waiting long-poll answered {long_poll['response'].status_code} after "
        f"{long_poll['took']:.1f} s (wait={LONG_POLL_WAIT}); restarted in {started_in:.1f} s; "
        f"requests succeed {recovered_in:.2f} s after it accepts connections "
        f"({len(attempts) - 1} 503s first)"
    )
    assert max(down.values()) < FAIL_FAST_SECONDS, down
    assert recovered_in < RECOVER_SECONDS
