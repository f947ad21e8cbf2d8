from typing import Any

from django.urls import path

from . import consumers

# django-stubs types path() for views; channels' URLRouter takes ASGI applications in it.
live: Any = consumers.LiveConsumer.as_asgi()

websocket_urlpatterns = [
    path("ws/queue/", live, {"scope": "queue"}),
    path("ws/escalations/<uuid:escalation_id>/", live, {"scope": "escalation"}),
]
