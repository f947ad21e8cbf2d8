"""Bodies as real servers receive them: chunked (no Content-Length) and oversized, under
uvicorn (ASGI) and gunicorn (WSGI), the two servers we ship."""

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection

from escalations.models import Escalation
from tests.conftest import free_port, make_package, need

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024


def _test_database_url() -> str:
    s = connection.settings_dict
    password = f":{s['PASSWORD']}" if s["PASSWORD"] else ""
    return f"postgres://{s['USER']}{password}@{s['HOST']}:{s['PORT'] or 5432}/{s['NAME']}"


@pytest.fixture
def gunicorn_server(transactional_db) -> Iterator[str]:
    """gunicorn with the production config (one threaded worker) on the test database."""
    need(connection.vendor == "postgresql", "PostgreSQL (gunicorn is a second process on the test database)")
    port = free_port()
    env = dict(os.environ, DATABASE_URL=_test_database_url(), DB_POOL="0", DEBUG="1",
               GUNICORN_BIND=f"127.0.0.1:{port}", GUNICORN_WORKERS="1", GUNICORN_LOG_LEVEL="warning")
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "handoff_site.wsgi:application"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"gunicorn did not start: {process.communicate()[1].decode()[-2000:]}") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(params=["uvicorn", "gunicorn"])
def server(request) -> str:
    return request.getfixturevalue("live_server_asgi" if request.param == "uvicorn" else "gunicorn_server")


def post_raw(base_url: str, token: str, body: bytes, *, chunked: bool, declared: int | None = None) -> tuple[int | None, dict, bytes, int]:
    """POST /api/v1/escalations over a plain socket, the body in 64 KiB pieces (chunked or
    with a Content-Length, possibly `declared` falsely); (status, headers, body, bytes of the
    body sent). The status is None when the server cut the connection without an answer."""
    host, port = base_url.removeprefix("http://").split(":")
    head = [
        "POST /api/v1/escalations HTTP/1.1", f"Host: {host}", f"Authorization: Bearer {token}",
        "Content-Type: application/json", "Connection: close",
    ]
    head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {declared or len(body)}")
    sent = 0
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        try:
            for start in range(0, len(body), 64 * 1024):
                part = body[start:start + 64 * 1024]
                sock.sendall(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
                sent += len(part)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server answered and closed before it had the whole body
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    if not answer:
        return None, {}, b"", sent
    head_part, _, content = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head_part.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}
    if headers.get("transfer-encoding") == "chunked":
        content = _dechunk(content)
    return int(status_line.split()[1]), headers, content, sent


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2:]
    return out


def oversized_package(size: int) -> bytes:
    return json.dumps(make_package(metadata={"blob": "x" * size})).encode()


@pytest.mark.parametrize("size", [MIB + 1000, 3 * MIB, 12 * MIB])
def test_a_chunked_body_over_the_limit_is_413_problem_json(agent_with_token, server, size):
    """Under uvicorn a chunked body over 2.5 MiB was a 500 (RequestDataTooBig), and under
    gunicorn a chunked body was read as empty: a 422 saying the body is missing."""
    status, headers, content, _ = post_raw(server, agent_with_token[1], oversized_package(size), chunked=True)
    assert status == 413, content[:300]
    assert headers["content-type"] == "application/problem+json"
    assert json.loads(content)["status"] == 413
    assert Escalation.objects.count() == 0


@pytest.mark.parametrize("size", [3 * MIB, 12 * MIB])
def test_a_declared_body_over_the_limit_is_413_the_client_can_read(agent_with_token, server, size):
    status, headers, content, _ = post_raw(server, agent_with_token[1], oversized_package(size), chunked=False)
    assert status == 413, content[:300]
    assert headers["content-type"] == "application/problem+json"


def test_a_chunked_body_within_the_limit_is_read_whole(agent_with_token, server):
    package = make_package()
    step = {"at": package["history"][0]["at"], "action": "ran a step", "detail": "y" * 19_000}
    package["history"] = [dict(step, action=f"step {i}") for i in range(54)]
    body = json.dumps(package).encode()
    assert 1_000_000 < len(body) < MIB
    status, _, content, _ = post_raw(server, agent_with_token[1], body, chunked=True)
    assert status == 201, content[:300]
    assert len(Escalation.objects.get().history) == 54


def test_a_huge_chunked_body_is_not_read_to_its_end(agent_with_token, server):
    """100 MiB: the server stops reading past the limit and what it drops; the client gets
    its 413 or, past that, a closed connection. Nothing is stored, nothing is a 5xx."""
    status, _, content, sent = post_raw(server, agent_with_token[1], oversized_package(100 * MIB), chunked=True)
    assert status in (413, None), content[:300]
    assert sent < 60 * MIB
    assert Escalation.objects.count() == 0


def test_a_declared_length_over_the_limit_is_refused_before_the_body(agent_with_token, server):
    """Content-Length: 100 MiB and no body sent: the answer comes at once."""
    started = time.monotonic()
    status, headers, content, _ = post_raw(server, agent_with_token[1], b"", chunked=False, declared=100 * MIB)
    assert status == 413, content
    assert headers["content-type"] == "application/problem+json", content
    # A server waiting for the 100 MiB would answer only when its own timeout ended the wait
    # (gunicorn's worker timeout, 30 s) or not before the client gave up (30 s): well under
    # that is "at once", with room for a loaded machine (6.6 s seen with the suite in parallel).
    assert time.monotonic() - started < 15
