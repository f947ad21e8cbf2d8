"""Notifications (issue 4): each channel against a real local receiver (Slack and signed
generic webhooks on 127.0.0.1, e-mail through Django's locmem backend), retries, who is a
recipient and what they chose, sent only on commit, and the preferences page.

Tasks are called directly or in Celery's eager mode; only the clock is moved."""

import json
from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth.models import Group
from django.core import mail
from django.db import transaction
from django.utils import timezone

from escalations import services, signals
from escalations.models import Escalation, Event, Policy
from escalations.schemas import EscalationIn
from escalations.transport import webhooks
from notifications import services as notify
from notifications.models import Notification, NotificationPreference
from notifications.tasks import send_notification_task, sweep_notifications_task
from tests.conftest import (
    AgentClient,
    ensure_default_policies,
    make_package,
    make_user,
    need,
    post_package,
)
from tests.receiver import Receiver, Reply

pytestmark = pytest.mark.django_db

HALT = {"confidence": 0.2, "title": "Drop the users table? <!channel> & co"}


@pytest.fixture
def eager(settings):
    """Enqueued tasks run here, at once (the on-commit callbacks still decide when)."""
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.CELERY_TASK_EAGER_PROPAGATES = True


def prefer(user, choices: dict, **where) -> NotificationPreference:
    preference, _ = notify.preferences_save(user=user, choices=choices, **where)
    return preference


def sent(user=None) -> list[Notification]:
    rows = Notification.objects.order_by("created_at", "channel")
    return list(rows.filter(user=user) if user else rows)


def send_all() -> None:
    for row in Notification.objects.filter(status__in=["pending", "retrying"]):
        send_notification_task(str(row.pk))


def levels_for(domain="default", **level) -> Policy:
    row = Policy.objects.get(domain=domain)
    services.policy_levels_replace(
        policy_row=row, specs=[services.LevelSpec(after_minutes=30, **level)]
    )
    return row


# ---------------------------------------------------------------- channels


def test_a_halt_reaches_an_opted_in_reviewer_on_slack_with_a_deep_link(
    api, reviewer, other_reviewer, receiver, eager, django_capture_on_commit_callbacks, settings
):
    prefer(reviewer, {"halt_created": ["slack"]}, slack_url=receiver.url)

    with django_capture_on_commit_callbacks(execute=True):
        escalation = post_package(api, **HALT)

    (request,) = receiver.wait_for(1)
    text = request.json()["text"]
    link = f"{settings.PUBLIC_URL}/escalations/{escalation.pk}"
    assert set(request.json()) == {"text"}
    assert f"<{link}|Open in Handoff>" in text
    # Slack markup in what the agent wrote is escaped, never a real @channel.
    assert "Drop the users table? &lt;!channel&gt; &amp; co" in text
    assert "<!channel>" not in text
    assert request.header("handoff-signature") is None  # Slack needs no signature
    (row,) = sent()
    assert (row.user, row.channel, row.status, row.attempts) == (reviewer, "slack", "sent", 1)
    # Nobody else opted in: the other reviewer hears nothing.
    assert sent(other_reviewer) == []
    notified = Event.objects.get(escalation=escalation, kind=Event.Kind.NOTIFIED)
    assert notified.data == {"event": "halt_created", "people": ["alice"], "channels": ["slack"]}


def test_a_level_reaches_its_people_on_a_signed_webhook(api, reviewer, receiver, eager, django_capture_on_commit_callbacks):
    preference = prefer(reviewer, {"level_raised": ["webhook"]}, webhook_url=receiver.url)
    levels_for(notify=[reviewer])
    escalation = post_package(api)

    with django_capture_on_commit_callbacks(execute=True):
        services.levels_advance(now=escalation.created_at + timedelta(minutes=30))

    (request,) = receiver.wait_for(1)
    assert webhooks.verify(preference.webhook_secret, request.body, request.header("handoff-signature"))
    assert not webhooks.verify("whsec_someone-else", request.body, request.header("handoff-signature"))
    body = request.json()
    row = Notification.objects.get()
    assert request.header("handoff-event") == "notification.level_raised"
    assert request.header("handoff-delivery") == str(row.pk)
    assert body["event"] == "notification.level_raised"
    assert body["notification_id"] == str(row.pk)
    assert body["escalation"]["id"] == str(escalation.pk)
    assert body["escalation"]["level"] == 2
    assert body["data"] == {"level": 2, "from": 1}
    assert body["url"].endswith(f"/escalations/{escalation.pk}")
    assert body["subject"].startswith("Level 2: ")


