"""The flagged backlog: tier-2 escalations the policy decided, newest or most uncertain
first, "Fine" one at a time or in bulk, with the count of what is left."""

import pytest

from escalations import services
from escalations.models import FlagReview
from tests.conftest import post_package

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
