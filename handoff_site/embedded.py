"""The embedded mode's Celery: a worker and beat in threads of the web process.

Same tasks, same code paths as production, on kombu's in-memory transport, so `make run`
needs neither Redis nor a separate worker. Started once per process by asgi.py.
"""

import logging
import threading

from celery.beat import Service
from celery.contrib.testing.worker import start_worker

from .celery import app

log = logging.getLogger(__name__)
_started = threading.Event()


def start() -> None:
    if _started.is_set():
        return
    _started.set()
    worker = start_worker(
        app, pool="threads", concurrency=4, perform_ping_check=False, shutdown_timeout=5, loglevel="WARNING"
    )
    worker.__enter__()  # runs until the process exits
    beat = Service(app, schedule_filename=app.conf.beat_schedule_filename)
    threading.Thread(target=beat.start, name="celery-beat", daemon=True).start()
    log.info("embedded Celery worker and beat started")