def test_a_delivery_that_failed_for_good_emails_the_managers(
    api, hooked, reviewer, manager, eager, django_capture_on_commit_callbacks, settings
):
    # given: the receiver refuses for good (a 4xx other than 408/429 is not retried)
    other_manager = make_user("omar", "manager")
    escalation = post_package(api)
    services.escalation_decide(
        escalation_id=escalation.pk, request=services.DecisionRequest(kind="option", option="shim"), user=reviewer
    )
    delivery = escalation.deliveries.get()
    claimed = services.delivery_claim(delivery_id=delivery.pk)

    with django_capture_on_commit_callbacks(execute=True):
        services.delivery_record_attempt(
            delivery=claimed, started_at=timezone.now(), duration_ms=3, status_code=410, error=""
        )

    assert sorted(m.to[0] for m in mail.outbox) == ["maya@example.com", "omar@example.com"]
    message = mail.outbox[0]
    assert message.subject == f"Delivery failed: {escalation.title}"
    assert "after 1 attempts (HTTP 410)" in message.body
    assert f"{settings.PUBLIC_URL}/escalations/{escalation.pk}" in message.body
    assert {row.status for row in sent()} == {"sent"}
    assert other_manager.notifications.count() == 1


def test_managers_named_by_the_domain_are_the_only_ones_told(
    agent, manager, eager, django_capture_on_commit_callbacks
):
    named = make_user("nadia", "manager")
    Policy.objects.get(domain="default").managers.add(named)
    api = AgentClient(services.token_issue(agent=agent))
    escalation = post_package(api)

    with django_capture_on_commit_callbacks(execute=True):
        notify.notifications_fan_out(
            kind="delivery_failed", escalation_id=str(escalation.pk), data={"delivery": "d-1", "attempts": 3}
        )

    assert [m.to for m in mail.outbox] == [["nadia@example.com"]]


def test_an_agent_over_budget_is_told_once_a_day(agent, manager, eager, django_capture_on_commit_callbacks):
    agent.daily_budget = 1
    agent.save()
    token = services.token_issue(agent=agent)
    with django_capture_on_commit_callbacks(execute=True):
        for i in range(3):  # the second and third go over: one message
            post_package(AgentClient(token), run_id=f"run-{i}")

    (message,) = mail.outbox
    assert message.subject == "Over budget: agent-007"
    assert "made 2 escalations today, over its daily budget of 1" in message.body


# ---------------------------------------------------------------- retries


def answer(api, escalation, asker, text: str, *, question: str = "How many rows does users_old hold?"):
    services.escalation_ask(escalation_id=escalation.pk, user=asker, text=question)
    response = api.post_json(f"/api/v1/escalations/{escalation.pk}/answer", {"text": text})
    assert response.status_code == 200, response.content


def test_the_agents_answer_reaches_the_reviewer_who_asked_with_the_answer_and_a_link(
    api, reviewer, other_reviewer, eager, django_capture_on_commit_callbacks
):
    prefer(other_reviewer, {"question_answered": ["email"]})  # did not ask: hears nothing
    escalation = post_package(api)  # alice saved nothing: e-mail is the default

    with django_capture_on_commit_callbacks(execute=True):
        answer(api, escalation, reviewer, "3 rows <b>all</b> from the nightly export.")

    (message,) = mail.outbox
    assert message.to == [reviewer.email]
    assert message.subject == f"Answered: {escalation.title}"
    assert "3 rows <b>all</b> from the nightly export." in message.body
    assert "You asked: How many rows does users_old hold?" in message.body
    assert f"/escalations/{escalation.pk}" in message.body
    html = message.alternatives[0][0]
    assert "3 rows &lt;b&gt;all&lt;/b&gt;" in html  # escaped like the dashboard
    assert [(row.kind, row.user, row.status) for row in sent()] == [("question_answered", reviewer, "sent")]

    with django_capture_on_commit_callbacks(execute=True):  # another question, another answer
        answer(api, escalation, reviewer, "Still 3.", question="And now?")
    assert len(mail.outbox) == 2
    assert "Still 3." in mail.outbox[1].body

    prefer(reviewer, {"question_answered": []})  # turned off on the page
    with django_capture_on_commit_callbacks(execute=True):
        answer(api, escalation, reviewer, "Never read.", question="Once more?")
    assert len(mail.outbox) == 2


