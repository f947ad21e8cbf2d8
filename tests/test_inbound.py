"""Deciding from the message (issue 12): Slack buttons, e-mail action links, web push.

Slack's Web API is a local stand-in (tests/slack_standin.py) that records calls; clicks
are posted to /integrations/slack/interactivity signed as Slack signs them. E-mail goes
through Django's locmem backend; push to a local endpoint, its payload decrypted here with
the subscription's private key."""

import base64
import importlib
import json
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta

import http_ece
import httpx
import pytest
import time_machine
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.core import mail
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from escalations import services as domain
from escalations.models import Decision, Escalation, Policy
from notifications import channels, inbound
from notifications import push as web_push
from notifications import services as notify
from notifications.models import SLACK_UNSETTLED, ActionLinkUse, InboundAction, Notification
from notifications.selectors import slack_behind
from notifications.tasks import SLACK_CLOSE_RETRIES, send_notification_task, sweep_slack_task
from reviews.services import reviewer_token_issue
from tests.conftest import free_port, index_plan, make_package, make_user, need, post_package
from tests.receiver import Receiver, Reply
from tests.slack_standin import SlackStandIn, signed_click

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TOKEN = "xoxb-test"
URL = "/integrations/slack/interactivity"
HALT = {"confidence": 0.2}
IRREVERSIBLE_OPTIONS = [
    {"key": "update-callers", "label": "Update all 14 callers", "recommended": True},
    {"key": "shim", "label": "Add a <b>shim</b> & go"},
    {"key": "drop-table", "label": "Drop the legacy table", "irreversible": True},
]


@pytest.fixture
def slack_api(settings):
    with SlackStandIn(token=TOKEN, members={"UEMAIL": {"email": "Alice@Example.com"}}) as standin:
        settings.SLACK_API_URL = standin.url
        settings.SLACK_BOT_TOKEN = TOKEN
        settings.SLACK_SIGNING_SECRET = SECRET
        settings.CELERY_TASK_ALWAYS_EAGER = True
        settings.CELERY_TASK_EAGER_PROPAGATES = True
        yield standin


def link_slack(user, member: str) -> None:
    notify.preferences_save(user=user, choices={"halt_created": ["slack", "email"]})
    inbound.slack_member_save(user=user, member_id=member)


def click(client: Client, escalation, option: str, *, member: str = "UALICE", **signing):
    value = json.dumps({"escalation": str(escalation.pk), "option": option})
    body, headers = signed_click(
        signing.pop("secret", SECRET), member=member, value=value, action_id=f"handoff_decide:{option}", **signing
    )
    return client.generic(
        "POST", URL, body, content_type=headers.pop("Content-Type"),
        headers=dict(headers),
    )


