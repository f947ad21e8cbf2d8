#!/usr/bin/env python3
"""An agent that reaches Handoff only through MCP, configured by examples/mcp/mcp.json.

mcp.json is the usual `mcpServers` configuration that MCP hosts read: `handoff` is the
server's /mcp over HTTP with the agent's token in a header, `handoff-stdio` launches the
`handoff-mcp` bridge (pip install 'handoff-client[mcp]'). This script is the host: it reads
the file (${VAR} taken from the environment), connects to the server it names with the
official MCP client, and does what a model would do with the tools: check the gate,
escalate an irreversible step, wait for the decision, act on it, acknowledge.

    HANDOFF_URL=http://127.0.0.1:8000 HANDOFF_TOKEN=hnd_... python examples/mcp/agent.py --server handoff
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

CONFIG = Path(__file__).with_name("mcp.json")


def say(message: str) -> None:
    print(f"[mcp-agent] {message}", flush=True)


def server_config(name: str) -> dict[str, Any]:
    """One server of mcp.json, ${VAR} expanded from the environment."""
    servers = json.loads(os.path.expandvars(CONFIG.read_text()))["mcpServers"]
    return servers[name]


def transport(config: dict[str, Any]) -> Any:
    if config["type"] == "http":
        http = httpx2.AsyncClient(
            headers=config.get("headers", {}), timeout=httpx2.Timeout(30, read=120)
        )
        return streamable_http_client(config["url"], http_client=http)
    command = shutil.which(config["command"]) or config["command"]
    return StdioServerParameters(
        command=command, args=config.get("args", []), env=config.get("env", {})
    )


def package(run_id: str) -> dict[str, Any]:
    at = datetime.now(UTC).isoformat()
    return {
        "run_id": run_id,
        "title": "Rotate the production database password now?",
        "uncertainty": "Rotating it restarts the 4 API pods; the on-call runbook says to rotate "
        "after 18:00, but the leaked key was found at 14:10 and is still valid.",
        "reason": "irreversible_action",
        "confidence": 0.6,
        "history": [
            {"at": at, "action": "Found the key in a public gist", "outcome": "info"},
            {"at": at, "action": "Checked the key still authenticates", "outcome": "ok"},
        ],
        "options": [
            {
                "key": "rotate",
                "label": "Rotate now",
                "irreversible": True,
                "recommended": True,
                "args": {"secret": "db/prod", "restart": ["api"]},
            },
            {"key": "wait", "label": "Rotate after 18:00"},
        ],
        "cost_of_delay": {"blocking": True, "impact": "high"},
        "action": {"name": "rotate_secret", "irreversible": True},
    }


async def run(server: str, timeout: float) -> int:
    async with Client(transport(server_config(server))) as client:
        tools = sorted(tool.name for tool in (await client.list_tools()).tools)
        say(f"connected to {server}: tools {', '.join(tools)}")
        gate = await client.call_tool(
            "check_gate",
            {"action": {"name": "rotate_secret", "irreversible": True}, "confidence": 0.6},
        )
        say(f"gate: {gate.structured_content['verdict']}")
        created = await client.call_tool("escalate", package(f"rotate-{uuid.uuid4().hex[:8]}"))
        if created.is_error:
            say(f"escalate refused: {created.content[0].text}")
            return 1
        escalation = created.structured_content
        say(f"waiting for a decision at {escalation['url']}")
        deadline = time.monotonic() + timeout
        while escalation["status"] in ("pending", "claimed", "awaiting_agent"):
            if time.monotonic() > deadline:
                say("no decision in time")
                return 1
            waited = await client.call_tool(
                "wait_for_decision", {"id": escalation["id"], "wait": 20}
            )
            escalation = waited.structured_content
        decision = escalation["decision"]
        if decision is None:
            say(f"ended without a decision: {escalation['status']}")
            return 1
        say(
            f"decision by {decision['decided_by']['name']}: {decision['kind']} {decision['option']} "
            f"args={json.dumps(decision['args'], sort_keys=True)}"
        )
        if decision["kind"] == "option" and decision["option"] == "rotate":
            say(f"rotating {decision['args']['secret']} (simulated)")
        acked = await client.call_tool("acknowledge", {"id": escalation["id"]})
        say(f"acknowledged: {acked.structured_content['status']}")
    say("done")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--server", default="handoff", help="a server of mcp.json (handoff, handoff-stdio)"
    )
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args()
    raise SystemExit(asyncio.run(run(args.server, args.timeout)))


if __name__ == "__main__":
    main()
