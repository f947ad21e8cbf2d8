"""The flagged backlog: tier-2 escalations the policy decided, newest or most uncertain
first, "Fine" one at a time or in bulk, with the count of what is left."""

import importlib
import re
from datetime import timedelta

import pytest
import time_machine
from django.apps import apps as django_apps
from django.utils import timezone

from escalations import services
from escalations.errors import Conflict
from escalations.models import Escalation, FlagReview, Policy
from escalations.services import periodic
from people.models import Profile
from tests.conftest import make_user, post_package

pytestmark = pytest.mark.django_db


def flagged_escalation(api, *, title: str, confidence: float):
    created = post_package(api, title=title, confidence=confidence)
    assert created.tier == 2, created.tier_reasons
    return str(created.pk)


@pytest.fixture
def backlog(api):
    return {
        "sure": flagged_escalation(api, title="Sure one", confidence=0.88),
        "unsure": flagged_escalation(api, title="Unsure one", confidence=0.71),
        "middle": flagged_escalation(api, title="Middle one", confidence=0.80),
    }


def titles(response) -> list[str]:
    return [e.title for e in response.context_data["backlog"].rows]


def test_the_backlog_lists_newest_or_most_uncertain_first_with_the_count(reviewer_client, backlog):
    newest = reviewer_client.get("/flagged/")
    assert newest.status_code == 200
    assert titles(newest) == ["Middle one", "Unsure one", "Sure one"]
    assert newest.context_data["backlog"].left == 3
    assert "<strong data-flagged-count>3</strong> left" in newest.content.decode()
    uncertain = reviewer_client.get("/flagged/?sort=uncertain")
    assert titles(uncertain) == ["Unsure one", "Middle one", "Sure one"]


