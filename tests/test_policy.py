"""The policy table and priority, as pure functions: no database."""

from datetime import UTC, datetime, timedelta

import pytest

from escalations.policy import (
    Rules,
    Situation,
    Urgency,
    backoff_seconds,
    priority_for,
    scope_exceeded,
    verdict_for,
)

DEFAULT = Rules()
CODE = Rules(domain="code", autonomous_threshold=0.85)
DB_MIGRATION = Rules(domain="db-migration", autonomous_threshold=0.95, flag_threshold=0.80, escalate_threshold=0.60)
RESEARCH = Rules(domain="research", autonomous_threshold=0.70, flag_threshold=0.55, escalate_threshold=0.40)
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("rules", "confidence", "tier"),
    [
        (DEFAULT, 1.0, 1),
        (DEFAULT, 0.90, 1),
        (DEFAULT, 0.8999, 2),
        (DEFAULT, 0.70, 2),
        (DEFAULT, 0.6999, 3),
        (DEFAULT, 0.50, 3),
        (DEFAULT, 0.4999, 4),
        (DEFAULT, 0.0, 4),
        (CODE, 0.85, 1),
        (CODE, 0.84, 2),
        (DB_MIGRATION, 0.94, 2),
        (DB_MIGRATION, 0.95, 1),
        (DB_MIGRATION, 0.79, 3),
        (DB_MIGRATION, 0.59, 4),
        (RESEARCH, 0.70, 1),
        (RESEARCH, 0.55, 2),
        (RESEARCH, 0.40, 3),
        (RESEARCH, 0.39, 4),
    ],
)
def test_confidence_maps_to_the_domains_tier(rules, confidence, tier):
    assert verdict_for(rules, Situation(confidence=confidence)).tier == tier


@pytest.mark.parametrize(
    ("situation", "reason"),
    [
        (Situation(confidence=0.99, irreversible=True), "irreversible action needs approval"),
        (Situation(confidence=0.99, attempts=3), "3 attempts reached the retry cap of 3"),
        (Situation(confidence=0.99, planned_scope=4, actual_scope=7), "scope 7 exceeds planned 4 by more than 50%"),
        (Situation(confidence=0.99, novel=True), "novel situation"),
    ],
)
def test_risk_floors_a_confident_package_at_tier_3(situation, reason):
    verdict = verdict_for(DEFAULT, situation)
    assert verdict.tier == 3
    assert verdict.name == "escalate"
    assert reason in verdict.reasons
    assert not verdict.decided_by_policy


def test_floors_never_lower_a_halt():
    verdict = verdict_for(DEFAULT, Situation(confidence=0.2, irreversible=True, novel=True))
    assert verdict.tier == 4
    assert verdict.name == "halt"
    assert "irreversible action needs approval" in verdict.reasons


def test_attempts_below_the_retry_cap_do_not_floor():
    assert verdict_for(DEFAULT, Situation(confidence=0.95, attempts=2)).tier == 1


@pytest.mark.parametrize(
    ("planned", "actual", "exceeded"),
    [(None, 10, False), (10, None, False), (10, 15, False), (10, 16, True), (0, 0, False), (0, 1, True)],
)
def test_scope_tolerance(planned, actual, exceeded):
    assert scope_exceeded(DEFAULT, planned, actual) is exceeded


@pytest.mark.parametrize(("tier", "name"), [(1, "proceed"), (2, "flag"), (3, "escalate"), (4, "halt")])
def test_verdict_names(tier, name):
    confidence = {1: 0.95, 2: 0.8, 3: 0.6, 4: 0.1}[tier]
    verdict = verdict_for(DEFAULT, Situation(confidence=confidence))
    assert (verdict.tier, verdict.name) == (tier, name)
    assert verdict.decided_by_policy is (tier in (1, 2))


def urgency(**overrides):
    values = {"tier": 3, "impact": "medium", "blocking": False}
    values.update(overrides)
    return Urgency(**values)


def test_priority_adds_up_the_cost_of_delay_with_reasons():
    priority = priority_for(
        urgency(tier=3, impact="high", blocking=True, blocked_tasks=3, irreversible=True), NOW
    )
    assert priority.score == 20 + 16 + 10 + 6 + 10
    assert priority.reasons[0] == "tier 3"
    assert "blocks 3 tasks" in priority.reasons
    assert "irreversible action" in priority.reasons


def test_priority_orders_tiers_and_impacts():
    halt = priority_for(urgency(tier=4, impact="low"), NOW).score
    escalate = priority_for(urgency(tier=3, impact="low"), NOW).score
    critical = priority_for(urgency(tier=3, impact="critical"), NOW).score
    assert halt > escalate
    assert critical > escalate


@pytest.mark.parametrize(
    ("respond_in", "points", "reason"),
    [
        (timedelta(hours=8), 0, None),
        (timedelta(hours=3), 5, "due in 3 h"),
        (timedelta(minutes=30), 10, "due in 30 min"),
        (timedelta(minutes=-90), 15, "overdue by 2 h"),
    ],
)
def test_priority_rises_as_respond_by_nears(respond_in, points, reason):
    base = priority_for(urgency(), NOW).score
    priority = priority_for(urgency(respond_by=NOW + respond_in), NOW)
    assert priority.score - base == points
    if reason:
        assert reason in priority.reasons


def test_priority_counts_time_already_stuck():
    base = priority_for(urgency(), NOW).score
    assert priority_for(urgency(stuck_since=NOW - timedelta(hours=2)), NOW).score == base + 3
    assert priority_for(urgency(stuck_since=NOW - timedelta(days=2)), NOW).score == base + 6


def test_priority_is_capped_at_100():
    priority = priority_for(
        urgency(
            tier=4, impact="critical", blocking=True, blocked_tasks=50, irreversible=True,
            respond_by=NOW - timedelta(hours=1), stuck_since=NOW - timedelta(days=3),
        ),
        NOW,
    )
    assert priority.score == 100


def test_blocked_tasks_count_at_most_ten_points():
    assert priority_for(urgency(blocked_tasks=5), NOW).score == priority_for(urgency(blocked_tasks=500), NOW).score


@pytest.mark.parametrize(
    ("attempt", "jitter", "expected"),
    [(1, 0.0, 1.0), (1, 0.999999, 2.0), (2, 0.0, 2.0), (3, 0.5, 6.0), (30, 0.0, 1800.0), (30, 1.0, 3600.0)],
)
def test_backoff_doubles_with_full_jitter_under_a_cap(attempt, jitter, expected):
    assert backoff_seconds(attempt, base=2, cap=3600, jitter=jitter) == pytest.approx(expected, rel=1e-4)