def test_a_failing_receiver_is_retried_with_backoff_until_it_answers(reviewer, agent):
    with Receiver(script=[500, 503, 200]) as hook:
        prefer(reviewer, {"halt_created": ["slack"]}, slack_url=hook.url)
        post_package(AgentClient(services.token_issue(agent=agent)), **HALT)
        row_id = str(sent(reviewer)[0].pk)  # written with the escalation, not sent yet

        send_notification_task(row_id)
        row = Notification.objects.get(pk=row_id)
        assert (row.status, row.attempts, row.last_error) == ("retrying", 1, "HTTP 500: {\"ok\": true}")
        first_wait = row.next_attempt_at

        send_notification_task(row_id)  # not due yet: nothing is sent
        assert len(hook.requests) == 1

        with time_machine.travel(first_wait + timedelta(seconds=1), tick=False):
            send_notification_task(row_id)
        row = Notification.objects.get(pk=row_id)
        assert (row.status, row.attempts) == ("retrying", 2)
        assert row.next_attempt_at > first_wait

        with time_machine.travel(row.next_attempt_at + timedelta(seconds=1), tick=False):
            send_notification_task(row_id)
        row = Notification.objects.get(pk=row_id)
        assert (row.status, row.attempts, row.last_error) == ("sent", 3, "")
        assert len(hook.wait_for(3)) == 3
        # The same message each time.
        assert len({r.body for r in hook.requests}) == 1


def test_a_notification_is_given_up_after_its_retry_window_or_at_once_when_refused(reviewer, agent, settings):
    settings.NOTIFICATION_RETRY_FOR_SECONDS = 60
    settings.WEBHOOK_BACKOFF_BASE_SECONDS = 0
    with Receiver(script=[500, 500, 404]) as hook:
        prefer(reviewer, {"halt_created": ["slack"]}, slack_url=hook.url)
        api = AgentClient(services.token_issue(agent=agent))
        first = post_package(api, run_id="one", **HALT)
        row_id = str(Notification.objects.get(escalation=first).pk)
        send_notification_task(row_id)
        with time_machine.travel(Notification.objects.get(pk=row_id).give_up_at() + timedelta(seconds=1), tick=False):
            send_notification_task(row_id)
        assert Notification.objects.get(pk=row_id).status == "failed"
        assert Notification.objects.get(pk=row_id).attempts == 2

        second = post_package(api, run_id="two", **HALT)
        row_id = str(Notification.objects.get(escalation=second).pk)
        send_notification_task(row_id)
        row = Notification.objects.get(pk=row_id)
        assert (row.status, row.attempts, row.last_error[:8]) == ("failed", 1, "HTTP 404")


def test_a_failing_channel_never_stops_the_others(reviewer, agent, eager, django_capture_on_commit_callbacks):
    dead = "http://127.0.0.1:9/nobody-listens"
    with Receiver() as hook:
        prefer(
            reviewer,
            {"halt_created": ["email", "slack", "webhook"]},
            slack_url=dead,
            webhook_url=hook.url,
        )
        with django_capture_on_commit_callbacks(execute=True):
            post_package(AgentClient(services.token_issue(agent=agent)), **HALT)
        hook.wait_for(1)

    by_channel = {row.channel: row for row in sent()}
    assert by_channel["slack"].status == "retrying"
    assert "ConnectError" in by_channel["slack"].last_error
    assert by_channel["email"].status == "sent"
    assert by_channel["webhook"].status == "sent"
    assert [m.to for m in mail.outbox] == [["alice@example.com"]]


