"""Every write of the insights app: rebuilding rollup days and raising drift alerts.

Reads of the escalation tables happen here only to aggregate them, a day at a time, along
the (agent, created_at) index; the page itself reads only the rollups (selectors).
"""

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta

from django.db import transaction
from django.db.models import Count, Min, OuterRef, Q, Subquery, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from escalations.models import Agent, Decision, Escalation, Event, FlagReview, GateCheck, Run
from escalations.models.escalations import CLOSED
from escalations.services import calibration_store
from escalations.signals import notable_in_transaction

from . import machine, selectors, stats
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
    RollupState,
)

log = logging.getLogger(__name__)

ROLLUP_MODELS = (
    ActivityRollup,
    EscalationRollup,
    OutcomeRollup,
    CalibrationRollup,
    ReviewerRollup,
    MachineRollup,
)
# The periodic refresh always redoes this many most recent days, besides the dirty ones.
RECENT_DAYS = 2
# Rows stamped just before the watermark may commit just after it was read.
WATERMARK_OVERLAP = timedelta(minutes=5)
BULK_BATCH = 2000
# Longer than a first full rebuild takes at a million escalations (a few minutes).
REFRESH_LEASE = timedelta(minutes=30)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


def _utc_day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


# ---------------------------------------------------------------- aggregation (no ORM)


def aggregate_escalations(rows: Iterable[tuple], day: date) -> dict[type, list]:
    """Turn one day's escalation rows into unsaved rollup rows, per model.

    A row: (agent_id, domain, reason, tier, confidence, created_at, respond_by,
    first_claim_at, last_claim_at, decided_at, decided_by_type, decided_by_name,
    took_recommended, flag_verdict, status).

    Judged (the agents' calibration): human decisions, and people's reviews of policy
    decisions. A machine reviewer's decision is no human judgement of the agent, and a
    review of one judges the machine (insights.machine), so both stay out; so does the
    machine's time from the people's time to decision.
    """
    by_reason: Counter = Counter()
    activity: Counter = Counter()
    outcome: dict[tuple, Counter] = defaultdict(Counter)
    calibration: dict[tuple, stats.BinSums] = defaultdict(stats.BinSums)
    reviewers: dict[tuple, Counter] = defaultdict(Counter)
    for (
        agent_id,
        domain,
        reason,
        tier,
        confidence,
        created_at,
        respond_by,
        first_claim_at,
        last_claim_at,
        decided_at,
        decided_by_type,
        decided_by_name,
        took_recommended,
        flag_verdict,
        status,
    ) in rows:
        key = (agent_id, domain)
        activity[key] += 1
        by_reason[(*key, reason)] += 1
        out = outcome[(*key, tier)]
        out["escalations"] += 1
        if first_claim_at is not None:
            out["claimed"] += 1
            seconds = (first_claim_at - created_at).total_seconds()
            out[CLAIM_BUCKETS[stats.duration_bucket(seconds)]] += 1
        if respond_by is not None:
            out["with_deadline"] += 1
            if (
                decided_at is not None
                and decided_by_type != Decision.DecidedBy.TIMEOUT
                and decided_at <= respond_by
            ):
                out["within_deadline"] += 1
        if decided_at is not None:
            out["decided"] += 1
        if status == Escalation.Status.EXPIRED:
            out["expired"] += 1
        if decided_at is not None and decided_by_type == Decision.DecidedBy.HUMAN:
            out["human_decided"] += 1
            out["took_recommended"] += bool(took_recommended)
            seconds = (decided_at - created_at).total_seconds()
            out[DECIDE_BUCKETS[stats.duration_bucket(seconds)]] += 1
            started = last_claim_at if last_claim_at and last_claim_at <= decided_at else created_at
            bucket = stats.duration_bucket((decided_at - started).total_seconds())
            reviewer = reviewers[(*key, decided_by_name)]
            reviewer["decisions"] += 1
            reviewer[REVIEW_BUCKETS[bucket]] += 1
            judged = bool(took_recommended)
        elif flag_verdict is not None and decided_by_type == Decision.DecidedBy.POLICY:
            judged = flag_verdict == "fine"
        else:
            continue
        calibration[(*key, stats.confidence_bin(confidence))] += stats.BinSums.of(
            confidence, judged
        )

    def base(agent_id, domain):
        return {"day": day, "agent_id": agent_id, "domain": domain}

    return {
        ActivityRollup: [
            ActivityRollup(**base(*key), escalations=n) for key, n in activity.items()
        ],
        EscalationRollup: [
            EscalationRollup(**base(a, d), reason=r, escalations=n)
            for (a, d, r), n in by_reason.items()
        ],
        OutcomeRollup: [
            OutcomeRollup(**base(a, d), tier=t, **counts) for (a, d, t), counts in outcome.items()
        ],
        CalibrationRollup: [
            CalibrationRollup(
                **base(a, d),
                bin=b,
                n=s.n,
                agreed=s.agreed,
                sum_confidence=s.sum_c,
                sum_confidence_sq=s.sum_c2,
                sum_confidence_agreed=s.sum_cy,
            )
            for (a, d, b), s in calibration.items()
        ],
        ReviewerRollup: [
            ReviewerRollup(**base(a, d), reviewer=r, **counts)
            for (a, d, r), counts in reviewers.items()
        ],
    }


