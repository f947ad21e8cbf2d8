"""Reads of the insights page: sums over the rollup tables for a date range, agent and
domain. Never touches the escalation tables (the rollups are the page's only source)."""

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.db.models import Case, F, IntegerField, QuerySet, Sum, When
from django.db.models.functions import TruncWeek

from escalations.models import Agent

from . import stats
from .models import (
    CLAIM_BUCKETS,
    DECIDE_BUCKETS,
    REVIEW_BUCKETS,
    ActivityRollup,
    CalibrationRollup,
    DriftAlert,
    EscalationRollup,
    MachineRollup,
    OutcomeRollup,
    ReviewerRollup,
)

# Up to this many days a chart has a point per day; longer ranges get one per ISO week.
DAILY_UP_TO_DAYS = 31


@dataclass(frozen=True)
class Filters:
    start: date  # inclusive, UTC days
    end: date  # inclusive
    agent_id: int | None = None
    domain: str | None = None

    @property
    def by_week(self) -> bool:
        return (self.end - self.start).days + 1 > DAILY_UP_TO_DAYS

    def period(self, day: date) -> date:
        """The point a day belongs to: the day itself, or its week's Monday."""
        return day - timedelta(days=day.weekday()) if self.by_week else day

    def periods(self) -> list[date]:
        seen: dict[date, None] = {}
        day = self.start
        while day <= self.end:
            seen[self.period(day)] = None
            day += timedelta(days=1)
        return list(seen)


def scoped(model, f: Filters) -> QuerySet:
    qs = model.objects.filter(day__gte=f.start, day__lte=f.end)
    if f.agent_id is not None:
        qs = qs.filter(agent_id=f.agent_id)
    if f.domain:
        qs = qs.filter(domain=f.domain)
    return qs.order_by()


def _sum_by(qs: QuerySet, keys: list[str], fields: list[str]) -> list[dict]:
    return list(qs.values(*keys).annotate(**{name: Sum(name) for name in fields}))


def _rename(rows: list[dict]) -> list[dict]:
    for row in rows:
        if "agent__name" in row:
            row["agent"] = row.pop("agent__name")
    return rows


def _by_period(qs: QuerySet, f: Filters) -> QuerySet:
    """Annotate `period`: the day, or (weekly points) its week's Monday, truncated in SQL
    so a long range returns one row per week, not per day."""
    return qs.annotate(period=TruncWeek("day") if f.by_week else F("day"))


def activity_rows(f: Filters) -> list[dict]:
    """Gate checks, runs and escalations (and of them, those without a gate call) per
    period, agent and domain."""
    return _sum_by(
        _by_period(scoped(ActivityRollup, f), f),
        ["period", "agent__name", "domain"],
        ["gate_checks", "runs", "escalations", "ungated_escalations"],
    )


def escalations_by_period(f: Filters, key: str) -> dict[tuple[date, object], int]:
    """{(period, reason or tier): escalations}. Reasons come from EscalationRollup, tiers
    from OutcomeRollup (fewer rows: no reason)."""
    model = EscalationRollup if key == "reason" else OutcomeRollup
    rows = _sum_by(_by_period(scoped(model, f), f), ["period", key], ["escalations"])
    return {(row["period"], row[key]): row["escalations"] for row in rows}


OUTCOME_FIELDS = [
    "escalations",
    "decided",
    "human_decided",
    "took_recommended",
    "claimed",
    "with_deadline",
    "within_deadline",
    "expired",
]


def outcomes_by(f: Filters, key: str, histograms: bool = False) -> list[dict]:
    """OutcomeRollup sums per tier (key="tier") or per agent (key="agent__name"), with
    the duration histograms' bucket columns when asked."""
    fields = OUTCOME_FIELDS + (CLAIM_BUCKETS + DECIDE_BUCKETS if histograms else [])
    return _rename(_sum_by(scoped(OutcomeRollup, f), [key], fields))


def duration_histograms(outcomes: list[dict]) -> dict[tuple[int, str], list[int]]:
    """{(tier, "claim" or "decide"): bucket counts}, from outcomes_by(f, "tier")."""
    out = {}
    for row in outcomes:
        out[(row["tier"], "claim")] = [row[name] for name in CLAIM_BUCKETS]
        out[(row["tier"], "decide")] = [row[name] for name in DECIDE_BUCKETS]
    return out