def test_the_sweep_sends_what_a_lost_message_left_behind(reviewer, agent, eager):
    with Receiver() as hook:
        prefer(reviewer, {"halt_created": ["slack"]}, slack_url=hook.url)
        escalation = post_package(AgentClient(services.token_issue(agent=agent)), **HALT)
        row_id = str(Notification.objects.get(escalation=escalation).pk)  # its task was lost
        assert sweep_notifications_task() == 0  # fresh: left to its own task for a moment
        with time_machine.travel(timezone.now() + timedelta(seconds=30), tick=False):
            assert sweep_notifications_task() == 1
        hook.wait_for(1)
    assert Notification.objects.get(pk=row_id).status == "sent"


# ---------------------------------------------------------------- who hears what


def test_preferences_decide_who_hears_what(agent, reviewer, other_reviewer, manager):
    quiet_manager = make_user("quinn", "manager")
    prefer(quiet_manager, {"delivery_failed": []})
    prefer(other_reviewer, {"halt_created": ["email"]})
    escalation = post_package(AgentClient(services.token_issue(agent=agent)), **HALT)

    notify.notifications_fan_out(kind="halt_created", escalation_id=str(escalation.pk))
    notify.notifications_fan_out(kind="delivery_failed", escalation_id=str(escalation.pk), data={"delivery": "x"})

    got = {(row.recipient, row.kind, row.channel) for row in sent()}
    assert got == {
        ("bob", "halt_created", "email"),  # opted in
        ("maya", "delivery_failed", "email"),  # a manager, by default
    }


def test_a_level_tells_its_people_and_the_managers_when_it_says_so(agent, reviewer, other_reviewer, manager):
    levels_for(notify=[reviewer], notify_managers=True)
    escalation = post_package(AgentClient(services.token_issue(agent=agent)))

    notify.notifications_fan_out(kind="level_raised", escalation_id=str(escalation.pk), data={"level": 2})

    assert sorted(row.recipient for row in sent()) == ["alice", "maya"]
    assert sent(other_reviewer) == []


def test_the_same_event_told_twice_sends_once(agent, manager):
    escalation = post_package(AgentClient(services.token_issue(agent=agent)))
    data = {"delivery": "d-1", "attempts": 3, "error": "HTTP 500"}

    first = notify.notifications_fan_out(kind="delivery_failed", escalation_id=str(escalation.pk), data=data)
    again = notify.notifications_fan_out(kind="delivery_failed", escalation_id=str(escalation.pk), data=data)
    other = notify.notifications_fan_out(kind="delivery_failed", escalation_id=str(escalation.pk), data={"delivery": "d-2"})

    assert (len(first), again, len(other)) == (1, [], 1)
    assert Event.objects.filter(escalation=escalation, kind=Event.Kind.NOTIFIED).count() == 2


def test_a_drift_alert_reaches_the_managers_with_its_numbers(
    agent, manager, eager, django_capture_on_commit_callbacks
):
    numbers = {"this_week": 40, "usual": 9.5, "p_value": 0.0004}
    with django_capture_on_commit_callbacks(execute=True):
        notify.notifications_fan_out(kind="drift_alert", agent_id=agent.pk, data=numbers)
        notify.notifications_fan_out(kind="drift_alert", agent_id=agent.pk, data=numbers)

    (message,) = mail.outbox
    assert message.subject == "Drift alert: agent-007"
    assert "this week 40, usual 9.5, p value 0.0004" in message.body


def test_a_drift_alert_from_insights_reads_as_a_sentence_once_a_week(
    agent, manager, eager, django_capture_on_commit_callbacks
):
    week = {
        "week_start": "2026-03-02",
        "escalations": 41,
        "gate_checks": 200,
        "baseline_escalations": 40,
        "baseline_gate_checks": 800,
        "p_value": 0.0000123,
    }
    with django_capture_on_commit_callbacks(execute=True):
        signals.notable.send(sender=None, event="drift_alert", agent=agent, data=week)
        signals.notable.send(sender=None, event="drift_alert", agent=agent, data={**week, "p_value": 0.00001})

    (message,) = mail.outbox
    assert (
        "This week (week of 2026-03-02): 41 escalations in 200 gate checks, against 40 in 800 "
        "over the previous four weeks; p = 1.2e-05." in message.body
    )


