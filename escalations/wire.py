"""The escalation object of API.md, built by hand: the API, webhooks and reviewer API share it."""

import uuid
from datetime import UTC, datetime
from typing import Any

from django.conf import settings

from .models import Decision, Escalation
from .policy import Rules, Verdict


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def decision_dict(decision: Decision) -> dict[str, Any]:
    return {
        "kind": decision.kind,
        "option": decision.option_key or None,
        "args": decision.args,
        "instruction": decision.instruction or None,
        "decided_by": {"type": decision.decided_by_type, "name": decision.decided_by_name},
        "decided_at": iso(decision.decided_at),
    }


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
        "respond_by": iso(escalation.respond_by),
        "created_at": iso(escalation.created_at),
        "updated_at": iso(escalation.updated_at),
        "url": escalation_url(escalation.id),
        "decision": decision_dict(decision) if decision else None,
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
