"""The drift rule: the exact test on hand-checked numbers, flagged agents on synthetic
weeks of rollups, and one notification per agent-week."""

from datetime import UTC, date, datetime, timedelta

import pytest

from escalations import services as escalation_services
from escalations.signals import notable
from insights import selectors, services, stats
from insights.models import ActivityRollup, DriftAlert

TODAY = date(2026, 3, 12)  # a Thursday: this week is Monday 9 to Thursday 12
NOW = datetime(2026, 3, 12, 15, 0, tzinfo=UTC)
MONDAY = date(2026, 3, 9)


def test_binomial_tail_matches_a_hand_computation():
    # P(X >= 2) for Binomial(3, 0.5) = (3 + 1) / 8
    assert stats.binomial_upper_tail(2, 3, 0.5) == pytest.approx(0.5)
    # P(X >= 3) for Binomial(3, 0.2) = 0.008
    assert stats.binomial_upper_tail(3, 3, 0.2) == pytest.approx(0.008)
    assert stats.binomial_upper_tail(0, 5, 0.3) == 1.0
    assert stats.binomial_upper_tail(6, 5, 0.3) == 0.0


def test_the_test_conditions_on_the_total_escalations():
    # 20 escalations in 100 gate checks this week, 20 in 400 before: under one rate this
    # week would hold 100/500 of the 40; P(X >= 20 | Binomial(40, 0.2)) is far below 0.01.
    result = stats.drift_test(20, 100, 20, 400)
    assert result.p_value == pytest.approx(stats.binomial_upper_tail(20, 40, 0.2))
    assert result.p_value < 1e-4
    assert result.is_drifting
    assert (result.rate, result.baseline_rate) == (0.2, 0.05)


@pytest.mark.parametrize(
    ("numbers", "tested"),
    [
        ((9, 100, 0, 400), False),  # fewer than 10 escalations this week
        ((10, 29, 0, 400), False),  # fewer than 30 gate checks this week
        ((10, 100, 0, 29), False),  # fewer than 30 gate checks before
        ((10, 30, 0, 30), True),
    ],
)
def test_low_volume_is_not_tested(numbers, tested):
    result = stats.drift_test(*numbers)
    assert (result.p_value is not None) is tested
    assert result.is_drifting is (tested and result.p_value < 0.01)


def _weeks(agent, *, daily_gates: int, base_rate: float, week_rate: float) -> None:
    """Four baseline weeks and this week (Monday to today) of rollups for one agent."""
    rows = []
    day = MONDAY - timedelta(weeks=4)
    while day <= TODAY:
        rate = week_rate if day >= MONDAY else base_rate
        rows.append(
            ActivityRollup(
                day=day,
                agent=agent,
                domain=agent.domain,
                gate_checks=daily_gates,
                runs=daily_gates // 5,
                escalations=round(daily_gates * rate),
            )
        )
        day += timedelta(days=1)
    ActivityRollup.objects.bulk_create(rows)


@pytest.fixture
def agents(agent):
    make = escalation_services.agent_create
    return {
        "drifting": agent,
        "stable": make(name="steady", domain="default").agent,
        "small": make(name="tiny", domain="default").agent,
    }


@pytest.fixture
def synthetic_weeks(agents):
    _weeks(agents["drifting"], daily_gates=50, base_rate=0.08, week_rate=0.20)
    _weeks(agents["stable"], daily_gates=80, base_rate=0.10, week_rate=0.11)
    _weeks(agents["small"], daily_gates=2, base_rate=0.0, week_rate=1.0)  # 8 escalations, all new
    return agents


def test_only_the_drifting_agent_is_flagged(synthetic_weeks):
    report = selectors.drift_report(now=NOW)
    assert (report.week_start, report.baseline_start) == (MONDAY, MONDAY - timedelta(weeks=4))
    by_name = {row.agent: row.result for row in report.rows}
    drifting = by_name["agent-007"]
    assert (drifting.escalations, drifting.exposure) == (40, 200)  # 4 days x 50, 10 a day
    assert (drifting.baseline_escalations, drifting.baseline_exposure) == (112, 1400)  # 28 x 4
    assert drifting.is_drifting
    assert drifting.p_value < 0.01
    assert not by_name["steady"].is_drifting
    assert by_name["steady"].p_value > 0.01
    assert by_name["tiny"].p_value is None  # 8 escalations and 8 gate checks: too little volume
    assert [row.agent for row in report.drifting] == ["agent-007"]


def test_a_drifting_agent_is_notified_once_per_week(
    synthetic_weeks, django_capture_on_commit_callbacks
):
    received = []

    def receiver(sender, **kwargs):
        received.append(kwargs)

    notable.connect(receiver, dispatch_uid="test-drift")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            first = services.drift_check(now=NOW)
        with django_capture_on_commit_callbacks(execute=True):
            again = services.drift_check(now=NOW + timedelta(hours=3))
    finally:
        notable.disconnect(dispatch_uid="test-drift")
    assert [a.agent.name for a in first] == ["agent-007"]
    assert again == []
    assert len(received) == 1
    assert received[0]["event"] == "drift_alert"
    assert received[0]["agent"] == synthetic_weeks["drifting"]
    assert received[0]["data"]["escalations"] == 40
    assert received[0]["data"]["week_start"] == "2026-03-09"
    alert = DriftAlert.objects.get()
    assert (alert.week_start, alert.gate_checks, alert.baseline_gate_checks) == (MONDAY, 200, 1400)


def test_next_week_is_a_new_alert(synthetic_weeks):
    services.drift_check(now=NOW)
    # a week later the same agent still escalates at 20% (its baseline now holds one such week)
    _more = [
        ActivityRollup(
            day=TODAY + timedelta(days=i),
            agent=synthetic_weeks["drifting"],
            domain="default",
            gate_checks=50,
            escalations=25,
        )
        for i in range(1, 8)
    ]
    ActivityRollup.objects.bulk_create(_more)
    services.drift_check(now=NOW + timedelta(days=7))
    weeks = list(DriftAlert.objects.order_by("week_start").values_list("week_start", flat=True))
    assert weeks == [MONDAY, MONDAY + timedelta(weeks=1)]
