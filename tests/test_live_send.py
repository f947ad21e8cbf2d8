"""A notice to several groups goes out in one batch on Redis (events._redis_group_send, from
the committing thread): each member hears it once, as the channel layer's own group_send would
send it; a Redis that refuses or hangs costs the writer a logged warning, bounded in time."""

import asyncio
import logging
import socket
import threading
import time

import pytest
from channels.layers import get_channel_layer
from channels_redis.core import RedisChannelLayer  # type: ignore[import-untyped]
from django.conf import settings

from escalations.transport import events

pytestmark = [pytest.mark.redis, pytest.mark.asyncio]

NOTICE = {"type": "escalation.changed", "id": "e1", "kind": "resumed", "status": "resumed", "priority": 3}


@pytest.fixture
def layers():
    """Two layers on one Redis: two server processes, each with its own local channels."""
    if not settings.REDIS_URL:
        pytest.skip("needs Redis (the channel layer of production)")
    config = {**settings.CHANNEL_LAYERS["default"]["CONFIG"], "prefix": "test-live-send"}
    first, second = RedisChannelLayer(**config), RedisChannelLayer(**config)
    assert isinstance(get_channel_layer(), RedisChannelLayer)
    return first, second


async def send(layer, groups):
    """The writer's send, on a thread of its own as in a server (it blocks on Redis)."""
    await asyncio.to_thread(events._redis_group_send, layer, groups, NOTICE)


async def receive_all(layer, channel, wait: float = 1.0) -> list[dict]:
    """What the channel holds, read until `wait` seconds pass with nothing more (a loaded
    machine can pause a read for a good part of a second: CI heard 265 of 500 at 0.3 s)."""
    got = []
    while True:
        try:
            got.append(await asyncio.wait_for(layer.receive(channel), timeout=wait))
        except TimeoutError:
            return got


async def test_each_member_of_every_group_hears_the_notice_once_as_group_send_sends_it(layers):
    first, second = layers
    queue_page, escalation_page = await first.new_channel(), await second.new_channel()
    also_queue = await second.new_channel()
    try:
        await first.group_add("queue", queue_page)
        await second.group_add("queue", also_queue)
        await second.group_add("escalation-e1", escalation_page)

        await send(first, ["queue", "escalation-e1"])
        batched = {c: await receive_all(layer, c) for layer, c in
                   ((first, queue_page), (second, also_queue), (second, escalation_page))}
        for group in ("queue", "escalation-e1"):
            await first.group_send(group, NOTICE)
        by_layer = {c: await receive_all(layer, c) for layer, c in
                    ((first, queue_page), (second, also_queue), (second, escalation_page))}

        assert batched == by_layer == {c: [NOTICE] for c in (queue_page, also_queue, escalation_page)}
        # A group nobody is in costs nothing and sends nothing.
        await send(first, ["escalation-nobody"])
        assert await receive_all(first, queue_page, wait=0.3) == []
    finally:
        await first.flush()


async def test_a_full_channel_is_skipped_and_the_others_still_hear(layers):
    first, second = layers
    full, other = await first.new_channel(), await second.new_channel()
    try:
        await first.group_add("queue", full)
        await second.group_add("escalation-e1", other)
        for _ in range(first.get_capacity(full)):
            await first.send(full, {"type": "filler"})

        await send(first, ["queue", "escalation-e1"])

        assert await receive_all(second, other) == [NOTICE]
        heard = await receive_all(first, full)
        assert NOTICE not in heard
        assert len(heard) == first.get_capacity(full)
    finally:
        await first.flush()


async def test_the_writers_send_is_the_one_production_takes():
    assert events.sends_from_writer(get_channel_layer())
    assert not events.sends_from_writer(RedisChannelLayer(hosts=[{"address": "redis://a"}, {"address": "redis://b"}]))
    # An option the writer's client would not pass on: the layer's own loop sends.
    assert not events.sends_from_writer(RedisChannelLayer(hosts=[{"address": "rediss://a", "ssl_ca_certs": "/ca.pem"}]))


@pytest.mark.parametrize("redis_is", ["refusing", "hanging"])
async def test_a_redis_away_costs_the_writer_a_warning_and_at_most_the_timeout(redis_is, caplog, monkeypatch):
    """Nothing raises into the committed write; a Redis that accepts and never answers holds
    the writer for the send timeout, not the layer's 15 s."""
    monkeypatch.setattr(events, "SEND_TIMEOUT", 0.5)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    held = []
    if redis_is == "refusing":
        listener.close()
    else:
        threading.Thread(target=lambda: held.append(listener.accept()), daemon=True).start()
    layer = RedisChannelLayer(hosts=[{"address": f"redis://127.0.0.1:{port}/0", "socket_timeout": 15}])
    try:
        with caplog.at_level(logging.WARNING, logger="escalations.transport.events"):
            started = time.monotonic()
            await asyncio.to_thread(events._redis_group_send, layer, ["queue"], NOTICE)
            took = time.monotonic() - started
        assert took < 2, took
        (record,) = caplog.records
        assert record.getMessage().startswith("live update to queue not sent (")
        assert not record.exc_info  # one line, no traceback
    finally:
        listener.close()
        for conn, _ in held:
            conn.close()
