"""Baseline (c): a no-op Celery task; its start time goes to a Redis list.

The same delivery guarantees as the app's settings: acks_late, reject on worker lost,
prefetch 1, results ignored, JSON.
"""

import os
import time

import redis
from celery import Celery

BROKER = os.environ["BENCH_CELERY_BROKER"]
STARTS_KEY = os.environ.get("BENCH_CELERY_STARTS_KEY", "bench:noop:starts")

app = Celery("baseline", broker=BROKER, set_as_current=False)
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)

_redis = None


@app.task(name="baseline.noop")
def noop(tag: str) -> None:
    started = time.time()
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(BROKER)
    _redis.rpush(STARTS_KEY, f"{tag} {started!r}")