@pytest.mark.django_db(transaction=True)
def test_an_events_outbox_rows_commit_or_roll_back_with_its_change(agent_with_token, reviewer):
    ensure_default_policies()
    prefer(reviewer, {"halt_created": ["email"]})
    api = AgentClient(agent_with_token[1])
    package = make_package(**HALT)

    def create_then_fail() -> None:
        with transaction.atomic():
            services.escalation_create(
                agent=agent_with_token[0], package=EscalationIn.model_validate(package).to_input(package)
            )
            assert Notification.objects.count() == 1  # written in the change's transaction
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError, match="rolled back"):
        create_then_fail()
    assert not Escalation.objects.exists()
    assert not Notification.objects.exists()

    escalation = post_package(api, **HALT)  # the API's own transaction commits
    (row,) = sent(reviewer)
    assert (row.kind, row.channel, row.escalation_id) == ("halt_created", "email", escalation.pk)


def test_a_receiver_that_fails_never_fails_the_write(api, caplog, django_capture_on_commit_callbacks):
    def broken(sender, **kwargs):
        raise RuntimeError("receiver down")

    signals.notable.connect(broken)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response = api.escalate(make_package(**HALT))
    finally:
        signals.notable.disconnect(broken)
    assert response.status_code == 201
    assert "notable halt_created: receiver" in caplog.text
    assert "receiver down" in caplog.text


def test_a_receiver_whose_query_fails_never_fails_the_write(api, reviewer, caplog):
    from django.db import connection

    prefer(reviewer, {"halt_created": ["email"]})

    def broken(sender, **kwargs):
        with connection.cursor() as cursor:
            # An error on every backend (SQLite answers 1 / 0 with NULL); on PostgreSQL the
            # transaction would be unusable after it.
            cursor.execute("SELECT * FROM no_such_table")

    signals.notable.connect(broken)
    try:
        response = api.escalate(make_package(**HALT))
    finally:
        signals.notable.disconnect(broken)
    assert response.status_code == 201
    assert Escalation.objects.filter(pk=response.json()["id"]).exists()
    assert "notable halt_created" in caplog.text


# ---------------------------------------------------------------- the preferences page


def test_the_page_shows_and_saves_what_reaches_you(reviewer_client, reviewer):
    page = reviewer_client.get("/settings/notifications")
    assert page.status_code == 200
    html = page.content.decode()
    assert "A new tier-4 halt" in html
    assert "The agent answered a question you asked it" in html
    assert "An agent went over its daily escalation budget" not in html  # managers only
    assert "Nothing sent to you yet." in html

    response = reviewer_client.post(
        "/settings/notifications",
        {"event_halt_created": ["email", "slack"], "slack_url": "https://hooks.slack.com/services/T/B/x"},
    )

    assert response.status_code == 302
    preference = NotificationPreference.objects.get(user=reviewer)
    assert preference.choices == {
        "halt_created": ["email", "slack"], "level_raised": [], "first_look_ended": [], "question_answered": [],
    }
    assert preference.slack_url == "https://hooks.slack.com/services/T/B/x"
    assert "Notification settings saved." in reviewer_client.get("/settings/notifications").content.decode()


def test_managers_see_their_events_with_email_on_by_default(manager_client):
    html = manager_client.get("/settings/notifications").content.decode()
    assert "An agent went over its daily escalation budget" in html
    assert 'name="event_over_budget" value="email"' in html
    assert 'name="event_over_budget" value="email" id="id_event_over_budget_0" checked' in html
    assert 'name="event_halt_created" value="email" id="id_event_halt_created_0" checked' not in html


