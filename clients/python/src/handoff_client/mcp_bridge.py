"""`handoff-mcp`: Handoff's MCP tools over stdio, for agents that only launch local servers.

A local MCP server (stdio) that forwards to a Handoff server's `/mcp` (Streamable HTTP)
with the agent's token: the tools, their schemas, their results and their tool errors are
the server's, unchanged. Configured by the environment:

    HANDOFF_URL    the server, e.g. https://handoff.example.com
    HANDOFF_TOKEN  the agent's token

Needs the `mcp` extra (`pip install 'handoff-client[mcp]'`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import httpx2
from mcp import Client, types
from mcp.client.streamable_http import streamable_http_client
from mcp.server import Server, ServerRequestContext
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError

# wait_for_decision holds a call up to 60 s: read for longer than that.
READ_TIMEOUT = 120.0


@asynccontextmanager
async def remote(url: str, token: str) -> AsyncIterator[Client]:
    """An MCP client session with the server's /mcp, authenticated as the agent."""
    http = httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {token}"},
        timeout=httpx2.Timeout(30.0, read=READ_TIMEOUT),
    )
    async with (
        http,
        Client(streamable_http_client(url.rstrip("/") + "/mcp", http_client=http)) as client,
    ):
        yield client


def bridge(client: Client) -> Server:
    """A local server whose tools are the remote ones."""

    async def list_tools(
        ctx: ServerRequestContext, params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return await client.list_tools(cursor=params.cursor if params else None)

    async def call_tool(
        ctx: ServerRequestContext, params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        try:
            return await client.call_tool(params.name, params.arguments or {})
        except MCPError as exc:  # the server is unreachable or refused: the model reads why
            return types.CallToolResult(
                content=[types.TextContent(text=f"Handoff did not answer: {exc}")], is_error=True
            )

    return Server("handoff", version="1", on_list_tools=list_tools, on_call_tool=call_tool)


async def serve(url: str, token: str) -> None:
    async with remote(url, token) as client:
        server = bridge(client)
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())


def main() -> None:
    url = os.environ.get("HANDOFF_URL", "").strip()
    token = os.environ.get("HANDOFF_TOKEN", "").strip()
    missing = [
        name for name, value in (("HANDOFF_URL", url), ("HANDOFF_TOKEN", token)) if not value
    ]
    if missing:
        print(f"handoff-mcp: set {' and '.join(missing)} (see docs/agents.md)", file=sys.stderr)
        sys.exit(2)
    try:
        anyio.run(serve, url, token)
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # an exception group from the SDK's task groups, or one error
        leaves = exc.exceptions if isinstance(exc, BaseExceptionGroup) else (exc,)
        reasons = "; ".join(f"{type(e).__name__}: {e}" for e in _flatten(leaves))
        print(f"handoff-mcp: cannot serve {url}/mcp ({reasons})", file=sys.stderr)
        sys.exit(1)


def _flatten(errors: tuple[BaseException, ...] | list[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for error in errors:
        if isinstance(error, BaseExceptionGroup):
            found.extend(_flatten(list(error.exceptions)))
        else:
            found.append(error)
    return found


if __name__ == "__main__":
    main()
