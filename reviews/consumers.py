"""Websocket consumers: push only. Browsers are told what changed and re-render it.

On an escalation's page the socket also carries presence: who else has the page open.
Presence lives in the channel layer alone (in-memory embedded, Redis across processes):
a new viewer announces itself to the group, everyone there answers it directly, and a
closing socket says goodbye. Pages say "still here" every PRESENCE_PING_SECONDS and
forget viewers they have not heard from for a while (a process that died said nothing).

Without its channel layer (Redis down) a socket is of no use: one being opened is refused
with a 503, one that is open is closed with 1013 "try again later". The page's script
reconnects with backoff and re-fetches what changed meanwhile (static/js/live.js).
"""

import contextlib
import json
import logging
import uuid

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from escalations.transport.events import QUEUE_GROUP, escalation_group, serve_on_running_loop
from escalations.transport.wakeup import REDIS_UNAVAILABLE
from people.roles import is_reviewer

from . import live_rows

log = logging.getLogger(__name__)

# What a page sends to say it is still open (the only message a page sends).
PRESENCE_PING = "ping"
TRY_AGAIN_LATER = 1013  # the close code for "the channel layer is away"


class LiveConsumer(AsyncJsonWebsocketConsumer):
    """Joins the queue group or one escalation's group; forwards change notices as JSON.

    On an escalation's group it also forwards presence as {"presence": "join" | "here" |
    "leave", "id": <this socket's opaque id>, "user": <username>}, never about the
    reviewer's own sockets.
    """

    presence: dict | None = None
    accepted = False
    view: str | None = None  # the queue view this page shows (its query string), once it said

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except REDIS_UNAVAILABLE as exc:
            log.warning(
                "live socket %s: channel layer unavailable (%s: %s)",
                scope["path"],
                type(exc).__name__,
                exc,
            )
            with contextlib.suppress(Exception):  # the client may be gone already
                await self._turn_away(scope, send)

    async def _turn_away(self, scope, send) -> None:
        if self.accepted:
            await send({"type": "websocket.close", "code": TRY_AGAIN_LATER})
        elif "websocket.http.response" in scope.get("extensions", {}):
            # The ASGI denial response (uvicorn has it): a plain 503, not the server's 500.
            body = b"Live updates are unavailable for a moment; the page will reconnect.\n"
            headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"retry-after", b"5")]
            await send({"type": "websocket.http.response.start", "status": 503, "headers": headers})
            await send({"type": "websocket.http.response.body", "body": body})
        else:  # the server answers 403
            await send({"type": "websocket.close", "code": TRY_AGAIN_LATER})

    async def accept(self, subprotocol=None, headers=None) -> None:
        await super().accept(subprotocol, headers)
        self.accepted = True

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
            self.presence = {"id": uuid.uuid4().hex, "user": user.get_username()}
        else:
            self.group = QUEUE_GROUP
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        if self.presence:
            await self._announce("presence.join", reply_to=self.channel_name)

    async def disconnect(self, code: int) -> None:
        if not getattr(self, "group", None):
            return
        if self.presence:
            await self._announce("presence.leave")
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None, **kwargs) -> None:
        """An escalation's page says "ping" (still here); a queue page says which view it
        shows, {"view": "<its query string>"}; anything else is ignored."""
        if self.presence:
            if text_data == PRESENCE_PING:
                await self._announce("presence.here")
            return
        if self.group != QUEUE_GROUP or not text_data or len(text_data) > live_rows.MAX_QUERY:
            return
        try:
            message = json.loads(text_data)
        except ValueError:
            return
        view = message.get("view") if isinstance(message, dict) else None
        if isinstance(view, str):
            self.view = view.removeprefix("?")

    async def escalation_changed(self, event: dict) -> None:
        # An escalations.transport.events.Notice, all but the layer's "type" and "nonce".
        keys = ("id", "kind", "status", "actor", "priority")
        notice = {k: event[k] for k in keys if k in event}
        if self.view is not None:
            # The row under this page's view, rendered once per view (reviews.live_rows).
            try:
                notice["html"] = await live_rows.rendered(event, self.view, self.scope["user"])
                notice["view"] = self.view
            except Exception:  # the page fetches the row itself, as without a view
                log.exception("live row %s for %r not rendered", event.get("id"), self.view)
        await self.send_json(notice)

    # ------------------------------------------------------------ presence

    async def _announce(self, kind: str, **extra) -> None:
        await self.channel_layer.group_send(self.group, {"type": kind, **(self.presence or {}), **extra})

    def _about_someone_else(self, event: dict) -> bool:
        return self.presence is not None and event["user"] != self.presence["user"]

    async def _forward(self, state: str, event: dict) -> None:
        await self.send_json({"presence": state, "id": event["id"], "user": event["user"]})

    async def presence_join(self, event: dict) -> None:
        if not self._about_someone_else(event):
            return
        # Tell the newcomer we are here, directly: it heard nothing of what came before.
        await self.channel_layer.send(event["reply_to"], {"type": "presence.here", **(self.presence or {})})
        await self._forward("join", event)

    async def presence_here(self, event: dict) -> None:
        if self._about_someone_else(event):
            await self._forward("here", event)

    async def presence_leave(self, event: dict) -> None:
        if self._about_someone_else(event):
            await self._forward("leave", event)
