"""Retention (issue 9, "Operable"): RETENTION_DAYS purges closed escalations with their
timeline, decision, deliveries and attempts, in batches, on a moved clock; the insights
keep their figures through later refreshes and rebuilds, and the per-agent decisions feed
keeps its cursor."""

from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from escalations import services
from escalations.models import (
    Decision,
    Delivery,
    DeliveryAttempt,
    Escalation,
    Event,
    FlagReview,
    Run,
)
from escalations.models.escalations import CLOSED
from insights import selectors as insights
from insights import services as rollups
from insights.models import ActivityRollup
from operations import metrics, selectors
from operations import services as retention
from operations.tasks import purge_expired_task
from tests.conftest import index_plan, make_package, need
from tests.insights_data import DAY, NEXT_DAY, at, build_day, create, decide

pytestmark = pytest.mark.django_db


def figures() -> dict:
    """What the insights page reads for DAY and NEXT_DAY, floats rounded."""
    f = insights.Filters(DAY, NEXT_DAY)

    def clean(value):
        if isinstance(value, float):
            return round(value, 9)
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return sorted((clean(v) for v in value), key=repr)
        return value

    return clean(
        {
            "activity": insights.activity_rows(f),
            "reasons": list(insights.escalations_by_period(f, "reason").items()),
            "tiers": insights.outcomes_by(f, "tier", histograms=True),
            "agents": insights.outcomes_by(f, "agent__name"),
            "calibration": {k: [vars(b) for b in v] for k, v in insights.calibration_bins(f).items()},
            "reviewers": insights.reviewer_histograms(f),
            "budget": insights.daily_escalations_by_agent(f),
        }
    )


@pytest.fixture
def history(agent, reviewer, receiver):
    """DAY: build_day's four closed escalations (claims, human and policy decisions, a
    flag review). NEXT_DAY: one withdrawn, one still open, and one decided whose webhook
    delivery is still pending (another agent, with a resume_url)."""
    days = build_day(agent, reviewer)
    withdrawn = create(agent, "r5", 0.6, at(9, day=NEXT_DAY))
    services.escalation_withdraw(escalation=withdrawn, now=at(9, 30, day=NEXT_DAY))
    still_open = create(agent, "r6", 0.6, at(10, day=NEXT_DAY))
    hooked = services.agent_create(name="hooked", resume_url=receiver.url).agent
    undelivered = create(hooked, "r7", 0.6, at(11, day=NEXT_DAY))
    decide(undelivered, reviewer, at(11, 30, day=NEXT_DAY), "shim")
    rollups.rollups_refresh(now=at(12, day=NEXT_DAY + timedelta(days=1)))
    return {**days, "withdrawn": withdrawn, "open": still_open, "undelivered": undelivered}


def purge(settings, *, days: int, when):
    settings.RETENTION_DAYS = days
    with time_machine.travel(when, tick=False):
        return purge_expired_task()


def test_retention_is_off_by_default(history, settings):
    assert settings.RETENTION_DAYS == 0
    assert purge(settings, days=0, when=at(12, day=DAY + timedelta(days=400))) == 0
    assert Escalation.objects.count() == 7


def test_closed_escalations_past_the_retention_go_with_everything_they_own(
    history, settings, django_capture_on_commit_callbacks
):
    before = figures()
    purgeable = [history[k].pk for k in ("e1", "e2", "e3", "e4", "withdrawn")]
    assert Event.objects.filter(escalation_id__in=purgeable).exists()
    assert FlagReview.objects.filter(escalation_id__in=purgeable).exists()
    counted = metrics.snapshot().get(metrics.field(metrics.RETENTION_PURGED.name), 0)

    # DAY's last change was at 14:00: not 30 days old at 23:00 on the 29th day after.
    assert purge(settings, days=30, when=at(23, day=DAY + timedelta(days=29))) == 0
    # 30 days after DAY, 29 after NEXT_DAY: DAY's four go, the withdrawn one stays.
    assert purge(settings, days=30, when=at(16, day=DAY + timedelta(days=30))) == 4
    assert set(Escalation.objects.values_list("pk", flat=True)) == {
        history[k].pk for k in ("withdrawn", "open", "undelivered")
    }
    with django_capture_on_commit_callbacks(execute=True):  # the metric counts on commit
        assert purge(settings, days=30, when=at(16, day=NEXT_DAY + timedelta(days=30))) == 1

    left = {history["open"].pk, history["undelivered"].pk}
    assert set(Escalation.objects.values_list("pk", flat=True)) == left
    assert not Event.objects.filter(escalation_id__in=purgeable).exists()
    assert not Decision.objects.filter(escalation_id__in=purgeable).exists()
    assert not FlagReview.objects.exists()
    assert Delivery.objects.filter(escalation_id=history["undelivered"].pk).exists()
    assert Run.objects.count() == 7  # runs stay: the insights count them by day
    assert figures() == before
    assert metrics.snapshot()[metrics.field(metrics.RETENTION_PURGED.name)] - counted == 1

    # Later refreshes, and a rebuild of every day from the rows, keep the figures.
    rollups.rollups_refresh(now=at(12, day=NEXT_DAY + timedelta(days=31)))
    rollups.rollups_rebuild(days=[DAY, NEXT_DAY])
    assert figures() == before
    assert ActivityRollup.objects.filter(archived=True).exists()


