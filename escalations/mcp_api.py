"""The agent API as Model Context Protocol tools (API.md, "MCP: the same API as tools").

`/mcp` speaks MCP's Streamable HTTP transport (the official SDK's low-level server,
stateless: any process behind the proxy can answer any request), authenticated with the
agent's bearer token. The tools are the REST endpoints: their input schemas are the same
pydantic schemas (escalations.schemas) as JSON Schema, their arguments are validated by
those schemas, and the writes go through the same services. A result carries the JSON
object as structured content and as text; a refusal is a tool error whose text is the
problem's detail with its field errors.

Database work runs in threads whose connections are closed when they return; a long
`wait_for_decision` waits on a wake-up (escalations.transport.wakeup) as the long-poll
does, holding no database connection.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import uuid
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from channels.db import database_sync_to_async
from django.conf import settings
from mcp import types
from mcp.server import Server, ServerRequestContext
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import BaseModel, ValidationError

from . import selectors, services
from .api import budget_headers_for, escalation_pk, own_escalation
from .errors import DomainError, FieldError
from .jsontext import unstorable
from .models import Agent, hash_token
from .problems import (
    DATABASE_DOWN,
    Problem,
    database_unavailable,
    from_domain,
    from_pydantic,
    invalid,
)
from .schemas import AnswerIn, EscalationIn, EscalationOut, GateIn, GateOut
from .transport import longpoll
from .transport.protocols import ASGIApp, Receive, Scope, Send
from .wire import escalation_dict, gate_dict

log = logging.getLogger(__name__)

PATH = "/mcp"
M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


@dataclass(frozen=True)
class Caller:
    """The agent a request's bearer token belongs to (checked before any tool runs)."""

    token: str
    agent: Agent


_caller: contextvars.ContextVar[Caller] = contextvars.ContextVar("handoff_mcp_caller")


# ---------------------------------------------------------------- the tools' schemas


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema()


ID_SCHEMA = {"type": "string", "format": "uuid", "description": "The escalation's id."}


def _with(schema: dict[str, Any], **properties: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "properties": {**schema.get("properties", {}), **properties}}


def _id_only(description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"id": ID_SCHEMA},
        "required": ["id"],
        "description": description,
    }


ESCALATION_OUT = _schema(EscalationOut)


def tools() -> list[types.Tool]:
    answer = _schema(AnswerIn)
    return [
        types.Tool(
            name="escalate",
            description=(
                "Hand a paused run to a human: the escalation package (API.md). Answers the "
                "escalation; a tier 1-2 package may come back decided at once by the policy. "
                "The same idempotency_key with the same package answers the same escalation."
            ),
            input_schema=_with(
                _schema(EscalationIn),
                idempotency_key={
                    "type": "string",
                    "pattern": r"^[\x20-\x7e]{1,255}$",
                    "description": "Replays with the same package answer the same escalation.",
                },
            ),
            output_schema=ESCALATION_OUT,
        ),
        types.Tool(
            name="wait_for_decision",
            description=(
                "The escalation, once it leaves the queue (decided, withdrawn..., or "
                "awaiting_agent: a reviewer asks a question in `question`, answer it with "
                "answer_question), or after `wait` seconds with its state then. Call again "
                "while it is pending or claimed."
            ),
            input_schema={
                "type": "object",
                "properties": {
                    "id": ID_SCHEMA,
                    "wait": {
                        "type": "integer",
                        "minimum": 0,
                        "maximum": settings.LONG_POLL_MAX_SECONDS,
                        "default": settings.LONG_POLL_MAX_SECONDS,
                        "description": "Seconds to wait while it is open.",
                    },
                },
                "required": ["id"],
            },
            output_schema=ESCALATION_OUT,
        ),
        types.Tool(
            name="check_gate",
            description="Ask the governance policy before acting: proceed, flag, escalate or halt.",
            input_schema=_schema(GateIn),
            output_schema=_schema(GateOut),
        ),
        types.Tool(
            name="answer_question",
            description=(
                "Answer a reviewer's question (status awaiting_agent): the escalation goes back "
                "to the queue with the answer and any history steps appended."
            ),
            input_schema=_with(answer, id=ID_SCHEMA)
            | {"required": ["id", *answer.get("required", [])]},
            output_schema=ESCALATION_OUT,
        ),
        types.Tool(
            name="acknowledge",
            description="Confirm the run resumed with the decision (status resumed).",
            input_schema=_id_only("The decided escalation to acknowledge."),
            output_schema=ESCALATION_OUT,
        ),
        types.Tool(
            name="withdraw",
            description="Take an open escalation back: the agent solved it alone.",
            input_schema=_id_only("The open escalation to withdraw."),
            output_schema=ESCALATION_OUT,
        ),
    ]


# ---------------------------------------------------------------- the tools


def _validate(model: type[M], arguments: dict[str, Any], **problem: str) -> M:
    """The arguments through the REST API's own schema; a Problem naming each field."""
    bad = unstorable(arguments, "")
    if bad is not None:
        raise invalid([bad], **problem)
    try:
        return model.model_validate(arguments)
    except ValidationError as exc:
        raise invalid(from_pydantic(exc.errors()), **problem) from None


