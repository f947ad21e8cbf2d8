"""The MCP side against the real server: examples/mcp/agent.py, configured by
examples/mcp/mcp.json, over HTTP with the token in a header and through the `handoff-mcp`
stdio bridge (a subprocess), while a reviewer decides through the reviewer API; and the
bridge itself: the server's tools and schemas unchanged, field errors as tool errors, a bad
token or a missing setting refused at start."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from conftest import SERVER_ROOT

pytestmark = pytest.mark.live
EXAMPLE = SERVER_ROOT / "examples" / "mcp" / "agent.py"
BRIDGE = shutil.which("handoff-mcp", path=str(Path(sys.executable).parent)) or "handoff-mcp"


def wait_for(pattern: str, path: Path, timeout: float = 30) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, path.read_text())
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"{pattern!r} not in {path}:\n{path.read_text()}")


@pytest.mark.parametrize("server", ["handoff", "handoff-stdio"])
def test_the_mcp_configured_example_gets_the_decision(_server, reviewer, tmp_path, server):
    token, _ = _server.create_agent(f"mcp-example-{uuid.uuid4().hex[:6]}")
    env = {
        **os.environ,
        "HANDOFF_URL": _server.base_url,
        "HANDOFF_TOKEN": token,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    log = tmp_path / "agent.log"
    with log.open("w") as out:
        agent = subprocess.Popen(
            [sys.executable, str(EXAMPLE), "--server", server, "--timeout", "60"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            url = wait_for(
                r"waiting for a decision at (http://\S+/escalations/([0-9a-f-]{36}))", log
            )
            reviewer.decide(
                url.group(2), option="rotate", args={"secret": "db/prod", "restart": []}
            )
            assert agent.wait(60) == 0, log.read_text()
        finally:
            if agent.poll() is None:
                agent.terminate()
                agent.wait(10)
    output = log.read_text()
    assert (
        "tools acknowledge, answer_question, check_gate, escalate, wait_for_decision, withdraw"
        in output
    )
    assert "gate: escalate" in output
    assert re.search(
        r'decision by \S+: option rotate args=\{"restart": \[\], "secret": "db/prod"\}', output
    )
    assert "acknowledged: resumed" in output
    assert output.rstrip().endswith("[mcp-agent] done")


def stdio(url: str, token: str) -> StdioServerParameters:
    return StdioServerParameters(command=BRIDGE, env={"HANDOFF_URL": url, "HANDOFF_TOKEN": token})


async def tools_over_http(url: str, token: str) -> dict[str, Any]:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"})
    async with http, Client(streamable_http_client(url + "/mcp", http_client=http)) as client:
        return {t.name: t.input_schema for t in (await client.list_tools()).tools}


def test_the_bridge_serves_the_servers_tools_and_their_errors(live_server):
    url, token, _ = live_server

    async def scenario() -> None:
        direct = await tools_over_http(url, token)
        async with Client(stdio(url, token)) as client:
            bridged = {t.name: t.input_schema for t in (await client.list_tools()).tools}
            assert bridged == direct  # the server's schemas, unchanged
            result = await client.call_tool(
                "escalate", {"run_id": "bridged", "title": "Incomplete", "confidence": 7}
            )
            assert result.is_error
            text = result.content[0].text
            for line in (
                "- uncertainty: is required",
                "- reason: is required",
                "- history: is required",
                "- options: is required",
                "- cost_of_delay: is required",
                "- confidence: must be at most 1",
            ):
                assert line in text, text
            gate = await client.call_tool("check_gate", {"confidence": 0.99})
            assert gate.structured_content["verdict"] in ("proceed", "flag")

    asyncio.run(scenario())


def test_the_bridge_refuses_a_bad_token_or_a_missing_setting(live_server):
    url, _, _ = live_server
    bad = subprocess.run(
        [BRIDGE],
        env={**os.environ, "HANDOFF_URL": url, "HANDOFF_TOKEN": "not-a-token"},
        input=b"",
        capture_output=True,
        timeout=60,
    )
    assert bad.returncode == 1
    assert b"cannot serve" in bad.stderr, bad.stderr
    missing = subprocess.run(
        [BRIDGE], env={"PATH": os.environ["PATH"]}, input=b"", capture_output=True, timeout=60
    )
    assert missing.returncode == 2
    assert b"set HANDOFF_URL and HANDOFF_TOKEN" in missing.stderr
