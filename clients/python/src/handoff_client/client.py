"""The synchronous client."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Unpack

import httpx

from . import _core
from ._core import API, Backoff, Emit, Plan, Send, Sleep
from .models import Action, Escalation, GateVerdict, PackageFields
from .receipts import check_decided

__version__ = "0.1.0"
USER_AGENT = f"handoff-client-python/{__version__}"


def escalation_id(escalation: Escalation | str) -> str:
    return escalation.id if isinstance(escalation, Escalation) else str(escalation)


def gate_body(
    action: Action,
    confidence: float,
    attempts: int,
    novel: bool,
    domain: str | None,
    run_id: str | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "action": dict(action),
        "confidence": confidence,
        "attempts": attempts,
        "novel": novel,
    }
    if domain is not None:
        body["domain"] = domain
    if run_id is not None:
        body["run_id"] = run_id
    return body


class Handoff:
    """Client of a Handoff server's agent API (API.md), for one agent token.

    Every method either returns the parsed answer or raises a `HandoffError` subclass.
    `escalate` is always idempotent (see there); `get`, `ack`, `withdraw` and `gate` retry
    network errors, 429 and 5xx up to `max_retries` times with backoff and jitter.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 30.0,
        max_retries: int = 5,
        backoff: Backoff | None = None,
        http_client: httpx.Client | None = None,
        signing_secret: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        # The agent's signing secret: with it, every decision handed out is checked against
        # its receipt (receipts.check_decided) and a tampered or expired one is refused.
        self.signing_secret = signing_secret
        self.timeout = timeout
        self.backoff = backoff or Backoff(max_retries=max_retries)
        self._http = http_client or httpx.Client(timeout=timeout)
        self._owns_http = http_client is None
        self._headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }

    def __enter__(self) -> Handoff:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    # -- the API

    def escalate(
        self,
        package: Mapping[str, Any] | None = None,
        /,
        *,
        idempotency_key: str | None = None,
        **fields: Unpack[PackageFields],
    ) -> Escalation:
        """POST the package (a dict, keyword fields, or both; keywords win) and return the
        escalation: 201 created, or 200 when the key was seen before with the same body.

        Always sends an `Idempotency-Key` (a uuid4 unless given) and retries network
        errors, 429 and 5xx with that same key, so a retry never creates a second
        escalation. Pass your own stable key (e.g. f"{run_id}:{step}") to make a crashed
        and restarted agent find its escalation again instead of opening another.
        Raises ValidationFailed (422) naming each bad field, Conflict (409) when the run
        already has an open escalation (`.open_escalation`) or the key was used with
        another body.
        """
        body = _core.merge_package(package, fields)
        key = idempotency_key or str(uuid.uuid4())
        send = Send("POST", f"{API}/escalations", json=body, headers={"Idempotency-Key": key})
        return Escalation.from_dict(self._run(_core.call(send, self.backoff)))

    def get(self, escalation: Escalation | str) -> Escalation:
        """The escalation's current state."""
        send = Send("GET", f"{API}/escalations/{escalation_id(escalation)}")
        found = Escalation.from_dict(self._run(_core.call(send, self.backoff)))
        return check_decided(found, self.signing_secret)

    def wait(
        self,
        escalation: Escalation | str,
        timeout: float | None = None,
        *,
        stop_on_question: bool = True,
    ) -> Escalation:
        """Block until the escalation is decided (or withdrawn), or a reviewer asks the
        agent a question (status awaiting_agent, `.question`: answer it with `answer()`,
        then wait again), and return it. `stop_on_question=False` waits for the decision
        only (a question stays unanswered meanwhile; the long-poll is then paced at about
        one request a second while it is open).

        Built on the long-poll (`?wait=N`, N <= 60, looped), with If-None-Match, and
        reconnecting after network errors, 429 and 5xx with backoff, jitter and
        Retry-After. With `signing_secret`, a decision whose receipt does not verify raises
        InvalidReceipt, and one past its valid_until (or expired) DecisionExpired: never act
        on those. `timeout=None` waits for ever; otherwise raises WaitTimeout (which
        carries the last state) after `timeout` seconds. An Escalation object that
        already needs the agent is returned at once without a request.
        """
        current = escalation if isinstance(escalation, Escalation) else None
        plan = _core.wait(
            escalation_id(escalation),
            current,
            timeout,
            self.backoff,
            self.timeout,
            stop_on_question,
        )
        decided: Escalation = self._run(plan)
        return check_decided(decided, self.signing_secret)

    def decisions(
        self, after: str | None = None, *, wait: int = 0, limit: int = 100
    ) -> DecisionFeed:
        """Iterate decided escalations of this agent, oldest first, from cursor `after`.

        `wait=0`: stop once caught up. `wait=N` (1-60): long-poll for new ones and never
        stop (break out yourself). The returned feed's `.cursor` is safe to persist after
        handling the item just yielded: resuming from it repeats nothing unhandled
        (delivery is at least once; dedupe on the escalation id).
        """
        return DecisionFeed(self, _core.feed(after, wait, limit, self.backoff, self.timeout), after)

    def gate(
        self,
        *,
        action: Action,
        confidence: float,
        attempts: int = 0,
        novel: bool = False,
        domain: str | None = None,
        run_id: str | None = None,
    ) -> GateVerdict:
        """Ask the governance policy before acting: proceed, flag, escalate or halt.
        Every call is counted, so it is retried only when it provably never arrived."""
        body = gate_body(action, confidence, attempts, novel, domain, run_id)
        send = Send("POST", f"{API}/gate", json=_core.to_json(body), retry="connect")
        return GateVerdict.from_dict(self._run(_core.call(send, self.backoff)))

    def ack(self, escalation: Escalation | str) -> Escalation:
        """Confirm the run resumed with the decision (status becomes resumed). Idempotent;
        Conflict (409) before a decision."""
        send = Send("POST", f"{API}/escalations/{escalation_id(escalation)}/ack")
        return Escalation.from_dict(self._run(_core.call(send, self.backoff)))

    def answer(
        self,
        escalation: Escalation | str,
        text: str,
        *,
        history: Sequence[Mapping[str, Any]] | None = None,
        links: Sequence[Mapping[str, Any]] | None = None,
    ) -> Escalation:
        """Answer a reviewer's question (status awaiting_agent): the escalation goes back
        to the queue (pending) with `history` steps and `links` appended to the package.
        Conflict (409) when no question is open; ValidationFailed (422) naming each field.
        Retried only when the request provably never arrived (a lost answer to a request
        that did arrive would otherwise come back as 409)."""
        body = _core.answer_body(text, history, links)
        path = f"{API}/escalations/{escalation_id(escalation)}/answer"
        send = Send("POST", path, json=body, retry="connect")
        return Escalation.from_dict(self._run(_core.call(send, self.backoff)))

    def withdraw(self, escalation: Escalation | str) -> Escalation:
        """Take an open escalation back (the agent solved it alone). Conflict (409) once
        decided: then `.escalation`/`.decision` may carry the decision that stands."""
        send = Send("POST", f"{API}/escalations/{escalation_id(escalation)}/withdraw")
        return Escalation.from_dict(self._run(_core.call(send, self.backoff)))

    # -- driving plans

    def _run(self, plan: Plan) -> Any:
        try:
            effect = next(plan)
            while True:
                effect = plan.send(self._perform(effect))
        except StopIteration as stop:
            return stop.value

    def _perform(self, effect: Send | Sleep | Emit) -> _core.Result:
        if isinstance(effect, Sleep):
            time.sleep(effect.seconds)
            return None
        if isinstance(effect, Emit):
            raise TypeError("this plan emits items; iterate it with DecisionFeed")
        try:
            return self._http.request(
                effect.method,
                self.base_url + effect.path,
                params=effect.params,
                json=effect.json,
                headers={**self._headers, **effect.headers},
                timeout=effect.timeout if effect.timeout is not None else self.timeout,
            )
        except httpx.TransportError as exc:
            return exc


class DecisionFeed(Iterator[Escalation]):
    """Iterator over the decisions feed; `cursor` follows what was handed out."""

    def __init__(self, client: Handoff, plan: Plan, after: str | None) -> None:
        self._client = client
        self._plan = plan
        self._started = False
        self.cursor = after

    def __iter__(self) -> DecisionFeed:
        return self

    def __next__(self) -> Escalation:
        result: _core.Result = None
        while True:
            try:
                effect = self._plan.send(result) if self._started else next(self._plan)
            except StopIteration:
                raise StopIteration from None
            self._started = True
            if isinstance(effect, Emit):
                self.cursor = effect.cursor
                return check_decided(effect.escalation, self._client.signing_secret)
            result = self._client._perform(effect)
