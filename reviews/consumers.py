"""Websocket consumers: push only. Browsers are told what changed and re-render it."""

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from escalations.events import QUEUE_GROUP, escalation_group, serve_on_running_loop

from .permissions import is_reviewer


class LiveConsumer(AsyncJsonWebsocketConsumer):
    """Joins the queue group or one escalation's group; forwards change notices as JSON."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        if not await database_sync_to_async(is_reviewer)(user):
            await self.close(code=4403)
            return
        serve_on_running_loop()
        kwargs = self.scope["url_route"]["kwargs"]
        if kwargs.get("scope") == "escalation":
            self.group = escalation_group(kwargs["escalation_id"])
        else:
            self.group = QUEUE_GROUP
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def escalation_changed(self, event: dict) -> None:
        # An escalations.events.Notice, all but the layer's "type".
        keys = ("id", "kind", "status", "actor", "priority")
        await self.send_json({k: event[k] for k in keys if k in event})
