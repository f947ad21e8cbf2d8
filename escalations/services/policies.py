"""Governance policies: create and change a domain's rules (each change a new version),
its escalation levels, and the gate an agent asks before it acts."""

from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from escalations import calibration, levels, policy, rows
from escalations.errors import FieldError, Invalid
from escalations.inputs import GateInput
from escalations.models import (
    Agent,
    CalibrationBin,
    EscalationLevel,
    GateCheck,
    Policy,
    PolicyVersion,
)

from .calibration import maps_of


@cache
def _policy_sql() -> str:
    # Policy.objects.filter(domain=domain) by hand: every create and decide reads it.
    return f"SELECT {rows.columns(Policy, 'p')} FROM escalations_policy p WHERE p.domain = %s"  # noqa: S608 (the model's own table and columns, never input)


def rules_for(domain: str) -> policy.Rules | None:
    row = rows.one(Policy, _policy_sql(), [domain])
    if row is None:
        return None
    return rules_of(row)


@cache
def _rules_and_bins_sql() -> str:
    # rules_for(domain) and calibration_maps(agent, [domain]) in one statement (a create and
    # a gate check read both): the policy row, beside each of the agent's bins for the domain
    # and for all its domains (NULLs when it has none).
    return (
        f"SELECT {rows.columns(Policy, 'p')}, {rows.columns(CalibrationBin, 'b')}"  # noqa: S608 (the models' own tables and columns, never input)
        " FROM escalations_policy p LEFT JOIN escalations_calibrationbin b"
        " ON b.agent_id = %s AND b.domain IN (p.domain, %s) WHERE p.domain = %s ORDER BY b.domain, b.bin"
    )


def rules_and_calibration(agent_id: int, domain: str) -> tuple[policy.Rules | None, calibration.CalibrationMap | None]:
    """rules_for(domain) and calibration_for(agent_id, domain), read in one round trip: (None,
    None) for a domain without a policy."""
    found = rows.fetch_all(_rules_and_bins_sql(), [agent_id, calibration.ALL_DOMAINS, domain])
    if not found:
        return None, None
    start = rows.width(Policy)
    bins = [rows.instance(CalibrationBin, values, start) for values in found if values[start] is not None]
    rules = rules_of(rows.instance(Policy, found[0]))
    return rules, calibration.map_for(maps_of(bins), domain)


def rules_of(row: Policy) -> policy.Rules:
    """The pure rules of a Policy row."""
    return policy.Rules(
        domain=row.domain,
        **{name: getattr(row, name) for name in policy.RULE_FIELDS},
        version=row.version,
    )


def _policy_snapshot(row: Policy) -> dict[str, Any]:
    """What a PolicyVersion keeps: the rules, the description and the managers' usernames."""
    snapshot = policy.rules_snapshot(rules_of(row))
    snapshot["description"] = row.description
    snapshot["managers"] = sorted(row.managers.values_list("username", flat=True))
    return snapshot


def _policy_errors(rules: policy.Rules) -> None:
    errors = policy.rules_errors(rules)
    if errors:
        raise Invalid([FieldError(name, message) for name, message in errors])


def policy_create(
    *, domain: str, description: str = "", user: User | None = None, now: datetime | None = None, **rules: Any
) -> Policy:
    """A new domain policy at version 1, with its first PolicyVersion.

    `rules` are Policy fields of policy.RULE_FIELDS (defaults for the rest) and optionally
    `managers` (users). Raises Invalid naming the field: a taken domain, rules out of
    order.
    """
    now = now or timezone.now()
    managers = rules.pop("managers", None) or []
    row = Policy(domain=domain, description=description, version=1, **rules)
    _policy_errors(rules_of(row))
    try:
        with transaction.atomic():
            row.save(force_insert=True)
            row.managers.set(managers)
            _policy_version_write(row, user=user, note="created", now=now)
    except IntegrityError:
        raise Invalid([FieldError("domain", f"a policy for {domain!r} exists already")]) from None
    return row


