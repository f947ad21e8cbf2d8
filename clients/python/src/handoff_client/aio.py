"""The asynchronous twin of `Handoff`: same methods, same semantics, awaitable."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Unpack

import httpx

from . import _core
from ._core import API, Backoff, Emit, Plan, Send, Sleep
from .client import USER_AGENT, escalation_id, gate_body
from .models import Action, Escalation, GateVerdict, PackageFields
from .receipts import check_decided


class AsyncHandoff:
    """Async client of the agent API; see `Handoff` for each method's contract."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 30.0,
        max_retries: int = 5,
        backoff: Backoff | None = None,
        http_client: httpx.AsyncClient | None = None,
        signing_secret: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.signing_secret = signing_secret  # see Handoff: receipts are checked with it
        self.timeout = timeout
        self.backoff = backoff or Backoff(max_retries=max_retries)
        self._http = http_client or httpx.AsyncClient(timeout=timeout)
        self._owns_http = http_client is None
        self._headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }

    async def __aenter__(self) -> AsyncHandoff:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def escalate(
        self,
        package: Mapping[str, Any] | None = None,
        /,
        *,
        idempotency_key: str | None = None,
        **fields: Unpack[PackageFields],
    ) -> Escalation:
        """See `Handoff.escalate`: always idempotent, retried with the same key."""
        body = _core.merge_package(package, fields)
        key = idempotency_key or str(uuid.uuid4())
        send = Send("POST", f"{API}/escalations", json=body, headers={"Idempotency-Key": key})
        return Escalation.from_dict(await self._run(_core.call(send, self.backoff)))

    async def get(self, escalation: Escalation | str) -> Escalation:
        send = Send("GET", f"{API}/escalations/{escalation_id(escalation)}")
        found = Escalation.from_dict(await self._run(_core.call(send, self.backoff)))
        return check_decided(found, self.signing_secret)

    async def wait(
        self,
        escalation: Escalation | str,
        timeout: float | None = None,
        *,
        stop_on_question: bool = True,
    ) -> Escalation:
        """See `Handoff.wait`."""
        current = escalation if isinstance(escalation, Escalation) else None
        plan = _core.wait(
            escalation_id(escalation),
            current,
            timeout,
            self.backoff,
            self.timeout,
            stop_on_question,
        )
        decided: Escalation = await self._run(plan)
        return check_decided(decided, self.signing_secret)

    def decisions(
        self, after: str | None = None, *, wait: int = 0, limit: int = 100
    ) -> AsyncDecisionFeed:
        """See `Handoff.decisions`; iterate with `async for`."""
        plan = _core.feed(after, wait, limit, self.backoff, self.timeout)
        return AsyncDecisionFeed(self, plan, after)

    async def gate(
        self,
        *,
        action: Action,
        confidence: float,
        attempts: int = 0,
        novel: bool = False,
        domain: str | None = None,
        run_id: str | None = None,
    ) -> GateVerdict:
        body = gate_body(action, confidence, attempts, novel, domain, run_id)
        send = Send("POST", f"{API}/gate", json=_core.to_json(body), retry="connect")
        return GateVerdict.from_dict(await self._run(_core.call(send, self.backoff)))

    async def ack(self, escalation: Escalation | str) -> Escalation:
        send = Send("POST", f"{API}/escalations/{escalation_id(escalation)}/ack")
        return Escalation.from_dict(await self._run(_core.call(send, self.backoff)))

    async def answer(
        self,
        escalation: Escalation | str,
        text: str,
        *,
        history: Sequence[Mapping[str, Any]] | None = None,
        links: Sequence[Mapping[str, Any]] | None = None,
    ) -> Escalation:
        """See `Handoff.answer`."""
        body = _core.answer_body(text, history, links)
        path = f"{API}/escalations/{escalation_id(escalation)}/answer"
        send = Send("POST", path, json=body, retry="connect")
        return Escalation.from_dict(await self._run(_core.call(send, self.backoff)))

    async def withdraw(self, escalation: Escalation | str) -> Escalation:
        send = Send("POST", f"{API}/escalations/{escalation_id(escalation)}/withdraw")
        return Escalation.from_dict(await self._run(_core.call(send, self.backoff)))

    async def _run(self, plan: Plan) -> Any:
        try:
            effect = next(plan)
            while True:
                effect = plan.send(await self._perform(effect))
        except StopIteration as stop:
            return stop.value

    async def _perform(self, effect: Send | Sleep | Emit) -> _core.Result:
        if isinstance(effect, Sleep):
            await asyncio.sleep(effect.seconds)
            return None
        if isinstance(effect, Emit):
            raise TypeError("this plan emits items; iterate it with AsyncDecisionFeed")
        try:
            return await self._http.request(
                effect.method,
                self.base_url + effect.path,
                params=effect.params,
                json=effect.json,
                headers={**self._headers, **effect.headers},
                timeout=effect.timeout if effect.timeout is not None else self.timeout,
            )
        except httpx.TransportError as exc:
            return exc


class AsyncDecisionFeed(AsyncIterator[Escalation]):
    """Async iterator over the decisions feed; `cursor` follows what was handed out."""

    def __init__(self, client: AsyncHandoff, plan: Plan, after: str | None) -> None:
        self._client = client
        self._plan = plan
        self._started = False
        self.cursor = after

    def __aiter__(self) -> AsyncDecisionFeed:
        return self

    async def __anext__(self) -> Escalation:
        result: _core.Result = None
        while True:
            try:
                effect = self._plan.send(result) if self._started else next(self._plan)
            except StopIteration:
                raise StopAsyncIteration from None
            self._started = True
            if isinstance(effect, Emit):
                self.cursor = effect.cursor
                return check_decided(effect.escalation, self._client.signing_secret)
            result = await self._client._perform(effect)
