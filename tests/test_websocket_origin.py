"""The websocket Origin check compares scheme, host and port with the request's own."""

import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client

from handoff_site.websocket import SameOriginValidator


async def accepting(scope, receive, send):
    """A websocket app that accepts every socket (no channel layer, no database)."""
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while (await receive())["type"] != "websocket.disconnect":
        pass


application = SameOriginValidator(accepting)


def session_cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def opens(origin: str | None, host: str = "127.0.0.1:8000", scheme="ws") -> bool:
    headers = [(b"host", host.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    socket = WebsocketCommunicator(application, "/ws/queue/", headers=headers)
    socket.scope["scheme"] = scheme
    connected, _ = await socket.connect(timeout=5)
    if connected:
        await socket.disconnect()
    return connected


@pytest.mark.parametrize(
    ("origin", "host", "scheme", "allowed"),
    [
        ("http://127.0.0.1:8000", "127.0.0.1:8000", "ws", True),
        ("http://127.0.0.1:9999", "127.0.0.1:8000", "ws", False),  # same host, another port
        ("http://127.0.0.1", "127.0.0.1:8000", "ws", False),
        ("https://127.0.0.1:8000", "127.0.0.1:8000", "ws", False),  # another scheme
        ("http://localhost:8000", "127.0.0.1:8000", "ws", False),
        ("https://localhost", "localhost", "wss", True),  # behind TLS: default ports
        ("https://localhost:443", "localhost", "wss", True),
        ("http://localhost", "localhost", "wss", False),
        ("null", "127.0.0.1:8000", "ws", False),
        (None, "127.0.0.1:8000", "ws", False),
        ("http://evil.example:8000", "evil.example:8000", "ws", False),  # Host not allowed
    ],
)
async def test_only_the_pages_own_origin_opens_a_socket(origin, host, scheme, allowed):
    assert await opens(origin, host, scheme) is allowed


async def test_csrf_trusted_origins_are_trusted_port_included(settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://handoff.example.com", "https://*.corp.example:8443"]
    assert await opens("https://handoff.example.com")
    assert await opens("https://a.corp.example:8443")
    assert not await opens("https://handoff.example.com:8443")
    assert not await opens("https://a.corp.example")


@pytest.mark.django_db(transaction=True)
def test_a_wrong_port_origin_is_refused_by_the_server(live_server_asgi, reviewer):
    """Over a real connection to uvicorn: the handshake itself is refused."""
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    cookie = session_cookie(reviewer).decode()
    url = live_server_asgi.replace("http://", "ws://") + "/ws/queue/"
    port = int(live_server_asgi.rsplit(":", 1)[1])
    with connect(url, origin=f"http://127.0.0.1:{port}", additional_headers={"Cookie": cookie}) as ws:
        assert ws.protocol.state.name == "OPEN"
    with pytest.raises(InvalidStatus) as refused:
        connect(url, origin=f"http://127.0.0.1:{port + 1}", additional_headers={"Cookie": cookie})
    assert refused.value.response.status_code == 403