def policy_update(
    *,
    policy_id: int,
    changes: dict[str, Any],
    user: User | None = None,
    note: str = "",
    now: datetime | None = None,
) -> tuple[Policy, list[policy.Change]]:
    """Save a manager's edit of a policy as its next version.

    `changes` maps fields of policy.RULE_FIELDS, `description` and `managers` (users) to
    new values. Under a lock on the policy row: validate the rules (Invalid naming the
    field), apply, bump Policy.version and write the PolicyVersion (snapshot, who, note).
    An edit that changes nothing is saved as nothing: (policy, []) and no new version.
    Escalations created after the commit record the new version.
    """
    now = now or timezone.now()
    changes = dict(changes)
    managers = changes.pop("managers", None)
    unknown = set(changes) - {*policy.RULE_FIELDS, "description"}
    if unknown:
        raise ValueError(f"not policy settings: {sorted(unknown)}")
    with transaction.atomic():
        row = Policy.objects.select_for_update().get(pk=policy_id)
        before = _policy_snapshot(row)
        for name, value in changes.items():
            setattr(row, name, value)
        _policy_errors(rules_of(row))
        after = policy.rules_snapshot(rules_of(row))
        after["description"] = row.description
        after["managers"] = (
            sorted(user.get_username() for user in managers)
            if managers is not None
            else before["managers"]
        )
        changed = policy.rules_changes(before, after)
        if not changed:
            return row, []
        row.version = F("version") + 1
        row.save()
        row.refresh_from_db(fields=["version"])
        if managers is not None:
            row.managers.set(managers)
        _policy_version_write(row, user=user, note=note, now=now, snapshot=after)
    return row, changed


def _policy_version_write(
    row: Policy, *, user: User | None, note: str, now: datetime, snapshot: dict[str, Any] | None = None
) -> None:
    PolicyVersion.objects.create(
        policy=row,
        version=row.version,
        rules=snapshot if snapshot is not None else _policy_snapshot(row),
        changed_by=user,
        changed_by_name=user.get_username() if user is not None else "",
        note=note[:300],
        created_at=now,
    )


def unknown_domain(domain: str, field: str) -> FieldError:
    known = ", ".join(Policy.objects.values_list("domain", flat=True))
    return FieldError(field, f"unknown domain {domain!r}; known: {known}")


def _rules_or_422(domain: str, field: str) -> policy.Rules:
    rules = rules_for(domain)
    if rules is None:
        raise Invalid([unknown_domain(domain, field)])
    return rules


def gate_check(*, agent: Agent, data: GateInput) -> tuple[policy.Verdict, policy.Rules]:
    """Answer POST /gate from the same policy code as escalations (the agent's calibration
    map included: verdict.calibrated_confidence), and count the call."""
    domain = data.domain or agent.domain
    rules, found = rules_and_calibration(agent.pk, domain)
    if rules is None:
        raise Invalid([unknown_domain(domain, "domain")])
    calibrated = found.calibrate(data.confidence) if found else None
    action = data.action
    verdict = policy.verdict_for(
        rules,
        policy.Situation(
            confidence=data.confidence,
            irreversible=bool(action and action.irreversible),
            attempts=data.attempts,
            planned_scope=action.planned_scope if action else None,
            actual_scope=action.actual_scope if action else None,
            novel=data.novel,
            calibrated_confidence=calibrated,
        ),
    )
    GateCheck.objects.create(
        agent=agent,
        domain=domain,
        run_id=data.run_id or "",
        verdict=verdict.name,
        tier=verdict.tier,
    )
    return verdict, rules


@dataclass
class LevelSpec:
    """One level as a manager edits it; its number comes from the order of the delays."""

    after_minutes: int
    priority_boost: int = 10
    notify: list[User] = field(default_factory=list)
    notify_managers: bool = False


def policy_levels_replace(*, policy_row: Policy, specs: list[LevelSpec]) -> list[EscalationLevel]:
    """Replace a domain's escalation levels; they are numbered 2, 3, … by delay.

    Locks the policy row, so two saves at once apply one after the other. Raises
    Invalid naming `levels.<row>.<field>` for a bad delay or boost. Escalations
    already above level 1 keep their level; the next priority refresh applies the new
    boosts, and levels_advance moves them on by the new delays.
    """
    errors = levels.rows_errors([(spec.after_minutes, spec.priority_boost) for spec in specs])
    if errors:
        raise Invalid(
            [FieldError(f"levels.{row}.{name}", message) for row, name, message in errors]
        )
    numbers = levels.numbered([spec.after_minutes for spec in specs])
    with transaction.atomic():
        Policy.objects.select_for_update().filter(pk=policy_row.pk).first()
        EscalationLevel.objects.filter(policy=policy_row).delete()
        created = []
        for number, spec in sorted(zip(numbers, specs, strict=True), key=lambda pair: pair[0]):
            row = EscalationLevel.objects.create(
                policy=policy_row,
                level=number,
                after_minutes=spec.after_minutes,
                priority_boost=spec.priority_boost,
                notify_managers=spec.notify_managers,
            )
            row.notify.set(spec.notify)
            created.append(row)
    return created