def _require_id(arguments: dict[str, Any]) -> str:
    value = arguments.get("id")
    if value is None:
        raise invalid([FieldError("id", "is required")])
    if not isinstance(value, str):
        raise invalid([FieldError("id", "must be a string")])
    return value


def _escalate(caller: Caller, arguments: dict[str, Any]) -> dict[str, Any]:
    body = dict(arguments)
    key = body.pop("idempotency_key", None)
    if key is not None and (
        not isinstance(key, str)
        or not 1 <= len(key) <= 255
        or not key.isascii()
        or not key.isprintable()
    ):
        raise invalid([FieldError("idempotency_key", "must be 1-255 printable ASCII characters")])
    package = _validate(
        EscalationIn, body, type="incomplete-package", title="Escalation package is incomplete"
    )
    result = services.escalation_create(
        agent=caller.agent, package=package.to_input(body), idempotency_key=key
    )
    return escalation_dict(result.escalation)


def _gate(caller: Caller, arguments: dict[str, Any]) -> dict[str, Any]:
    data = _validate(GateIn, arguments)
    verdict, rules = services.gate_check(agent=caller.agent, data=data.to_input())
    return gate_dict(verdict, rules)


def _acknowledge(caller: Caller, arguments: dict[str, Any]) -> dict[str, Any]:
    escalation = own_escalation(caller.agent, _require_id(arguments))
    return escalation_dict(services.escalation_acknowledge(escalation=escalation))


def _withdraw(caller: Caller, arguments: dict[str, Any]) -> dict[str, Any]:
    escalation = own_escalation(caller.agent, _require_id(arguments))
    return escalation_dict(services.escalation_withdraw(escalation=escalation))


def _answer(caller: Caller, arguments: dict[str, Any]) -> dict[str, Any]:
    escalation_id = _require_id(arguments)
    body = _validate(AnswerIn, {k: v for k, v in arguments.items() if k != "id"})
    escalation = own_escalation(caller.agent, escalation_id)
    return escalation_dict(services.escalation_answer(escalation=escalation, answer=body.to_input()))


def _read(caller: Caller, pk: uuid.UUID) -> dict[str, Any]:
    found = selectors.escalation_read_for_token(pk, hash_token(caller.token))
    if found is None:
        raise Problem(404, f"No escalation {pk} for this agent.")
    return found.wire


async def _wait_for_decision(caller: Caller, arguments: dict[str, Any]) -> dict[str, Any]:
    pk = escalation_pk(_require_id(arguments))
    wait = arguments.get("wait", settings.LONG_POLL_MAX_SECONDS)
    if (
        isinstance(wait, bool)
        or not isinstance(wait, int)
        or not 0 <= wait <= settings.LONG_POLL_MAX_SECONDS
    ):
        raise invalid(
            [FieldError("wait", f"must be an integer from 0 to {settings.LONG_POLL_MAX_SECONDS}")]
        )
    if wait:
        await longpoll.wait_for_escalation(caller.token, pk, wait)
    return await _in_thread(lambda: _read(caller, pk))


SYNC_TOOLS: dict[str, Callable[[Caller, dict[str, Any]], dict[str, Any]]] = {
    "escalate": _escalate,
    "check_gate": _gate,
    "answer_question": _answer,
    "acknowledge": _acknowledge,
    "withdraw": _withdraw,
}


async def _in_thread(call: Callable[[], T]) -> T:
    """Run database work in a thread whose connection is closed after (no connection is held
    between calls, nor while a tool waits)."""
    return await database_sync_to_async(call, thread_sensitive=False)()


def problem_text(problem: Problem) -> str:
    """The problem's detail, then one line a field error."""
    lines = [problem.detail]
    lines += [f"- {error.field}: {error.message}" for error in problem.errors]
    return "\n".join(lines)


def _result(data: dict[str, Any]) -> types.CallToolResult:
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return types.CallToolResult(content=[types.TextContent(text=text)], structured_content=data)


def _error(problem: Problem) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(text=problem_text(problem))], is_error=True
    )


async def call_tool(
    ctx: ServerRequestContext, params: types.CallToolRequestParams
) -> types.CallToolResult:
    caller = _caller.get(None)
    if caller is None:  # never reached over /mcp: the endpoint refuses a request without a token
        return _error(Problem(401, "Send a valid token: Authorization: Bearer <token>."))
    arguments = params.arguments or {}
    try:
        if params.name == "wait_for_decision":
            data = await _wait_for_decision(caller, arguments)
        elif params.name in SYNC_TOOLS:
            tool = SYNC_TOOLS[params.name]
            data = await _in_thread(lambda: tool(caller, arguments))
        else:
            return _error(
                Problem(
                    404,
                    f"No tool {params.name!r}: the tools are {', '.join(t.name for t in tools())}.",
                )
            )
    except Problem as problem:
        return _error(problem)
    except DomainError as refusal:  # a service's refusal, as the REST API answers it
        return _error(from_domain(refusal))
    except DATABASE_DOWN as exc:
        log.warning("MCP %s: the database is unavailable (%s)", params.name, exc)
        return _error(database_unavailable())
    return _result(data)


