"""Rollups: a hand-computed day, the periodic refresh equal to a full recompute, the pure
statistics (percentiles from buckets, ECE and Brier) on hand-computed cases."""

from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from insights import services, stats
from insights.models import (
    CLAIM_BUCKETS,
    DECIDE_BUCKETS,
    REVIEW_BUCKETS,
    ActivityRollup,
    CalibrationRollup,
    EscalationRollup,
    OutcomeRollup,
    ReviewerRollup,
    RollupState,
)
from tests.conftest import index_plan, need
from tests.insights_data import DAY, NEXT_DAY, at, build_day, claim, create, decide, gate

ALL = services.ROLLUP_MODELS


def snapshot() -> dict:
    """Every rollup row, without ids, as comparable tuples."""
    out = {}
    for model in ALL:
        names = [f.attname for f in model._meta.concrete_fields if f.attname != "id"]
        rows = model.objects.values_list(*names)
        out[model.__name__] = sorted(
            tuple(round(v, 9) if isinstance(v, float) else v for v in row) for row in rows
        )
    return out


# ---------------------------------------------------------------- pure statistics


@pytest.mark.parametrize(
    ("seconds", "bucket"),
    [
        (0, 0),
        (60, 0),
        (61, 1),
        (300, 1),
        (1800, 3),
        (1801, 4),
        (7 * 86400, 10),
        (7 * 86400 + 1, 11),
    ],
)
def test_duration_buckets_have_inclusive_upper_edges(seconds, bucket):
    assert stats.duration_bucket(seconds) == bucket


def test_quantile_interpolates_within_the_bucket_that_holds_it():
    counts = [0] * stats.DURATION_BUCKETS
    counts[1] = 2  # two durations in (60 s, 300 s]
    counts[3] = 2  # two in (900 s, 1800 s]
    # p50: the 2nd of 4 is the top of bucket 1 -> 300 s; p90: 3.6 of 4 -> 0.8 into bucket 3.
    assert stats.quantile(counts, 0.5) == pytest.approx(300)
    assert stats.quantile(counts, 0.9) == pytest.approx(900 + 900 * 0.8)
    assert stats.quantile([0] * stats.DURATION_BUCKETS, 0.5) is None
    open_ended = [0] * stats.DURATION_BUCKETS
    open_ended[-1] = 1
    assert stats.quantile(open_ended, 0.5) == 7 * 86400


def test_ece_and_brier_on_a_hand_computed_case():
    # (confidence, agreed): bin 0.9 holds 0.9 yes, 0.9 yes, 0.95 no; bin 0.6 holds 0.6 no.
    judged = [(0.9, True), (0.9, True), (0.95, False), (0.6, False)]
    bins = [stats.BinSums() for _ in range(stats.CONFIDENCE_BINS)]
    for c, y in judged:
        bins[stats.confidence_bin(c)] += stats.BinSums.of(c, y)
    # bin 9: mean confidence 2.75/3, agreement 2/3; bin 6: 0.6 against 0.
    ece = 3 / 4 * abs(2.75 / 3 - 2 / 3) + 1 / 4 * 0.6
    brier = ((0.9 - 1) ** 2 * 2 + 0.95**2 + 0.6**2) / 4
    assert stats.expected_calibration_error(bins) == pytest.approx(ece)  # 0.3375
    assert stats.brier_score(bins) == pytest.approx(brier)  # 0.33625
    assert stats.expected_calibration_error([stats.BinSums()]) is None
    assert stats.brier_score([stats.BinSums()]) is None


def test_confidence_one_falls_in_the_last_bin():
    assert stats.confidence_bin(1.0) == stats.CONFIDENCE_BINS - 1
    assert stats.confidence_bin(0.0) == 0


# ---------------------------------------------------------------- rollups from the database


def test_a_hand_computed_day_rolls_up_to_its_numbers(agent, reviewer):
    build_day(agent, reviewer)
    assert services.rollups_rebuild(days=[DAY]) == 1

    activity = ActivityRollup.objects.get()
    assert (activity.day, activity.domain) == (DAY, "default")
    assert (activity.escalations, activity.gate_checks, activity.runs) == (4, 10, 4)
    reasons = dict(EscalationRollup.objects.values_list("reason", "escalations"))
    assert reasons == {"approach_choice": 3, "missing_information": 1}
    outcomes = {o.tier: o for o in OutcomeRollup.objects.all()}
    assert (outcomes[3].human_decided, outcomes[3].took_recommended) == (1, 1)
    assert (outcomes[3].with_deadline, outcomes[3].within_deadline) == (1, 1)
    assert (outcomes[4].human_decided, outcomes[4].took_recommended, outcomes[4].claimed) == (
        1,
        0,
        1,
    )
    assert (outcomes[1].decided, outcomes[1].human_decided, outcomes[2].decided) == (1, 0, 1)
    assert {tier: o.escalations for tier, o in outcomes.items()} == {1: 1, 2: 1, 3: 1, 4: 1}

    def buckets(row, names):
        return {i: n for i, n in enumerate(getattr(row, name) for name in names) if n}

    assert buckets(outcomes[3], CLAIM_BUCKETS) == {1: 1}  # 4 min
    assert buckets(outcomes[3], DECIDE_BUCKETS) == {3: 1}  # 20 min
    assert buckets(outcomes[4], CLAIM_BUCKETS) == {3: 1}  # 30 min (1800 s, inclusive)
    assert buckets(outcomes[4], DECIDE_BUCKETS) == {5: 1}  # 2 h (7200 s, inclusive)
    assert buckets(outcomes[1], CLAIM_BUCKETS) == buckets(outcomes[1], DECIDE_BUCKETS) == {}
    alice = ReviewerRollup.objects.get()
    assert (alice.reviewer, alice.decisions) == ("alice", 2)
    assert buckets(alice, REVIEW_BUCKETS) == {3: 1, 5: 1}  # 16 min and 90 min from her claims
    bins = {
        c.bin: (c.n, c.agreed, round(c.sum_confidence, 6)) for c in CalibrationRollup.objects.all()
    }
    # e1 agreed (0.62), e2 did not (0.40), e4's flag review said another option (0.80).
    assert bins == {6: (1, 1, 0.62), 4: (1, 0, 0.4), 8: (1, 0, 0.8)}