# ---------------------------------------------------------------- rebuilding days


def _escalation_rows(day: date, agent_ids: list[int]):
    start, end = day_bounds(day)
    # agent_id IN (...) lets the (agent, created_at) index serve the day's range.
    return _rows_of(
        Escalation.objects.filter(agent_id__in=agent_ids, created_at__gte=start, created_at__lt=end)
    )


def _rows_of(escalations):
    """aggregate_escalations' rows for a queryset of escalations."""
    claims = Event.objects.filter(escalation=OuterRef("pk"), kind=Event.Kind.CLAIMED)
    return (
        escalations.annotate(
            first_claim_at=Subquery(claims.order_by("at").values("at")[:1]),
            last_claim_at=Subquery(claims.order_by("-at").values("at")[:1]),
        )
        .order_by()
        .values_list(*ROW_FIELDS)
        .iterator(chunk_size=5000)
    )


ROW_FIELDS = (
    "agent_id",
    "domain",
    "reason",
    "tier",
    "confidence",
    "created_at",
    "respond_by",
    "first_claim_at",
    "last_claim_at",
    "decision__decided_at",
    "decision__decided_by_type",
    "decision__decided_by_name",
    "decision__took_recommended",
    "flag_review__verdict",
    "status",
)
CREATED_AT = ROW_FIELDS.index("created_at")


def _daily_counts(queryset, field: str, domain_field: str, first: date, last: date) -> dict:
    """{(day, agent_id, domain): count} of rows whose `field` falls in [first, last]."""
    start, end = day_bounds(first)[0], day_bounds(last)[1]
    rows = (
        queryset.filter(**{f"{field}__gte": start, f"{field}__lt": end})
        .annotate(day=TruncDate(field, tzinfo=UTC))
        .values("day", "agent_id", domain_field)
        .annotate(n=Count("id"))
        .order_by()
    )
    return {(r["day"], r["agent_id"], r[domain_field]): r["n"] for r in rows}


# An escalation follows a gate call when its agent asked POST /gate for the same run (run_id)
# at most this long before it; the others are counted apart (ungated_escalations).
GATE_LOOKBACK = timedelta(hours=24)


def ungated_counts(escalations) -> Counter:
    """{(day, agent_id, domain): escalations with no gate call of their run in the
    GATE_LOOKBACK before them}, for a queryset of escalations."""
    rows = list(escalations.order_by().values_list("agent_id", "domain", "run__run_id", "created_at"))
    if not rows:
        return Counter()
    first = min(row[3] for row in rows) - GATE_LOOKBACK
    last = max(row[3] for row in rows)
    calls: dict[tuple, list[datetime]] = defaultdict(list)
    gates = GateCheck.objects.filter(
        agent_id__in={row[0] for row in rows}, at__gte=first, at__lte=last
    ).exclude(run_id="")
    for agent_id, run_id, moment in gates.order_by().values_list("agent_id", "run_id", "at"):
        calls[(agent_id, run_id)].append(moment)
    out: Counter = Counter()
    for agent_id, domain, run_id, created in rows:
        moments = calls.get((agent_id, run_id), ())
        if not any(created - GATE_LOOKBACK <= moment <= created for moment in moments):
            out[(_utc_day(created), agent_id, domain)] += 1
    return out


