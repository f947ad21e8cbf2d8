"""/mcp: the agent API as MCP tools (API.md, "MCP: the same API as tools"), through the
official MCP Python SDK's client over Streamable HTTP, against uvicorn serving
handoff_site.asgi in a subprocess (production settings, the test database, Redis).

The client lists the tools and their schemas (the REST API's own pydantic schemas),
escalates, waits while a reviewer decides through the reviewer API, gets the decision and
acknowledges it; a bad token is refused; an incomplete package is a tool error naming each
field. The wait holds no database connection (counted in pg_stat_activity).
"""

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import httpx2
import pytest
from django.db import connection
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from escalations import services
from escalations.schemas import EscalationIn, GateIn
from reviews.services import reviewer_token_issue
from tests.conftest import ensure_default_policies, make_package, make_user, need
from tests.processes import production_env, uvicorn

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

TOOLS = {
    "escalate",
    "wait_for_decision",
    "check_gate",
    "answer_question",
    "acknowledge",
    "withdraw",
}


@pytest.fixture(autouse=True)
def _services():
    need(bool(os.environ.get("REDIS_URL")), "Redis (REDIS_URL)")
    need(connection.vendor == "postgresql", "PostgreSQL (DATABASE_URL)")


@pytest.fixture
def server(tmp_path) -> Iterator[str]:
    # No connection pool: a connection that a waiting tool call held would stay open, and
    # show in pg_stat_activity.
    env = production_env(redis_url=os.environ["REDIS_URL"], var_dir=tmp_path, DB_POOL="0")
    process, url = uvicorn(env, tmp_path)
    try:
        yield url
    finally:
        process.stop()
        print(process.log())


@pytest.fixture
def agent_token() -> str:
    ensure_default_policies()
    return services.agent_create(name="mcp-agent", domain="default").token


@pytest.fixture
def reviewer_token() -> str:
    return reviewer_token_issue(user=make_user("alice", "reviewer"))


def connect(url: str, token: str) -> Client:
    http = httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {token}"}, timeout=httpx2.Timeout(30, read=120)
    )
    return Client(streamable_http_client(url + "/mcp", http_client=http))


async def call(client: Client, name: str, arguments: dict[str, Any]):
    return await client.call_tool(name, arguments)


