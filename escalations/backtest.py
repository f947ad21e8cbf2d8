"""The backtest: how a domain's recent escalations would have been tiered under other rules.

One aggregate query over the window's escalations, left-joined to their decisions and flag
reviews: a CASE expression re-tiers every row exactly as policy.verdict_for would (the
confidence thresholds, then the floors: irreversible, retry cap, scope, novelty, the reasons'
floors), and conditional counts add the tiers up. Rules that tier by calibrated confidence
read each row's confidence through its agent's stored calibration map (today's map, as
escalations.calibration computes it; the stated confidence where the agent has none). Several rule sets are counted in the same scan, so the
page shows the saved policy and the thresholds being typed side by side. The SQL is the
ORM's, so it runs on SQLite and PostgreSQL alike.

The policy page's suggestions read the same window's judged escalations (judged_history:
JUDGED, agreed unless OVERRULED) for escalations.suggestions, so a suggestion's count is the
difference the backtest shows.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import (
    BooleanField,
    Case,
    Count,
    ExpressionWrapper,
    F,
    FloatField,
    OuterRef,
    Q,
    Subquery,
    Value,
    When,
    Window,
)
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce, RowNumber

from .calibration import ALL_DOMAINS, PRIOR_WEIGHT
from .models import CalibrationBin, Decision, Escalation, EscalationQuerySet, FlagReview
from .policy import AUTONOMOUS, ESCALATE, FLAG, HALT, Rules, Situation
from .suggestions import Judged, Suggestions, suggest

WINDOW_DAYS = 30


@dataclass(frozen=True)
class Backtest:
    """How the window's escalations fall under one set of rules."""

    rules: Rules
    total: int
    auto_decided: int  # tier 1
    flagged: int  # tier 2
    escalated: int  # tier 3
    halted: int  # tier 4
    # Of the auto-decided: escalations where a person chose otherwise than the agent's
    # recommended option (a human decision, or a flag review that says another option).
    overruled: int
    # The same of tiers 1 and 2 together: what the policy would decide against a person's
    # later judgement (0 when auto-decide is off).
    overruled_at_once: int = 0

    @property
    def decided_at_once(self) -> int:
        """What the policy would decide without a person (tiers 1-2, when auto-decide is on)."""
        return self.auto_decided + self.flagged if self.rules.auto_decide else 0

    @property
    def reach_a_person(self) -> int:
        return self.total - self.decided_at_once


def _tier(rules: Rules) -> Case:
    """The tier of a row under `rules`, as SQL (mirrors policy.verdict_for: the highest of
    the confidence's tier, the risk floors' tier 3 and the reason's floor)."""
    confidence = "bt_calibrated" if rules.tier_by_calibrated else "confidence"
    floor = (
        Q(is_irreversible=True)
        | Q(attempts__gte=rules.retry_cap)
        | Q(bt_actual__gt=F("bt_planned") * Value(1 + rules.scope_tolerance))
    )
    if rules.novelty_escalates:
        floor |= Q(reason=Escalation.Reason.NOVELTY)
    floored = {tier: sorted(r for r, t in rules.reason_floors.items() if t == tier) for tier in (FLAG, ESCALATE, HALT)}
    if floored[ESCALATE]:
        floor |= Q(reason__in=floored[ESCALATE])
    whens = [When(reason__in=floored[HALT], then=Value(HALT))] if floored[HALT] else []
    whens += [
        When(**{f"{confidence}__lt": rules.escalate_threshold}, then=Value(HALT)),
        When(floor, then=Value(ESCALATE)),
        When(**{f"{confidence}__lt": rules.flag_threshold}, then=Value(ESCALATE)),
    ]
    if floored[FLAG]:
        whens.append(When(reason__in=floored[FLAG], then=Value(FLAG)))
    whens.append(When(**{f"{confidence}__lt": rules.autonomous_threshold}, then=Value(FLAG)))
    return Case(*whens, default=Value(AUTONOMOUS))


def _calibrated(domain: OuterRef | Value) -> Subquery:
    """A row's confidence through its agent's map for `domain` (calibration.shrunk), or NULL."""
    found = CalibrationBin.objects.filter(
        agent=OuterRef("agent"), domain=domain, low__lte=OuterRef("confidence"), high__gt=OuterRef("confidence")
    )
    value = (F("agreed") + Value(float(PRIOR_WEIGHT)) * OuterRef("confidence")) / (F("n") + Value(float(PRIOR_WEIGHT)))
    return Subquery(found.annotate(v=value).values("v")[:1], output_field=FloatField())


def calibrated_confidence() -> Coalesce:
    """The confidence a calibrated policy reads: the domain's map, else the agent's map over
    all its domains, else the stated confidence (services.calibration_for's choice)."""
    return Coalesce(_calibrated(OuterRef("domain")), _calibrated(Value(ALL_DOMAINS)), F("confidence"))


