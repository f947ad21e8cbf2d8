"""The Celery app. Tasks live in <app>/tasks.py; settings come from CELERY_* in settings."""

import contextlib
import os
from typing import Any

from celery import Celery
from celery.fixups import django as celery_django
from celery.fixups.django import DjangoFixup
from celery.signals import celeryd_after_setup, worker_process_shutdown
from django.core.signals import setting_changed
from django.dispatch import receiver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "handoff_site.settings")

_DjangoWorkerFixup: Any = celery_django.DjangoWorkerFixup  # type: ignore[attr-defined]  # not in celery-types


class _WorkerFixup(_DjangoWorkerFixup):
    """Celery's Django worker fixup, except that a task's end hands its database connection
    back to psycopg's pool rather than closing the pool. Celery 5.6 closes a prefork child's
    pool before and after every task (celery/celery#10554, open), so each task opened a new
    PostgreSQL connection: a server backend forked, authenticated and configured, the
    prepared statements lost; a webhook delivery cost ~11 ms of the worker's CPU with it.
    A child still starts with a pool of its own (the fixup closes the one inherited from
    the parent when the child starts) and closes it when it exits; the pool checks a
    connection before lending it (settings: health checks), so one a database restart broke
    is replaced, as in the web processes."""

    def close_database(self, **kwargs: Any) -> None:
        for conn in self._db.connections.all(initialized_only=True):
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


@celeryd_after_setup.connect
def _no_banner_in_json_logs(*, instance, **kwargs) -> None:
    """With LOG_FORMAT=json every line a worker writes is a JSON log record: its startup
    banner (printed, not logged) is left out, as `celery worker --quiet` would."""
    from django.conf import settings

    if settings.LOG_FORMAT == "json":
        instance.quiet = True