def decide_later(
    url: str, token: str, escalation_id: str, delay: float, args: dict, decided: list[float]
) -> threading.Thread:
    """A reviewer deciding through the reviewer API after `delay` seconds; `decided` gets
    the time its answer came back."""

    def run() -> None:
        time.sleep(delay)
        response = httpx.post(
            f"{url}/api/v1/review/escalations/{escalation_id}/decision",
            headers={"Authorization": f"Bearer {token}"},
            json={
                "kind": "option",
                "option": "update-callers",
                "args": args,
                "instruction": "Leave legacy alone.",
            },
            timeout=10,
        )
        assert response.status_code == 201, response.text
        decided.append(time.monotonic())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def sessions_on_the_database() -> int:
    """Sessions on the test database other than this test's own."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def test_tools_schemas_escalate_wait_decide_ack(server, agent_token, reviewer_token):
    async def scenario():
        async with connect(server, agent_token) as client:
            listed = {tool.name: tool for tool in (await client.list_tools()).tools}
            assert set(listed) == TOOLS
            # One definition: the REST API's pydantic schemas, as JSON Schema.
            escalate_schema = listed["escalate"].input_schema
            assert escalate_schema["required"] == EscalationIn.model_json_schema()["required"]
            assert "idempotency_key" in escalate_schema["properties"]
            assert listed["check_gate"].input_schema == GateIn.model_json_schema()
            assert listed["wait_for_decision"].input_schema["properties"]["wait"]["maximum"] == 60
            assert listed["escalate"].output_schema["properties"]["decision"]

            gate = await call(
                client,
                "check_gate",
                {"action": {"name": "drop table", "irreversible": True}, "confidence": 0.9},
            )
            assert not gate.is_error, gate.content
            assert gate.structured_content["verdict"] == "escalate"

            package = {**make_package(run_id="mcp-run"), "idempotency_key": "k-1"}
            created = await call(client, "escalate", package)
            assert not created.is_error, created.content
            escalation = created.structured_content
            assert escalation["status"] == "pending"
            assert escalation["id"] in created.content[0].text  # the object as text too
            replay = await call(client, "escalate", package)
            assert replay.structured_content["id"] == escalation["id"]
            reused = await call(client, "escalate", {**package, "title": "Another body"})
            assert reused.is_error
            assert (
                "Idempotency-Key" in reused.content[0].text
                or "idempotency" in reused.content[0].text.lower()
            )

            # Waiting while nothing is decided: the state after `wait` seconds, still open.
            started = time.monotonic()
            still = await call(client, "wait_for_decision", {"id": escalation["id"], "wait": 1})
            assert still.structured_content["status"] == "pending"
            assert 0.9 < time.monotonic() - started < 10

            # A reviewer's question: the wait answers with it, answer_question puts it back.
            asked = httpx.post(
                f"{server}/api/v1/review/escalations/{escalation['id']}/question",
                headers={"Authorization": f"Bearer {reviewer_token}"},
                json={"text": "Which callers did you find?"},
            )
            assert asked.status_code == 201, asked.text
            awaiting = await call(client, "wait_for_decision", {"id": escalation["id"], "wait": 30})
            assert awaiting.structured_content["status"] == "awaiting_agent"
            assert awaiting.structured_content["question"]["text"] == "Which callers did you find?"
            answered = await call(
                client,
                "answer_question",
                {
                    "id": escalation["id"],
                    "text": "billing/ and billing/legacy.",
                    "history": [{"at": "2026-01-01T00:00:00Z", "action": "grep callers"}],
                },
            )
            assert not answered.is_error, answered.content
            assert answered.structured_content["status"] == "pending"
            assert answered.structured_content["question"] is None
            decided_at: list[float] = []
            decider = decide_later(
                server,
                reviewer_token,
                escalation["id"],
                2.0,
                {"paths": ["billing/new"]},
                decided_at,
            )
            decided = await call(client, "wait_for_decision", {"id": escalation["id"], "wait": 30})
            returned = time.monotonic()
            await asyncio.to_thread(decider.join, 10)
            # Woken by the decision, not by the end of the wait (30 s) or a re-read (~15 s).
            took = returned - decided_at[0]
            assert not decided.is_error, decided.content
            result = decided.structured_content
            assert result["status"] == "decided"
            assert result["decision"]["option"] == "update-callers"
            assert result["decision"]["args"] == {"paths": ["billing/new"]}
            assert result["decision"]["decided_by"] == {"type": "human", "name": "alice"}
            assert took < 5, f"the answer came {took:.1f} s after the decision"

            acked = await call(client, "acknowledge", {"id": escalation["id"]})
            assert acked.structured_content["status"] == "resumed"

            # The REST API sees the same escalation.
            rest = httpx.get(
                f"{server}/api/v1/escalations/{escalation['id']}",
                headers={"Authorization": f"Bearer {agent_token}"},
            )
            assert rest.json()["status"] == "resumed"

    asyncio.run(scenario())


def test_waiting_tool_calls_hold_no_database_connection(server, agent_token):
    """Ten wait_for_decision calls waiting at once on a server without a connection pool:
    had a wait held its connection, ten sessions would be open on the database."""

    async def scenario():
        async with connect(server, agent_token) as client:
            ids = []
            for i in range(10):
                created = await call(client, "escalate", make_package(run_id=f"waiting-{i}"))
                ids.append(created.structured_content["id"])
            # Sessions already open on the test database before the waits (in a full run,
            # earlier tests' servers and workers may keep a few): the waits are measured above it.
            before = await asyncio.to_thread(sessions_on_the_database)
            waits = [
                asyncio.create_task(call(client, "wait_for_decision", {"id": i, "wait": 4}))
                for i in ids
            ]
            await asyncio.sleep(2.0)
            # The fewest of five looks, 0.2 s apart: a wait's periodic re-check opens a
            # connection for a moment (and a busy machine stretches that moment), while a
            # held connection would show in every look, ten of them.
            looks = []
            for _ in range(5):
                looks.append(await asyncio.to_thread(sessions_on_the_database))
                await asyncio.sleep(0.2)
            busy = min(looks) - before
            results = await asyncio.gather(*waits)
            assert all(r.structured_content["status"] == "pending" for r in results)
            assert busy < 3, f"{looks} database sessions open ({before} before) while 10 tool calls waited"

    asyncio.run(scenario())


def test_incomplete_package_is_a_tool_error_naming_each_field(server, agent_token):
    async def scenario():
        async with connect(server, agent_token) as client:
            package = make_package(run_id="bad-run")
            del package["options"]
            package["cost_of_delay"]["impact"] = "huge"
            package["confidence"] = 3
            result = await call(client, "escalate", package)
            assert result.is_error
            text = result.content[0].text
            assert text.startswith("3 fields need attention"), text
            assert "- options: is required" in text
            assert "- cost_of_delay.impact: must be one of low, medium, high, critical" in text
            assert "- confidence: must be at most 1" in text

            generic = await call(
                client,
                "escalate",
                make_package(run_id="r2", uncertainty="I'm stuck, need help please now"),
            )
            assert generic.is_error
            assert "- uncertainty: is too generic" in generic.content[0].text

            unknown = await call(
                client, "acknowledge", {"id": "00000000-0000-0000-0000-000000000000"}
            )
            assert unknown.is_error
            assert "No escalation" in unknown.content[0].text

            open_one = await call(client, "escalate", make_package(run_id="r3"))
            early = await call(client, "acknowledge", {"id": open_one.structured_content["id"]})
            assert early.is_error
            assert "no decision to acknowledge" in early.content[0].text
            withdrawn = await call(client, "withdraw", {"id": open_one.structured_content["id"]})
            assert withdrawn.structured_content["status"] == "withdrawn"

            missing = await call(
                client, "answer_question", {"id": open_one.structured_content["id"]}
            )
            assert missing.is_error
            assert "- text: is required" in missing.content[0].text
            answer = await call(
                client,
                "answer_question",
                {"id": open_one.structured_content["id"], "text": "The logs say 3 rows."},
            )
            assert answer.is_error
            assert "No question is open on this escalation (it is withdrawn)" in answer.content[0].text

    asyncio.run(scenario())


def test_answers_carry_the_agents_budget(server, agent_token):
    """As every answer to an agent: Handoff-Budget-Limit/-Used/-Remaining, read as the answer
    starts (after an escalate, it counts that escalation)."""
    headers = {"Authorization": f"Bearer {agent_token}", "Accept": "application/json, text/event-stream"}
    call = {"name": "escalate", "arguments": {**make_package(), "idempotency_key": "budget-1"}}
    listed = httpx.post(server + "/mcp", headers=headers, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    escalated = httpx.post(
        server + "/mcp", headers=headers, json={"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": call}
    )
    assert listed.status_code == escalated.status_code == 200, escalated.text
    assert '"isError":true' not in escalated.text
    limit = int(listed.headers["handoff-budget-limit"])
    assert (listed.headers["handoff-budget-used"], escalated.headers["handoff-budget-used"]) == ("0", "1")
    assert int(escalated.headers["handoff-budget-remaining"]) == max(0, limit - 1)
    assert escalated.headers["handoff-budget-limit"] == str(limit)


def test_a_bad_token_is_refused(server, agent_token):
    response = httpx.post(
        server + "/mcp",
        headers={"Authorization": "Bearer nope", "Accept": "application/json, text/event-stream"},
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
    )
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert httpx.post(server + "/mcp", json={}).status_code == 401

    async def scenario():
        # The official client gets no session: its first request is answered 401.
        with pytest.raises(BaseExceptionGroup) as refused:
            async with connect(server, "not-a-token") as client:
                await client.list_tools()
        assert refused.value.subgroup(MCPError) is not None, refused.value

    asyncio.run(scenario())