@pytest.fixture
def clicks(client, django_capture_on_commit_callbacks):
    """click() whose after-commit work (the Slack reply task) runs, as it does outside a
    test's transaction."""

    def run(escalation, option: str, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return click(client, escalation, option, **kwargs)

    return run


def send_all() -> None:
    for row in Notification.objects.filter(status__in=["pending", "retrying"]):
        send_notification_task(str(row.pk))


# ---------------------------------------------------------------- Slack: the message


@pytest.mark.django_db
def test_a_halt_reaches_slack_as_block_kit_with_buttons_for_reversible_options_only(api, reviewer, slack_api):
    link_slack(reviewer, "UALICE")
    escalation = post_package(api, options=IRREVERSIBLE_OPTIONS, **HALT)
    send_all()

    (call,) = slack_api.wait_for("chat.postMessage")
    assert call.args["channel"] == "UALICE"
    blocks = call.args["blocks"]
    text = json.dumps(blocks)
    assert "*Unsure:*" in text
    assert "Cost of delay: priority" in text
    assert "blocking 3 tasks" in text
    assert "(recommended)" in text
    assert "Add a &lt;b&gt;shim&lt;/b&gt; &amp; go" in text  # escaped for mrkdwn
    (actions,) = [block for block in blocks if block["type"] == "actions"]
    ids = [element["action_id"] for element in actions["elements"]]
    # The irreversible option has no decide button: only the dashboard decides it.
    assert ids == ["handoff_decide:update-callers", "handoff_decide:shim", "handoff_open"]
    assert actions["elements"][0]["style"] == "primary"
    assert actions["elements"][-1]["url"].endswith(f"/escalations/{escalation.pk}")
    assert json.loads(actions["elements"][1]["value"]) == {"escalation": str(escalation.pk), "option": "shim"}
    assert Notification.objects.get(channel="slack").status == "sent"


@pytest.mark.django_db
def test_an_irreversible_action_offers_no_decide_button_at_all(api, reviewer, slack_api):
    link_slack(reviewer, "UALICE")
    post_package(api, action={"name": "deploy", "irreversible": True}, **HALT)
    send_all()

    (call,) = slack_api.wait_for("chat.postMessage")
    (actions,) = [block for block in call.args["blocks"] if block["type"] == "actions"]
    assert [element["action_id"] for element in actions["elements"]] == ["handoff_open"]


@pytest.mark.django_db
def test_the_agents_answer_reaches_the_asker_in_slack_with_its_text_and_buttons(api, reviewer, slack_api):
    notify.preferences_save(user=reviewer, choices={"question_answered": ["slack"]})
    inbound.slack_member_save(user=reviewer, member_id="UALICE")
    escalation = post_package(api)
    domain.escalation_ask(escalation_id=escalation.pk, user=reviewer, text="Which table?")
    assert api.post_json(f"/api/v1/escalations/{escalation.pk}/answer", {"text": "users_old & <x>"}).status_code == 200

    send_all()

    (post,) = slack_api.wait_for("chat.postMessage")
    assert post.args["channel"] == "UALICE"
    blocks = json.dumps(post.args["blocks"])
    assert "Answer: users_old &amp; &lt;x&gt; (You asked: Which table?)" in blocks
    assert "handoff_decide:shim" in blocks  # back in the queue: decidable from here


# ---------------------------------------------------------------- Slack: the click


@pytest.mark.django_db
def test_a_signed_click_decides_as_the_mapped_user_and_updates_the_message(api, reviewer, slack_api, clicks):
    link_slack(reviewer, "UALICE")
    escalation = post_package(api, **HALT)

    response = clicks(escalation, "shim")

    assert response.status_code == 200
    escalation.refresh_from_db()
    decision = escalation.decision
    assert (decision.option_key, decision.decided_by_user, decision.decided_by_type) == ("shim", reviewer, "human")
    assert escalation.events.filter(kind="decided", actor="alice").exists()
    (update,) = slack_api.wait_for("chat.update")
    assert (update.args["channel"], update.args["ts"]) == ("D0001", "1700000000.000001")
    assert "Decided by alice: Add a compatibility shim." in update.args["text"]
    assert "handoff_decide" not in json.dumps(update.args["blocks"])  # no buttons left
    assert slack_api.calls_to("chat.postEphemeral") == []
    (action,) = InboundAction.objects.all()
    assert (action.via, action.outcome, action.user, action.external_user) == ("slack", "decided", reviewer, "UALICE")


@pytest.mark.django_db
def test_a_member_is_mapped_by_their_confirmed_slack_email(api, reviewer, slack_api, clicks):
    escalation = post_package(api, **HALT)  # alice@example.com has no member id saved

    assert clicks(escalation, "shim", member="UEMAIL").status_code == 200

    escalation.refresh_from_db()
    assert escalation.decision.decided_by_user == reviewer
    (info,) = slack_api.calls_to("users.info")
    assert info.args["user"] == "UEMAIL"


@pytest.mark.django_db
def test_an_unconfirmed_slack_email_maps_nobody(api, reviewer, slack_api, clicks):
    slack_api.members["UEMAIL"]["confirmed"] = False
    escalation = post_package(api, **HALT)

    assert clicks(escalation, "shim", member="UEMAIL").status_code == 200

    assert Escalation.objects.get(pk=escalation.pk).is_open
    (ephemeral,) = slack_api.wait_for("chat.postEphemeral")
    assert "not linked to a Handoff reviewer" in ephemeral.args["text"]


@pytest.mark.django_db
@pytest.mark.parametrize("case", ["forged", "stale", "unsigned"])
def test_a_forged_or_stale_signature_is_401_and_decides_nothing(api, reviewer, slack_api, clicks, case):
    link_slack(reviewer, "UALICE")
    escalation = post_package(api, **HALT)
    signing = {
        "forged": {"secret": "not-the-signing-secret"},
        "stale": {"at": time.time() - 5 * 60 - 1},
        "unsigned": {"signature": ""},
    }[case]

    response = clicks(escalation, "shim", **signing)

    assert response.status_code == 401
    assert Escalation.objects.get(pk=escalation.pk).is_open
    assert not Decision.objects.exists()
    assert slack_api.calls == []


@pytest.mark.django_db
def test_refusals_are_ephemeral_recorded_and_change_nothing(api, reviewer, slack_api, clicks):
    link_slack(reviewer, "UALICE")
    outsider = make_user("olga")  # no role
    inbound.slack_member_save(user=outsider, member_id="UOLGA")
    escalation = post_package(api, options=IRREVERSIBLE_OPTIONS, **HALT)

    # An irreversible option, even in a hand-made payload; a member nobody linked; no role.
    clicks(escalation, "drop-table")
    clicks(escalation, "shim", member="UNOBODY")
    clicks(escalation, "shim", member="UOLGA")

    assert Escalation.objects.get(pk=escalation.pk).is_open
    texts = [call.args["text"] for call in slack_api.wait_for("chat.postEphemeral", 3)]
    assert "irreversible and is decided in Handoff" in texts[0]
    assert "not linked to a Handoff reviewer" in texts[1]
    assert "needs the reviewer role" in texts[2]
    assert [call.args["user"] for call in slack_api.calls_to("chat.postEphemeral")] == ["UALICE", "UNOBODY", "UOLGA"]
    assert slack_api.calls_to("chat.update") == []
    outcomes = InboundAction.objects.order_by("at", "id").values_list("outcome", "external_user", "option_key")
    assert list(outcomes) == [
        ("refused", "UALICE", "drop-table"), ("refused", "UNOBODY", "shim"), ("refused", "UOLGA", "shim"),
    ]


@pytest.mark.django_db
def test_a_click_after_a_dashboard_decision_answers_already_decided_by(api, reviewer, other_reviewer, slack_api, clicks):
    link_slack(reviewer, "UALICE")
    escalation = post_package(api, **HALT)
    dashboard = Client()
    dashboard.force_login(other_reviewer)
    dashboard.post(f"/escalations/{escalation.pk}/decide", {"kind": "option", "option": "update-callers"})

    clicks(escalation, "shim")

    escalation.refresh_from_db()
    assert escalation.decision.option_key == "update-callers"
    assert Decision.objects.count() == 1
    (ephemeral,) = slack_api.wait_for("chat.postEphemeral")
    assert ephemeral.args["text"] == "Already decided. Decided by bob: Update all 14 callers."
    (update,) = slack_api.wait_for("chat.update")
    assert "Decided by bob" in update.args["text"]
    assert InboundAction.objects.get().outcome == "already_decided"


# ---------------------------------------------------------------- Slack: decided elsewhere


def posted_halt(api, reviewer, slack_api, **package):
    """A halt the Slack app posted to alice, its address kept on the row."""
    link_slack(reviewer, "UALICE")
    escalation = post_package(api, **HALT, **package)
    send_all()
    (post,) = slack_api.wait_for("chat.postMessage")
    assert "handoff_decide:shim" in json.dumps(post.args["blocks"])
    row = Notification.objects.get(channel="slack")
    assert (row.slack_channel, row.slack_ts) == ("UALICE", "1700000000.000001")  # as Slack answered
    return escalation


def decide_on_dashboard(user, escalation, option="update-callers"):
    dashboard = Client()
    dashboard.force_login(user)
    return dashboard.post(f"/escalations/{escalation.pk}/decide", {"kind": "option", "option": option})


def decide_by_api(user, escalation, option="update-callers"):
    token = reviewer_token_issue(user=user)
    return Client().post(
        f"/api/v1/review/escalations/{escalation.pk}/decision", {"kind": "option", "option": option},
        content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}",
    )


