"""A real HTTP server on 127.0.0.1 whose answers a test scripts (no mocks of httpx)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

DROP = object()  # answer nothing and close the connection: a network error for the client


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


App = Callable[[Request], Reply | object]


class StubServer:
    """Serve `app(request) -> Reply | DROP` in a thread; `requests` records every request."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.requests: list[Request] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                request = Request(
                    self.command,
                    parts.path,
                    query,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                stub.requests.append(request)
                reply = stub.app(request)
                if reply is DROP:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                assert isinstance(reply, Reply)
                data = b"" if reply.body is None else json.dumps(reply.body).encode()
                self.send_response(reply.status)
                content_type = (
                    "application/problem+json" if reply.status >= 400 else ("application/json")
                )
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)

    def __enter__(self) -> StubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def escalation_json(
    id: str = "8f0c6a4e-0000-4000-8000-000000000001",
    *,
    status: str = "pending",
    decision: dict[str, Any] | None = None,
    run_id: str = "run-42",
) -> dict[str, Any]:
    """An escalation object as API.md shows it."""
    return {
        "id": id,
        "run_id": run_id,
        "title": "Drop the legacy table?",
        "status": status,
        "tier": 3,
        "priority": 74,
        "priority_reasons": ["irreversible action"],
        "reason": "irreversible_action",
        "confidence": 0.6,
        "domain": "code",
        "respond_by": None,
        "created_at": "2026-11-21T10:00:00Z",
        "updated_at": "2026-11-21T10:00:00Z",
        "url": f"http://127.0.0.1/escalations/{id}",
        "decision": decision,
    }


def decision_json(
    kind: str = "option",
    option: str | None = None,
    args: dict[str, Any] | None = None,
    instruction: str | None = None,
) -> dict[str, Any]:
    return {
        "kind": kind,
        "option": option,
        "args": args,
        "instruction": instruction,
        "decided_by": {"type": "human", "name": "alice"},
        "decided_at": "2026-11-21T10:05:00Z",
    }


def decided_json(option: str | None = None, **kwargs: Any) -> dict[str, Any]:
    """A decided escalation; `kind` etc. go to decision_json."""
    ident = kwargs.pop("id", "8f0c6a4e-0000-4000-8000-000000000001")
    run_id = kwargs.pop("run_id", "run-42")
    return escalation_json(
        ident, status="decided", decision=decision_json(option=option, **kwargs), run_id=run_id
    )
