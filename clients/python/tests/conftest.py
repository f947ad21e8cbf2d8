"""Fixtures for the live tests: the real Handoff server, started as a subprocess.

The server repository is three levels above this file (clients/python/tests/..). It runs
with the server's interpreter: $HANDOFF_SERVER_PYTHON, else <repo>/.venv/bin/python, else
this one. DATABASE_URL / REDIS_URL are passed through when set (then the server runs in
production mode against them); otherwise it runs in the embedded mode with its SQLite
database in a temporary HANDOFF_VAR_DIR. Deselect with `-m "not live"`.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest

SERVER_ROOT = Path(__file__).resolve().parents[3]
STARTUP_TIMEOUT = 90


def server_python() -> str:
    if os.environ.get("HANDOFF_SERVER_PYTHON"):
        return os.environ["HANDOFF_SERVER_PYTHON"]
    venv = SERVER_ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Live(NamedTuple):
    """What the `live_server` fixture yields; unpacks as (base_url, token, secret)."""

    base_url: str
    token: str
    secret: str


class Server:
    """A running server process plus `manage.py` access to its database."""

    def __init__(self, var_dir: Path, port: int) -> None:
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        for name in ("PYTEST_CURRENT_TEST", "PYTEST_ADDOPTS"):
            self.env.pop(name, None)
        if not self.env.get("DATABASE_URL") or not self.env.get("REDIS_URL"):
            self.env["HANDOFF_VAR_DIR"] = str(var_dir)
        self.env.update(HOST="127.0.0.1", PORT=str(port), PUBLIC_URL=self.base_url)
        self.env.setdefault("SECRET_KEY", "live-tests-" + uuid.uuid4().hex)
        self.env.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost")
        # Production settings (DATABASE_URL set) redirect http to https and refuse loopback
        # webhooks; this server speaks plain http on 127.0.0.1 to agents on 127.0.0.1.
        self.env.setdefault("SECURE_SSL_REDIRECT", "0")
        self.env.setdefault("OUTBOUND_ALLOW_PRIVATE", "1")
        self.log_path = var_dir / "server.log"
        self.worker_log_path = var_dir / "worker.log"
        self.process: subprocess.Popen[bytes] | None = None
        # In production mode (REDIS_URL) webhooks are sent by a separate Celery worker;
        # in the embedded mode the server process runs one itself.
        self.worker: subprocess.Popen[bytes] | None = None

    def manage(self, *args: str, extra_env: dict[str, str] | None = None) -> str:
        """Run `python manage.py ARGS` against the server's database; return stdout."""
        done = subprocess.run(
            [server_python(), "manage.py", *args],
            cwd=SERVER_ROOT,
            env={**self.env, **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    def start(self) -> None:
        self.manage("migrate", "--noinput", "-v0")
        if self.env.get("REDIS_URL"):
            self.worker = subprocess.Popen(
                [
                    server_python(), "-m", "celery", "-A", "handoff_site", "worker",
                    "-P", "threads", "-c", "4", "--without-gossip", "--without-mingle",
                    "--without-heartbeat", "-l", "WARNING",
                ],
                cwd=SERVER_ROOT,
                env=self.env,
                stdout=self.worker_log_path.open("wb"),
                stderr=subprocess.STDOUT,
            )
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                server_python(),
                "-m",
                "uvicorn",
                "handoff_site.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            cwd=SERVER_ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                httpx.get(self.base_url + "/api/v1/openapi.json", timeout=2)
                return
            except httpx.TransportError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"the server did not start; its log:\n{self.log_tail()}")

    def stop(self) -> None:
        for process in (self.process, self.worker):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def create_agent(self, name: str, resume_url: str = "") -> tuple[str, str]:
        """`agent_create`: the new agent's (token, signing secret)."""
        args = ["agent_create", name] + (["--resume-url", resume_url] if resume_url else [])
        line = self.manage(*args).strip().splitlines()[-1]
        data = json.loads(line)
        return data["token"], data["signing_secret"]


class Deliveries:
    """A webhook receiver on 127.0.0.1 recording every delivery (headers, raw body)."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.changed = threading.Condition()
        deliveries = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with deliveries.changed:
                    deliveries.received.append((dict(self.headers.items()), body))
                    deliveries.changed.notify_all()
                self.send_response(204)
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/handoff"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def for_escalation(self, escalation_id: str, timeout: float = 30) -> tuple[dict, bytes]:
        """The first delivery about `escalation_id`, waiting up to `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for headers, body in self.received:
                    if json.loads(body).get("escalation", {}).get("id") == escalation_id:
                        return headers, body
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no webhook for {escalation_id} in {timeout} s")
                self.changed.wait(left)


class Reviewer:
    """A dashboard user deciding through the reviewer API."""

    def __init__(self, base_url: str, token: str) -> None:
        self.http = httpx.Client(
            base_url=base_url + "/api/v1/review",
            timeout=30,
            headers={"Authorization": f"Bearer {token}"},
        )

    def decide(
        self,
        escalation_id: str,
        kind: str = "option",
        option: str | None = None,
        args: dict[str, Any] | None = None,
        instruction: str | None = None,
    ) -> dict:
        body: dict[str, Any] = {"kind": kind}
        if option is not None:
            body["option"] = option
        if args is not None:
            body["args"] = args
        if instruction is not None:
            body["instruction"] = instruction
        response = self.http.post(f"/escalations/{escalation_id}/decision", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    def ask(self, escalation_id: str, text: str) -> dict:
        """Ask the agent a question (the escalation becomes awaiting_agent)."""
        response = self.http.post(f"/escalations/{escalation_id}/question", json={"text": text})
        assert response.status_code == 201, response.text
        return response.json()

    def find(self, run_id: str, timeout: float = 30) -> str:
        """The id of the open escalation of `run_id` once it is in the queue."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = self.http.get("/queue", params={"limit": 50})
            assert response.status_code == 200, response.text
            for item in response.json()["items"]:
                if item["run_id"] == run_id:
                    return item["id"]
            time.sleep(0.2)
        raise AssertionError(f"{run_id} never reached the queue")

    def decide_later(self, run_id: str, delay: float = 0.5, **decision: Any) -> threading.Thread:
        """In a thread: wait for `run_id` in the queue, then decide it."""

        def work() -> None:
            escalation_id = self.find(run_id)
            time.sleep(delay)
            self.decide(escalation_id, **decision)

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        return thread


@pytest.fixture(scope="session")
def _server() -> Iterator[Server]:
    if not (SERVER_ROOT / "manage.py").exists():
        pytest.skip(f"no Handoff server at {SERVER_ROOT}")
    with tempfile.TemporaryDirectory(prefix="handoff-live-") as var_dir:
        server = Server(Path(var_dir), free_port())
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="session")
def webhooks() -> Deliveries:
    return Deliveries()


@pytest.fixture(scope="session")
def live_server(_server: Server, webhooks: Deliveries) -> Live:
    """(base_url, token, secret) of an agent on a freshly started real server; its
    resume_url is the `webhooks` receiver."""
    token, secret = _server.create_agent(f"live-{uuid.uuid4().hex[:8]}", webhooks.url)
    return Live(_server.base_url, token, secret)


@pytest.fixture(scope="session")
def other_agent(_server: Server) -> Live:
    token, secret = _server.create_agent(f"other-{uuid.uuid4().hex[:8]}")
    return Live(_server.base_url, token, secret)


@pytest.fixture(scope="session")
def reviewer(_server: Server) -> Reviewer:
    username = f"r-{uuid.uuid4().hex[:8]}"
    _server.manage(
        "createsuperuser",
        "--noinput",
        "--username",
        username,
        "--email",
        f"{username}@example.com",
        extra_env={"DJANGO_SUPERUSER_PASSWORD": uuid.uuid4().hex},
    )
    token = _server.manage("reviewer_token", username).strip().splitlines()[-1]
    return Reviewer(_server.base_url, token)


@pytest.fixture
def server_log(_server: Server) -> Server:
    """The server itself, e.g. for `log_tail()` in a failure message."""
    return _server