async def list_tools(
    ctx: ServerRequestContext, params: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    return types.ListToolsResult(tools=tools())


server: Server = Server(
    "handoff",
    version="1",
    instructions=(
        "Hand a paused run to a human with `escalate`, then `wait_for_decision` until it is "
        "decided; act on the decision, then `acknowledge`. `check_gate` asks the policy first."
    ),
    on_list_tools=list_tools,
    on_call_tool=call_tool,
)


# ---------------------------------------------------------------- the endpoint


def _agent_for(token: str) -> Agent | None:
    return services.agent_for_token(token)


_agent_for_async = database_sync_to_async(_agent_for, thread_sensitive=False)


def bearer(scope: Scope) -> str | None:
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            token = token.strip()
            if scheme.lower() == "bearer" and token and len(token) <= 200:
                return token
            return None
    return None


async def _send_problem(send: Send, problem: Problem, **headers: str) -> None:
    body = json.dumps(problem.body(), ensure_ascii=False).encode()
    all_headers = {
        "content-type": "application/problem+json",
        "content-length": str(len(body)),
        **{k.lower(): v for k, v in {**problem.headers, **headers}.items()},
    }
    await send(
        {
            "type": "http.response.start",
            "status": problem.status,
            "headers": [(k.encode(), v.encode("latin-1")) for k, v in all_headers.items()],
        }
    )
    await send({"type": "http.response.body", "body": body})


@dataclass
class _Running:
    """A session manager and the task that keeps it running (its task group's host)."""

    manager: StreamableHTTPSessionManager
    task: asyncio.Task[None]
    started: asyncio.Event

    @classmethod
    def start(cls, loop: asyncio.AbstractEventLoop) -> _Running:
        manager = StreamableHTTPSessionManager(
            app=server,
            stateless=True,
            # Answers as one JSON body rather than an event stream: the tools send nothing
            # before their result, and the answer then starts once the tool has run, so its
            # budget headers count what the tool did (an escalate counts itself).
            json_response=True,
            # The token travels in a header, never ambiently (no cookies), so a rebound DNS
            # name gains nothing; host names are the proxy's to check (Django's
            # ALLOWED_HOSTS does not see /mcp), and answers name PUBLIC_URL, never Host.
            security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False),
            max_request_body_size=settings.API_MAX_BODY_BYTES + 64 * 1024,
        )
        started = asyncio.Event()

        async def run() -> None:
            try:
                async with manager.run():
                    started.set()
                    await asyncio.Event().wait()  # until the loop closes
            finally:
                started.set()  # a waiter must not wait for ever on a manager that failed

        return cls(manager, loop.create_task(run(), name="handoff-mcp-sessions"), started)


class McpEndpoint:
    """ASGI: /mcp. The bearer token is checked here (401 problem+json otherwise), then the
    SDK's session manager (stateless Streamable HTTP) answers. One manager per event loop,
    started on its first request: the ASGI servers here run without lifespan events."""

    def __init__(self) -> None:
        self._running: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Running] = (
            weakref.WeakKeyDictionary()
        )

    async def _manager(self) -> StreamableHTTPSessionManager:
        """This event loop's session manager, started (again, should its task have ended)."""
        loop = asyncio.get_running_loop()
        running = self._running.get(loop)
        if running is None or running.task.done():
            running = self._running[loop] = _Running.start(loop)
        await running.started.wait()
        return running.manager

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = bearer(scope)
        try:
            agent = await _agent_for_async(token) if token else None
        except DATABASE_DOWN as exc:
            log.warning("MCP: the database is unavailable (%s)", exc)
            await _send_problem(send, database_unavailable())
            return
        if agent is None:
            await _send_problem(
                send,
                Problem(
                    401,
                    "Send a valid agent token: Authorization: Bearer <token>. It may be unknown or revoked.",
                ),
                **{"WWW-Authenticate": 'Bearer realm="handoff"'},
            )
            return
        manager = await self._manager()
        reset = _caller.set(Caller(token, agent))  # type: ignore[arg-type]
        try:
            await manager.handle_request(scope, receive, _with_budget(send, agent))
        finally:
            _caller.reset(reset)


def _with_budget(send: Send, agent: Agent) -> Send:
    """`send`, adding the agent's budget headers to the answer's start, as every answer to an
    agent carries them (API.md, "Response headers"), read when the answer starts."""

    async def sending(message: Mapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            budget = await _in_thread(lambda: budget_headers_for(agent))
            extra = [(name.lower().encode(), value.encode()) for name, value in budget.items()]
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return sending


endpoint = McpEndpoint()


def route(app: ASGIApp) -> ASGIApp:
    """ASGI HTTP: /mcp to the MCP endpoint, everything else to `app`."""

    async def routed(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].rstrip("/") == PATH:
            await endpoint(scope, receive, send)
            return
        await app(scope, receive, send)

    return routed
