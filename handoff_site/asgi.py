"""ASGI entry point: websockets, long-polls, and (in the embedded mode) everything else.

In production, plain HTTP is served by gunicorn (handoff_site.wsgi) and the proxy sends
websockets, `?wait=` long-polls and /mcp (the agent API as MCP tools) here. In the embedded mode this one process serves all,
and runs the Celery worker and beat in threads (handoff_site.embedded).
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "handoff_site.settings")

django_asgi_app = get_asgi_application()  # sets Django up before anything imports models

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from escalations import mcp_api  # noqa: E402
from escalations.transport.bodylimit import BodyLimitMiddleware  # noqa: E402
from escalations.transport.longpoll import LongPollMiddleware  # noqa: E402
from handoff_site.ratelimit import RateLimitMiddleware  # noqa: E402
from handoff_site.websocket import SameOriginValidator  # noqa: E402
from reviews.routing import websocket_urlpatterns  # noqa: E402

http_app = django_asgi_app
if settings.DEBUG or settings.EMBEDDED or settings.TESTING:
    # One process serves everything here (`make run`, the browser tests), static files too.
    # Behind the production proxy, nginx answers /static/ itself.
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    http_app = ASGIStaticFilesHandler(django_asgi_app)

application = ProtocolTypeRouter(
    {
        # /mcp: the agent API as MCP tools (escalations.mcp_api), rate-limited as /api/ is.
        "http": RateLimitMiddleware(mcp_api.route(BodyLimitMiddleware(LongPollMiddleware(http_app)))),
        "websocket": SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

if settings.CELERY_EMBEDDED_WORKER:
    from . import embedded

    embedded.start()

# The views now rather than on the first request, then the collector's full passes kept off
# everything loaded so far.
from . import heap  # noqa: E402

heap.serving_ready()