def test_an_undelivered_decision_waits_for_its_delivery(history, settings):
    undelivered = history["undelivered"]
    later = at(12, day=NEXT_DAY + timedelta(days=60))
    purge(settings, days=30, when=later)
    assert Escalation.objects.filter(pk=undelivered.pk).exists()
    delivery = Delivery.objects.get(escalation=undelivered)
    services.delivery_record_attempt(
        delivery=delivery, started_at=at(11, 31, day=NEXT_DAY), duration_ms=5, status_code=200,
        now=at(11, 31, day=NEXT_DAY),
    )  # delivered (and resumed) long ago
    Escalation.objects.filter(pk=undelivered.pk).update(updated_at=at(11, 31, day=NEXT_DAY))
    assert purge(settings, days=30, when=later) == 1
    assert not DeliveryAttempt.objects.exists()


def test_batches_repeat_until_nothing_is_left(history, settings, monkeypatch):
    monkeypatch.setattr(retention, "RETENTION_BATCH", 2)
    before = figures()
    assert purge(settings, days=30, when=at(12, day=NEXT_DAY + timedelta(days=31))) == 5
    assert Escalation.objects.count() == 2
    assert figures() == before


def test_a_purge_waits_while_a_refresh_holds_the_rollups(history, settings):
    when = at(12, day=NEXT_DAY + timedelta(days=31))
    with rollups.rollup_lease(when) as held:
        assert held
        assert purge(settings, days=30, when=when) == 0
    assert purge(settings, days=30, when=when) == 5


def test_the_decisions_feed_keeps_its_cursor(history, settings, api):
    feed = api.get("/api/v1/decisions?after=0").json()
    cursor = feed["next_cursor"]
    assert len(feed["items"]) == 4  # e1..e4: the agent's decisions (undelivered is another's)

    purge(settings, days=30, when=at(12, day=NEXT_DAY + timedelta(days=31)))
    assert api.get(f"/api/v1/decisions?after={cursor}").json()["items"] == []

    fresh = api.escalate(make_package(run_id="r8")).json()
    services.escalation_decide(
        escalation_id=fresh["id"],
        request=services.DecisionRequest(kind=Decision.Kind.OPTION, option="shim"),
    )
    page = api.get(f"/api/v1/decisions?after={cursor}").json()
    assert [item["id"] for item in page["items"]] == [fresh["id"]]
    assert int(page["next_cursor"]) == int(cursor) + 1  # numbering goes on, never reused
    from_start = api.get("/api/v1/decisions?after=0").json()
    assert [item["id"] for item in from_start["items"]] == [fresh["id"]]


def test_the_purges_query_reads_one_range_of_its_partial_index(history):
    """With nothing to purge a run reads only the closed escalations changed before the cutoff
    (esc_closed_change_idx, models.CLOSED), never the whole table: the old index left `expired`
    out, so its condition no longer matched the query and every run (every 15 minutes) read
    every escalation, 485 ms at 1,000,000 (bench/README.md, "Beat's jobs at scale")."""
    need(connection.vendor == "postgresql", "PostgreSQL (DATABASE_URL)")
    expired = selectors.expired_escalations(before=at(0, day=DAY - timedelta(days=1)))
    batch = expired.values_list("pk", flat=True)[:500].select_for_update(skip_locked=True)
    with CaptureQueriesContext(connection) as queries:
        assert list(batch) == []
    (query,) = queries.captured_queries

    plan = index_plan(query["sql"])
    assert "Index Scan using esc_closed_change_idx" in plan, plan
    assert "Index Cond: (updated_at < " in plan, plan


def test_closed_is_every_closed_status():
    assert set(CLOSED.children[0][1]) == set(Escalation.CLOSED_STATUSES)
