"""Wake-ups for long-polling agents: a decision's commit wakes the requests waiting on it.

One listener per process and event loop (Redis pub/sub in production, in-process in the
embedded mode) fans each message out to the local asyncio waiters, so a thousand waiting
requests share one Redis connection and hold no database connection.
"""

import asyncio
import contextlib
import logging
import random
import threading
import uuid
import weakref
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager

import redis
import redis.asyncio as aioredis
from django.conf import settings

from operations.redis_clients import redis_client

log = logging.getLogger(__name__)

CHANNEL = "handoff:wakeup"
# What a Redis client raises when Redis is away (a refused connection is an OSError first).
# Expected in an outage: logged in one line, without a traceback.
REDIS_UNAVAILABLE = (redis.RedisError, OSError)
# How long a writer waits on Redis to publish after its commit (seconds); the live update
# after a decision uses the same, so the two share one client (events.SEND_TIMEOUT).
PUBLISH_TIMEOUT = 2

_lock = threading.Lock()
_hubs: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub]" = weakref.WeakKeyDictionary()


def escalation_key(escalation_id: uuid.UUID | str) -> str:
    return f"esc:{escalation_id}"


def agent_key(agent_id: int) -> str:
    return f"agent:{agent_id}"


def notify(*, escalation_id: uuid.UUID | str, agent_id: int) -> None:
    """Wake whoever waits on this escalation or on this agent's decisions feed."""
    keys = [escalation_key(escalation_id), agent_key(agent_id)]
    if settings.REDIS_URL:
        try:
            redis_client(settings.REDIS_URL, timeout=PUBLISH_TIMEOUT).publish(CHANNEL, " ".join(keys))
        except redis.RedisError as exc:
            # Waiters re-read the database every few seconds, so this only costs latency.
            log.warning(
                "wake-up for %s not published (%s: %s)", escalation_id, type(exc).__name__, exc
            )
        return
    with _lock:
        hubs = list(_hubs.values())
    for hub in hubs:
        with contextlib.suppress(RuntimeError):  # that loop has closed
            hub.loop.call_soon_threadsafe(hub.dispatch, keys)


class Hub:
    """The waiters of one event loop, keyed by what they wait for."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self.listener: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()

    def dispatch(self, keys: Iterable[str]) -> None:
        for key in keys:
            for event in self.waiters.get(key, ()):
                event.set()

    @asynccontextmanager
    async def listen(self, keys: list[str]) -> AsyncIterator[asyncio.Event]:
        """An event set when any of `keys` is notified; registered before it is yielded."""
        if settings.REDIS_URL:
            if self.listener is None or self.listener.done():
                self.subscribed.clear()
                self.listener = self.loop.create_task(self._listen_redis())
            # If Redis is slow or down, the caller's periodic re-read covers it.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.subscribed.wait(), timeout=1)
        event = asyncio.Event()
        for key in keys:
            self.waiters[key].add(event)
        try:
            yield event
        finally:
            for key in keys:
                waiting = self.waiters.get(key)
                if waiting is not None:
                    waiting.discard(event)
                    if not waiting:
                        del self.waiters[key]

    async def _listen_redis(self) -> None:
        while True:
            client = aioredis.Redis.from_url(settings.REDIS_URL)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    self.subscribed.set()
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            self.dispatch(message["data"].decode().split())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.subscribed.clear()
                log.warning(
                    "wake-up listener lost Redis (%s: %s); retrying",
                    type(exc).__name__,
                    exc,
                    exc_info=not isinstance(exc, REDIS_UNAVAILABLE),
                )
                await asyncio.sleep(1)
            finally:
                await client.aclose()


def hub() -> Hub:
    """This event loop's hub."""
    loop = asyncio.get_running_loop()
    with _lock:
        found = _hubs.get(loop)
        if found is None:
            found = _hubs[loop] = Hub(loop)
        return found


# How often a waiter re-reads the database in case its wake-up was lost (a Redis blip).
RECHECK_SECONDS = 15.0


def _recheck_interval() -> float:
    return RECHECK_SECONDS * (0.75 + random.random() / 2)


async def wait_for(keys: list[str], timeout: float, still_waiting: Callable[[], Awaitable[bool]]) -> None:
    """Wait until a key is notified or `timeout` passes.

    `still_waiting` is an async callable re-reading the database; it runs once after the
    waiter is registered (closing the check-then-wait race) and every RECHECK_SECONDS or
    so after (jittered, so a thousand waiters do not re-read at once): a lost message
    costs latency, never correctness.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with hub().listen(keys) as event:
        while await still_waiting():
            left = deadline - loop.time()
            if left <= 0:
                return
            try:
                await asyncio.wait_for(event.wait(), timeout=min(left, _recheck_interval()))
                return
            except TimeoutError:
                continue


def wait_for_sync(keys: list[str], timeout: float, still_waiting: Callable[[], bool]) -> None:
    """The blocking twin of wait_for, for a WSGI worker: its own Redis subscription (or,
    without Redis, periodic re-reads), and the database re-read every few seconds."""
    import time

    deadline = time.monotonic() + timeout
    wanted = set(keys)
    pubsub = None
    if settings.REDIS_URL:
        try:
            pubsub = redis_client(settings.REDIS_URL, timeout=10).pubsub()
            pubsub.subscribe(CHANNEL)
        except redis.RedisError:
            pubsub = None
    try:
        next_check = 0.0
        while True:
            now = time.monotonic()
            if now >= next_check:
                if not still_waiting():
                    return
                next_check = now + (_recheck_interval() if pubsub is not None else 0.25)
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if pubsub is None:
                time.sleep(min(left, next_check - time.monotonic(), 0.25))
                continue
            try:
                message = pubsub.get_message(ignore_subscribe_messages=True, timeout=min(left, 1.0))
            except redis.RedisError:
                pubsub = None
                continue
            if message and wanted & set(message["data"].decode().split()):
                return
    finally:
        if pubsub is not None:
            pubsub.close()
