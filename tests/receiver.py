"""An agent's webhook receiver for tests: a real HTTP server on 127.0.0.1, in a thread.

It records every request (method, path, headers, raw body, client address) and answers
from a script, one step per request, then `default` once the script runs out:
- an int: that status code;
- `Reply(status, delay=..., body=...)`: wait `delay` seconds first (a slow or hanging
  agent; `release()` or `close()` ends the wait early);
- `CLOSE`: drop the connection without answering;
- `TRICKLE`: the status line, then a header line every 0.5 s until released (a server that
  never finishes answering, yet never lets a per-read timeout fire).

    with Receiver(script=[500, 200]) as receiver:
        agent.resume_url = receiver.url
        ...
        first, second = receiver.wait_for(2)
"""

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    status: int = 200
    delay: float = 0.0
    body: bytes = b'{"ok": true}'


CLOSE = "close"
TRICKLE = "trickle"


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    client: tuple[str, int]
    at: float = field(default_factory=time.monotonic)
    answered: int | None = None  # the status sent back; None: dropped or still held

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    receiver: "Receiver"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real agents' servers do
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        self._handle()

    def do_GET(self) -> None:
        self._handle()

    def _handle(self) -> None:
        receiver = self.server.receiver
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        recorded = Recorded(
            method=self.command,
            path=self.path,
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
            client=self.client_address[:2],
        )
        step = receiver._record(recorded)
        if receiver.on_request is not None:
            receiver.on_request(recorded)
        if step == CLOSE:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if step == TRICKLE:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                self.wfile.flush()
                while not receiver._stopping.wait(0.5):
                    self.wfile.write(b"X-Still-Thinking: yes\r\n")
                    self.wfile.flush()
            return
        reply = step if isinstance(step, Reply) else Reply(int(step))
        if reply.delay and receiver._stopping.wait(reply.delay):
            self.close_connection = True  # released: drop it rather than answer
            return
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
            self.wfile.flush()
            recorded.answered = reply.status
        except OSError:  # the client went away (killed worker, timeout)
            self.close_connection = True


class Receiver:
    def __init__(
        self,
        script: list | None = None,
        *,
        default: int | Reply | str = 200,
        port: int = 0,
        on_request: Callable[[Recorded], None] | None = None,
    ):
        self.on_request = on_request  # runs in the server's thread before each answer
        self.requests: list[Recorded] = []
        self._script = list(script or [])
        self._default = default
        self._lock = threading.Condition()
        self._stopping = threading.Event()
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.receiver = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/handoff"

    def script(self, *steps: int | Reply | str) -> None:
        """Append answers for the next requests."""
        with self._lock:
            self._script.extend(steps)

    def answer_from_now_on(self, step: int | Reply | str) -> None:
        """Change the answer given once the script has run out (`default`)."""
        with self._lock:
            self._default = step

    def _record(self, recorded: Recorded) -> int | Reply | str:
        with self._lock:
            self.requests.append(recorded)
            step = self._script.pop(0) if self._script else self._default
            self._lock.notify_all()
            return step

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Recorded]:
        """Block until `count` requests arrived; AssertionError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"receiver got {len(self.requests)} request(s), expected {count} "
                        f"within {timeout:g} s"
                    )
                self._lock.wait(left)
            return list(self.requests)

    def release(self) -> None:
        """End every held (delayed) request now: they are dropped unanswered."""
        self._stopping.set()

    def close(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "Receiver":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