def test_the_page_names_what_is_missing_and_never_fails(reviewer_client, reviewer, django_user_model):
    response = reviewer_client.post("/settings/notifications", {"event_halt_created": ["slack", "webhook"]})
    assert response.status_code == 422
    html = response.content.decode()
    assert "Slack incoming webhook URL: Needed: Slack is chosen for “A new tier-4 halt”." in html
    assert "Webhook URL: Needed: Webhook is chosen for “A new tier-4 halt”." in html

    no_mail = make_user("nomail", "reviewer")
    django_user_model.objects.filter(pk=no_mail.pk).update(email="")
    reviewer_client.force_login(django_user_model.objects.get(pk=no_mail.pk))
    response = reviewer_client.post("/settings/notifications", {"event_halt_created": ["email"]})
    assert response.status_code == 422
    assert "Your account has no e-mail address" in response.content.decode()

    for garbage in (
        {"event_halt_created": ["carrier-pigeon"]},
        {"slack_url": "javascript:alert(1)"},
        {"webhook_url": "ftp://example.com/x"},
        {"slack_url": "https://x.example/" + "a" * 600},
        {"event_level_raised": "\x00"},
    ):
        assert reviewer_client.post("/settings/notifications", garbage).status_code == 422, garbage
    assert not NotificationPreference.objects.exists()


def test_the_webhook_secret_is_shown_once(reviewer_client, reviewer):
    reviewer_client.post(
        "/settings/notifications",
        {"event_halt_created": ["webhook"], "webhook_url": "https://hooks.example.com/handoff"},
    )
    secret = NotificationPreference.objects.get(user=reviewer).webhook_secret
    assert secret.startswith("whsec_")

    first = reviewer_client.get("/settings/notifications").content.decode()
    assert secret in first
    assert "Shown once." in first
    second = reviewer_client.get("/settings/notifications").content.decode()
    assert secret not in second
    assert secret[:10] in second  # its start, to tell which one is set

    reviewer_client.post("/settings/notifications/secret")
    rotated = NotificationPreference.objects.get(user=reviewer).webhook_secret
    assert rotated != secret
    assert rotated in reviewer_client.get("/settings/notifications").content.decode()


def test_send_a_test_to_every_channel_set_up(
    reviewer_client, reviewer, eager, django_capture_on_commit_callbacks
):
    with Receiver() as hook:
        prefer(reviewer, {}, slack_url=hook.url)

        with django_capture_on_commit_callbacks(execute=True):
            response = reviewer_client.post("/settings/notifications/test", HTTP_HX_REQUEST="true")

        assert response.status_code == 200
        html = response.content.decode()
        assert 'id="recent"' in html
        assert "<html" not in html
        assert "Test queued: Email, Slack." in html
        hook.wait_for(1)
    assert [m.subject for m in mail.outbox] == ["Test notification from Handoff"]
    assert {row.status for row in sent(reviewer)} == {"sent"}
    assert "Test notification from Handoff" in reviewer_client.get("/settings/notifications").content.decode()

    # Without JavaScript: a redirect and a message.
    response = reviewer_client.post("/settings/notifications/test")
    assert response.status_code == 302


def test_the_page_is_for_reviewers(client, django_user_model):
    assert client.get("/settings/notifications").status_code == 302  # to the login page
    nobody = django_user_model.objects.create_user("nobody")
    client.force_login(nobody)
    assert client.get("/settings/notifications").status_code == 403
    assert client.post("/settings/notifications/test").status_code == 403
    Group.objects.get_or_create(name="reviewer")[0].user_set.add(nobody)
    assert client.get("/settings/notifications").status_code == 200


def test_what_an_agent_wrote_is_escaped_on_the_page(reviewer_client, reviewer, agent):
    prefer(reviewer, {"halt_created": ["email"]})
    escalation = post_package(
        AgentClient(services.token_issue(agent=agent)), confidence=0.2, title="<img src=x onerror=alert(1)>"
    )
    notify.notifications_fan_out(kind="halt_created", escalation_id=str(escalation.pk))

    html = reviewer_client.get("/settings/notifications").content.decode()
    assert "<img src=x" not in html
    assert "Halt: &lt;img src=x onerror=alert(1)&gt;" in html
    assert json.loads(json.dumps(sent(reviewer)[0].payload)) == {}


