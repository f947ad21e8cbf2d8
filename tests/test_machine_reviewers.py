"""Machine reviewers (issue 14): their decisions are marked machine and limited by the policy,
never an irreversible option; the first look is offered by a signed webhook to a real HTTP
server, and when it runs out the escalation goes to people, who are told."""

from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.core.management import call_command
from django.utils import timezone

from escalations import services
from escalations.models import Escalation, Event, MachineOffer, Policy
from escalations.transport import webhooks
from notifications.models import Notification
from people.models import Profile
from tests.conftest import make_package
from tests.test_reviewer_api import ReviewerClient

pytestmark = pytest.mark.django_db

IRREVERSIBLE = [
    {"key": "drop", "label": "Drop the column", "irreversible": True, "recommended": True},
    {"key": "keep", "label": "Keep it"},
]


def machine_token(capsys, name: str = "claude-reviewer", url: str | None = None) -> tuple[str, str | None]:
    """(token, signing secret) from `manage.py reviewer_token --machine NAME`."""
    extra = ["--webhook-url", url] if url else []
    call_command("reviewer_token", "--machine", name, *extra)
    out, err = capsys.readouterr()
    secret = next((line.split(": ", 1)[1] for line in err.splitlines() if "signing secret" in line), None)
    return out.strip().splitlines()[-1], secret


def test_the_command_makes_a_machine_account_and_reuses_it(capsys):
    token, secret = machine_token(capsys)
    again, no_secret = machine_token(capsys)
    profile = Profile.objects.get(user__username="claude-reviewer")
    assert profile.is_machine
    assert secret
    assert profile.signing_secret == secret
    assert no_secret is None  # shown once
    assert token != again
    assert token.startswith("hnr_")


def test_a_machine_decides_only_the_tiers_the_policy_allows_and_is_marked_machine(api, capsys):
    machine = ReviewerClient(machine_token(capsys)[0])
    escalation = api.escalate(make_package()).json()  # tier 3

    refused = machine.post_json(f"/api/v1/review/escalations/{escalation['id']}/decision", {"kind": "option", "option": "shim"})
    assert refused.status_code == 403
    assert "tier 3" in refused.json()["detail"]

    Policy.objects.filter(domain="default").update(machine_tiers=[3])
    decided = machine.post_json(f"/api/v1/review/escalations/{escalation['id']}/decision", {"kind": "option", "option": "shim"})
    assert decided.status_code == 201
    assert decided.json()["decision"]["decided_by"] == {"type": "machine", "name": "claude-reviewer"}


def test_a_machine_cannot_decide_an_irreversible_option_whatever_the_policy(api, reviewer, capsys):
    Policy.objects.filter(domain="default").update(machine_tiers=[1, 2, 3, 4])
    machine = ReviewerClient(machine_token(capsys)[0])
    escalation = api.escalate(make_package(options=IRREVERSIBLE)).json()
    path = f"/api/v1/review/escalations/{escalation['id']}/decision"

    refused = machine.post_json(path, {"kind": "option", "option": "drop"})
    assert refused.status_code == 403
    assert refused.json()["detail"].startswith("An irreversible option needs a person")
    assert Escalation.objects.get(pk=escalation["id"]).is_open
    # the reversible one it may choose; a person may choose the irreversible one
    person = ReviewerClient(services_token(reviewer))
    assert person.post_json(path, {"kind": "option", "option": "drop"}).json()["decision"]["decided_by"]["type"] == "human"


def services_token(user) -> str:
    from reviews.services import reviewer_token_issue

    return reviewer_token_issue(user=user)


def first_look_policy(machine_name: str, seconds: int = 60) -> None:
    from django.contrib.auth import get_user_model

    machine = get_user_model().objects.get(username=machine_name)
    Policy.objects.filter(domain="default").update(first_look_reviewer=machine, first_look_seconds=seconds)


def test_the_first_look_is_offered_by_a_signed_webhook_then_times_out_to_people_who_are_told(
    api, reviewer, receiver, capsys, settings, django_capture_on_commit_callbacks
):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    _, secret = machine_token(capsys, url=receiver.url)
    first_look_policy("claude-reviewer", seconds=60)

    with django_capture_on_commit_callbacks(execute=True):
        created = api.escalate(make_package()).json()

    # the machine's receiver got the offer, signed with the machine's secret
    (offer,) = receiver.wait_for(1)
    assert offer.header("Handoff-Event") == "escalation.first_look"
    assert webhooks.verify(secret, offer.body, offer.header("Handoff-Signature"))
    body = offer.json()
    assert body["escalation"]["id"] == created["id"]
    assert body["escalation"]["options"]
    assert MachineOffer.objects.get().status == "delivered"
    # meanwhile it is the machine's: the queue says so, and nobody is told yet
    assert created["status"] == "claimed"
    page = ReviewerClient(services_token(reviewer)).get(f"/api/v1/review/escalations/{created['id']}").json()
    assert page["first_look"]["name"] == "claude-reviewer"
    assert Notification.objects.count() == 0

    # the look runs out: the claim lapses into the queue, and people are told
    later = timezone.now() + timedelta(seconds=61)
    with time_machine.travel(later, tick=False), django_capture_on_commit_callbacks(execute=True):
        assert services.claims_expire() == 1
    escalation = Escalation.objects.get(pk=created["id"])
    assert escalation.status == "pending"
    assert escalation.claimed_by is None
    ended = Event.objects.get(escalation=escalation, kind="first_look_ended")
    assert ended.data == {"outcome": "timed out"}
    assert not Event.objects.filter(escalation=escalation, kind="claim_expired").exists()
    told = Notification.objects.filter(kind="first_look_ended")
    assert [row.user.username for row in told] == ["alice"]  # reviewers, never the machine
    assert any("Needs a person" in message.subject for message in mail.outbox)


def test_levels_start_when_the_look_ends(api, capsys):
    machine_token(capsys)
    first_look_policy("claude-reviewer", seconds=600)
    services.policy_levels_replace(
        policy_row=Policy.objects.get(domain="default"), specs=[services.LevelSpec(after_minutes=5)]
    )
    created = api.escalate(make_package()).json()
    with time_machine.travel(timezone.now() + timedelta(minutes=6), tick=False):
        assert services.levels_advance() == 0  # the machine is still looking
    with time_machine.travel(timezone.now() + timedelta(minutes=15, seconds=1), tick=False):
        assert services.levels_advance() == 1
    assert Escalation.objects.get(pk=created["id"]).level == 2


def test_a_machine_recommendation_ends_its_look_and_the_person_sees_it(api, reviewer, capsys):
    token, _ = machine_token(capsys)
    first_look_policy("claude-reviewer")
    machine = ReviewerClient(token)
    created = api.escalate(make_package()).json()
    path = f"/api/v1/review/escalations/{created['id']}"

    bad = machine.post_json(f"{path}/recommendation", {"option": "nope", "note": "x"})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "option"
    answer = machine.post_json(
        f"{path}/recommendation", {"option": "shim", "note": "legacy has no tests", "confidence": 0.7}
    )
    assert answer.status_code == 201
    assert answer.json()["by"] == {"type": "machine", "name": "claude-reviewer"}

    detail = ReviewerClient(services_token(reviewer)).get(path).json()
    assert detail["status"] == "pending"
    assert detail["claimed_by"] is None
    assert [(r["option"], r["note"], r["confidence"]) for r in detail["recommendations"]] == [
        ("shim", "legacy has no tests", 0.7)
    ]
    assert Event.objects.get(escalation_id=created["id"], kind="first_look_ended").data == {"outcome": "recommended"}
