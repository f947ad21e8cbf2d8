"""The escalation object of API.md, built by hand: the API, webhooks and reviewer API share it."""

import uuid
from datetime import UTC, datetime
from typing import Any

from django.conf import settings

from . import receipts
from .models import Agent, Decision, Escalation
from .policy import Rules, Verdict


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def decision_wire(
    *, escalation_id: uuid.UUID | str, run_id: str, kind: str, option_key: str, args: Any, instruction: str,
    decided_by_type: str, decided_by_name: str, decided_at: datetime | None,
    valid_until: datetime | None, secret: str,
) -> dict[str, Any]:
    """The decision object of API.md with its signed receipt (escalations.receipts); the
    ORM path (decision_dict) and the agents' hot read (selectors) both build it here."""
    decided_by = {"type": decided_by_type, "name": decided_by_name}
    payload = receipts.payload_for(
        escalation_id=str(escalation_id), run_id=run_id, kind=kind, option=option_key or None,
        args=args, decided_by=decided_by, decided_at=iso(decided_at) or "",
        valid_until=iso(valid_until),
    )
    return {
        "kind": kind,
        "option": option_key or None,
        "args": args,
        "instruction": instruction or None,
        "decided_by": decided_by,
        "decided_at": iso(decided_at),
        "valid_until": iso(valid_until),
        "receipt": receipts.sign(payload, secret),
    }


def decision_dict(decision: Decision, escalation: Escalation) -> dict[str, Any]:
    return decision_wire(
        escalation_id=escalation.id, run_id=escalation.run.run_id, kind=decision.kind,
        option_key=decision.option_key, args=decision.args, instruction=decision.instruction,
        decided_by_type=decision.decided_by_type, decided_by_name=decision.decided_by_name,
        decided_at=decision.decided_at, valid_until=decision.valid_until,
        secret=_agent_secret(escalation),
    )


def _agent_secret(escalation: Escalation) -> str:
    """The agent's signing secret: from the loaded agent, else one small query."""
    if Escalation.agent.is_cached(escalation):
        return escalation.agent.signing_secret
    return Agent.objects.filter(pk=escalation.agent_id).values_list("signing_secret", flat=True).get()


def question_dict(status: str, text: str, asked_by: str, asked_at: datetime | None) -> dict[str, Any] | None:
    """The open question (API.md: `question`), only while the escalation awaits the agent."""
    if status != Escalation.Status.AWAITING_AGENT:
        return None
    return {"text": text, "asked_by": asked_by, "asked_at": iso(asked_at)}


def escalation_url(escalation_id: uuid.UUID | str) -> str:
    return f"{settings.PUBLIC_URL}/escalations/{escalation_id}"


def escalation_dict(escalation: Escalation) -> dict[str, Any]:
    """The escalation object. Expects `decision` to be loaded (select_related) when decided."""
    try:
        decision = escalation.decision
    except Decision.DoesNotExist:
        decision = None
    return {
        "id": str(escalation.id),
        "run_id": escalation.run.run_id,
        "title": escalation.title,
        "status": escalation.status,
        "tier": escalation.tier,
        "tier_reasons": escalation.tier_reasons,
        "priority": escalation.priority,
        "priority_reasons": escalation.priority_reasons,
        "reason": escalation.reason,
        "confidence": escalation.confidence,
        "calibrated_confidence": escalation.calibrated_confidence,
        "domain": escalation.domain,
        "question": question_dict(
            escalation.status, escalation.question_text, escalation.question_by, escalation.question_at
        ),
        "respond_by": iso(escalation.respond_by),
        "created_at": iso(escalation.created_at),
        "updated_at": iso(escalation.updated_at),
        "url": escalation_url(escalation.id),
        "decision": decision_dict(decision, escalation) if decision else None,
    }


def gate_dict(verdict: Verdict, rules: Rules) -> dict[str, Any]:
    """The gate's answer (POST /gate and the MCP tool)."""
    return {
        "verdict": verdict.name,
        "tier": verdict.tier,
        "reasons": verdict.reasons,
        "policy": rules.domain,
        "calibrated_confidence": verdict.calibrated_confidence,
    }


def package_dict(escalation: Escalation) -> dict[str, Any]:
    """The whole package as posted, for the reviewer API."""
    return {
        "uncertainty": escalation.uncertainty,
        "history": escalation.history,
        "options": escalation.options,
        "cost_of_delay": {
            "blocking": escalation.blocking,
            "impact": escalation.impact,
            "blocked_tasks": escalation.blocked_tasks,
            "stuck_since": iso(escalation.stuck_since),
            "respond_by": iso(escalation.respond_by),
            "note": escalation.delay_note or None,
        },
        "action": escalation.action,
        "attempts": escalation.attempts,
        "timeout_option": escalation.timeout_option or None,
        "links": escalation.links,
        "metadata": escalation.metadata,
    }
