"""Pure governance: tiers, verdicts and priority. No ORM, no I/O, no clock of its own.

Tiers (DESIGN.md): 1 autonomous, 2 proceed with flag, 3 escalate with context, 4 halt.
A package is at least tier 3 when anything is irreversible, when attempts reach the
retry cap, when the actual scope exceeds the planned scope by more than the tolerance,
or when the situation is novel (while the domain's novelty rule is on); and at least the
tier its reason's floor names (Rules.reason_floors: value questions such as
`approach_choice` may deserve a person even at high confidence). With tier_by_calibrated
on, the thresholds read the agent's calibrated confidence (escalations.calibration) where
it has one, the stated confidence otherwise.
"""

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

AUTONOMOUS, FLAG, ESCALATE, HALT = 1, 2, 3, 4
VERDICTS = {AUTONOMOUS: "proceed", FLAG: "flag", ESCALATE: "escalate", HALT: "halt"}


@dataclass(frozen=True)
class Rules:
    """The numbers of a domain policy (mirrors escalations.models.Policy)."""

    domain: str = "default"
    autonomous_threshold: float = 0.90
    flag_threshold: float = 0.70
    escalate_threshold: float = 0.50
    retry_cap: int = 3
    scope_tolerance: float = 0.5
    auto_decide: bool = True
    # The novelty rule: a `novelty` package (or a gate call with `novel`) is at least tier 3.
    novelty_escalates: bool = True
    # Minutes until respond_by for packages that give none, per waiting tier (None: no default).
    respond_minutes_tier3: int | None = None
    respond_minutes_tier4: int | None = None
    # The two-person rule: distinct reviewers an irreversible option needs.
    approvals_required: int = 1
    # Tier by the agent's calibrated confidence (when it has enough judged history).
    tier_by_calibrated: bool = False
    # reason -> the lowest tier a package with that reason gets (2-4; absent: no floor).
    reason_floors: dict[str, int] = field(default_factory=dict)
    # Machine reviewers (services.first_look): the tiers they may decide (none by default),
    # the machine offered a first look at new tier-3 escalations and for how many seconds,
    # and how long a decision stays valid (None: no lifetime).
    machine_tiers: tuple[int, ...] | list[int] = ()
    first_look_reviewer_id: int | None = None
    first_look_seconds: int = 60
    decision_lifetime_seconds: int | None = None
    version: int = 1


# What a manager edits and a PolicyVersion snapshots (escalations migration 0002 keeps its own copy).
RULE_FIELDS = (
    "autonomous_threshold",
    "flag_threshold",
    "escalate_threshold",
    "retry_cap",
    "scope_tolerance",
    "auto_decide",
    "novelty_escalates",
    "respond_minutes_tier3",
    "respond_minutes_tier4",
    "approvals_required",
    "tier_by_calibrated",
    "reason_floors",
    "machine_tiers",
    "first_look_reviewer_id",
    "first_look_seconds",
    "decision_lifetime_seconds",
)


def rules_snapshot(rules: Rules) -> dict[str, Any]:
    """The editable numbers of `rules`, as a PolicyVersion stores them."""
    values = asdict(rules)
    return {name: values[name] for name in RULE_FIELDS}


def rules_errors(rules: Rules) -> list[tuple[str, str]]:
    """What is wrong with a set of rules, as (field, message); empty when they are usable.

    Thresholds are fractions in [0, 1] ordered autonomous >= flag >= escalate (the
    database's check constraint says the same; this names the field at fault).
    """
    errors = []
    thresholds = (
        ("autonomous_threshold", rules.autonomous_threshold),
        ("flag_threshold", rules.flag_threshold),
        ("escalate_threshold", rules.escalate_threshold),
    )
    out_of_range = {name for name, value in thresholds if not 0 <= value <= 1}
    errors += [(name, "must be between 0 and 1") for name in sorted(out_of_range)]
    if not out_of_range & {"autonomous_threshold", "flag_threshold"} and (
        rules.flag_threshold > rules.autonomous_threshold
    ):
        errors.append(
            ("flag_threshold", f"must not be above the autonomous threshold ({rules.autonomous_threshold:g})")
        )
    if not out_of_range & {"flag_threshold", "escalate_threshold"} and (
        rules.escalate_threshold > rules.flag_threshold
    ):
        errors.append(
            ("escalate_threshold", f"must not be above the flag threshold ({rules.flag_threshold:g})")
        )
    if rules.retry_cap < 1:
        errors.append(("retry_cap", "must be at least 1"))
    if rules.scope_tolerance < 0:
        errors.append(("scope_tolerance", "must not be negative"))
    for name in ("respond_minutes_tier3", "respond_minutes_tier4"):
        minutes = getattr(rules, name)
        if minutes is not None and minutes < 1:
            errors.append((name, "must be at least 1 minute, or empty for no default"))
    if rules.approvals_required < 1:
        errors.append(("approvals_required", "must be at least 1"))
    for reason, tier in sorted(rules.reason_floors.items()):
        if tier not in (FLAG, ESCALATE, HALT):
            errors.append(("reason_floors", f"the floor of {reason} must be tier 2, 3 or 4"))
    if any(tier not in (AUTONOMOUS, FLAG, ESCALATE, HALT) for tier in rules.machine_tiers):
        errors.append(("machine_tiers", "must list tiers from 1 to 4"))
    if not 5 <= rules.first_look_seconds <= 3600:
        errors.append(("first_look_seconds", "must be between 5 seconds and an hour"))
    lifetime = rules.decision_lifetime_seconds
    if lifetime is not None and lifetime < 10:
        errors.append(("decision_lifetime_seconds", "must be at least 10 seconds, or empty for no limit"))
    return errors


