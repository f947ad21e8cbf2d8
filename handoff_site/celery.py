"""The Celery app. Tasks live in <app>/tasks.py; settings come from CELERY_* in settings."""

import os

from celery import Celery
from celery.signals import celeryd_after_setup
from django.core.signals import setting_changed
from django.dispatch import receiver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "handoff_site.settings")

app = Celery("handoff", task_cls="celery.contrib.django.task:DjangoTask")
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
