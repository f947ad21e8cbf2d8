"""Domain announcements, sent after commit: wake-ups for agents, live updates for browsers.

The domain states facts ("escalation X changed: decided"); reviews' consumers decide how
to render them. Both transports are hints on top of the database: a lost message never
loses state, because pages re-sync on reconnect and long-polls re-read the row.

On Redis (production) a notice goes out from the committing thread itself, with redis-py's
plain client: one or two round trips after commit, bounded by a 2 s timeout, like the
wake-up's publish. It used to be handed to an event loop thread of the process, which cost
a create ~0.5 ms of CPU (a fifth of it; asyncio's machinery and the two threads passing the
GIL) to save ~0.1 ms of waiting (bench/README.md, "Live updates sent from the writer's
thread"). Other layers (the in-memory one of the embedded mode, several Redis hosts) still
send on a long-lived event loop, handed over without waiting for it.
"""

import asyncio
import logging
import os
import threading
import time
import uuid
import weakref
from typing import TYPE_CHECKING, TypedDict

from channels.layers import BaseChannelLayer, InMemoryChannelLayer, get_channel_layer
from channels_redis.core import RedisChannelLayer  # type: ignore[import-untyped]
from django.db import transaction

from operations.redis_clients import redis_client

from . import wakeup

if TYPE_CHECKING:
    from escalations.models import Escalation

log = logging.getLogger(__name__)

QUEUE_GROUP = "queue"

# The event loop that serves websockets in this process. The in-memory channel layer is not
# thread-safe, so in the embedded mode every group_send goes to the loop its consumers run on.
_serving_loop: asyncio.AbstractEventLoop | None = None
_sender: tuple[int, asyncio.AbstractEventLoop] | None = None
_sender_lock = threading.Lock()


def escalation_group(escalation_id: uuid.UUID | str) -> str:
    return f"escalation-{escalation_id}"


def serve_on_running_loop() -> None:
    """Called by consumers: live updates of this process go out on the current loop."""
    global _serving_loop
    _serving_loop = asyncio.get_running_loop()


def _sender_loop() -> asyncio.AbstractEventLoop:
    """This process's sending loop, started on first use (and again after a fork)."""
    global _sender
    with _sender_lock:
        if _sender is None or _sender[0] != os.getpid():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="handoff-events", daemon=True).start()
            _sender = (os.getpid(), loop)
        return _sender[1]


def _loop_for(layer: BaseChannelLayer) -> asyncio.AbstractEventLoop:
    serving = _serving_loop
    if isinstance(layer, InMemoryChannelLayer) and serving is not None and not serving.is_closed():
        return serving
    return _sender_loop()


# Sends in flight at once per loop (layers other than one Redis host): a batch committing many
# changes (escalation levels) must not take more connections than channels-redis's pool holds.
SEND_CONCURRENCY = 32
_send_limits: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]" = (
    weakref.WeakKeyDictionary()
)


async def _group_send_all(layer: BaseChannelLayer, groups: list[str], message: dict[str, object]) -> None:
    loop = asyncio.get_running_loop()
    limit = _send_limits.get(loop)
    if limit is None:
        limit = _send_limits[loop] = asyncio.Semaphore(SEND_CONCURRENCY)
    async with limit:
        for group in groups:
            try:
                await layer.group_send(group, message)
            except Exception as exc:  # an outage must never undo or fail a committed write
                _not_sent(group, exc)


def _not_sent(name: str, exc: Exception) -> None:
    log.warning(
        "live update to %s not sent (%s: %s)",
        name,
        type(exc).__name__,
        exc,
        exc_info=not isinstance(exc, wakeup.REDIS_UNAVAILABLE),
    )


# RedisChannelLayer.group_send's script with its per-channel expiry folded in: ARGV holds the
# messages, then the capacities, then the time, the expiry cut-off and the expiry.
_GROUP_SEND_LUA = """
local n = #KEYS
local now, cutoff, expiry = ARGV[2 * n + 1], ARGV[2 * n + 2], ARGV[2 * n + 3]
local over_capacity = 0
for i = 1, n do
    redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, cutoff)
    if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[i + n]) then
        redis.call('ZADD', KEYS[i], now, ARGV[i])
        redis.call('EXPIRE', KEYS[i], expiry)
    else
        over_capacity = over_capacity + 1
    end
end
return over_capacity
"""


# The plain client's timeouts are the wake-up publisher's (so the two share one pool), not the
# layer's 15 s (that one outlasts channels-redis's blocking reads): a Redis that hangs holds a
# writer 2 s at most.
SEND_TIMEOUT = wakeup.PUBLISH_TIMEOUT