def decide_by_timeout(user, escalation, option="update-callers"):
    Escalation.objects.filter(pk=escalation.pk).update(
        timeout_option=option, respond_by=timezone.now() - timedelta(seconds=1)
    )
    assert domain.timeouts_apply() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("decide", "by"),
    [(decide_on_dashboard, "bob"), (decide_by_api, "bob"), (decide_by_timeout, "timeout")],
)
def test_a_decision_elsewhere_updates_the_posted_slack_message_once(
    api, reviewer, other_reviewer, slack_api, django_capture_on_commit_callbacks, decide, by
):
    escalation = posted_halt(api, reviewer, slack_api)

    with django_capture_on_commit_callbacks(execute=True):
        decide(other_reviewer, escalation)

    assert Escalation.objects.get(pk=escalation.pk).decision.option_key == "update-callers"
    (update,) = slack_api.wait_for("chat.update")
    assert (update.args["channel"], update.args["ts"]) == ("UALICE", "1700000000.000001")
    assert update.args["text"] == f"Decided by {by}: Update all 14 callers."
    blocks = json.dumps(update.args["blocks"])
    assert "handoff_decide" not in blocks
    assert "handoff_open" in blocks  # only Open in Handoff is left
    time.sleep(0.2)
    assert len(slack_api.calls_to("chat.update")) == 1


@pytest.mark.django_db
def test_the_agent_withdrawing_closes_the_posted_slack_message(
    api, reviewer, slack_api, django_capture_on_commit_callbacks
):
    escalation = posted_halt(api, reviewer, slack_api)

    with django_capture_on_commit_callbacks(execute=True):
        assert api.post(f"/api/v1/escalations/{escalation.pk}/withdraw").status_code == 200

    (update,) = slack_api.wait_for("chat.update")
    assert (update.args["channel"], update.args["ts"]) == ("UALICE", "1700000000.000001")
    assert update.args["text"] == "This escalation is withdrawn."
    blocks = json.dumps(update.args["blocks"])
    assert "handoff_decide" not in blocks
    assert "handoff_open" in blocks


def sweep_slack() -> int:
    """Beat's Slack sweep, run past its grace period for changes just committed."""
    with time_machine.travel(timezone.now() + timedelta(seconds=11), tick=True):
        return sweep_slack_task()


def assert_closed(update, text: str) -> None:
    assert (update.args["channel"], update.args["ts"]) == ("UALICE", "1700000000.000001")
    assert update.args["text"] == text
    blocks = json.dumps(update.args["blocks"])
    assert "handoff_decide" not in blocks
    assert "handoff_open" in blocks


def with_decision_lifetime(seconds: int = 3600) -> None:
    """Decisions from now on expire `seconds` after they are made (valid_until): a test moves
    it into the past, as time passing would."""
    Policy.objects.filter(domain="default").update(decision_lifetime_seconds=seconds)


def posted_and_decided(api, reviewer, other_reviewer, slack_api, on_commit, *, lifetime: int | None = None):
    """posted_halt, decided by bob by the reviewer API (its decision expiring `lifetime`
    seconds later, or never): the message updated, nothing behind."""
    escalation = posted_halt(api, reviewer, slack_api)
    if lifetime is not None:
        with_decision_lifetime(lifetime)
    with on_commit(execute=True):
        decide_by_api(other_reviewer, escalation)
    (decided,) = slack_api.wait_for("chat.update")
    assert decided.args["text"] == "Decided by bob: Update all 14 callers."
    assert Notification.objects.get(channel="slack").slack_shown_status == "decided"
    assert sweep_slack() == 0
    return escalation


