#!/usr/bin/env python3
"""A tiny webhook receiver: verifies Handoff's signature and dedupes deliveries.

    HANDOFF_SIGNING_SECRET=whsec_... python examples/webhook_receiver.py --port 8787

Register http://127.0.0.1:8787/handoff as the agent's resume URL
(`manage.py agent_create NAME --resume-url http://127.0.0.1:8787/handoff`). Every
decision then arrives as a signed POST. Answers:

- 204 once the delivery is handled (or was already: deliveries are at least once, so a
  repeated `delivery_id` is acknowledged and skipped). A 2xx marks the escalation resumed.
- 401 for a bad or stale signature (a 4xx stops the server's retries; a reviewer can
  redeliver from the escalation's page once the secret is fixed).

Only the standard library and handoff_client (imported from clients/python/src when it
is not installed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

try:
    from handoff_client import InvalidSignature, verify_webhook
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "clients" / "python" / "src"))
    from handoff_client import InvalidSignature, verify_webhook

MAX_BODY = 2 * 1024 * 1024
SEEN_LIMIT = 10_000  # remember this many delivery ids (use a table in a real agent)


class Seen:
    """Delivery ids already handled; thread-safe, bounded, oldest forgotten first."""

    def __init__(self) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, delivery_id: str) -> bool:
        """True if new (and now remembered), False if seen before."""
        with self._lock:
            if delivery_id in self._ids:
                return False
            self._ids[delivery_id] = None
            while len(self._ids) > SEEN_LIMIT:
                self._ids.popitem(last=False)
            return True


def handle(event: dict) -> None:
    """Resume the paused run here. This example prints the decision."""
    escalation = event.get("escalation") or {}
    decision = escalation.get("decision") or {}
    print(
        f"[receiver] {escalation.get('run_id')}: {decision.get('kind')} "
        f"{decision.get('option') or ''} args={json.dumps(decision.get('args'))} "
        f"instruction={decision.get('instruction')!r}",
        flush=True,
    )


def make_handler(secret: str, seen: Seen) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self.send_response(413)
                self.end_headers()
                return
            body = self.rfile.read(length)  # the raw bytes: the signature covers exactly these
            try:
                event = verify_webhook(self.headers, body, secret)
            except InvalidSignature as exc:
                print(f"[receiver] refused: {exc}", flush=True)
                self.send_response(401)
                self.end_headers()
                return
            delivery_id = str(event.get("delivery_id") or self.headers.get("Handoff-Delivery"))
            if seen.add(delivery_id):
                handle(event)
            else:
                print(f"[receiver] duplicate delivery {delivery_id}: skipped", flush=True)
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def main() -> int:
    parser = argparse.ArgumentParser(description="Verify and print Handoff webhooks.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT_RECEIVER", 8787)))
    options = parser.parse_args()
    secret = os.environ.get("HANDOFF_SIGNING_SECRET")
    if not secret:
        print("HANDOFF_SIGNING_SECRET is not set (agent_create prints it)", file=sys.stderr)
        return 2
    server = ThreadingHTTPServer((options.host, options.port), make_handler(secret, Seen()))
    print(f"[receiver] listening on http://{options.host}:{options.port}/handoff", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
