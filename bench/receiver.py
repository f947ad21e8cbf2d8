"""A local agent for figure 3: an asyncio HTTP server on 127.0.0.1 that records when each
webhook arrives (time.time() once the whole body is in), checks its signature as an agent
would (Stripe scheme of API.md) and answers 200 at once.

usage: receiver.py PORT SIGNING_SECRET[,SIGNING_SECRET...] OUT_JSONL
Several agents may share it (figure 3 with --hook-agents): a POST to a path ending in /K is
agent K's and checked with the K-th secret (any other path with the first).
One JSON line per delivery: {"t", "delivery", "escalation", "status", "signature_ok", "peer",
"agent"} (peer: the client's port, one per connection; agent: K).
"""

import asyncio
import hashlib
import hmac
import json
import sys
import time

PORT, SECRETS, OUT = int(sys.argv[1]), [s.encode() for s in sys.argv[2].split(",")], sys.argv[3]
out = open(OUT, "a", buffering=1)  # noqa: SIM115 - line buffered for the lifetime of the server


def agent_of(request_line: str) -> int:
    """K of a path ending in /K when there is a K-th secret, else 0."""
    tail = request_line.split(" ")[1].rsplit("/", 1)[-1] if " " in request_line else ""
    return int(tail) if tail.isdigit() and int(tail) < len(SECRETS) else 0


def signature_ok(header: str, body: bytes, secret: bytes) -> bool:
    try:
        parts = [item.split("=", 1) for item in header.split(",")]
        stamp = next(v for k, v in parts if k.strip() == "t")
        macs = [v for k, v in parts if k.strip() == "v1"]
    except (ValueError, StopIteration):
        return False
    if abs(time.time() - int(stamp)) > 300:
        return False
    expected = hmac.new(secret, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, mac) for mac in macs)


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    peer = writer.get_extra_info("peername")[1]  # one port per connection: keep-alive is seen
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            headers = {}
            lines = head.decode("latin-1").split("\r\n")
            agent = agent_of(lines[0])
            for line in lines[1:]:
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            body = await reader.readexactly(length) if length else b""
            received = time.time()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
            try:
                escalation = json.loads(body)["escalation"]
                esc_id, status = escalation["id"], escalation["status"]
            except (ValueError, KeyError, TypeError):
                esc_id, status = None, None
            out.write(json.dumps({
                "t": received,
                "delivery": headers.get("handoff-delivery"),
                "escalation": esc_id,
                "status": status,
                "signature_ok": signature_ok(headers.get("handoff-signature", ""), body, SECRETS[agent]),
                "peer": peer,
                "agent": agent,
            }) + "\n")
            if headers.get("connection", "").lower() == "close":
                break
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def main() -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", PORT, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