# ---------------------------------------------------------------- the Celery path (PostgreSQL + Redis)


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_fans_out_and_sends_without_holding_up_the_request(
    tmp_path, agent_with_token, reviewer, receiver
):
    """The whole path in the production shape: the API commits, the receiver enqueues on
    Redis, a `celery worker` subprocess creates the rows and sends them."""
    import os
    import time

    from django.db import connection

    from tests.processes import Worker, purge_queue

    need(bool(os.environ.get("REDIS_URL")), "Redis (REDIS_URL)")
    need(connection.vendor == "postgresql", "PostgreSQL (DATABASE_URL)")
    preference = prefer(
        reviewer, {"halt_created": ["slack", "webhook"]}, slack_url=receiver.url, webhook_url=receiver.url
    )
    purge_queue()
    worker = Worker(tmp_path, {"DB_POOL": "0"})
    try:
        worker.wait_ready()
        receiver.script(Reply(200, delay=3), Reply(200, delay=3))  # slow receivers
        started = time.monotonic()
        response = AgentClient(agent_with_token[1]).escalate(make_package(**HALT))
        answered_in = time.monotonic() - started
        assert response.status_code == 201, response.content

        requests = receiver.wait_for(2, timeout=30)
        signed = [r for r in requests if r.header("handoff-signature")]
        slack = [r for r in requests if not r.header("handoff-signature")]
        assert len(signed) == len(slack) == 1
        assert webhooks.verify(preference.webhook_secret, signed[0].body, signed[0].header("handoff-signature"))
        assert signed[0].json()["escalation"]["id"] == response.json()["id"]
        assert "Open in Handoff" in slack[0].json()["text"]
        deadline = time.monotonic() + 10
        while {row.status for row in sent()} != {"sent"}:
            assert time.monotonic() < deadline, (sent(), worker.log())
            time.sleep(0.05)
        # The request only enqueued: it never waited on the slow receivers.
        assert answered_in < 3
    finally:
        worker.stop()
        purge_queue()


def test_an_event_never_chosen_gets_its_default_and_a_choice_overrides_it():
    from notifications.rules import channels_for

    where = {"email": "a@example.com", "slack_url": "https://hooks.example/s", "webhook_url": ""}
    assert channels_for("over_budget", choices=None, **where) == ["email"]
    assert channels_for("over_budget", choices={"halt_created": ["slack"]}, **where) == ["email"]
    assert channels_for("over_budget", choices={"over_budget": []}, **where) == []
    assert channels_for("halt_created", choices=None, **where) == []
    # A channel not set up is skipped, whatever was chosen.
    assert channels_for("halt_created", choices={"halt_created": ["slack", "webhook"]}, **where) == ["slack"]
    assert channels_for("test", choices={}, **where) == ["email", "slack"]


def test_a_vanished_or_malformed_subject_sends_nothing(agent, manager):
    assert notify.notifications_fan_out(kind="halt_created", escalation_id="not-a-uuid") == []
    assert notify.notifications_fan_out(kind="halt_created", escalation_id="7f0c4a5e-0000-4000-8000-000000000000") == []
    assert notify.notifications_fan_out(kind="drift_alert", agent_id=10**9) == []
    assert send_notification_task("not-a-uuid") is None
    assert not Notification.objects.exists()


def test_operators_read_failed_notifications_in_the_admin(client, django_user_model, agent, manager):
    escalation = post_package(AgentClient(services.token_issue(agent=agent)))
    notify.notifications_fan_out(kind="delivery_failed", escalation_id=str(escalation.pk), data={"delivery": "x"})
    Notification.objects.update(status="failed", last_error="SMTPServerDisconnected: gone")
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.com", "pw"))

    page = client.get("/admin/notifications/notification/?status__exact=failed")

    assert page.status_code == 200
    assert "SMTPServerDisconnected: gone" in page.content.decode()
    assert client.get("/admin/notifications/notification/add/").status_code == 403