@pytest.mark.django_db
def test_a_decision_made_with_the_broker_down_reaches_slack_by_the_sweep_once(
    api, reviewer, other_reviewer, slack_api, caplog, django_capture_on_commit_callbacks
):
    escalation = posted_halt(api, reviewer, slack_api)
    dead_broker = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there

    with (
        override_settings(CELERY_TASK_ALWAYS_EAGER=False, CELERY_BROKER_URL=dead_broker),
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert decide_on_dashboard(other_reviewer, escalation).status_code == 302

    assert Escalation.objects.get(pk=escalation.pk).status == "decided"
    assert "the sweep will update them" in caplog.text
    assert slack_api.calls_to("chat.update") == []  # the message still shows its buttons
    assert Notification.objects.get(channel="slack").slack_shown_status == ""
    assert sweep_slack_task() == 0  # within the grace period: left to the task (that never came)

    assert sweep_slack() == 1  # the broker is back

    (update,) = slack_api.wait_for("chat.update")
    assert_closed(update, "Decided by bob: Update all 14 callers.")
    assert Notification.objects.get(channel="slack").slack_shown_status == "decided"
    assert sweep_slack() == 0
    assert len(slack_api.calls) == 2  # the post and one update: a second sweep sends nothing


@pytest.mark.django_db
def test_an_expired_decision_reaches_the_slack_message_by_the_sweep(
    api, reviewer, other_reviewer, slack_api, django_capture_on_commit_callbacks
):
    escalation = posted_and_decided(
        api, reviewer, other_reviewer, slack_api, django_capture_on_commit_callbacks, lifetime=3600
    )
    lapse(escalation)

    assert domain.decisions_expire() == 1  # its after-commit update never runs: lost, as in a crash
    assert Notification.objects.get(channel="slack").slack_shown_status == "decided"  # behind now
    assert sweep_slack() == 1

    _, expired = slack_api.wait_for("chat.update", 2)
    assert_closed(
        expired, "Decided by bob: Update all 14 callers. The decision expired before the agent acted on it."
    )
    assert Notification.objects.get(channel="slack").slack_shown_status == "expired"
    assert sweep_slack() == 0
    assert len(slack_api.calls_to("chat.update")) == 2
    # A click on it now says so too (the same words, inbound.decided_text).
    assert inbound.decided_text(Escalation.objects.get(pk=escalation.pk)) == expired.args["text"]


def expire_by_the_sweep(api, escalation) -> None:
    assert domain.decisions_expire() == 1


def expire_by_a_late_ack(api, escalation) -> None:
    late = api.post_json(f"/api/v1/escalations/{escalation.pk}/ack")
    assert late.status_code == 409
    assert late.json()["type"].endswith("/decision-expired")


@pytest.mark.django_db
@pytest.mark.parametrize("expire", [expire_by_the_sweep, expire_by_a_late_ack])
def test_an_expired_decision_updates_the_slack_message_at_once_and_tells_nobody_else(
    api, reviewer, other_reviewer, slack_api, django_capture_on_commit_callbacks, caplog, expire
):
    escalation = posted_and_decided(
        api, reviewer, other_reviewer, slack_api, django_capture_on_commit_callbacks, lifetime=3600
    )
    rows = set(Notification.objects.values_list("pk", flat=True))  # the halt's Slack message and e-mail
    assert len(rows) == 2
    mails = len(mail.outbox)
    lapse(escalation)

    with django_capture_on_commit_callbacks(execute=True):
        expire(api, escalation)

    _, expired = slack_api.wait_for("chat.update", 2)
    assert_closed(
        expired, "Decided by bob: Update all 14 callers. The decision expired before the agent acted on it."
    )
    assert Notification.objects.get(channel="slack").slack_shown_status == "expired"
    assert sweep_slack() == 0  # nothing left for the sweep
    # No message of its own, on any channel: no new outbox row, no e-mail, no complaint.
    assert set(Notification.objects.values_list("pk", flat=True)) == rows
    assert len(mail.outbox) == mails
    assert "notifications knows" not in caplog.text
    assert len(slack_api.calls) == 3  # the post and two updates


def lapse(escalation) -> None:
    """Its decision's lifetime past, as if the time had passed (the decision's valid_until and
    the escalation's copy of it, expires_at)."""
    past = timezone.now() - timedelta(seconds=1)
    Decision.objects.filter(escalation=escalation).update(valid_until=past)
    Escalation.objects.filter(pk=escalation.pk).update(expires_at=past)


def on_own_connection(work, *args):
    """work(*args) in a thread, on the thread's own database connection, closed after."""
    try:
        return work(*args)
    finally:
        connection.close()


def done_or_waiting_on_a_lock(future: Future, timeout: float = 10) -> None:
    """Until `future` is done or some backend waits on a row lock (PostgreSQL)."""
    deadline = time.monotonic() + timeout
    while not future.done():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return
        assert time.monotonic() < deadline, "neither done nor waiting on a lock"
        time.sleep(0.02)


@pytest.mark.django_db(transaction=True)
def test_a_decision_expiring_while_its_slow_update_is_on_its_way_leaves_the_message_expired(
    api, reviewer, other_reviewer, slack_api
):
    need(connection.vendor == "postgresql", "PostgreSQL (DATABASE_URL): row locks")
    escalation = posted_halt(api, reviewer, slack_api)
    with_decision_lifetime()
    slow = slack_api.hold("chat.update")
    expired_text = "Decided by bob: Update all 14 callers. The decision expired before the agent acted on it."

    with ThreadPoolExecutor(2) as pool:
        try:
            # Run A: the decision's own update, its chat.update slow on its way to Slack.
            decided = pool.submit(on_own_connection, decide_by_api, other_reviewer, escalation)
            assert slow.arrived.wait(10)
            lapse(escalation)
            # Run B: the expiry's update, while A's is still on its way.
            expiring = pool.submit(on_own_connection, domain.decisions_expire)
            done_or_waiting_on_a_lock(expiring)
            assert Escalation.objects.get(pk=escalation.pk).status == "expired"  # A's lock held up no expiry
        finally:
            slow.release()
        assert decided.result(timeout=30).status_code == 201
        assert expiring.result(timeout=30) == 1

    updates = slack_api.calls_to("chat.update")
    assert [update.args["text"] for update in updates] == ["Decided by bob: Update all 14 callers.", expired_text]
    assert_closed(updates[-1], expired_text)
    assert Notification.objects.get(channel="slack").slack_shown_status == "expired"
    assert sweep_slack() == 0


@pytest.mark.django_db(transaction=True)
def test_without_row_locks_the_runs_take_turns_on_the_process_lock(api, reviewer, other_reviewer, slack_api, monkeypatch):
    # The embedded mode (SQLite, every task in the one process): no row locks to wait on.
    escalation = posted_halt(api, reviewer, slack_api)
    Escalation.objects.filter(pk=escalation.pk).update(status="withdrawn")
    monkeypatch.setattr(type(connection.features), "has_select_for_update", False)
    with ThreadPoolExecutor(1) as pool:
        with channels._EMBEDDED_TURNS:  # another run is on its way
            closing = pool.submit(on_own_connection, channels.slack_close, str(escalation.pk))
            time.sleep(0.3)
            assert not closing.done()
            assert slack_api.calls_to("chat.update") == []
        assert closing.result(timeout=10) is False
    assert len(slack_api.calls_to("chat.update")) == 1


@pytest.mark.django_db
def test_a_resumed_escalations_message_is_recorded_settled_without_an_update(
    api, reviewer, other_reviewer, slack_api, django_capture_on_commit_callbacks
):
    escalation = posted_and_decided(
        api, reviewer, other_reviewer, slack_api, django_capture_on_commit_callbacks, lifetime=3600
    )
    assert Notification.objects.filter(SLACK_UNSETTLED).count() == 1  # the decision may still expire

    assert api.post_json(f"/api/v1/escalations/{escalation.pk}/ack").status_code == 200
    assert sweep_slack() == 1

    row = Notification.objects.get(channel="slack")
    assert (row.slack_shown_status, row.slack_settled) == ("resumed", True)
    assert len(slack_api.calls_to("chat.update")) == 1  # "Decided by bob" still says it all
    assert sweep_slack() == 0


@pytest.mark.django_db
def test_a_decision_that_never_expires_settles_its_message_out_of_the_sweeps_index(
    api, reviewer, other_reviewer, slack_api, django_capture_on_commit_callbacks
):
    """A polling agent may never acknowledge: its decided escalation's message must not stay
    among those beat's sweep scans every minute, forever (bench/README.md, "The Slack sweep
    at scale"). Only `resumed` may follow, and it reads the same."""
    escalation = posted_and_decided(api, reviewer, other_reviewer, slack_api, django_capture_on_commit_callbacks)
    assert Decision.objects.get(escalation=escalation).valid_until is None  # the default policy's

    assert not Notification.objects.filter(SLACK_UNSETTLED).exists()
    assert api.post_json(f"/api/v1/escalations/{escalation.pk}/ack").status_code == 200
    assert sweep_slack() == 0
    assert Notification.objects.get(channel="slack").slack_shown_status == "decided"
    assert len(slack_api.calls_to("chat.update")) == 1


def test_the_sweeps_index_is_the_selectors_rule() -> None:
    """slack_behind reads SLACK_UNSETTLED; the index the migration builds has the same
    condition (a migration freezes its own copy)."""
    migration = importlib.import_module("notifications.migrations.0006_slack_settled")
    (index,) = [index for index in Notification._meta.indexes if index.name == migration.INDEX.name]
    assert index.condition == migration.INDEX.condition == SLACK_UNSETTLED


@pytest.mark.django_db
def test_the_sweeps_query_reads_its_partial_index(
    api, reviewer, other_reviewer, slack_api, django_capture_on_commit_callbacks
):
    """The sweep's cost is its index's size (what is open or may still change), not the
    table's: its query must imply the index's condition, or PostgreSQL cannot use it, and
    look each message's escalation up by key (a SubPlan): as a join sorted by the
    escalation's updated_at, PostgreSQL walked every closed escalation at 1,000,000."""
    need(connection.vendor == "postgresql", "PostgreSQL (DATABASE_URL)")
    posted_and_decided(api, reviewer, other_reviewer, slack_api, django_capture_on_commit_callbacks, lifetime=3600)
    with CaptureQueriesContext(connection) as queries:
        assert slack_behind(limit=20) == []
    (query,) = queries.captured_queries

    plan = index_plan(query["sql"])
    assert "notif_slack_sweep_idx" in plan, plan
    assert "SubPlan" in plan, plan
    assert "Join" not in plan, plan


@pytest.mark.django_db
def test_a_busy_slack_is_left_to_the_next_sweep_and_a_deleted_message_for_good(
    api, reviewer, other_reviewer, slack_api, django_capture_on_commit_callbacks, caplog
):
    escalation = posted_halt(api, reviewer, slack_api)
    task_tries = SLACK_CLOSE_RETRIES + 1
    slack_api.fail("chat.update", *["ratelimited"] * (task_tries + 1))  # the task's tries, then the sweep's
    with django_capture_on_commit_callbacks(execute=True):
        decide_on_dashboard(other_reviewer, escalation)

    assert len(slack_api.calls_to("chat.update")) == task_tries
    assert sweep_slack() == 0
    assert Notification.objects.get(channel="slack").slack_shown_status == ""
    slack_api.fail("chat.update", "message_not_found")  # deleted meanwhile: nothing to update
    assert sweep_slack() == 1

    assert Notification.objects.get(channel="slack").slack_shown_status == "decided"
    assert sweep_slack() == 0
    assert len(slack_api.calls_to("chat.update")) == task_tries + 2
    assert "message_not_found" in caplog.text


@pytest.mark.django_db
def test_a_click_on_the_posted_message_updates_it_once_and_a_second_click_says_already_decided(
    api, reviewer, other_reviewer, slack_api, clicks
):
    escalation = posted_halt(api, reviewer, slack_api)
    link_slack(other_reviewer, "UBOB")

    clicks(escalation, "shim", channel="UALICE", ts="1700000000.000001")

    (update,) = slack_api.wait_for("chat.update")
    assert update.args["text"] == "Decided by alice: Add a compatibility shim."
    assert slack_api.calls_to("chat.postEphemeral") == []

    clicks(escalation, "update-callers", member="UBOB", channel="UALICE", ts="1700000000.000001")

    (ephemeral,) = slack_api.wait_for("chat.postEphemeral")
    assert ephemeral.args["text"] == "Already decided. Decided by alice: Add a compatibility shim."
    assert len(slack_api.wait_for("chat.update", 2)) == 2  # the clicked message, said again
    assert Escalation.objects.get(pk=escalation.pk).decision.option_key == "shim"


@pytest.mark.django_db
def test_a_message_sent_after_the_decision_goes_out_without_buttons(api, reviewer, other_reviewer, slack_api):
    link_slack(reviewer, "UALICE")
    escalation = post_package(api, **HALT)
    decide_on_dashboard(other_reviewer, escalation)  # before the Slack message went out

    send_all()

    (post,) = slack_api.wait_for("chat.postMessage")
    assert post.args["text"] == "Decided by bob: Update all 14 callers."
    assert "handoff_decide" not in json.dumps(post.args["blocks"])


@pytest.mark.django_db
def test_a_busy_slack_is_tried_again_until_the_message_is_updated(
    api, reviewer, other_reviewer, slack_api, caplog, django_capture_on_commit_callbacks
):
    escalation = posted_halt(api, reviewer, slack_api)
    slack_api.fail("chat.update", *["ratelimited"] * SLACK_CLOSE_RETRIES)  # all tries but the last

    with django_capture_on_commit_callbacks(execute=True):
        decide_on_dashboard(other_reviewer, escalation)

    *failed, update = slack_api.wait_for("chat.update", SLACK_CLOSE_RETRIES + 1)
    assert all(call.args == update.args for call in failed)
    assert_closed(update, "Decided by bob: Update all 14 callers.")
    assert Notification.objects.get(channel="slack").slack_shown_status == "decided"
    assert "not updated" not in caplog.text
    assert sweep_slack() == 0


@pytest.mark.django_db
def test_slack_down_when_the_message_is_updated_never_breaks_the_decision(
    api, reviewer, other_reviewer, slack_api, settings, caplog, django_capture_on_commit_callbacks
):
    escalation = posted_halt(api, reviewer, slack_api)
    settings.SLACK_API_URL = f"http://127.0.0.1:{free_port()}/api/"  # nothing listens there

    with django_capture_on_commit_callbacks(execute=True):
        response = decide_on_dashboard(other_reviewer, escalation)

    assert response.status_code == 302
    assert Escalation.objects.get(pk=escalation.pk).status == "decided"
    tries = [r for r in caplog.records if r.getMessage().startswith("slack chat.update of UALICE/1700000000.000001")]
    assert len(tries) == SLACK_CLOSE_RETRIES + 1  # every try made, none mistaken for a broker outage
    assert "Slack kept failing; left to the sweep" in caplog.text
    assert "the sweep will update them" not in caplog.text
    assert Notification.objects.get(channel="slack").slack_shown_status == ""

    settings.SLACK_API_URL = slack_api.url  # Slack is back: the sweep updates the message
    assert sweep_slack() == 1
    (update,) = slack_api.wait_for("chat.update")
    assert_closed(update, "Decided by bob: Update all 14 callers.")


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_updates_the_message_after_an_api_decision_retrying_a_busy_slack(
    tmp_path, api, reviewer, other_reviewer, settings
):
    """The production shape: the decision commits, the receiver enqueues on Redis, a `celery
    worker` subprocess posts and later updates the message; Slack's first answer to the
    update is `ratelimited`, so the update is tried again."""
    from tests.processes import Worker, purge_queue

    need(bool(os.environ.get("REDIS_URL")), "Redis (REDIS_URL)")
    need(connection.vendor == "postgresql", "PostgreSQL (DATABASE_URL)")
    with SlackStandIn(token=TOKEN) as standin:
        slack_env = {"SLACK_API_URL": standin.url, "SLACK_BOT_TOKEN": TOKEN, "SLACK_SIGNING_SECRET": SECRET}
        settings.SLACK_API_URL, settings.SLACK_BOT_TOKEN, settings.SLACK_SIGNING_SECRET = slack_env.values()
        link_slack(reviewer, "UALICE")
        purge_queue()
        worker = Worker(tmp_path, {"DB_POOL": "0", "WEBHOOK_BACKOFF_BASE_SECONDS": "0.4", **slack_env})
        try:
            worker.wait_ready()
            escalation = post_package(api, **HALT)
            standin.wait_for("chat.postMessage", timeout=30)
            deadline = time.monotonic() + 10
            while not Notification.objects.filter(channel="slack").exclude(slack_ts="").exists():
                assert time.monotonic() < deadline, worker.log()
                time.sleep(0.05)
            standin.fail("chat.update", "ratelimited")

            response = decide_by_api(other_reviewer, escalation, option="shim")

            assert response.status_code == 201, response.content
            failed, update = standin.wait_for("chat.update", 2, timeout=30)
            assert failed.args == update.args
            assert update.args["text"] == "Decided by bob: Add a compatibility shim."
            assert "handoff_decide" not in json.dumps(update.args["blocks"])
            time.sleep(1)
            assert len(standin.calls_to("chat.update")) == 2, worker.log()
        finally:
            worker.stop()
            purge_queue()


@pytest.mark.django_db(transaction=True)
def test_concurrent_slack_and_dashboard_decisions_make_exactly_one(api, reviewer, other_reviewer, slack_api):
    link_slack(reviewer, "UALICE")
    escalations = [post_package(api, run_id=f"run-{n}", **HALT) for n in range(4)]

    for escalation in escalations:
        barrier = threading.Barrier(2)
        answers: dict = {}

        def from_slack(escalation=escalation, barrier=barrier, answers=answers):
            barrier.wait()
            answers["slack"] = click(Client(), escalation, "shim").status_code
            connection.close()

        def from_dashboard(escalation=escalation, barrier=barrier, answers=answers):
            browser = Client()
            browser.force_login(other_reviewer)
            barrier.wait()
            answers["dashboard"] = browser.post(  # as the page's htmx form posts it
                f"/escalations/{escalation.pk}/decide", {"kind": "option", "option": "update-callers"},
                headers={"HX-Request": "true"},
            ).status_code
            connection.close()

        threads = [threading.Thread(target=from_slack), threading.Thread(target=from_dashboard)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)

        assert answers["slack"] == 200
        assert answers["dashboard"] in (200, 409)
        assert Decision.objects.filter(escalation=escalation).count() == 1
        decision = Decision.objects.get(escalation=escalation)
        outcome = InboundAction.objects.get(escalation=escalation).outcome
        # Whoever lost was told so: the Slack click is "already decided", or the dashboard 409.
        assert (outcome == "decided") == (decision.decided_by_name == "alice")
        assert (answers["dashboard"] == 409) == (decision.decided_by_name == "alice")


@pytest.mark.django_db(transaction=True)
def test_the_agents_long_poll_returns_after_a_slack_click(live_server_asgi, agent_with_token, reviewer, slack_api):
    link_slack(reviewer, "UALICE")
    headers = {"Authorization": f"Bearer {agent_with_token[1]}"}
    with httpx.Client(base_url=live_server_asgi, headers=headers, timeout=30) as agent:
        escalation_id = agent.post("/api/v1/escalations", json=make_package(**HALT)).json()["id"]
        value = json.dumps({"escalation": escalation_id, "option": "shim"})
        body, signed = signed_click(SECRET, member="UALICE", value=value, action_id="handoff_decide:shim")
        answers: dict = {}

        def slack_clicks():
            time.sleep(0.5)
            answers["click"] = httpx.post(f"{live_server_asgi}{URL}", content=body, headers=signed, timeout=10)
            answers["clicked"] = time.monotonic()

        thread = threading.Thread(target=slack_clicks)
        thread.start()
        started = time.monotonic()
        response = agent.get(f"/api/v1/escalations/{escalation_id}", params={"wait": 20})
        answered = time.monotonic()
        thread.join()

    assert answers["click"].status_code == 200
    assert response.status_code == 200
    assert response.json()["status"] == "decided"
    assert response.json()["decision"]["option"] == "shim"
    assert answered - started >= 0.4
    assert answered - answers["clicked"] < 2
    slack_api.wait_for("chat.update")


# ---------------------------------------------------------------- e-mail action links


def emailed_links(reviewer, api, **package):
    notify.preferences_save(user=reviewer, choices={"halt_created": ["email"]})
    escalation = post_package(api, **{**HALT, **package})
    send_all()
    (message,) = mail.outbox
    return escalation, message


def link_of(message, label: str) -> str:
    line = next(line for line in message.body.splitlines() if line.strip().startswith(label))
    url = line.split(": ", 1)[1].strip()
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


@pytest.mark.django_db
def test_an_email_has_escaped_html_and_text_with_a_link_per_reversible_option(api, reviewer):
    escalation, message = emailed_links(
        reviewer, api, title="Drop <script>alert(1)</script> & co?", options=IRREVERSIBLE_OPTIONS
    )

    ((html, kind),) = message.alternatives
    assert kind == "text/html"
    assert "<script>alert(1)</script>" not in html
    assert "Drop &lt;script&gt;alert(1)&lt;/script&gt; &amp; co?" in html
    assert "Add a &lt;b&gt;shim&lt;/b&gt; &amp; go" in html
    assert message.body.count("/notifications/act/") == 2  # not the irreversible option
    assert "Drop the legacy table" not in message.body.split("Open in Handoff")[0]
    assert html.count("/notifications/act/") == 2
    assert f"/escalations/{escalation.pk}" in html


@pytest.mark.django_db
def test_an_email_link_get_decides_nothing_its_post_decides_once(api, reviewer):
    escalation, message = emailed_links(reviewer, api)
    path = link_of(message, "Add a compatibility shim")
    anonymous = Client()  # the link is the credential: no session needed

    for _ in range(3):  # a mail scanner following the link, then the person
        page = anonymous.get(path)
        assert page.status_code == 200
        assert b"Confirm your decision" in page.content
        assert b"Add a compatibility shim" in page.content
        assert b"as <strong>alice</strong>" in page.content
    assert Escalation.objects.get(pk=escalation.pk).is_open
    assert not ActionLinkUse.objects.exists()

    decided = anonymous.post(path)

    assert decided.status_code == 200
    assert b"Decided by alice: Add a compatibility shim." in decided.content
    escalation.refresh_from_db()
    assert (escalation.decision.option_key, escalation.decision.decided_by_user) == ("shim", reviewer)
    assert escalation.events.filter(kind="decided", actor="alice").exists()
    again = anonymous.post(path)
    assert again.status_code == 410
    assert b"already been used" in again.content
    assert anonymous.get(path).status_code == 410
    assert Decision.objects.count() == 1
    assert list(InboundAction.objects.values_list("via", "outcome")) == [("email", "decided")]


@pytest.mark.django_db
def test_an_expired_or_tampered_link_is_refused_with_a_clear_page(api, reviewer, settings):
    escalation, message = emailed_links(reviewer, api)
    path = link_of(message, "Add a compatibility shim")

    with time_machine.travel(timedelta(seconds=settings.ACTION_LINK_MAX_AGE_SECONDS + 5), tick=False):
        expired_get, expired_post = Client().get(path), Client().post(path)
    tampered = Client().post(path[:-3] + "xyz")

    for page in (expired_get, expired_post):
        assert page.status_code == 410
        assert b"This link has expired" in page.content
    assert tampered.status_code == 410
    assert b"not a valid Handoff link" in tampered.content
    assert Escalation.objects.get(pk=escalation.pk).is_open


@pytest.mark.django_db
def test_a_link_for_an_escalation_decided_elsewhere_says_who_decided(api, reviewer, other_reviewer):
    escalation, message = emailed_links(reviewer, api)
    path = link_of(message, "Add a compatibility shim")
    dashboard = Client()
    dashboard.force_login(other_reviewer)
    dashboard.post(f"/escalations/{escalation.pk}/decide", {"kind": "option", "option": "update-callers"})

    page = Client().post(path)

    assert page.status_code == 409
    assert b"Decided by bob: Update all 14 callers." in page.content
    assert Decision.objects.get().option_key == "update-callers"


# ---------------------------------------------------------------- web push


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture
def vapid(settings):
    key = ec.generate_private_key(ec.SECP256R1())
    settings.VAPID_PRIVATE_KEY = b64(key.private_numbers().private_value.to_bytes(32, "big"))
    settings.VAPID_PUBLIC_KEY = b64(
        key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    return key


@pytest.mark.django_db
def test_a_push_reaches_the_local_endpoint_and_opens_the_escalation(api, reviewer, vapid, settings):
    browser_key = ec.generate_private_key(ec.SECP256R1())
    auth = os.urandom(16)
    with Receiver(script=[Reply(201, body=b"")]) as endpoint:
        web_push.subscribe(
            user=reviewer,
            endpoint=endpoint.url + "/push/abc",
            p256dh=b64(browser_key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )),
            auth=b64(auth),
        )
        notify.preferences_save(user=reviewer, choices={"halt_created": ["push"]})
        escalation = post_package(api, **HALT)
        send_all()
        (request,) = endpoint.wait_for(1)

    assert request.path.endswith("/push/abc")
    assert request.header("content-encoding") == "aes128gcm"
    assert request.header("authorization").startswith("vapid t=")
    assert f"k={settings.VAPID_PUBLIC_KEY}" in request.header("authorization")
    data = json.loads(http_ece.decrypt(request.body, private_key=browser_key, auth_secret=auth, version="aes128gcm"))
    assert data["url"] == f"{settings.PUBLIC_URL}/escalations/{escalation.pk}"
    assert data["title"].startswith("Halt: ")
    assert Notification.objects.get(channel="push").status == "sent"


@pytest.mark.django_db
def test_a_subscription_the_push_service_forgot_is_removed(api, reviewer, vapid):
    browser_key = ec.generate_private_key(ec.SECP256R1())
    with Receiver(script=[410]) as endpoint:
        web_push.subscribe(
            user=reviewer, endpoint=endpoint.url + "/gone",
            p256dh=b64(browser_key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )),
            auth=b64(os.urandom(16)),
        )
        notify.preferences_save(user=reviewer, choices={"halt_created": ["push"]})
        post_package(api, **HALT)
        send_all()
        endpoint.wait_for(1)

    row = Notification.objects.get(channel="push")
    assert (row.status, "subscription gone (410)" in row.last_error) == ("failed", True)
    assert not reviewer.push_subscriptions.exists()