# ---------------------------------------------------------------- machine reviewers

MACHINE_IRREVERSIBLE = "An irreversible option needs a person: a machine reviewer may not choose it."
MACHINE_TAKE_OVER = "A machine reviewer cannot take a run over: that is a person's call."


def machine_refusal(
    rules: Rules, *, tier: int, kind: str, option_irreversible: bool, action_irreversible: bool
) -> str | None:
    """Why a machine reviewer may not make this decision, or None when it may.

    An irreversible option (or any option when the action at stake is irreversible) always
    needs a person; so does taking a run over; otherwise the policy's machine_tiers say
    which tiers a machine may decide (none by default).
    """
    if kind == "option" and (option_irreversible or action_irreversible):
        return MACHINE_IRREVERSIBLE
    if kind == "take_over":
        return MACHINE_TAKE_OVER
    if tier not in rules.machine_tiers:
        allowed = ", ".join(str(t) for t in sorted(rules.machine_tiers)) or "none"
        return (
            f"The {rules.domain} policy does not let machine reviewers decide tier {tier}"
            f" (tiers machines may decide: {allowed}): leave a recommendation instead."
        )
    return None


def first_look_wanted(rules: Rules, tier: int) -> bool:
    """A new escalation of `tier` is offered to the policy's machine reviewer first."""
    return tier == ESCALATE and rules.first_look_reviewer_id is not None


def valid_until(rules: Rules, decided_at: datetime) -> datetime | None:
    """When a decision made at `decided_at` stops being valid (None: it does not expire)."""
    if rules.decision_lifetime_seconds is None:
        return None
    return decided_at + timedelta(seconds=rules.decision_lifetime_seconds)


def default_respond_minutes(rules: Rules, tier: int) -> int | None:
    """Minutes to respond_by for a package of `tier` that gave none (tiers 3 and 4 only)."""
    return {ESCALATE: rules.respond_minutes_tier3, HALT: rules.respond_minutes_tier4}.get(tier)


@dataclass(frozen=True)
class Change:
    field: str
    old: Any
    new: Any


def rules_changes(old: dict[str, Any] | None, new: dict[str, Any]) -> list[Change]:
    """What differs between two snapshots, in the order of `new`.

    A setting the old snapshot did not record (saved before it was versioned) is not
    shown as changed: its old value is unknown.
    """
    old = old or {}
    return [Change(name, old[name], value) for name, value in new.items() if name in old and old[name] != value]


@dataclass(frozen=True)
class Situation:
    """What the policy looks at, from a package or a gate request."""

    confidence: float
    irreversible: bool = False
    attempts: int = 0
    planned_scope: int | None = None
    actual_scope: int | None = None
    novel: bool = False
    # The package's reason (a gate call has none) and the agent's calibrated confidence
    # (None: not enough judged history).
    reason: str = ""
    calibrated_confidence: float | None = None


@dataclass(frozen=True)
class Verdict:
    tier: int
    reasons: list[str] = field(default_factory=list)
    # The situation's calibrated confidence, passed through for the answer.
    calibrated_confidence: float | None = None

    @property
    def name(self) -> str:
        return VERDICTS[self.tier]

    @property
    def decided_by_policy(self) -> bool:
        return self.tier in (AUTONOMOUS, FLAG)


def scope_exceeded(rules: Rules, planned: int | None, actual: int | None) -> bool:
    if planned is None or actual is None:
        return False
    return actual > planned * (1 + rules.scope_tolerance)


def confidence_tier(rules: Rules, situation: Situation) -> tuple[int, str]:
    """The tier the thresholds give, with its sentence: the stated confidence, or the
    calibrated one when the rules tier by it and the agent has one."""
    c = situation.confidence
    said = f"confidence {c:.2f}"
    calibrated = situation.calibrated_confidence
    if rules.tier_by_calibrated and calibrated is not None:
        c, said = calibrated, f"calibrated confidence {calibrated:.2f} (stated {c:.2f})"
    if c >= rules.autonomous_threshold:
        return AUTONOMOUS, f"{said} ≥ {rules.autonomous_threshold:.2f}"
    if c >= rules.flag_threshold:
        return FLAG, f"{said} below autonomous {rules.autonomous_threshold:.2f}"
    if c >= rules.escalate_threshold:
        return ESCALATE, f"{said} below {rules.flag_threshold:.2f}"
    return HALT, f"{said} below {rules.escalate_threshold:.2f}: halt"


