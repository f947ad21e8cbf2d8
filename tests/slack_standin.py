"""A stand-in for Slack's Web API (slack.com/api) in tests: a real HTTP server on 127.0.0.1,
in a thread, that records every call (the method, its arguments, the bearer token) and
answers as Slack does: {"ok": true, ...} for chat.postMessage, chat.update and
chat.postEphemeral, users.info from `members`, and {"ok": false, "error": ...} otherwise.

Also signs interactivity payloads as Slack does (v0 HMAC-SHA256 over "v0:ts:body").

    with SlackStandIn(members={"U1": {"email": "a@example.com"}}) as slack:
        settings.SLACK_API_URL = slack.url
        ...
        (call,) = slack.calls_to("chat.update")

A call can be held on its way, as a slow network holds it (hold()): Slack sees it (records
and answers it) only once the test releases it.
"""

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    token: str
    at: float = field(default_factory=time.monotonic)


@dataclass
class Hold:
    """One call held on its way to Slack: `arrived` is set once it waits; release() lets it on."""

    method: str
    arrived: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        self.released.set()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    standin: "SlackStandIn"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        method = parts.path.rsplit("/", 1)[-1]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        args: dict[str, Any] = dict(parse_qsl(parts.query))
        if raw:
            if "json" in (self.headers.get("Content-Type") or ""):
                args.update(json.loads(raw))
            else:
                args.update(parse_qsl(raw.decode()))
        self.server.standin._wait_if_held(method)
        token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        answer = self.server.standin._answer(Call(method, args, token))
        body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class SlackStandIn:
    def __init__(self, *, members: dict[str, dict[str, Any]] | None = None, token: str = "xoxb-test") -> None:
        self.members = members or {}
        self.token = token
        self.calls: list[Call] = []
        self._lock = threading.Condition()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.standin = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._seq = 0
        self._failures: dict[str, list[str]] = {}
        self._holds: list[Hold] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/api/"

    def __enter__(self) -> "SlackStandIn":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for hold in self._holds:
            hold.release()
        self._server.shutdown()
        self._server.server_close()

    def _wait_if_held(self, method: str) -> None:
        with self._lock:
            hold = next((h for h in self._holds if h.method == method and not h.arrived.is_set()), None)
            if hold is not None:
                hold.arrived.set()
        if hold is not None:
            hold.released.wait(30)

    def _answer(self, call: Call) -> dict[str, Any]:
        with self._lock:
            self.calls.append(call)
            self._seq += 1
            seq = self._seq
            self._lock.notify_all()
        if call.token != self.token:
            return {"ok": False, "error": "invalid_auth"}
        with self._lock:
            failures = self._failures.get(call.method) or []
            failure = failures.pop(0) if failures else None
        if failure is not None:
            return {"ok": False, "error": failure}
        if call.method in ("chat.postMessage", "chat.update"):
            ts = call.args.get("ts") or f"1700000000.{seq:06d}"
            return {"ok": True, "channel": call.args.get("channel"), "ts": ts}
        if call.method == "chat.postEphemeral":
            return {"ok": True, "message_ts": f"1700000001.{seq:06d}"}
        if call.method == "users.info":
            member = self.members.get(call.args.get("user", ""))
            if member is None:
                return {"ok": False, "error": "user_not_found"}
            return {
                "ok": True,
                "user": {
                    "id": call.args["user"],
                    "is_email_confirmed": member.get("confirmed", True),
                    "profile": {"email": member.get("email")},
                },
            }
        return {"ok": False, "error": "unknown_method"}

    def fail(self, method: str, *errors: str) -> None:
        """The next calls to `method` answer these Slack errors, one each (e.g. "ratelimited")."""
        with self._lock:
            self._failures.setdefault(method, []).extend(errors)

    def hold(self, method: str) -> Hold:
        """The next call to `method` waits on its way, unseen by Slack, until released."""
        hold = Hold(method)
        with self._lock:
            self._holds.append(hold)
        return hold

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [call for call in self.calls if call.method == method]

    def wait_for(self, method: str, count: int = 1, timeout: float = 10) -> list[Call]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while len([c for c in self.calls if c.method == method]) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{count} call(s) to {method} expected, saw {[c.method for c in self.calls]}")
                self._lock.wait(left)
            return [c for c in self.calls if c.method == method]


def signed_click(
    secret: str, *, member: str, value: str, action_id: str, channel: str = "D0001", ts: str = "1700000000.000001",
    at: float | None = None, signature: str | None = None,
) -> tuple[bytes, dict[str, str]]:
    """An interactivity request as Slack sends it: the form body and its signed headers."""
    payload = {
        "type": "block_actions",
        "user": {"id": member, "username": member.lower()},
        "container": {"type": "message", "channel_id": channel, "message_ts": ts},
        "channel": {"id": channel},
        "message": {"ts": ts},
        "actions": [{"type": "button", "action_id": action_id, "value": value, "action_ts": str(time.time())}],
    }
    body = urlencode({"payload": json.dumps(payload)}).encode()
    timestamp = str(int(at if at is not None else time.time()))
    base = f"v0:{timestamp}:".encode() + body
    computed = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    headers = {
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature if signature is not None else computed,
        "Content-Type": "application/x-www-form-urlencoded",
    }
    return body, headers