# ---------------------------------------------------------------- the settings page


@pytest.mark.django_db
def test_the_settings_page_links_a_slack_member_id_when_the_slack_app_is_set_up(reviewer_client, reviewer, slack_api):
    page = reviewer_client.get("/settings/notifications")
    assert b'name="slack_user_id"' in page.content

    bad = reviewer_client.post("/settings/notifications", {"slack_user_id": "not an id", "event_halt_created": ["slack"]})
    saved = reviewer_client.post("/settings/notifications", {"slack_user_id": "U012AB3CD", "event_halt_created": ["slack"]})

    assert bad.status_code == 422
    assert b"looks like U012AB3CD" in bad.content
    assert saved.status_code == 302
    reviewer.notification_preference.refresh_from_db()
    assert reviewer.notification_preference.slack_user_id == "U012AB3CD"
    assert inbound.slack_user("U012AB3CD") == reviewer


@pytest.mark.django_db
def test_a_browser_subscribes_to_push_and_push_can_then_be_chosen(reviewer_client, reviewer, vapid, settings):
    page = reviewer_client.get("/settings/notifications")
    assert f'data-vapid-key="{settings.VAPID_PUBLIC_KEY}"'.encode() in page.content
    refused = reviewer_client.post("/settings/notifications", {"event_halt_created": ["push"]})
    assert refused.status_code == 422
    assert b"Turn on browser push on this page first." in refused.content

    subscription = {"endpoint": "http://127.0.0.1:9/push/1", "keys": {"p256dh": "BPk", "auth": "c2VjcmV0"}}
    created = reviewer_client.post("/settings/notifications/push", subscription, content_type="application/json")
    chosen = reviewer_client.post("/settings/notifications", {"event_halt_created": ["push"]})
    garbage = reviewer_client.post("/settings/notifications/push", "nope", content_type="application/json")
    metadata = reviewer_client.post(
        "/settings/notifications/push", {**subscription, "endpoint": "http://169.254.169.254/latest"},
        content_type="application/json",
    )

    assert created.status_code == 201
    assert chosen.status_code == 302
    assert reviewer.notification_preference.choices["halt_created"] == ["push"]
    assert garbage.status_code == 400
    assert metadata.status_code == 422  # never a cloud-metadata address
    assert list(reviewer.push_subscriptions.values_list("endpoint", flat=True)) == [subscription["endpoint"]]
    removed = reviewer_client.post(
        "/settings/notifications/push/remove", {"endpoint": subscription["endpoint"]}, content_type="application/json"
    )
    assert removed.json() == {"removed": 1}


