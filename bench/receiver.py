"""A local agent for figure 3: an asyncio HTTP server on 127.0.0.1 that records when each
webhook arrives (time.time() once the whole body is in), checks its signature as an agent
would (Stripe scheme of API.md) and answers 200 at once.

usage: receiver.py PORT SIGNING_SECRET OUT_JSONL
One JSON line per delivery: {"t", "delivery", "escalation", "status", "signature_ok", "peer"}
(the client's port: one per connection).
"""

import asyncio
import hashlib
import hmac
import json
import sys
import time

PORT, SECRET, OUT = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3]
out = open(OUT, "a", buffering=1)  # noqa: SIM115 - line buffered for the lifetime of the server


def signature_ok(header: str, body: bytes) -> bool:
    try:
        parts = [item.split("=", 1) for item in header.split(",")]
        stamp = next(v for k, v in parts if k.strip() == "t")
        macs = [v for k, v in parts if k.strip() == "v1"]
    except (ValueError, StopIteration):
        return False
    if abs(time.time() - int(stamp)) > 300:
        return False
    expected = hmac.new(SECRET, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, mac) for mac in macs)


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    peer = writer.get_extra_info("peername")[1]  # one port per connection: keep-alive is seen
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            headers = {}
            for line in head.decode("latin-1").split("\r\n")[1:]:
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
                "signature_ok": signature_ok(headers.get("handoff-signature", ""), body),
                "peer": peer,
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