def test_a_broker_outage_at_commit_delays_a_notification_but_never_loses_it(
    api, reviewer, django_capture_on_commit_callbacks
):
    from django.test import override_settings

    from tests.conftest import free_port

    with Receiver() as hook:
        prefer(reviewer, {"halt_created": ["slack"]}, slack_url=hook.url)
        dead_broker = f"redis://127.0.0.1:{free_port()}/0"
        with (
            override_settings(CELERY_BROKER_URL=dead_broker),
            django_capture_on_commit_callbacks(execute=True),
        ):
            escalation = post_package(api, **HALT)  # the write stands

        (row,) = sent(reviewer)  # the outbox row exists though nothing was enqueued
        assert (row.channel, row.status, row.attempts) == ("slack", "pending", 0)
        assert hook.requests == []
        # The broker is back: beat's sweep, past the grace period, sends it.
        with time_machine.travel(timezone.now() + timedelta(seconds=30), tick=False):
            (row_id,) = notify.notifications_sweep()
        send_notification_task(row_id)
        hook.wait_for(1)
    row.refresh_from_db()
    assert row.status == "sent"
    assert Event.objects.filter(escalation=escalation, kind=Event.Kind.NOTIFIED).count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_crash_between_commit_and_enqueue_never_loses_a_notification(agent_with_token, reviewer, tmp_path):
    """Issue 9: a process creates a halt and is SIGKILLed by the first thing that runs after
    its commit, before anything is enqueued. The outbox row committed with the escalation,
    and beat's sweep sends it."""
    import os
    import signal
    import subprocess
    import sys

    from django.db import connection

    from tests.processes import BASE_DIR, production_env

    need(connection.vendor == "postgresql", "PostgreSQL (DATABASE_URL)")
    agent = agent_with_token[0]
    with Receiver() as hook:
        prefer(reviewer, {"halt_created": ["slack"]}, slack_url=hook.url)
        package = make_package(**HALT)
        code = f"""
import json, os, signal, django
django.setup()
from django.db import transaction
from escalations import services
from escalations.models import Agent
from escalations.schemas import EscalationIn
package = json.loads({json.dumps(json.dumps(package))})
with transaction.atomic():
    # The first callback after the commit kills the process: nothing is ever enqueued.
    transaction.on_commit(lambda: os.kill(os.getpid(), signal.SIGKILL))
    services.escalation_create(
        agent=Agent.objects.get(pk={agent.pk}), package=EscalationIn.model_validate(package).to_input(package)
    )
raise SystemExit("still alive after the commit")
"""
        died = subprocess.run(
            [sys.executable, "-c", code],
            cwd=BASE_DIR,
            env=production_env(
                redis_url=os.environ.get("REDIS_URL", ""),
                var_dir=tmp_path,
                DB_POOL="0",
                DJANGO_SETTINGS_MODULE="handoff_site.settings",
            ),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert died.returncode == -signal.SIGKILL, (died.returncode, died.stdout, died.stderr)

        escalation = Escalation.objects.get()  # the change committed
        (row,) = sent(reviewer)  # and so did its notification, though nothing was enqueued
        assert (row.escalation_id, row.channel, row.status, row.attempts) == (escalation.pk, "slack", "pending", 0)
        assert hook.requests == []
        # Beat's sweep, past the grace period, sends it.
        with time_machine.travel(timezone.now() + timedelta(seconds=30), tick=False):
            (row_id,) = notify.notifications_sweep()
        send_notification_task(row_id)
        (request,) = hook.wait_for(1)
    assert "Drop the users table?" in request.json()["text"]
    row.refresh_from_db()
    assert row.status == "sent"


@pytest.mark.django_db
def test_the_slack_columns_have_defaults_in_the_database_for_the_code_before_their_migration():
    # compose's migrate runs while the old web still serves: its inserts name neither column.
    from django.db import connection

    with connection.cursor() as cursor:
        described = connection.introspection.get_table_description(cursor, Notification._meta.db_table)
    defaults = {column.name: column.default for column in described}
    assert defaults["slack_shown_status"] is not None
    assert defaults["slack_settled"] is not None