def test_fine_marks_only_its_row_even_with_others_ticked(reviewer_client, reviewer, backlog):
    response = reviewer_client.post(
        f"/flagged/{backlog['unsure']}/fine?sort=uncertain", {"ids": [backlog["sure"]]}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    assert titles(response) == ["Middle one", "Sure one"]
    assert "marked 1 fine" in response.content.decode()
    review = FlagReview.objects.get()
    assert (str(review.escalation_id), review.verdict, review.reviewer) == (backlog["unsure"], "fine", reviewer)


def test_bulk_fine_marks_the_selection_and_skips_what_was_reviewed_meanwhile(reviewer_client, other_reviewer, backlog):
    services.flag_review_record(escalation_id=backlog["sure"], user=other_reviewer, verdict="fine")
    response = reviewer_client.post("/flagged/fine", {"ids": [backlog["sure"], backlog["middle"], "not-a-uuid"]})
    assert response.status_code == 302
    assert FlagReview.objects.count() == 2
    page = reviewer_client.get("/flagged/")
    assert titles(page) == ["Unsure one"]
    assert page.context_data["backlog"].left == 1


def test_the_backlog_is_for_reviewers(manager_client, client, backlog):
    assert manager_client.get("/flagged/").status_code == 200
    assert client.get("/flagged/").status_code == 302  # to the sign-in page


# ---------------------------------------------------------------- machine decisions, looked at afterwards


@pytest.fixture
def machine_decided(api):
    """A tier-3 escalation decided by the machine reviewer claude-reviewer (the policy lets
    machines decide tier 3)."""
    Policy.objects.filter(domain="default").update(machine_tiers=[3])
    machine = make_user("claude-reviewer", "reviewer")
    Profile.objects.update_or_create(user=machine, defaults={"is_machine": True})
    created = post_package(api, title="Machine one", confidence=0.62)
    assert created.tier == 3
    services.escalation_decide(
        escalation_id=created.pk,
        request=services.DecisionRequest(kind="option", option="shim"),
        user=machine,
    )
    return str(created.pk)


def test_a_machines_decision_waits_in_the_backlog_and_is_marked_fine_there(reviewer_client, reviewer, machine_decided, backlog):
    page = reviewer_client.get("/flagged/")
    assert titles(page) == ["Middle one", "Unsure one", "Sure one", "Machine one"]  # newest first
    text = page.content.decode()
    assert "by claude-reviewer (machine)" in text
    assert text.count("by the policy") == 3
    tab = reviewer_client.get("/?tab=flagged").context_data
    assert {t["tab"].key: t["count"] for t in tab["tabs"]}["flagged"] == 4

    reviewer_client.post(f"/flagged/{machine_decided}/fine", HTTP_HX_REQUEST="true")
    review = FlagReview.objects.get(escalation_id=machine_decided)
    assert (review.verdict, review.reviewer) == ("fine", reviewer)
    assert "Machine one" not in titles(reviewer_client.get("/flagged/"))


def test_a_person_says_which_option_a_machines_decision_should_have_been(reviewer_client, machine_decided):
    page = reviewer_client.get(f"/escalations/{machine_decided}").content.decode()
    assert "Decided by a machine: was it right?" in page
    assert "claude-reviewer, a machine reviewer, decided this." in page
    assert "Fine: “Add a compatibility shim” was right" in page

    done = reviewer_client.post(
        f"/escalations/{machine_decided}/flag-review", {"verdict": "other", "option_key": "update-callers"}, HTTP_HX_REQUEST="true"
    )
    assert done.status_code == 200, done.content
    assert "says it should have been" in done.content.decode()
    review = FlagReview.objects.get(escalation_id=machine_decided)
    assert (review.verdict, review.option_key) == ("other", "update-callers")


def test_a_persons_decision_is_not_reviewed_afterwards(reviewer, other_reviewer, api):
    created = post_package(api, title="A person's", confidence=0.62)
    services.escalation_decide(
        escalation_id=created.pk, request=services.DecisionRequest(kind="option", option="shim"), user=other_reviewer
    )
    with pytest.raises(Conflict):
        services.flag_review_record(escalation_id=created.pk, user=reviewer, verdict="fine")


# ---------------------------------------------------------------- awaiting_look: the rule, kept on the row


def test_awaiting_look_is_the_rule_over_every_kind_of_decision(api, reviewer, other_reviewer):
    """Escalation.awaiting_look, which the backlog reads, is FlagReview.applies_to and no
    review yet, as the services leave it after every kind of decision; migration 0009's
    backfill gives the same flags from the same rule (FlagReview.APPLIES)."""
    Policy.objects.filter(domain="default").update(machine_tiers=[3], approvals_required=2, decision_lifetime_seconds=60)
    machine = make_user("claude-reviewer", "reviewer")
    Profile.objects.update_or_create(user=machine, defaults={"is_machine": True})
    irreversible = [
        {"key": "drop", "label": "Drop it", "irreversible": True},
        {"key": "keep", "label": "Keep it", "recommended": True},
    ]
    soon = timezone.now() + timedelta(minutes=5)

    def decide(title, user, kind="option", option=None, confidence=0.62, **package):
        created = post_package(api, run_id=title, title=title, confidence=confidence, **package)
        request = services.DecisionRequest(kind=kind, option=option, instruction="Do it this way." if kind == "instruction" else None)
        if user is not None:
            services.escalation_decide(escalation_id=created.pk, request=request, user=user)
        return created

    decide("policy tier 2", None, confidence=0.8)
    decide("policy tier 2, reviewed", None, confidence=0.8)
    decide("policy tier 2, expired", None, confidence=0.8)
    decide("policy tier 1", None, confidence=0.95, reason="other")
    decide("machine option", machine, option="shim")
    decide("machine halt", machine, kind="halt")
    decide("machine, reviewed other", machine, option="shim")
    decide("person option", reviewer, option="shim")
    decide("person instruction", reviewer, kind="instruction")
    decide("person take-over", reviewer, kind="take_over")
    decide("person halt", reviewer, kind="halt")
    two = decide("two approvals", reviewer, option="drop", options=irreversible)
    services.escalation_decide(escalation_id=two.pk, request=services.DecisionRequest(kind="option", option="drop"), user=other_reviewer)
    decide("one approval of two (open)", reviewer, option="drop", options=irreversible)
    decide("still open", None, confidence=0.3)
    withdrawn = decide("withdrawn", None)
    services.escalation_withdraw(escalation=Escalation.objects.select_related("agent").get(pk=withdrawn.pk))
    decide("timeout", None, timeout_option="shim", cost_of_delay={"blocking": True, "impact": "high", "respond_by": soon.isoformat()})
    with time_machine.travel(soon + timedelta(seconds=61), tick=False):
        assert services.timeouts_apply() == 1
        Escalation.objects.exclude(title="policy tier 2, expired").filter(status="decided").update(status="resumed")
        assert periodic.decisions_expire() == 1
    by_title = {e.title: e.pk for e in Escalation.objects.all()}
    services.flag_review_record(escalation_id=by_title["policy tier 2, reviewed"], user=reviewer, verdict="fine")
    services.flag_review_record(
        escalation_id=by_title["machine, reviewed other"], user=reviewer, verdict="other", option_key="update-callers"
    )

    rows = list(Escalation.objects.select_related("decision", "flag_review"))
    assert len(rows) == 16
    assert {e.title: e.status for e in rows}["policy tier 2, expired"] == "expired"
    assert {e.title for e in rows if e.awaiting_look} == {
        "policy tier 2", "policy tier 2, expired", "machine option", "machine halt"
    }
    for e in rows:
        rule = FlagReview.applies_to(e, getattr(e, "decision", None)) and getattr(e, "flag_review", None) is None
        assert e.awaiting_look == rule, e.title

    flags = dict(Escalation.objects.values_list("pk", "awaiting_look"))
    Escalation.objects.update(awaiting_look=False)
    migration = importlib.import_module("escalations.migrations.0009_flagged_awaiting_look")
    migration.backfill(django_apps, None)
    assert dict(Escalation.objects.values_list("pk", "awaiting_look")) == flags
    assert migration.APPLIES == FlagReview.APPLIES  # a new rule needs a backfill of its own


def test_the_main_navigation_leads_reviewers_to_the_backlog(reviewer_client, client):
    nav = re.compile(r'<nav aria-label="Main">.*?</nav>', flags=re.S)
    queue = nav.search(reviewer_client.get("/").content.decode()).group(0)
    assert '<a href="/flagged/" >Flagged</a>' in queue
    here = nav.search(reviewer_client.get("/flagged/").content.decode()).group(0)
    assert '<a href="/flagged/" aria-current="page">Flagged</a>' in here
    assert "/flagged/" not in client.get("/accounts/login/").content.decode()