# The host settings _redis_group_send follows (its own timeouts are SEND_TIMEOUT); a layer
# given any other (TLS certificates, a password apart from the URL) sends through its own loop.
WRITER_HOST_KEYS = {"address", "socket_timeout", "socket_connect_timeout"}


def sends_from_writer(layer: BaseChannelLayer) -> bool:
    """Whether _send queues a notice itself: one Redis host, given by its address alone
    (WRITER_HOST_KEYS)."""
    return (
        isinstance(layer, RedisChannelLayer)
        and len(layer.hosts) == 1
        and "address" in layer.hosts[0]
        and set(layer.hosts[0]) <= WRITER_HOST_KEYS
    )


def _redis_group_send(layer: RedisChannelLayer, groups: list[str], message: dict[str, object]) -> None:
    """RedisChannelLayer.group_send to several groups, from this thread, in two round trips
    in all (it takes two to four per group): the groups' members read in one pipeline, then
    the message queued for every member by one script run, as channels-redis queues it (one
    message per process for its local channels, the capacity respected, stale members and
    messages dropped). tests/test_live_send.py holds it to the layer's own group_send. One
    Redis host, by its address (sends_from_writer). An outage is logged and swallowed: the write has committed."""
    try:
        client = redis_client(layer.hosts[0]["address"], timeout=SEND_TIMEOUT)
        now = time.time()
        pipe = client.pipeline(transaction=False)
        for group in groups:
            key = layer._group_key(group)
            pipe.zremrangebyscore(key, min=0, max=int(now) - layer.group_expiry)
            pipe.zrange(key, 0, -1)
        replies = pipe.execute()
        members = list(dict.fromkeys(name.decode() for listed in replies[1::2] for name in listed))
        if not members:
            return
        _, messages, capacities = layer._map_channel_keys_to_connection(members, message)
        keys = list(messages)
        over = client.eval(
            _GROUP_SEND_LUA, len(keys), *keys, *(messages[k] for k in keys), *(capacities[k] for k in keys),
            str(now), str(int(now) - int(layer.expiry)), str(layer.expiry),
        )
    except Exception as exc:  # an outage must never undo or fail a committed write
        _not_sent(", ".join(groups), exc)
        return
    if over:
        log.info("%s of %s channels over capacity in %s", over, len(members), ", ".join(groups))


class Notice(TypedDict):
    """The live message of a change (the consumer forwards all but "type" to browsers).

    actor: who made the change: a reviewer's username, the agent's name, "policy",
    "timeout" or "webhook". priority: the escalation's priority after the change.
    nonce: this change's own id (consumers render a queue row once per change and view).
    """

    type: str
    id: str
    kind: str
    status: str
    actor: str
    priority: int
    nonce: str


# Statuses after a change that ends no wait: a long-poll waits while its escalation is in the
# queue, the feed until a new decision; a resumed or expired escalation was decided before,
# and that decision's commit woke them (a webhook's 2xx resumes one: no wake-up per delivery).
WAKES_NOBODY = ("pending", "claimed", "resumed", "expired")


def _send(notice: Notice, agent_id: int) -> None:
    if notice["status"] not in WAKES_NOBODY:
        wakeup.notify(escalation_id=notice["id"], agent_id=agent_id)
    layer = get_channel_layer()
    if layer is None:
        return
    groups = [QUEUE_GROUP]
    if notice["kind"] != "created":  # nobody can have a new escalation's page open yet
        groups.append(escalation_group(notice["id"]))
    if sends_from_writer(layer):
        _redis_group_send(layer, groups, dict(notice))
        return
    try:
        asyncio.run_coroutine_threadsafe(
            _group_send_all(layer, groups, dict(notice)), _loop_for(layer)
        )
    except RuntimeError:  # the loop is closing with the process
        log.warning("live update for %s (%s) not sent", notice["id"], notice["kind"], exc_info=True)


def announce(escalation: "Escalation", kind: str, *, actor: str = "") -> None:
    """Tell everyone watching that `escalation` changed, once the transaction commits.

    `actor` names who changed it (see Notice); the notice is built now, from the row as
    this transaction leaves it.
    """
    notice = Notice(
        type="escalation.changed",
        id=str(escalation.id),
        kind=kind,
        status=escalation.status,
        actor=actor,
        priority=escalation.priority,
        nonce=uuid.uuid4().hex,
    )
    agent_id = escalation.agent_id
    transaction.on_commit(lambda: _send(notice, agent_id))
