"""The Celery app. Tasks live in <app>/tasks.py; settings come from CELERY_* in settings."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "handoff_site.settings")

app = Celery("handoff", task_cls="celery.contrib.django.task:DjangoTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
