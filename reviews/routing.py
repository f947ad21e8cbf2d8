from django.urls import path

from . import consumers

websocket_urlpatterns = [
    path("ws/queue/", consumers.LiveConsumer.as_asgi(), {"scope": "queue"}),
    path("ws/escalations/<uuid:escalation_id>/", consumers.LiveConsumer.as_asgi(), {"scope": "escalation"}),
]
