"""A notice to several groups goes out in one batch on Redis (events._redis_group_send): each
member hears it once, as the channel layer's own group_send would send it."""

import asyncio

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


async def receive_all(layer, channel, wait: float = 0.3) -> list[dict]:
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

        await events._group_send_all(first, ["queue", "escalation-e1"], NOTICE)
        batched = {c: await receive_all(layer, c) for layer, c in
                   ((first, queue_page), (second, also_queue), (second, escalation_page))}
        for group in ("queue", "escalation-e1"):
            await first.group_send(group, NOTICE)
        by_layer = {c: await receive_all(layer, c) for layer, c in
                    ((first, queue_page), (second, also_queue), (second, escalation_page))}

        assert batched == by_layer == {c: [NOTICE] for c in (queue_page, also_queue, escalation_page)}
        # A group nobody is in costs nothing and sends nothing.
        await events._group_send_all(first, ["escalation-nobody"], NOTICE)
        assert await receive_all(first, queue_page) == []
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

        await events._group_send_all(first, ["queue", "escalation-e1"], NOTICE)

        assert await receive_all(second, other) == [NOTICE]
        heard = await receive_all(first, full)
        assert NOTICE not in heard
        assert len(heard) == first.get_capacity(full)
    finally:
        await first.flush()