def rollups_rebuild(*, days: Iterable[date]) -> int:
    """Recompute every rollup row of the given UTC days from the source tables.

    Per day, one transaction replaces the day's rows (delete, then bulk insert), so a
    reader sees the old day or the new one. Idempotent. Returns how many days were done.
    """
    days = sorted(set(days))
    if not days:
        return 0
    agent_ids = list(Agent.objects.values_list("id", flat=True))
    gate = _daily_counts(GateCheck.objects.all(), "at", "domain", days[0], days[-1])
    runs = _daily_counts(Run.objects.all(), "created_at", "agent__domain", days[0], days[-1])
    for day in days:
        built = aggregate_escalations(_escalation_rows(day, agent_ids), day)
        start, end = day_bounds(day)
        of_day = Escalation.objects.filter(agent_id__in=agent_ids, created_at__gte=start, created_at__lt=end)
        ungated = ungated_counts(of_day)
        built[MachineRollup] = machine.aggregate(machine.judgements(of_day)).get(day, [])
        activity = {(r.agent_id, r.domain): r for r in built[ActivityRollup]}
        for row in activity.values():
            row.ungated_escalations = ungated[(day, row.agent_id, row.domain)]
        for counts, field in ((gate, "gate_checks"), (runs, "runs")):
            for (d, agent_id, domain), n in counts.items():
                if d != day:
                    continue
                row = activity.setdefault(
                    (agent_id, domain), ActivityRollup(day=day, agent_id=agent_id, domain=domain)
                )
                setattr(row, field, n)
        built[ActivityRollup] = list(activity.values())
        with transaction.atomic():
            for model in ROLLUP_MODELS:
                model.objects.filter(day=day, archived=False).delete()
                model.objects.bulk_create(built[model], batch_size=BULK_BATCH)
    return len(days)


def rollups_archive(*, escalations) -> set[date]:
    """Keep what `escalations` (a queryset, about to be purged) contribute to the rollups:
    their figures are added to the archived rows of their days, which no rebuild touches.
    Run it in the purge's transaction under the rollup lease (rollup_lease), then delete
    the escalations, then rebuild the returned days (their live rows still count them).
    Returns the UTC days the escalations were created on."""
    by_day: dict[date, list[tuple]] = defaultdict(list)
    for row in _rows_of(escalations):
        by_day[_utc_day(row[CREATED_AT])].append(row)
    ungated = ungated_counts(escalations)
    for judged in machine.aggregate(machine.judgements(escalations)).values():
        _add_to_archived(MachineRollup, judged)
    for day, rows in by_day.items():
        for model, built in aggregate_escalations(rows, day).items():
            for row in built if model is ActivityRollup else ():
                row.ungated_escalations = ungated[(day, row.agent_id, row.domain)]
            _add_to_archived(model, built)
    return set(by_day)


def _add_to_archived(model, rows: list) -> None:
    """Add `rows` (unsaved, archived or not) to the model's archived rows of the same key."""
    if not rows:
        return
    (constraint,) = model._meta.constraints
    key_fields = [name for name in constraint.fields if name != "archived"]
    key_fields = [f"{name}_id" if name == "agent" else name for name in key_fields]
    counted = [
        f.attname for f in model._meta.concrete_fields
        if not f.primary_key and f.attname not in key_fields and f.name != "archived"
    ]

    def key(row) -> tuple:
        return tuple(getattr(row, name) for name in key_fields)

    days = {row.day for row in rows}
    existing = {
        key(row): row
        for row in model.objects.select_for_update().filter(day__in=days, archived=True)
    }
    # Rows that grow are replaced (a delete and an insert cost less than bulk_update's
    # CASE per column and row).
    replaced, written = [], []
    for row in rows:
        kept = existing.get(key(row))
        if kept is not None:
            replaced.append(kept.pk)
            for name in counted:
                setattr(row, name, getattr(kept, name) + getattr(row, name))
        row.archived = True
        written.append(row)
    model.objects.filter(pk__in=replaced).delete()
    model.objects.bulk_create(written, batch_size=BULK_BATCH)


@contextmanager
def rollup_lease(now: datetime) -> Iterator[bool]:
    """Hold the rollups' lease (one writer of rollup days at a time: two would race on a
    day) for the block, by compare-and-swap on the RollupState row. Yields False at once,
    holding nothing, while another holds it."""
    RollupState.objects.get_or_create(pk=1)
    free = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    if not RollupState.objects.filter(free, pk=1).update(lease_until=now + REFRESH_LEASE):
        yield False
        return
    try:
        yield True
    finally:
        RollupState.objects.filter(pk=1).update(lease_until=None)