@pytest.mark.django_db
def test_the_service_worker_is_served_at_the_root_and_opens_the_notifications_url(client):
    response = client.get("/sw.js")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/javascript")
    assert b"showNotification" in response.content
    assert b"openWindow(url)" in response.content


@pytest.mark.django_db
def test_vapid_keys_prints_a_pair_that_signs_pushes(api, reviewer, settings):
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("vapid_keys", stdout=out)
    pair = dict(line.split("=", 1) for line in out.getvalue().split())
    settings.VAPID_PUBLIC_KEY, settings.VAPID_PRIVATE_KEY = pair["VAPID_PUBLIC_KEY"], pair["VAPID_PRIVATE_KEY"]
    browser_key = ec.generate_private_key(ec.SECP256R1())
    with Receiver(script=[201]) as endpoint:
        web_push.subscribe(
            user=reviewer, endpoint=endpoint.url + "/k",
            p256dh=b64(browser_key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )),
            auth=b64(os.urandom(16)),
        )
        notify.preferences_save(user=reviewer, choices={"halt_created": ["push"]})
        post_package(api, **HALT)
        send_all()
        (request,) = endpoint.wait_for(1)
    assert f"k={pair['VAPID_PUBLIC_KEY']}" in request.header("authorization")
    assert Notification.objects.get(channel="push").status == "sent"


@pytest.mark.django_db
def test_an_operator_reads_the_inbound_actions_in_the_admin(api, reviewer, slack_api, clicks):
    from django.contrib.auth import get_user_model

    link_slack(reviewer, "UALICE")
    escalation = post_package(api, **HALT)
    clicks(escalation, "shim", member="UNOBODY")
    admin = Client()
    admin.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "x-correct-horse"))

    page = admin.get("/admin/notifications/inboundaction/")

    assert page.status_code == 200
    assert b"UNOBODY" in page.content
    assert admin.get("/admin/notifications/inboundaction/add/").status_code == 403