def calibration_bins(f: Filters) -> dict[str, list[stats.BinSums]]:
    """{agent: [BinSums per confidence bin]}."""
    out: dict[str, list[stats.BinSums]] = defaultdict(
        lambda: [stats.BinSums() for _ in range(stats.CONFIDENCE_BINS)]
    )
    fields = ["n", "agreed", "sum_confidence", "sum_confidence_sq", "sum_confidence_agreed"]
    for row in _sum_by(scoped(CalibrationRollup, f), ["agent__name", "bin"], fields):
        out[row["agent__name"]][row["bin"]] = stats.BinSums(
            row["n"],
            row["agreed"],
            row["sum_confidence"],
            row["sum_confidence_sq"],
            row["sum_confidence_agreed"],
        )
    return dict(out)


MACHINE_FIELDS = ["recommended", "recommended_agreed", "decided", "decided_agreed"]


def machine_agreement(f: Filters) -> list[dict]:
    """MachineRollup sums per machine reviewer (the escalations' agent and domain filtered)."""
    return sorted(_sum_by(scoped(MachineRollup, f), ["reviewer"], MACHINE_FIELDS), key=lambda r: r["reviewer"])


def daily_escalations_by_agent(f: Filters) -> dict[str, list[int]]:
    """{agent: escalations of each day with any} (for budget use)."""
    out: dict[str, list[int]] = defaultdict(list)
    for row in _sum_by(scoped(ActivityRollup, f), ["agent__name", "day"], ["escalations"]):
        if row["escalations"]:
            out[row["agent__name"]].append(row["escalations"])
    return dict(out)


def budgets(names) -> dict[str, int]:
    return dict(Agent.objects.filter(name__in=list(names)).values_list("name", "daily_budget"))


def reviewer_histograms(f: Filters) -> dict[str, list[int]]:
    """{reviewer: decisions per duration bucket}."""
    rows = _sum_by(scoped(ReviewerRollup, f), ["reviewer"], REVIEW_BUCKETS)
    return {row["reviewer"]: [row[name] for name in REVIEW_BUCKETS] for row in rows}


def drift_alerts_sent(f: Filters) -> list[tuple[date, str]]:
    """(UTC day, agent) of each drift alert raised (and so notified: services.drift_check
    sends it in the alert's transaction) within the range, for the filters' agent, or the
    agents of the filters' domain."""
    start = datetime.combine(f.start, datetime.min.time(), tzinfo=UTC)
    end = datetime.combine(f.end + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    alerts = DriftAlert.objects.filter(created_at__gte=start, created_at__lt=end)
    if f.agent_id is not None:
        alerts = alerts.filter(agent_id=f.agent_id)
    if f.domain:
        alerts = alerts.filter(agent__domain=f.domain)
    return [
        (at.astimezone(UTC).date(), name)
        for at, name in alerts.order_by("created_at").values_list("created_at", "agent__name")
    ]


def has_data(f: Filters) -> bool:
    return scoped(ActivityRollup, f).exists()


# ---------------------------------------------------------------- drift


@dataclass(frozen=True)
class DriftRow:
    agent_id: int
    agent: str
    result: stats.DriftResult
    domain: str = ""  # the agent's own domain (its policy)


@dataclass(frozen=True)
class DriftReport:
    week_start: date
    today: date
    baseline_start: date
    rows: list[DriftRow]

    @property
    def drifting(self) -> list[DriftRow]:
        return [row for row in self.rows if row.result.is_drifting]


def drift_report(*, now: datetime) -> DriftReport:
    """Every agent's escalations and gate checks this week (Monday to today, UTC) and in
    the DRIFT_BASELINE_WEEKS weeks before, with the drift test's verdict."""
    today = now.astimezone(UTC).date()
    week_start = today - timedelta(days=today.weekday())
    baseline_start = week_start - timedelta(weeks=stats.DRIFT_BASELINE_WEEKS)
    this_week = {"day__gte": week_start}

    def part(field, when):
        return Sum(Case(When(**when, then=field), default=0, output_field=IntegerField()))

    rows = (
        ActivityRollup.objects.filter(day__gte=baseline_start, day__lte=today)
        .values("agent_id", "agent__name", "agent__domain")
        .annotate(
            esc=part("escalations", this_week),
            gates=part("gate_checks", this_week),
            base_esc=part("escalations", {"day__lt": week_start}),
            base_gates=part("gate_checks", {"day__lt": week_start}),
        )
        .order_by("agent__name")
    )
    return DriftReport(
        week_start,
        today,
        baseline_start,
        [
            DriftRow(
                r["agent_id"],
                r["agent__name"],
                stats.drift_test(r["esc"], r["gates"], r["base_esc"], r["base_gates"]),
                r["agent__domain"],
            )
            for r in rows
        ],
    )