def reason_floor_sentence(reason: str, tier: int) -> str:
    return f"{reason} escalations are at least tier {tier}"


def verdict_for(rules: Rules, situation: Situation) -> Verdict:
    """The tier of a situation under a domain's rules, with the reasons a person reads.

    The confidence's tier, raised to tier 3 by any risk floor and to the reason's floor;
    never lowered. The confidence's sentence is kept unless a floor raised the tier.
    """
    tier, said = confidence_tier(rules, situation)
    floors = []
    if situation.irreversible:
        floors.append("irreversible action needs approval")
    if situation.attempts >= rules.retry_cap:
        floors.append(f"{situation.attempts} attempts reached the retry cap of {rules.retry_cap}")
    if scope_exceeded(rules, situation.planned_scope, situation.actual_scope):
        floors.append(
            f"scope {situation.actual_scope} exceeds planned {situation.planned_scope} "
            f"by more than {rules.scope_tolerance:.0%}"
        )
    if situation.novel and rules.novelty_escalates:
        floors.append("novel situation")
    final = max(tier, ESCALATE) if floors else tier
    reason_floor = rules.reason_floors.get(situation.reason, AUTONOMOUS) if situation.reason else AUTONOMOUS
    if reason_floor > AUTONOMOUS and reason_floor >= tier:
        floors.append(reason_floor_sentence(situation.reason, reason_floor))
        final = max(final, reason_floor)
    reasons = floors if final > tier else [said, *floors]
    return Verdict(final, reasons, situation.calibrated_confidence)


# ---------------------------------------------------------------- priority

IMPACT_POINTS = {"low": 0, "medium": 8, "high": 16, "critical": 25}
TIER_POINTS = {AUTONOMOUS: 0, FLAG: 5, ESCALATE: 20, HALT: 40}


@dataclass(frozen=True)
class Urgency:
    """What makes waiting expensive, from a package's cost_of_delay."""

    tier: int
    impact: str
    blocking: bool
    blocked_tasks: int = 0
    irreversible: bool = False
    respond_by: datetime | None = None
    stuck_since: datetime | None = None
    # The escalation level reached (1 = the queue) and the boost its levels add.
    level: int = 1
    level_boost: int = 0


@dataclass(frozen=True)
class Priority:
    score: int
    reasons: list[str]


def _hours(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours:.0f} h" if hours >= 1 else f"{seconds / 60:.0f} min"


def priority_for(urgency: Urgency, now: datetime) -> Priority:
    """A 0-100 score of the cost of delay, with its reasons (largest first).

    Tier up to 40, impact up to 25, blocking up to 20, irreversibility 10, the deadline
    up to 15, time already stuck up to 6 and the escalation level's boost (see
    escalations.levels); capped at 100. Deadlines make it rise, so it is refreshed
    periodically while an escalation is open.
    """
    parts: list[tuple[int, str]] = [(TIER_POINTS[urgency.tier], f"tier {urgency.tier}")]
    parts.append((IMPACT_POINTS[urgency.impact], f"{urgency.impact} impact"))
    if urgency.blocking:
        parts.append((10, "blocking other work"))
    if urgency.blocked_tasks:
        n = urgency.blocked_tasks
        parts.append((min(10, 2 * n), f"blocks {n} task{'s' if n != 1 else ''}"))
    if urgency.irreversible:
        parts.append((10, "irreversible action"))
    if urgency.respond_by is not None:
        left = (urgency.respond_by - now).total_seconds()
        if left < 0:
            parts.append((15, f"overdue by {_hours(-left)}"))
        elif left <= 3600:
            parts.append((10, f"due in {_hours(left)}"))
        elif left <= 4 * 3600:
            parts.append((5, f"due in {_hours(left)}"))
    if urgency.stuck_since is not None:
        stuck = (now - urgency.stuck_since).total_seconds()
        if stuck >= 24 * 3600:
            parts.append((6, f"stuck for {_hours(stuck)}"))
        elif stuck >= 3600:
            parts.append((3, f"stuck for {_hours(stuck)}"))
    if urgency.level > 1 and urgency.level_boost:
        parts.append((urgency.level_boost, f"escalated to level {urgency.level}"))
    score = min(100, sum(points for points, _ in parts))
    reasons = [reason for points, reason in sorted(parts, key=lambda p: -p[0]) if points > 0]
    return Priority(score, reasons)


# ---------------------------------------------------------------- webhook backoff


def backoff_seconds(attempt: int, *, base: float, cap: float, jitter: float) -> float:
    """Exponential backoff with full jitter: attempt 1 waits about base, then doubles.

    `jitter` is a number in [0, 1) supplied by the caller (random.random()), so this
    stays pure and testable.
    """
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    return float(ceiling / 2 + ceiling / 2 * jitter)
