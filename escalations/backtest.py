"""The backtest: how a domain's recent escalations would have been tiered under other rules.

One aggregate query over the window's escalations, left-joined to their decisions and flag
reviews: a CASE expression re-tiers every row exactly as policy.verdict_for would (the
confidence thresholds, then the floors: irreversible, retry cap, scope, novelty), and
conditional counts add the tiers up. Several rule sets are counted in the same scan, so the
page shows the saved policy and the thresholds being typed side by side. The SQL is the
ORM's, so it runs on SQLite and PostgreSQL alike.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Case, Count, F, FloatField, Q, Value, When
from django.db.models.fields.json import KT
from django.db.models.functions import Cast

from .models import Decision, Escalation, FlagReview
from .policy import AUTONOMOUS, ESCALATE, FLAG, HALT, Rules

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

    @property
    def decided_at_once(self) -> int:
        """What the policy would decide without a person (tiers 1-2, when auto-decide is on)."""
        return self.auto_decided + self.flagged if self.rules.auto_decide else 0


def _tier(rules: Rules) -> Case:
    """The tier of a row under `rules`, as SQL (mirrors policy.verdict_for)."""
    floor = (
        Q(is_irreversible=True)
        | Q(attempts__gte=rules.retry_cap)
        | Q(bt_actual__gt=F("bt_planned") * Value(1 + rules.scope_tolerance))
    )
    if rules.novelty_escalates:
        floor |= Q(reason=Escalation.Reason.NOVELTY)
    return Case(
        When(confidence__lt=rules.escalate_threshold, then=Value(HALT)),
        When(floor, then=Value(ESCALATE)),
        When(confidence__lt=rules.flag_threshold, then=Value(ESCALATE)),
        When(confidence__lt=rules.autonomous_threshold, then=Value(FLAG)),
        default=Value(AUTONOMOUS),
    )


# A person chose otherwise than the recommended option.
OVERRULED = Q(
    decision__decided_by_type=Decision.DecidedBy.HUMAN, decision__took_recommended=False
) | Q(flag_review__verdict=FlagReview.Verdict.OTHER)


def backtest(*, domain: str, rules: list[Rules], now: datetime, days: int = WINDOW_DAYS) -> list[Backtest]:
    """Count the escalations of `domain` created in the `days` before `now` under each of
    `rules` (one query, whatever their number). Returns one Backtest per rules, in order."""
    rows = Escalation.objects.filter(
        domain=domain, created_at__gte=now - timedelta(days=days), created_at__lt=now
    ).annotate(
        bt_planned=Cast(KT("action__planned_scope"), FloatField()),
        bt_actual=Cast(KT("action__actual_scope"), FloatField()),
    )
    aggregates = {"total": Count("pk")}
    for i, one in enumerate(rules):
        tier = _tier(one)
        rows = rows.annotate(**{f"bt_tier_{i}": tier})
        for number in (AUTONOMOUS, FLAG, ESCALATE, HALT):
            aggregates[f"t{number}_{i}"] = Count("pk", filter=Q(**{f"bt_tier_{i}": number}))
        aggregates[f"overruled_{i}"] = Count(
            "pk", filter=Q(**{f"bt_tier_{i}": AUTONOMOUS}) & OVERRULED
        )
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
        )
        for i, one in enumerate(rules)
    ]
