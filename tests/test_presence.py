"""Presence on an escalation's page: who else has it open, over the real channel layer of
the mode (in-memory, or Redis shared by every process)."""

import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from reviews.routing import websocket_urlpatterns
from tests.conftest import make_user
from tests.test_consumers import create_escalation

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

application = URLRouter(websocket_urlpatterns)


async def open_page(escalation, user) -> WebsocketCommunicator:
    socket = WebsocketCommunicator(application, f"/ws/escalations/{escalation.pk}/")
    socket.scope["user"] = user  # type: ignore[typeddict-unknown-key]  # what AuthMiddleware sets
    connected, _ = await socket.connect(timeout=5)  # a loaded machine (CI) is slow to accept
    assert connected
    return socket


async def presence(socket) -> tuple[str, str]:
    message = await socket.receive_json_from(timeout=3)
    assert set(message) == {"presence", "id", "user"}, message
    return message["presence"], message["user"]


async def two_pages(escalation, first, second):
    """Both pages open, and their greetings heard to the end. Opened together, each may hear
    the other twice (a join and a here: the first page's join can reach the second page's
    group membership before it is announced), which the page shows once (escalation.js keys
    viewers by id); the tests after the greeting then see only what they cause."""
    first_page = await open_page(escalation, first)
    second_page = await open_page(escalation, second)
    first_heard = await heard(first_page)
    second_heard = await heard(second_page)
    assert ("join", second.username) in first_heard, first_heard
    assert ("here", first.username) in second_heard, second_heard
    assert {user for _, user in first_heard} == {second.username}, first_heard
    assert {user for _, user in second_heard} == {first.username}, second_heard
    return first_page, second_page


async def heard(socket, quiet: float = 0.3) -> set[tuple[str, str]]:
    """The presence a page hears until it has been quiet for `quiet` seconds."""
    messages = {await presence(socket)}
    while not await socket.receive_nothing(timeout=quiet):
        messages.add(await presence(socket))
    return messages


@sync_to_async
def people(*names):
    return [make_user(name, "reviewer") for name in names]


async def test_viewers_see_each_other_join_and_leave():
    escalation = await create_escalation(run_id="presence")
    alice, bob = await people("alice", "bob")

    alice_page = await open_page(escalation, alice)
    assert await alice_page.receive_nothing(timeout=0.2)  # alone: nobody to hear from

    bob_page = await open_page(escalation, bob)
    assert await presence(alice_page) == ("join", "bob")
    assert await presence(bob_page) == ("here", "alice")  # the newcomer learns who was there

    await bob_page.disconnect()
    assert await presence(alice_page) == ("leave", "bob")
    assert await alice_page.receive_nothing(timeout=0.2)
    await alice_page.disconnect()


async def test_a_ping_says_still_here_and_anything_else_is_ignored():
    escalation = await create_escalation(run_id="ping")
    alice, bob = await people("alice", "bob")
    alice_page, bob_page = await two_pages(escalation, alice, bob)

    await bob_page.send_to(text_data="ping")
    assert await presence(alice_page) == ("here", "bob")
    await bob_page.send_to(text_data='{"type": "escalation.changed", "id": "x"}')
    await bob_page.send_to(text_data="not json at all")
    assert await alice_page.receive_nothing(timeout=0.3)
    assert await bob_page.receive_nothing(timeout=0.1)
    await alice_page.disconnect()
    await bob_page.disconnect()


async def test_a_reviewers_own_other_tabs_are_not_shown_to_them():
    escalation = await create_escalation(run_id="tabs")
    [alice] = await people("alice")
    first = await open_page(escalation, alice)
    second = await open_page(escalation, alice)
    await second.send_to(text_data="ping")
    await second.disconnect()
    assert await first.receive_nothing(timeout=0.3)
    await first.disconnect()


async def test_presence_stays_on_its_own_escalation_and_off_the_queue():
    here = await create_escalation(run_id="here")
    elsewhere = await create_escalation(run_id="elsewhere")
    alice, bob = await people("alice", "bob")
    queue = WebsocketCommunicator(application, "/ws/queue/")
    queue.scope["user"] = alice
    assert (await queue.connect(timeout=5))[0]
    alice_page = await open_page(here, alice)

    bob_page = await open_page(elsewhere, bob)
    await bob_page.send_to(text_data="ping")
    assert await alice_page.receive_nothing(timeout=0.3)
    assert await queue.receive_nothing(timeout=0.1)
    for socket in (queue, alice_page, bob_page):
        await socket.disconnect()


async def test_change_notices_still_reach_a_page_with_viewers(reviewer):
    escalation = await create_escalation(run_id="both")
    [bob] = await people("bob")
    alice_page, bob_page = await two_pages(escalation, reviewer, bob)

    from escalations import services

    await sync_to_async(services.escalation_claim)(escalation_id=escalation.pk, user=bob)
    notice = await alice_page.receive_json_from(timeout=3)
    assert (notice["kind"], notice["status"]) == ("claimed", "claimed")
    assert "presence" not in notice
    for socket in (alice_page, bob_page):
        await socket.disconnect()
