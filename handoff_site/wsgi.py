"""WSGI entry point: plain HTTP (pages and the agent API) under gunicorn in production."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "handoff_site.settings")

application = get_wsgi_application()