# A person chose otherwise than the recommended option: deciding, or reviewing the policy's
# decision (a review of a machine's decision judges the machine, not the agent).
OVERRULED = Q(
    decision__decided_by_type=Decision.DecidedBy.HUMAN, decision__took_recommended=False
) | Q(
    decision__decided_by_type=Decision.DecidedBy.POLICY,
    flag_review__verdict=FlagReview.Verdict.OTHER,
)


# A person judged the agent: decided it, or reviewed the policy's decision (OVERRULED's
# cases and their agreeing counterparts).
JUDGED = Q(decision__decided_by_type=Decision.DecidedBy.HUMAN) | Q(
    decision__decided_by_type=Decision.DecidedBy.POLICY, flag_review__isnull=False
)


def _window(domain: str, now: datetime, days: int) -> EscalationQuerySet:
    """The escalations of `domain` created in the `days` before `now`, with their scopes."""
    return Escalation.objects.filter(
        domain=domain, created_at__gte=now - timedelta(days=days), created_at__lt=now
    ).annotate(
        bt_planned=Cast(KT("action__planned_scope"), FloatField()),
        bt_actual=Cast(KT("action__actual_scope"), FloatField()),
    )


def backtest(*, domain: str, rules: list[Rules], now: datetime, days: int = WINDOW_DAYS) -> list[Backtest]:
    """Count the escalations of `domain` created in the `days` before `now` under each of
    `rules` (one query, whatever their number). Returns one Backtest per rules, in order."""
    rows = _window(domain, now, days)
    if any(one.tier_by_calibrated for one in rules):
        rows = rows.annotate(bt_calibrated=calibrated_confidence())
    aggregates = {"total": Count("pk")}
    for i, one in enumerate(rules):
        tier = _tier(one)
        rows = rows.annotate(**{f"bt_tier_{i}": tier})
        for number in (AUTONOMOUS, FLAG, ESCALATE, HALT):
            aggregates[f"t{number}_{i}"] = Count("pk", filter=Q(**{f"bt_tier_{i}": number}))
        aggregates[f"overruled_{i}"] = Count(
            "pk", filter=Q(**{f"bt_tier_{i}": AUTONOMOUS}) & OVERRULED
        )
        at_once = (AUTONOMOUS, FLAG) if one.auto_decide else ()
        aggregates[f"at_once_{i}"] = Count("pk", filter=Q(**{f"bt_tier_{i}__in": at_once}) & OVERRULED)
    counts = rows.order_by().aggregate(**aggregates)
    return [
        Backtest(
            rules=one,
            total=counts["total"],
            auto_decided=counts[f"t{AUTONOMOUS}_{i}"],
            flagged=counts[f"t{FLAG}_{i}"],
            escalated=counts[f"t{ESCALATE}_{i}"],
            halted=counts[f"t{HALT}_{i}"],
            overruled=counts[f"overruled_{i}"],
            overruled_at_once=counts[f"at_once_{i}"],
        )
        for i, one in enumerate(rules)
    ]


# ---------------------------------------------------------------- suggestions

# Judged escalations read per agent and reason, the latest first.
PER_GROUP = 200


def judged_history(
    *,
    domain: str,
    now: datetime,
    calibrated: bool,
    days: int = WINDOW_DAYS,
    per_group: int = PER_GROUP,
) -> list[Judged]:
    """The judged escalations of the backtest's window, the latest `per_group` of each
    agent and reason, as the pure suggestions read them (one query): agreed unless
    OVERRULED, and with `calibrated` the confidence a calibrated policy reads."""
    rows = (
        _window(domain, now, days)
        .filter(JUDGED)
        .annotate(
            bt_latest=Window(
                RowNumber(),
                partition_by=[F("agent_id"), F("reason")],
                order_by=[F("created_at").desc(), F("pk")],
            ),
            bt_overruled=ExpressionWrapper(OVERRULED, output_field=BooleanField()),
            bt_calibrated=calibrated_confidence()
            if calibrated
            else Value(None, output_field=FloatField()),
        )
        .filter(bt_latest__lte=per_group)
    )
    fields = ("agent__name", "reason", "confidence", "bt_calibrated", "is_irreversible", "attempts")
    return [
        Judged(
            agent,
            Situation(
                confidence=confidence,
                irreversible=irreversible,
                attempts=attempts,
                planned_scope=planned,
                actual_scope=actual,
                novel=reason == Escalation.Reason.NOVELTY,
                reason=reason,
                calibrated_confidence=calibrated_value,
            ),
            not overruled,
        )
        for agent, reason, confidence, calibrated_value, irreversible, attempts, planned, actual, overruled in (
            rows.order_by().values_list(*fields, "bt_planned", "bt_actual", "bt_overruled")
        )
    ]


def suggestions(rules: Rules, *, now: datetime) -> Suggestions:
    """What the domain's judged history of the backtest's window suggests of `rules`."""
    return suggest(
        rules, judged_history(domain=rules.domain, now=now, calibrated=rules.tier_by_calibrated)
    )