def test_rebuilding_a_day_replaces_its_rows(agent, reviewer):
    build_day(agent, reviewer)
    services.rollups_rebuild(days=[DAY])
    first = snapshot()
    services.rollups_rebuild(days=[DAY])
    assert snapshot() == first


def test_the_periodic_refresh_equals_a_full_recompute(agent, reviewer):
    # given a first day, rolled up by a refresh at the end of it
    build_day(agent, reviewer)
    # the first refresh does every day since the first row
    assert services.rollups_refresh(now=at(15, 30)) == 1
    # when, the next day, new escalations arrive, an old open one is decided, and a refresh runs
    late = create(agent, "r5", 0.55, at(16))  # created on DAY after the refresh, decided later
    gate(agent, at(9, day=NEXT_DAY), 5)
    e6 = create(agent, "r6", 0.30, at(10, day=NEXT_DAY))
    claim(e6, reviewer, at(10, 10, day=NEXT_DAY))
    decide(e6, reviewer, at(10, 40, day=NEXT_DAY), "update-callers")
    claim(late, reviewer, at(11, day=NEXT_DAY))
    decide(late, reviewer, at(11, 5, day=NEXT_DAY), "shim")
    with time_machine.travel(at(12, day=NEXT_DAY), tick=False):
        services.rollups_refresh()
    incremental = snapshot()
    # then a full recompute of every day gives the same rows
    for model in ALL:
        model.objects.all().delete()
    RollupState.objects.all().delete()
    services.rollups_refresh(now=at(12, day=NEXT_DAY))
    assert snapshot() == incremental
    assert ActivityRollup.objects.get(day=DAY).escalations == 5
    assert ActivityRollup.objects.get(day=NEXT_DAY).gate_checks == 5


def test_a_refresh_redoes_an_old_day_whose_escalation_was_decided_since(agent, reviewer):
    old = create(agent, "old", 0.6, at(10))
    services.rollups_refresh(now=at(11))
    later = at(10) + timedelta(days=10)
    claim(old, reviewer, later)
    decide(old, reviewer, later + timedelta(minutes=5), "update-callers")
    # ten days on: DAY is neither recent nor after the watermark, only dirty
    services.rollups_refresh(now=later + timedelta(minutes=10))
    outcome = OutcomeRollup.objects.get(day=DAY)
    assert (outcome.human_decided, outcome.took_recommended) == (1, 1)


def test_the_escalations_expired_since_are_one_range_of_an_index(agent, reviewer):
    """Every refresh (every 5 minutes) asks which escalations expired since the last: the closed
    ones changed since (esc_closed_change_idx), not every expired escalation ever (esc_queue_idx
    leads with the status: 133 ms at 1,000,000 escalations, bench/README.md, "Beat's jobs at
    scale")."""
    need(connection.vendor == "postgresql", "PostgreSQL (DATABASE_URL)")
    build_day(agent, reviewer)
    with CaptureQueriesContext(connection) as queries:
        services._dirty_days(at(12))
    (query,) = [q for q in queries.captured_queries if "'expired'" in q["sql"]]

    plan = index_plan(query["sql"])
    assert "esc_closed_change_idx" in plan, plan
    assert "Index Cond: (updated_at >= " in plan, plan


def test_one_refresh_at_a_time(agent, reviewer):
    build_day(agent, reviewer)
    RollupState.objects.create(pk=1, lease_until=at(23))  # another refresh is running
    assert services.rollups_refresh(now=at(22)) == 0
    assert ActivityRollup.objects.count() == 0
    # a lease that lapsed (its worker died) is taken over
    assert services.rollups_refresh(now=at(23, 1)) == 1
    state = RollupState.objects.get()
    assert (state.refreshed_at, state.lease_until) == (at(23, 1), None)
    assert ActivityRollup.objects.count() == 1


def test_the_refresh_task_runs_on_an_empty_database(db):
    from insights.tasks import refresh_insights_task

    assert refresh_insights_task() == 1  # just today
    assert RollupState.objects.count() == 1
    assert ActivityRollup.objects.count() == 0
