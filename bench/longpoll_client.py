"""Figure 4's agents: N concurrent `GET /api/v1/escalations/{id}?wait=W` on raw asyncio streams.

usage: longpoll_client.py PORT TOKEN IDS_FILE OUT_JSON WAIT_SECONDS DEADLINE_SECONDS
Prints `SENT <n> <connect_errors>` once every request is written, then waits for the
answers (until DEADLINE_SECONDS after start) and writes one record per request to OUT_JSON:
{"id", "t_sent", "t_recv", "http", "status", "polls"}; t_recv is time.time() when the whole body of
the answer that is no longer open is in (an answer still `pending` after WAIT s is re-polled).
"""

import asyncio
import json
import resource
import sys
import time
from pathlib import Path

PORT, TOKEN, IDS_FILE, OUT = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
WAIT, DEADLINE = int(sys.argv[5]), float(sys.argv[6])


async def poll_once(esc_id: str, connect_gate: asyncio.Semaphore | None, sent: list | None) -> tuple[int, str | None]:
    if connect_gate is not None:
        async with connect_gate:
            reader, writer = await asyncio.open_connection("127.0.0.1", PORT)
    else:
        reader, writer = await asyncio.open_connection("127.0.0.1", PORT)
    request = (
        f"GET /api/v1/escalations/{esc_id}?wait={WAIT} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{PORT}\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Accept: application/json\r\nConnection: close\r\n\r\n"
    ).encode()
    try:
        writer.write(request)
        await writer.drain()
        if sent is not None:
            sent.append(esc_id)
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        code = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        else:
            body = await reader.read()  # Connection: close
        try:
            status = json.loads(body).get("status")
        except ValueError:
            status = None
        return code, status
    finally:
        writer.close()


async def one(esc_id: str, connect_gate: asyncio.Semaphore, sent: list, record: dict) -> None:
    """Long-poll until the escalation is no longer open, as an agent would (re-poll after `wait`)."""
    record["t_sent"] = time.time()
    record["polls"] = 1
    code, status = await poll_once(esc_id, connect_gate, sent)
    while code == 200 and status in ("pending", "claimed"):
        record["polls"] += 1
        code, status = await poll_once(esc_id, None, None)
    record["t_recv"] = time.time()
    record["http"], record["status"] = code, status


async def main() -> None:
    started = time.monotonic()
    ids = [line.strip() for line in Path(IDS_FILE).read_text().splitlines() if line.strip()]
    records = {esc_id: {"id": esc_id} for esc_id in ids}
    sent: list[str] = []
    gate = asyncio.Semaphore(100)
    tasks = [asyncio.create_task(one(i, gate, sent, records[i])) for i in ids]
    while len(sent) + sum(1 for t in tasks if t.done() and t.exception()) < len(ids):
        if time.monotonic() - started > 30:
            break
        await asyncio.sleep(0.01)
    errors = sum(1 for t in tasks if t.done() and t.exception())
    print(f"SENT {len(sent)} {errors}", flush=True)
    left = DEADLINE - (time.monotonic() - started)
    done, pending = await asyncio.wait(tasks, timeout=max(1.0, left))
    for task in pending:
        task.cancel()
    for esc_id, task in zip(ids, tasks, strict=True):
        if task in done and task.exception() is not None:
            records[esc_id]["error"] = repr(task.exception())
        elif task in pending:
            records[esc_id]["error"] = "no answer before the deadline"
    with open(OUT, "w") as fh:
        json.dump(list(records.values()), fh)
    print("DONE", flush=True)


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    asyncio.run(main())
