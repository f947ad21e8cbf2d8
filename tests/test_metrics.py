"""GET /metrics (issue 9, "Operable"): Prometheus text, right across processes, protected.

The counters are added by whichever process did the thing (web or a Celery worker) into
one Redis hash; the real-stack test makes decisions through the API in this process,
lets a `celery worker` subprocess deliver them to a real HTTP receiver, and scrapes.
"""

import os
import subprocess
import time

import pytest
import redis
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families

from escalations.models import Delivery, Escalation
from notifications.models import Notification
from notifications.services import preferences_save
from operations import metrics
from tests.conftest import make_package, need
from tests.processes import RedisServer, wait_until
from tests.receiver import Receiver
from tests.test_celery_worker import escalate, reviewer_api, workers  # noqa: F401

Sample = tuple[str, tuple[tuple[str, str], ...]]


def scrape(client, **extra) -> dict[Sample, float]:
    response = client.get("/metrics", **extra)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    found = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(samples: dict[Sample, float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def delta(before, after, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


# ---------------------------------------------------------------- access


@pytest.mark.django_db
def test_metrics_are_open_to_this_host_only_by_default(client):
    assert client.get("/metrics").status_code == 200  # the test client is 127.0.0.1
    refused = client.get("/metrics", REMOTE_ADDR="203.0.113.9")
    assert refused.status_code == 403
    assert "METRICS_TOKEN" in refused.content.decode()


@pytest.mark.django_db
def test_a_metrics_token_opens_them_to_any_address(client, settings):
    settings.METRICS_TOKEN = "s3cret-scrape-token"
    away = {"REMOTE_ADDR": "203.0.113.9"}
    missing = client.get("/metrics", **away)
    assert missing.status_code == 401
    assert missing["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong", **away).status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-scrape-token", **away).status_code == 200


@pytest.mark.django_db
def test_allowed_networks_open_them_without_a_token(client, settings):
    import ipaddress

    settings.METRICS_ALLOWED_NETWORKS = [ipaddress.ip_network("10.1.0.0/16")]
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="10.2.0.1").status_code == 403
    assert client.get("/metrics").status_code == 403  # loopback is no longer listed


@pytest.mark.django_db
def test_metrics_skip_the_host_check_and_the_login(client, settings):
    settings.ALLOWED_HOSTS = ["handoff.example.com"]
    response = client.get("/metrics", HTTP_HOST="web-http:8000")
    assert response.status_code == 200
    assert client.post("/metrics").status_code == 405


# ---------------------------------------------------------------- what they say


@pytest.mark.django_db(transaction=True)
def test_the_scrape_counts_decisions_and_reads_the_queue_from_the_database(client, api, reviewer, settings):
    from reviews.services import reviewer_token_issue

    before = scrape(client)
    open_one = escalate(api, run_id="run-1")
    halted = escalate(api, run_id="run-2")
    auto = api.escalate(make_package(run_id="run-3", confidence=0.97))
    assert auto.json()["decision"]["decided_by"]["type"] == "policy"
    token = reviewer_token_issue(user=reviewer)
    decided = client.post(
        f"/api/v1/review/escalations/{halted.pk}/decision",
        {"kind": "halt"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert decided.status_code == 201, decided.content
    after = scrape(client)

    assert delta(before, after, "handoff_decisions_total", kind="halt", decided_by="human") == 1
    assert delta(before, after, "handoff_decisions_total", kind="option", decided_by="policy") == 1
    assert delta(before, after, "handoff_decisions_total", kind="option", decided_by="human") == 0
    assert value(after, "handoff_decisions_total", kind="option", decided_by="machine") >= 0
    pending = Escalation.objects.filter(status="pending", tier=open_one.tier).count()
    assert value(after, "handoff_queue_depth", tier=str(open_one.tier), status="pending") == pending
    assert value(after, "handoff_queue_depth", tier="4", status="claimed") == 0
    assert value(after, "handoff_queue_oldest_age_seconds") >= 0
    assert value(after, "handoff_scrape_source_up", source="database") == 1
    assert value(after, "handoff_scrape_source_up", source="counters") == 1


def refusals(samples, limit: str) -> float:  # a limit's series appears with its first refusal
    return samples.get(("handoff_rate_limit_refusals_total", (("limit", limit),)), 0)


@pytest.mark.django_db(transaction=True)
def test_rate_limit_refusals_are_counted(client, agent_with_token, settings):
    """The API's rate limiter (in front of Django, here the WSGI application) refuses the
    third call in a minute; the counter says so, under the limit's name."""
    import io

    from handoff_site import ratelimit
    from handoff_site.wsgi import application

    settings.RATE_LIMIT_AGENT = "2/minute"
    ratelimit._limiter = None  # this process's limiter, made afresh on the test's settings
    environ = {
        "REQUEST_METHOD": "GET", "PATH_INFO": "/api/v1/decisions", "QUERY_STRING": "",
        "HTTP_AUTHORIZATION": f"Bearer {agent_with_token[1]}", "REMOTE_ADDR": "192.0.2.1",
        "SERVER_NAME": "testserver", "SERVER_PORT": "80", "wsgi.url_scheme": "http",
        "wsgi.errors": io.StringIO(),
    }  # fmt: skip
    before = scrape(client)
    statuses = []
    for _ in range(3):
        b"".join(application({**environ, "wsgi.input": io.BytesIO()}, lambda s, h: statuses.append(s)))
    assert statuses[-1].startswith("429")
    after = scrape(client)
    assert refusals(after, "agent") - refusals(before, "agent") == 1
    ratelimit._limiter = None


@pytest.mark.django_db
def test_rate_limit_refusals_have_a_named_hook(client):
    before = scrape(client)
    metrics.rate_limit_refused("agent")
    metrics.rate_limit_refused("address")
    after = scrape(client)
    assert refusals(after, "agent") - refusals(before, "agent") == 1
    assert refusals(after, "address") - refusals(before, "address") == 1
    with pytest.raises(ValueError, match="takes the labels"):
        metrics.count(metrics.RATE_LIMIT_REFUSALS, scope="agent")


# ---------------------------------------------------------------- the real stack


@pytest.fixture
def production_shape():
    need(bool(os.environ.get("REDIS_URL")), "Redis (REDIS_URL)")
    need(connection.vendor == "postgresql", "PostgreSQL (DATABASE_URL)")


@pytest.mark.django_db(transaction=True)
def test_a_scrape_sees_what_a_real_worker_delivered(
    production_shape, workers, api, hooked, reviewer, reviewer_api, receiver, client  # noqa: F811
):
    """Decisions made here, delivered by a worker subprocess, counted once, in one place."""
    worker = workers()
    worker.wait_ready()
    before = scrape(client)
    with Receiver(default=400) as refusing:
        preferences_save(user=reviewer, choices={"halt_created": ["webhook"]}, webhook_url=refusing.url)
        receiver.script(200, 200, 410)

        human = escalate(api, run_id="run-1")
        assert reviewer_api(human.pk, option="update-callers").status_code == 201
        auto = api.escalate(make_package(run_id="run-2", confidence=0.97))
        assert auto.status_code == 201
        assert auto.json()["status"] == "decided"
        receiver.wait_for(2, timeout=20)  # the two 200s go to these two
        refused = escalate(api, run_id="run-3")
        assert reviewer_api(refused.pk, option="shim").status_code == 201
        halt = api.escalate(make_package(run_id="run-4", confidence=0.2))  # tier 4: a halt
        assert halt.json()["tier"] == 4

        receiver.wait_for(3, timeout=20)
        refusing.wait_for(1, timeout=20)
        wait_until(
            lambda: Delivery.objects.filter(status__in=["delivered", "failed"]).count() == 3
            and Notification.objects.filter(status="failed").count() == 1,
            timeout=20, what="deliveries and the notification to finish", log=worker.log,
        )
    latest = {}

    def changed(name, **labels):
        return delta(before, latest, name, **labels)

    def worker_counts_written() -> bool:  # each process writes its counts once a second
        latest.update(scrape(client))
        return changed("handoff_decision_to_webhook_seconds_count") == 2 and changed(
            "handoff_notification_failures_total", channel="webhook", final="true"
        ) == 1 and changed("handoff_webhook_attempts_total", result="failure") == 1

    wait_until(worker_counts_written, timeout=10, what="the worker's counts", log=worker.log)
    after = latest

    assert changed("handoff_decisions_total", kind="option", decided_by="human") == 2
    assert changed("handoff_decisions_total", kind="option", decided_by="policy") == 1
    assert changed("handoff_webhook_attempts_total", result="success") == 2
    assert changed("handoff_webhook_attempts_total", result="failure") == 1
    assert changed("handoff_webhook_deliveries_failed_total") == 1
    assert changed("handoff_notification_failures_total", channel="webhook", final="true") == 1
    assert changed("handoff_decision_to_webhook_seconds_count") == 2
    assert changed("handoff_decision_to_webhook_seconds_bucket", le="+Inf") == 2
    assert 0 < changed("handoff_decision_to_webhook_seconds_sum") < 20
    assert value(after, "handoff_queue_depth", tier="4", status="pending") == Escalation.objects.filter(
        tier=4, status="pending"
    ).count() >= 1
    assert value(after, "handoff_webhook_outbox", status="retrying") == 0


def test_counts_made_while_redis_is_down_are_added_once_it_is_back(tmp_path):
    """An outage delays counts in the process that made them; it does not lose them, and
    counting never waits for Redis."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        store = metrics.RedisStore(server.url, key="test:metrics")
        store.add({"a": 1})
        assert store.flush()
        server.stop()
        started = time.monotonic()
        for _ in range(1000):
            store.add({"a": 1})
        store.add({"b": 2.5})
        assert time.monotonic() - started < 0.5  # a dict update each, never a Redis call
        assert not store.flush()  # refused: they wait
        with pytest.raises(redis.RedisError):
            store.read()
        server.start()
        # The flusher thread writes them within a second or so, without being asked.
        deadline = time.monotonic() + 5
        while store._pending and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not store._pending
        # What was counted during the outage arrived; the count from before went with the
        # restart (no persistence), which Prometheus reads as a counter reset.
        assert store.read() == {"a": 1000.0, "b": 2.5}
    finally:
        server.stop()


def test_one_store_is_shared_by_every_process(tmp_path):
    """Two processes count into the same Redis hash: a scrape anywhere sees both (each
    writes what it counted when it exits, too)."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        code = (
            "from operations.metrics import RedisStore;"
            f"RedisStore({server.url!r}, key='test:metrics').add({{'decisions': 1}})"
        )
        for _ in range(2):
            subprocess.run(
                [os.sys.executable, "-c", code], check=True, cwd=os.path.dirname(os.path.dirname(__file__))
            )
        assert metrics.RedisStore(server.url, key="test:metrics").read() == {"decisions": 2.0}
    finally:
        server.stop()
