"""The flagged backlog: tier-2 escalations the policy decided, newest or most uncertain
first, "Fine" one at a time or in bulk, with the count of what is left."""

import pytest

from escalations import services
from escalations.errors import Conflict
from escalations.models import FlagReview, Policy
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
