"""WSGI entry point: plain HTTP (pages and the agent API) under gunicorn in production."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "handoff_site.settings")

django_application = get_wsgi_application()

# A long-poll that reaches gunicorn still waits (holding a worker); the proxy normally sends
# them to the ASGI server, where waiting is cheap.
from escalations.transport.bodylimit import SyncBodyLimitMiddleware  # noqa: E402

# Rate limits count every API call, long-polls included, before Django sees it.
from escalations.transport.longpoll import SyncLongPollMiddleware  # noqa: E402
from handoff_site.ratelimit import SyncRateLimitMiddleware  # noqa: E402

application = SyncRateLimitMiddleware(SyncBodyLimitMiddleware(SyncLongPollMiddleware(django_application)))
