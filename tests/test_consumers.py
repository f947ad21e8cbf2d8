"""Websocket consumers on the real channel layer of the mode (in-memory or Redis)."""

import json

import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from escalations import services
from reviews.routing import websocket_urlpatterns
from tests.conftest import ensure_default_policies, make_package

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

application = URLRouter(websocket_urlpatterns)


def communicator(path: str, user) -> WebsocketCommunicator:
    socket = WebsocketCommunicator(application, path)
    socket.scope["user"] = user  # type: ignore[typeddict-unknown-key]  # what AuthMiddleware sets
    return socket


@sync_to_async
def create_escalation(**overrides):
    ensure_default_policies()
    agent = services.agent_create(name=f"agent-{overrides.get('run_id', 'x')}").agent
    from escalations.schemas import EscalationIn

    package = make_package(**overrides)
    return services.escalation_create(
        agent=agent, package=EscalationIn.model_validate(package).to_input(package)
    ).escalation


@sync_to_async
def decide(escalation, user):
    services.escalation_decide(
        escalation_id=escalation.pk, request=services.DecisionRequest(kind="halt"), user=user
    )


async def test_anonymous_sockets_are_refused():
    socket = communicator("/ws/queue/", AnonymousUser())
    connected, code = await socket.connect(timeout=5)
    assert not connected
    assert code == 4401
    await socket.disconnect()  # as a server does after a close: the consumer stops listening


async def test_the_queue_hears_new_and_decided_escalations(reviewer):
    socket = communicator("/ws/queue/", reviewer)
    connected, _ = await socket.connect(timeout=5)
    assert connected

    escalation = await create_escalation(run_id="q1")
    created = await socket.receive_json_from(timeout=3)
    await decide(escalation, reviewer)
    decided = await socket.receive_json_from(timeout=3)
    await socket.disconnect()

    common = {"id": str(escalation.pk), "priority": escalation.priority}
    assert created == {**common, "kind": "created", "status": "pending", "actor": "agent-q1"}
    assert decided == {**common, "kind": "decided", "status": "decided", "actor": "alice"}


async def test_an_escalation_page_hears_only_its_own_escalation(reviewer):
    mine = await create_escalation(run_id="mine")
    other = await create_escalation(run_id="other")
    socket = communicator(f"/ws/escalations/{mine.pk}/", reviewer)
    assert (await socket.connect(timeout=5))[0]

    await decide(other, reviewer)
    await decide(mine, reviewer)
    # Notices go out after commit on a loop of their own: the creation's may land after the
    # socket joined. Every message is about this page's escalation, the last its decision.
    message = await socket.receive_json_from(timeout=3)
    if message["kind"] == "created":
        assert message["id"] == str(mine.pk)
        message = await socket.receive_json_from(timeout=3)
    assert message["id"] == str(mine.pk)
    assert message["status"] == "decided"
    assert await socket.receive_nothing(timeout=0.3)
    await socket.disconnect()


async def test_queue_pages_get_the_row_rendered_once_per_view(reviewer, other_reviewer, monkeypatch):
    """A queue page that says which view it shows gets the row rendered under that view in
    the notice; pages of the same view share one render of a new escalation, another view
    gets its own, and a change that may read differently per reviewer renders per reviewer."""
    from reviews import live_rows

    renders: list[tuple[str, bool]] = []
    render = live_rows.render

    def counted(escalation_id, query, user, *, shared):
        renders.append((query, shared))
        return render(escalation_id, query, user, shared=shared)

    monkeypatch.setattr(live_rows, "render", counted)
    views = {"alice": "", "bob": "", "lows": "impact=low&after=x"}
    users = {"alice": reviewer, "bob": other_reviewer, "lows": other_reviewer}
    sockets = {}
    for name, query in views.items():
        sockets[name] = communicator("/ws/queue/", users[name])
        assert (await sockets[name].connect())[0]
        await sockets[name].send_to(text_data=json.dumps({"view": query}))
    plain = communicator("/ws/queue/", reviewer)  # a page that said nothing: the bare notice
    assert (await plain.connect(timeout=5))[0]

    escalation = await create_escalation(run_id="v1", title="Row <b>one</b>")
    created = {name: await socket.receive_json_from(timeout=20) for name, socket in sockets.items()}
    assert set(await plain.receive_json_from(timeout=3)) == {"id", "kind", "status", "actor", "priority"}
    for name, query in views.items():
        assert created[name]["view"] == query
    row = f'id="escalation-{escalation.pk}"'
    assert row in created["alice"]["html"]
    assert created["alice"]["html"] == created["bob"]["html"]
    assert "Row &lt;b&gt;one&lt;/b&gt;" in created["alice"]["html"]
    assert 'data-count="open"' in created["alice"]["html"]
    assert 'data-count="mine"' not in created["alice"]["html"]  # the reader's own: left as it is
    assert "csrfmiddlewaretoken" not in created["alice"]["html"]
    assert row not in created["lows"]["html"]  # its impact is not low: an empty template
    assert sorted(renders) == [("", True), ("impact=low&after=x", True)]

    renders.clear()
    await decide(escalation, reviewer)
    for socket in sockets.values():
        decided = await socket.receive_json_from(timeout=3)
        assert decided["kind"] == "decided"
        assert 'data-count="mine"' in decided["html"]
    assert sorted(renders) == [("", False), ("", False), ("impact=low&after=x", False)]
    for socket in [*sockets.values(), plain]:
        await socket.disconnect()
