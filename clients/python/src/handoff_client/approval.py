"""`@requires_approval`: a function whose effect can't be undone runs only once a human agrees."""

from __future__ import annotations

import functools
import inspect
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar, cast

from ._core import to_json
from .aio import AsyncHandoff
from .client import Handoff
from .errors import (
    Halted,
    HandoffError,
    InstructionGiven,
    Rejected,
    TakenOver,
    Withdrawn,
)
from .models import CostOfDelay, Escalation, Reason, Step

P = ParamSpec("P")
R = TypeVar("R")
Text = str | Callable[[dict[str, Any]], str]
log = logging.getLogger("handoff_client")


def requires_approval(
    client: Handoff | AsyncHandoff,
    *,
    title: Text,
    uncertainty: Text,
    confidence: float,
    reason: Reason = "irreversible_action",
    run_id: str | Callable[[dict[str, Any]], str] | None = None,
    history: list[Step] | None = None,
    cost_of_delay: CostOfDelay | None = None,
    proceed_key: str = "proceed",
    proceed_label: str | None = None,
    skip_key: str = "skip",
    skip_label: str = "Skip this step",
    timeout: float | None = None,
    ack: bool = True,
    **package: Any,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a function whose effect can't be undone.

    Each call escalates instead of running: the call's bound arguments (JSON-serializable,
    `self`/`cls` left out) become the `args` of the recommended, irreversible option
    `proceed_key`; a second option `skip_key` declines. Then it waits (`timeout` seconds,
    None = for ever) for the decision and:

    - option `proceed_key`: runs the function with the arguments the reviewer approved
      (the decision's `args` replace the call's; arguments the reviewer removed keep
      the call's value; an unknown name fails closed with HandoffError) and returns its
      result;
    - any other option: raises Rejected; `instruction` kind: InstructionGiven (with
      `.instruction`); `take_over`: TakenOver; `halt`: Halted; withdrawn: Withdrawn;
    - no decision in time: WaitTimeout (the function did not run; the escalation stays
      open).

    `title`, `uncertainty` and `run_id` may be callables of the arguments dict. `run_id`
    defaults to a fresh id per call. Extra keyword arguments are package fields
    (`domain`, `links`, `metadata`, `attempts`, `action`, `timeout_option`...). With
    `ack`, the decision is acknowledged once received. Sync functions need `Handoff`,
    async functions `AsyncHandoff`.
    """

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        signature = inspect.signature(func)
        is_async = inspect.iscoroutinefunction(func)
        if is_async != isinstance(client, AsyncHandoff):
            raise TypeError(
                "requires_approval: async functions need an AsyncHandoff client, "
                "sync functions a Handoff client"
            )

        def prepare(
            args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> tuple[inspect.BoundArguments, dict[str, Any], dict[str, Any]]:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            shown = {k: v for k, v in bound.arguments.items() if k not in ("self", "cls")}
            try:
                shown = to_json(shown)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"{func.__qualname__}: arguments must be JSON data: {exc}") from exc
            return bound, shown, build_package(func, shown)

        def build_package(func: Callable[..., Any], shown: dict[str, Any]) -> dict[str, Any]:
            run = run_id(shown) if callable(run_id) else run_id
            data: dict[str, Any] = {
                "run_id": run or f"{func.__qualname__}-{uuid.uuid4().hex[:12]}",
                "title": title(shown) if callable(title) else title,
                "uncertainty": uncertainty(shown) if callable(uncertainty) else uncertainty,
                "reason": reason,
                "confidence": confidence,
                "history": history
                or [
                    {
                        "at": datetime.now(UTC),
                        "action": f"Prepared the call {func.__name__}(...)",
                        "outcome": "info",
                    }
                ],
                "options": [
                    {
                        "key": proceed_key,
                        "label": proceed_label or f"Run {func.__name__} with these arguments",
                        "irreversible": True,
                        "recommended": True,
                        "args": shown,
                    },
                    {"key": skip_key, "label": skip_label},
                ],
                "cost_of_delay": cost_of_delay or {"blocking": True, "impact": "medium"},
                "action": {"name": func.__name__, "irreversible": True},
            }
            data.update(package)
            return data

        def approved_call(
            bound: inspect.BoundArguments, escalation: Escalation
        ) -> inspect.BoundArguments:
            decision = escalation.decision
            if decision is None:
                raise Withdrawn(escalation, f"escalation {escalation.id} ended without a decision")
            if decision.kind == "halt":
                raise Halted(escalation, f"a reviewer halted the run ({escalation.url})")
            if decision.kind == "take_over":
                raise TakenOver(escalation, f"a human took the run over ({escalation.url})")
            if decision.kind == "instruction":
                raise InstructionGiven(escalation, f"instruction instead: {decision.instruction}")
            if decision.option != proceed_key:
                raise Rejected(escalation, f"the reviewer chose {decision.option!r}")
            approved = dict(bound.arguments)
            for name, value in (decision.args or {}).items():
                if name not in signature.parameters or name in ("self", "cls"):
                    raise HandoffError(
                        f"approved args name {name!r}, which {func.__qualname__} does not take"
                    )
                approved[name] = value
            return inspect.BoundArguments(signature, approved)

        if is_async:
            async_client = cast(AsyncHandoff, client)

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                bound, _, data = prepare(args, kwargs)
                escalation = await async_client.escalate(data)
                escalation = await async_client.wait(
                    escalation, timeout=timeout, stop_on_question=False
                )
                if ack and escalation.decision is not None:
                    try:
                        await async_client.ack(escalation)
                    except HandoffError as exc:
                        log.warning("ack of %s failed: %s", escalation.id, exc)
                call = approved_call(bound, escalation)
                return await cast(Callable[..., Awaitable[Any]], func)(*call.args, **call.kwargs)

            return cast(Callable[P, R], async_wrapper)

        sync_client = cast(Handoff, client)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            bound, _, data = prepare(args, kwargs)
            escalation = sync_client.escalate(data)
            escalation = sync_client.wait(escalation, timeout=timeout, stop_on_question=False)
            if ack and escalation.decision is not None:
                try:
                    sync_client.ack(escalation)
                except HandoffError as exc:
                    log.warning("ack of %s failed: %s", escalation.id, exc)
            call = approved_call(bound, escalation)
            return func(*call.args, **call.kwargs)

        return cast(Callable[P, R], wrapper)

    return decorate