def _days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _dirty_days(since: datetime) -> set[date]:
    """Days whose escalations changed since `since`: decided, flag-reviewed or expired since then
    (decided_at is indexed; flag reviews are few). A claim alone on an older day shows up
    when that escalation is decided."""
    created = set(
        Decision.objects.filter(decided_at__gte=since).values_list(
            "escalation__created_at", flat=True
        )
    )
    created |= set(
        FlagReview.objects.filter(at__gte=since).values_list("escalation__created_at", flat=True)
    )
    created |= set(  # expired since: a range of esc_closed_change_idx, not every expiry ever
        Escalation.objects.filter(CLOSED, status=Escalation.Status.EXPIRED, updated_at__gte=since)
        .order_by()
        .values_list("created_at", flat=True)
    )
    return {_utc_day(moment) for moment in created}


def rollups_refresh(*, now: datetime | None = None) -> int:
    """The periodic job: rebuild the days that may have changed since the last refresh.

    The first refresh rebuilds every day since the first gate check, run or escalation;
    later ones redo the last RECENT_DAYS days, the days since the watermark, and the days
    of escalations decided or flag-reviewed since then. One refresh at a time: it takes a
    lease on the RollupState row by compare-and-swap, and returns 0 at once while another
    holds it. Returns how many days were rebuilt.
    """
    now = now or timezone.now()
    today = _utc_day(now)
    with rollup_lease(now) as held:
        if not held:
            log.info("rollups: another refresh holds the lease")
            return 0
        state = RollupState.objects.get(pk=1)
        if state.refreshed_at is None:
            firsts = [
                Escalation.objects.aggregate(m=Min("created_at"))["m"],
                GateCheck.objects.aggregate(m=Min("at"))["m"],
                Run.objects.aggregate(m=Min("created_at"))["m"],
            ]
            first = min((_utc_day(m) for m in firsts if m is not None), default=today)
            days = set(_days_between(first, today))
        else:
            since = state.refreshed_at - WATERMARK_OVERLAP
            start = min(_utc_day(since), today - timedelta(days=RECENT_DAYS))
            days = set(_days_between(start, today)) | _dirty_days(since)
        done = rollups_rebuild(days=days)
        calibration_refresh(now=now)
        RollupState.objects.filter(pk=1).update(refreshed_at=now)
    return done


def calibration_refresh(*, now: datetime | None = None) -> int:
    """Store the agents' calibration maps from the calibration rollups (every day, archived
    ones included): escalations.services.calibration_store. Returns the maps in use."""
    sums = (
        CalibrationRollup.objects.values_list("agent_id", "domain", "bin")
        .annotate(total=Sum("n"), yes=Sum("agreed"))
        .order_by()
    )
    counts = {(agent_id, domain, number): (n, agreed) for agent_id, domain, number, n, agreed in sums}
    return calibration_store(counts=counts, now=now)


# ---------------------------------------------------------------- drift


def drift_check(*, now: datetime | None = None) -> list[DriftAlert]:
    """Raise a DriftAlert for each agent drifting this week (selectors.drift_report) that
    has none for this week yet, and send `notable` (event="drift_alert") for each new one
    in its transaction. The unique (agent, week_start) makes it once per agent-week, even with
    two checks running at once. Returns the alerts created by this call."""
    report = selectors.drift_report(now=now or timezone.now())
    created = []
    for row in report.rows:
        r = row.result
        if not r.is_drifting or r.p_value is None:  # drifting: p_value was tested
            continue
        with transaction.atomic():
            alert, was_created = DriftAlert.objects.get_or_create(
                agent_id=row.agent_id,
                week_start=report.week_start,
                defaults={
                    "escalations": r.escalations,
                    "gate_checks": r.exposure,
                    "baseline_escalations": r.baseline_escalations,
                    "baseline_gate_checks": r.baseline_exposure,
                    "p_value": r.p_value,
                },
            )
            if was_created:
                _announce_drift(alert)
                created.append(alert)
    return created


def _announce_drift(alert: DriftAlert) -> None:
    """In the alert's transaction: the notifications' outbox rows commit with it."""
    notable_in_transaction(
        "drift_alert",
        agent=alert.agent,
        data={
            "week_start": alert.week_start.isoformat(),
            "escalations": alert.escalations,
            "gate_checks": alert.gate_checks,
            "baseline_escalations": alert.baseline_escalations,
            "baseline_gate_checks": alert.baseline_gate_checks,
            "p_value": alert.p_value,
        },
    )
    log.info("drift alert for %s, week of %s", alert.agent.name, alert.week_start)
