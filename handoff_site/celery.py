"""The Celery app. Tasks live in <app>/tasks.py; settings come from CELERY_* in settings."""

import contextlib
import os
from typing import Any

import psycopg
from celery import Celery
from celery.fixups import django as celery_django
from celery.fixups.django import DjangoFixup
from celery.signals import (
    celeryd_after_setup,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
)
from django.core.signals import setting_changed
from django.dispatch import receiver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "handoff_site.settings")

_DjangoWorkerFixup: Any = celery_django.DjangoWorkerFixup  # type: ignore[attr-defined]  # not in celery-types


class _WorkerFixup(_DjangoWorkerFixup):
    """Celery's Django worker fixup, except that a worker child keeps its database connection
    from one task to the next while it is sound, rather than closing it around every task.

    Celery 5.6 closes a prefork child's pool before and after every task (celery/celery#10554,
    open), so each task opened a new PostgreSQL connection: a server backend forked,
    authenticated and configured, the prepared statements lost (a webhook delivery cost ~11 ms
    of the worker's CPU with it). Handing the connection back to psycopg's pool at each task's
    end instead still cost a round trip per task: the pool checks a connection before lending
    it (settings: health checks). So a child holds its connection across tasks, and hands it
    back to the pool (which checks it before lending it again) only when it may be unsound:
    an error occurred on it, a transaction is left open, or the server has written to it while
    it sat idle (what a restart or a terminated backend does first: it says so, or closes the
    socket), seen without a round trip (the pool's own check, handoff_site.postgres). A child
    still starts with a pool of its own (the fixup closes the one inherited from the parent
    when the child starts) and closes it when it exits."""

    def close_database(self, **kwargs: Any) -> None:
        for conn in self._db.connections.all(initialized_only=True):
            if _sound_and_idle(conn):
                continue
            try:
                conn.close()  # CONN_MAX_AGE is 0: back to the pool, which stays
            except self.interface_errors:
                pass
            except self.DatabaseError as exc:
                if "closed" not in str(exc) and "not connected" not in str(exc):
                    raise

    def install(self) -> "_WorkerFixup":
        super().install()
        worker_process_shutdown.connect(self._close_pools, weak=False)
        return self

    def _close_pools(self, **kwargs: Any) -> None:
        for conn in self._db.connections.all():
            if conn.settings_dict.get("OPTIONS", {}).get("pool") and hasattr(conn, "close_pool"):
                with contextlib.suppress(KeyError):
                    conn.close_pool()


def _sound_and_idle(conn: Any) -> bool:
    """A pooled connection worth keeping for the next task: no error on it, no transaction
    open, and sound by the check the pool runs before a loan (handoff_site.postgres: a round
    trip only when the server has written to the idle connection). Without a pool, Django's
    own rules apply (close)."""
    from handoff_site.postgres.base import check_connection

    raw = conn.connection
    if raw is None or not conn.settings_dict.get("OPTIONS", {}).get("pool"):
        return False
    if conn.errors_occurred or conn.in_atomic_block or not conn.get_autocommit():
        return False
    if raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        return False
    try:
        check_connection(raw)
    except (psycopg.Error, OSError, ValueError):
        return False
    return True


class _Fixup(DjangoFixup):
    _ours: _WorkerFixup | None = None

    @property
    def worker_fixup(self) -> _WorkerFixup:
        if self._ours is None:  # when the worker starts (the app's settings are read by then)
            self._ours = _WorkerFixup(self.app)
        return self._ours


def _fixup(app: Celery) -> DjangoFixup:
    """Celery's Django fixup (celery.fixups.django.fixup: django.setup() before the tasks are
    imported, connections closed after a fork) with _WorkerFixup for the worker."""
    fixup = _Fixup(app)
    fixup.install()
    return fixup


app = Celery(
    "handoff", task_cls="celery.contrib.django.task:DjangoTask", fixups=["handoff_site.celery:_fixup"]
)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

_BROKER_KEYS = {"broker_url", "broker_write_url", "broker_transport_options", "broker_connection_timeout"}


@receiver(setting_changed)
def _follow_settings(*, setting: str, value, enter: bool, **kwargs) -> None:
    """Keep app.conf in step with overridden CELERY_* settings (tests: `settings` fixture,
    override_settings). A broker change drops the pooled connections, so the next
    publish goes to the new broker."""
    if not setting.startswith("CELERY_"):
        return
    from django.conf import settings

    key = setting.removeprefix("CELERY_").lower()
    if hasattr(settings, setting):
        app.conf[key] = value
    else:
        app.conf.pop(key, None)
    if key in _BROKER_KEYS:
        # kombu keeps its pools per broker; only our references go (private attributes).
        app._pool = None  # type: ignore[attr-defined]
        app.amqp._producer_pool = None  # type: ignore[attr-defined]


@worker_ready.connect
@worker_process_init.connect
def _freeze_heap(**kwargs: Any) -> None:
    """The worker's main process once it is ready, each prefork child as it starts: the
    collector's full passes stay off what they loaded (handoff_site.heap)."""
    from handoff_site import heap

    heap.freeze()


@celeryd_after_setup.connect
def _no_banner_in_json_logs(*, instance, **kwargs) -> None:
    """With LOG_FORMAT=json every line a worker writes is a JSON log record: its startup
    banner (printed, not logged) is left out, as `celery worker --quiet` would."""
    from django.conf import settings

    if settings.LOG_FORMAT == "json":
        instance.quiet = True
