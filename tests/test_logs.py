"""LOG_FORMAT=json (issue 9, "Operable"): one JSON object per line, from gunicorn and from a
Celery worker, carrying the request id of the request that caused them."""

import json
import logging
import os
import uuid

import httpx
import pytest
from django.db import connection

from escalations.models import Delivery
from handoff_site import logs
from reviews.services import reviewer_token_issue
from tests.conftest import make_package, need
from tests.processes import Worker, gunicorn, production_env, purge_queue, wait_until

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


# Celery's signal handlers print these to stdout ("worker: Warm shutdown (MainProcess)"),
# outside logging; README says so.
CELERY_NOTICES = ("worker: ",)


def json_lines(text: str) -> list[dict]:
    """Every line parsed; a line that is not one JSON object fails the test."""
    records = []
    for line in text.splitlines():
        if not line.strip() or line.startswith(CELERY_NOTICES):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}\n---\n{text[-3000:]}") from None
        assert isinstance(record, dict), line
        records.append(record)
    return records


def test_the_json_formatter_writes_the_fields_operators_filter_on():
    config = logs.logging_config(log_format="json", level="INFO")
    formatter = logging.config.DictConfigurator(config).configure_formatter(config["formatters"]["json"])
    record = logging.LogRecord("escalations.tasks", logging.WARNING, __file__, 1, "sent %s", ("x",), None)
    record.request_id = "4f2c"
    out = json.loads(formatter.format(record))
    assert out["level"] == "WARNING"
    assert out["logger"] == "escalations.tasks"
    assert out["message"] == "sent x"
    assert out["request_id"] == "4f2c"
    assert out["time"].endswith("+00:00")


def test_an_unknown_log_format_is_refused():
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        logs.check_format("xml")


def test_gunicorn_and_the_worker_log_json_lines_with_the_request_id(
    tmp_path, agent_with_token, receiver, reviewer
):
    need(bool(os.environ.get("REDIS_URL")), "Redis (REDIS_URL)")
    need(connection.vendor == "postgresql", "PostgreSQL (DATABASE_URL)")
    agent, agent_token = agent_with_token
    agent.resume_url = receiver.url
    agent.save(update_fields=["resume_url"])
    token = reviewer_token_issue(user=reviewer)
    env = production_env(
        redis_url=os.environ["REDIS_URL"], var_dir=tmp_path, LOG_FORMAT="json", DB_POOL="0",
        GUNICORN_ACCESS_LOG="1",  # off by default: the proxy writes the access log (deploy/nginx.conf)
    )
    purge_queue()
    # PYTHONWARNINGS: Celery warns a root user before logging is set up (the image runs as
    # a user of its own; this test may run as root).
    worker = Worker(tmp_path, {"LOG_FORMAT": "json", "PYTHONWARNINGS": "ignore::UserWarning"})
    server, url = gunicorn(env, tmp_path)
    try:
        worker.wait_ready()
        base = f"{url}/api/v1"
        created = httpx.post(
            f"{base}/escalations", json=make_package(), headers={"Authorization": f"Bearer {agent_token}"}
        )
        assert created.status_code == 201, created.text
        generated = created.headers["X-Request-ID"]  # none sent: one was made
        assert len(generated) == 32

        request_id = uuid.uuid4().hex
        decided = httpx.post(
            f"{base}/review/escalations/{created.json()['id']}/decision",
            json={"kind": "option", "option": "shim"},
            headers={"Authorization": f"Bearer {token}", "X-Request-ID": request_id},
        )
        assert decided.status_code == 201, decided.text
        assert decided.headers["X-Request-ID"] == request_id
        receiver.wait_for(1, timeout=15)
        wait_until(
            lambda: Delivery.objects.filter(status="delivered").exists()
            and request_id in worker.log_path.read_text(),
            timeout=15, what="the worker to log the delivery", log=worker.log,
        )
    finally:
        server.stop()
        worker.stop()
        purge_queue()

    served = json_lines(server.log_path.read_text())
    access = [r for r in served if r["logger"] == "gunicorn.access"]
    assert {r["request_id"] for r in access} >= {generated, request_id}
    assert all({"time", "level", "logger", "message"} <= set(r) for r in served)
    assert any(r["logger"] == "gunicorn.error" and "Booting worker" in r["message"] for r in served)

    worked = json_lines(worker.log_path.read_text())
    (attempt,) = [r for r in worked if r["logger"] == "escalations.tasks"]
    assert attempt["request_id"] == request_id  # the decision's request, carried by Celery
    assert attempt["level"] == "INFO"
    assert attempt["http_status"] == 200
    assert attempt["delivery_status"] == "delivered"
