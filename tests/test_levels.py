"""Escalation levels (issue 4, "Deadlines, re-escalation"): the pure ladder, the service that
moves escalations up it (clock moved in the test, never slept), its races, the timeline,
the priority refresh keeping the boost, and the managers' levels page."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from escalations import levels, policy, selectors, services
from escalations.levels import Step
from escalations.models import Escalation, EscalationLevel, Event, Policy
from escalations.services import intake, periodic
from escalations.tasks import advance_levels_task
from tests.conftest import make_user, post_package
from tests.test_concurrency import run_at_once

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
LADDER = [Step(2, 30, 10), Step(3, 120, 20), Step(4, 24 * 60, 5)]


# ---------------------------------------------------------------- pure


@pytest.mark.parametrize(
    ("waited", "due"),
    [
        (timedelta(0), 1),
        (timedelta(minutes=29, seconds=59), 1),
        (timedelta(minutes=30), 2),
        (timedelta(minutes=119), 2),
        (timedelta(hours=2), 3),
        (timedelta(days=3), 4),
    ],
)
def test_the_due_level_is_the_highest_whose_delay_has_passed(waited, due):
    assert levels.due_level(LADDER, created_at=T0, now=T0 + waited) == due


def test_a_held_up_job_jumps_straight_to_the_highest_due_level():
    assert levels.next_level(LADDER, current=1, created_at=T0, now=T0 + timedelta(hours=3)) == 3
    assert levels.next_level(LADDER, current=3, created_at=T0, now=T0 + timedelta(hours=3)) is None
    assert levels.next_level([], current=1, created_at=T0, now=T0 + timedelta(days=9)) is None


def test_boosts_add_up_level_by_level():
    assert [levels.boost_at(LADDER, n) for n in (1, 2, 3, 4)] == [0, 10, 30, 35]


def test_levels_are_numbered_by_their_delays():
    assert levels.numbered([120, 30, 1440]) == [3, 2, 4]
    assert levels.numbered([]) == []


def test_level_rows_are_checked_field_by_field():
    assert levels.rows_errors([(30, 10), (120, 20)]) == []
    errors = levels.rows_errors([(30, 10), (30, 5), (0, 101)])
    assert (1, "after_minutes", "another level already starts after 30 min") in errors
    assert (2, "after_minutes", "must be between 1 minute and 30 days (43200)") in errors
    assert (2, "priority_boost", "must be between 0 and 100") in errors


@pytest.mark.parametrize(
    ("minutes", "text"),
    [(0, "0 min"), (45, "45 min"), (60, "1 h"), (90, "1 h 30 min"), (1440, "1 day"), (2880, "2 days"), (1500, "1 d 1 h")],
)
def test_durations_read_like_a_person_would_say_them(minutes, text):
    assert levels.duration(minutes) == text


def test_the_level_boost_is_a_reason_of_the_priority_and_respects_the_cap():
    urgency = policy.Urgency(tier=3, impact="high", blocking=True, level=3, level_boost=30)
    plain = policy.priority_for(policy.Urgency(tier=3, impact="high", blocking=True), T0)
    boosted = policy.priority_for(urgency, T0)
    assert boosted.score == plain.score + 30
    assert boosted.reasons[0] == "escalated to level 3"
    capped = policy.priority_for(
        policy.Urgency(tier=4, impact="critical", blocking=True, blocked_tasks=9, level=4, level_boost=60), T0
    )
    assert capped.score == 100


# ---------------------------------------------------------------- the service


def make_levels(domain: str = "default", *, notify=(), notify_managers=False) -> Policy:
    row = Policy.objects.get(domain=domain)
    specs = [
        services.LevelSpec(after_minutes=30, priority_boost=10, notify=list(notify)),
        services.LevelSpec(after_minutes=120, priority_boost=20, notify_managers=notify_managers),
    ]
    services.policy_levels_replace(policy_row=row, specs=specs)
    return row


def reload(escalation: Escalation) -> Escalation:
    return Escalation.objects.get(pk=escalation.pk)


def level_events(escalation: Escalation) -> list[Event]:
    return list(Event.objects.filter(escalation=escalation, kind=Event.Kind.LEVEL_RAISED))


@pytest.mark.django_db
def test_an_unclaimed_escalation_moves_up_after_each_delay_and_only_once(api):
    make_levels()
    escalation = post_package(api)
    created, base = escalation.created_at, escalation.priority

    assert services.levels_advance(now=created + timedelta(minutes=29)) == 0
    assert reload(escalation).level == 1

    at = created + timedelta(minutes=30)
    assert services.levels_advance(now=at) == 1
    raised = reload(escalation)
    assert (raised.level, raised.level_changed_at) == (2, at)
    assert raised.priority == base + 10
    assert "escalated to level 2" in raised.priority_reasons
    (event,) = level_events(escalation)
    assert event.data == {"from": 1, "level": 2, "after_minutes": 30, "after": "30 min", "priority": base + 10}
    assert event.at == at

    # Running again changes nothing (the beat entry runs every 30 s).
    assert services.levels_advance(now=at) == 0
    assert services.levels_advance(now=at + timedelta(minutes=5)) == 0
    assert len(level_events(escalation)) == 1

    later = created + timedelta(hours=3)
    assert services.levels_advance(now=later) == 1
    top = reload(escalation)
    assert top.level == 3
    # 3 hours stuck adds 3 points of its own; the boosts of levels 2 and 3 add up.
    assert top.priority == policy.priority_for(intake.urgency(top), later).score + 30
    assert [e.data["level"] for e in level_events(escalation)] == [2, 3]


@pytest.mark.django_db
def test_a_live_claim_does_not_pause_the_clock_but_a_decision_stops_it(api, reviewer, other_reviewer):
    make_levels()
    claimed = post_package(api, run_id="claimed")
    decided = post_package(api, run_id="decided")
    services.escalation_claim(escalation_id=claimed.pk, user=reviewer)
    services.escalation_decide(
        escalation_id=decided.pk,
        request=services.DecisionRequest(kind="option", option="shim"),
        user=other_reviewer,
    )
    at = max(claimed.created_at, decided.created_at) + timedelta(minutes=31)

    assert services.levels_advance(now=at) == 1
    assert reload(claimed).level == 2
    assert reload(claimed).status == "claimed"
    assert reload(decided).level == 1
    assert level_events(decided) == []


@pytest.mark.django_db
def test_domains_without_levels_stay_in_the_queue(api):
    escalation = post_package(api)
    assert services.levels_advance(now=escalation.created_at + timedelta(days=30)) == 0
    assert reload(escalation).level == 1


@pytest.mark.django_db
def test_a_stale_read_cannot_raise_a_level_twice(api):
    make_levels()
    escalation = post_package(api)
    steps = selectors.level_steps_by_domain()["default"]
    stale = Escalation.objects.get(pk=escalation.pk)  # read before another run moved it
    at = escalation.created_at + timedelta(minutes=45)

    assert services.levels_advance(now=at) == 1
    assert periodic._level_raise(stale, steps, 2, at) is False
    assert len(level_events(escalation)) == 1


@pytest.mark.django_db(transaction=True)
def test_runs_at_once_raise_each_escalation_exactly_once(agent_with_token):
    from tests.conftest import AgentClient, ensure_default_policies

    ensure_default_policies()
    api = AgentClient(agent_with_token[1])
    make_levels()
    escalations = [post_package(api, run_id=f"run-{i}") for i in range(6)]
    at = max(e.created_at for e in escalations) + timedelta(minutes=31)

    results = run_at_once(4, lambda i: services.levels_advance(now=at))

    assert all(isinstance(r, int) for r in results), results
    assert sum(results) == 6
    assert Event.objects.filter(kind=Event.Kind.LEVEL_RAISED).count() == 6
    assert set(Escalation.objects.values_list("level", flat=True)) == {2}


@pytest.mark.django_db
def test_the_level_is_announced_to_notifications_in_its_own_transaction(
    api, django_capture_on_commit_callbacks
):
    """notifications writes its outbox rows in the level's transaction (issue 9): a crash
    after the commit cannot lose them."""
    from notifications.models import Notification

    bob = make_user("bob", "reviewer")
    make_levels(notify=[bob])
    escalation = post_package(api)

    with django_capture_on_commit_callbacks(execute=False):  # nothing after commit runs
        services.levels_advance(now=escalation.created_at + timedelta(minutes=30))

    (row,) = Notification.objects.filter(kind="level_raised")
    assert (row.user, row.channel, row.status, row.escalation_id) == (bob, "email", "pending", escalation.pk)
    assert row.key.startswith(f"level_raised:{escalation.pk}:2:")


@pytest.mark.django_db
def test_the_priority_refresh_keeps_the_level_boost(api):
    make_levels()
    escalation = post_package(api)
    at = escalation.created_at + timedelta(minutes=30)
    services.levels_advance(now=at)
    boosted = reload(escalation)

    services.priorities_refresh(now=at + timedelta(seconds=30))
    refreshed = reload(escalation)
    assert (refreshed.priority, refreshed.priority_reasons) == (boosted.priority, boosted.priority_reasons)

    # A manager lowers the boost: the next refresh applies it.
    EscalationLevel.objects.filter(policy__domain="default", level=2).update(priority_boost=4)
    services.priorities_refresh(now=at + timedelta(minutes=1))
    assert reload(escalation).priority == boosted.priority - 6


@pytest.mark.django_db
def test_the_periodic_task_moves_levels_on_the_real_clock(api):
    make_levels()
    escalation = post_package(api)
    with time_machine.travel(escalation.created_at + timedelta(minutes=31), tick=False):
        assert advance_levels_task() == 1
        assert advance_levels_task() == 0
    assert reload(escalation).level == 2


@pytest.mark.django_db
def test_the_timeline_shows_each_step(api, reviewer_client):
    make_levels()
    escalation = post_package(api)
    services.levels_advance(now=escalation.created_at + timedelta(minutes=30))
    services.levels_advance(now=escalation.created_at + timedelta(hours=2))

    page = reviewer_client.get(f"/escalations/{escalation.pk}").content.decode()

    assert page.count("event-level_raised") == 2
    assert "level 1 → <strong>2</strong>" in page
    assert "level 2 → <strong>3</strong>" in page
    assert "still open after 2 h" in page
    assert ">level 3</span>" in page  # the chip in the page head


# ---------------------------------------------------------------- the levels page


def level_post(rows: list[dict], *, initial: int = 0) -> dict:
    data = {
        "levels-TOTAL_FORMS": str(len(rows)),
        "levels-INITIAL_FORMS": str(initial),
        "levels-MIN_NUM_FORMS": "0",
        "levels-MAX_NUM_FORMS": "8",
    }
    for i, row in enumerate(rows):
        for key, value in row.items():
            data[f"levels-{i}-{key}"] = value
    return data


@pytest.mark.django_db
def test_managers_edit_a_domains_levels(manager_client, reviewer, agent):
    page = manager_client.get("/policies/default/levels")
    assert page.status_code == 200
    assert "No levels yet" in page.content.decode()

    response = manager_client.post(
        "/policies/default/levels",
        level_post(
            [
                {"after_minutes": "120", "priority_boost": "25", "notify_managers": "on"},
                {"after_minutes": "30", "priority_boost": "10", "notify": [str(reviewer.pk)]},
            ]
        ),
    )

    assert response.status_code == 302
    rows = list(EscalationLevel.objects.filter(policy__domain="default").order_by("level"))
    assert [(r.level, r.after_minutes, r.priority_boost, r.notify_managers) for r in rows] == [
        (2, 30, 10, False),
        (3, 120, 25, True),
    ]
    assert list(rows[0].notify.all()) == [reviewer]
    page = manager_client.get("/policies/default/levels").content.decode()
    assert "Saved 2 levels for default." in page
    assert "after 2 h" in page
    assert "after 30 min" in page

    # Removing one renumbers nothing else; the rest stays.
    response = manager_client.post(
        "/policies/default/levels",
        level_post(
            [
                {"after_minutes": "30", "priority_boost": "10", "notify": [str(reviewer.pk)]},
                {"after_minutes": "120", "priority_boost": "25", "DELETE": "on"},
                {"after_minutes": "", "priority_boost": "10"},
            ],
            initial=2,
        ),
    )
    assert response.status_code == 302
    assert list(EscalationLevel.objects.values_list("level", "after_minutes")) == [(2, 30)]


@pytest.mark.django_db
def test_unchanged_levels_stay_when_another_is_added_or_a_save_fails(manager_client, agent):
    make_levels()
    existing = [
        {"after_minutes": "30", "priority_boost": "10"},
        {"after_minutes": "120", "priority_boost": "20", "notify_managers": "on"},
    ]

    failed = manager_client.post(
        "/policies/default/levels", level_post([*existing, {"after_minutes": "30"}], initial=2)
    )
    assert failed.status_code == 422
    page = failed.content.decode()
    assert page.count("Remove this level") == 2  # the existing rows keep their controls
    assert "Level 3</legend>" in page

    saved = manager_client.post(
        "/policies/default/levels", level_post([*existing, {"after_minutes": "240", "priority_boost": "5"}], initial=2)
    )
    assert saved.status_code == 302
    assert list(EscalationLevel.objects.order_by("level").values_list("level", "after_minutes")) == [
        (2, 30), (3, 120), (4, 240)
    ]


@pytest.mark.django_db
def test_the_levels_page_names_the_field_at_fault_and_never_fails(manager_client, agent):
    response = manager_client.post(
        "/policies/default/levels",
        level_post([{"after_minutes": "30", "priority_boost": "10"}, {"after_minutes": "30", "priority_boost": "500"}]),
    )
    assert response.status_code == 422
    page = response.content.decode()
    assert "After (minutes): another level already starts after 30 min" in page
    assert "Priority boost: Ensure this value is less than or equal to 100." in page
    assert not EscalationLevel.objects.exists()

    for garbage in (
        {"levels-TOTAL_FORMS": "x"},
        level_post([{"after_minutes": "soon", "priority_boost": "\x00"}]),
        level_post([{"after_minutes": "30", "notify": ["999999", "abc"]}]),
        level_post([{"after_minutes": str(m)} for m in range(1, 12)]),
    ):
        assert manager_client.post("/policies/default/levels", garbage).status_code == 422, garbage
    assert not EscalationLevel.objects.exists()


@pytest.mark.django_db
def test_the_levels_page_is_for_managers(reviewer_client, manager_client, client, agent):
    assert reviewer_client.get("/policies/default/levels").status_code == 403
    assert reviewer_client.post("/policies/default/levels", level_post([])).status_code == 403
    assert manager_client.get("/policies/no-such-domain/levels").status_code == 404
    assert client.get("/policies/default/levels").status_code == 302  # to the login page


@pytest.mark.django_db
def test_the_levels_page_escapes_what_people_named_themselves(manager_client, agent):
    make_user("<script>x</script>", "reviewer")
    page = manager_client.get("/policies/default/levels").content.decode()
    assert "<script>x</script>" not in page
    assert "&lt;script&gt;x&lt;/script&gt;" in page


@pytest.mark.django_db
def test_the_ladder_counts_the_open_escalations_at_each_level(manager_client, api):
    make_levels()
    post_package(api, run_id="one")
    second = post_package(api, run_id="two")
    services.levels_advance(now=second.created_at + timedelta(minutes=30))  # both move to 2
    post_package(api, run_id="three")

    page = manager_client.get("/policies/default/levels").content.decode()

    assert '<span class="level-open">1 open</span>' in page  # level 1: the queue
    assert '<span class="level-open has-open">2 open</span>' in page  # level 2
    assert '<span class="level-open">0 open</span>' in page  # level 3
