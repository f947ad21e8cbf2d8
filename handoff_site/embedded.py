"""The embedded mode's Celery: a worker and beat in threads of the web process.

Same tasks, same code paths as production, on kombu's in-memory transport, so `make run`
needs neither Redis nor a separate worker. asgi.py calls start() once per process; the
worker and beat then run until the process exits (or stop(), for tests and shutdown).
"""

import logging
import os
import socket
import threading

from celery.beat import Service
from celery.worker import WorkController
from celery.worker import state as worker_state

from .celery import app

log = logging.getLogger(__name__)
POLLING_INTERVAL_SECONDS = 0.02

_lock = threading.Lock()
_worker: WorkController | None = None
_worker_thread: threading.Thread | None = None
_beat: Service | None = None
_beat_thread: threading.Thread | None = None


def start(*, beat: bool = True, concurrency: int = 4) -> WorkController:
    """Start the in-process worker (a thread pool) and, with `beat`, the periodic jobs.

    Idempotent: a second call returns the running worker. Returns once the worker
    consumes. The references are kept here, so the worker lives as long as the process.
    """
    global _worker, _worker_thread, _beat, _beat_thread
    with _lock:
        if _worker is not None and _worker_thread is not None and _worker_thread.is_alive():
            return _worker
        app.finalize(auto=True)
        app.loader.import_default_modules()
        app.set_current()
        app.set_default()
        if str(app.conf.broker_url).startswith("memory://"):
            # kombu's in-memory channel is polled (1 s by default): poll often, so a
            # decision reaches the agent in milliseconds, not up to a second later.
            app.conf.broker_transport_options = {
                **(app.conf.broker_transport_options or {}),
                "polling_interval": POLLING_INTERVAL_SECONDS,
            }
        ready = threading.Event()
        worker = WorkController(
            app=app,
            hostname=f"embedded-{os.getpid()}@{socket.gethostname()}",
            pool_cls="threads",
            concurrency=concurrency,
            loglevel="WARNING",
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            ready_callback=lambda *_: ready.set(),
        )
        thread = threading.Thread(target=worker.start, name="celery-worker", daemon=True)
        thread.start()
        if not ready.wait(timeout=30):
            log.error("the embedded Celery worker did not become ready within 30 s")
        _worker, _worker_thread = worker, thread
        if beat:
            _beat = Service(app, schedule_filename=app.conf.beat_schedule_filename)
            _beat_thread = threading.Thread(target=_beat.start, name="celery-beat", daemon=True)
            _beat_thread.start()
        log.info("embedded Celery worker%s started", " and beat" if beat else "")
        return worker


def running() -> bool:
    return _worker_thread is not None and _worker_thread.is_alive()


def stop(timeout: float = 10) -> None:
    """Stop beat and the worker (warm: running tasks finish), waiting up to `timeout` s."""
    global _worker, _worker_thread, _beat, _beat_thread
    with _lock:
        if _beat is not None:
            _beat.stop()
            _beat, _beat_thread = None, None
        if _worker_thread is not None:
            worker_state.should_stop = 0  # type: ignore[assignment]  # the loop ends at its next turn
            try:
                _worker_thread.join(timeout)
            finally:
                worker_state.should_stop = None
            if _worker_thread.is_alive():
                log.warning("the embedded Celery worker did not stop within %g s", timeout)
        _worker, _worker_thread = None, None
