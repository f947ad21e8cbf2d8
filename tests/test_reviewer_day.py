"""The reviewer's day, server side: next / previous in the queue's order and filters, a long
history folded, labels that say only what is true."""

import pytest
from django.urls import reverse

from reviews.templatetags.review_tags import history_groups
from tests.conftest import post_package

pytestmark = pytest.mark.django_db


def step(outcome: str, n: int) -> dict:
    return {"at": "2026-12-01T10:00:00+00:00", "action": f"step {n}", "outcome": outcome}


def test_runs_of_ok_steps_fold_and_failures_and_the_last_steps_stay_open():
    outcomes = ["ok"] * 10 + ["failed"] + ["ok"] * 2 + ["skipped"] + ["ok"] * 10
    groups = history_groups([step(o, n) for n, o in enumerate(outcomes, start=1)])
    shape = [
        f"run {g['first']}-{g['last_number']}" if "run" in g else str(g["number"]) for g in groups
    ]
    assert shape == ["run 1-10", "11", "12", "13", "14", "run 15-19", "20", "21", "22", "23", "24"]
    assert [g["number"] for g in groups if g.get("last")] == [20, 21, 22, 23, 24]
    assert [g["number"] for g in groups if g.get("first_last")] == [20]


def test_a_short_history_is_shown_whole():
    assert [g["number"] for g in history_groups([step("ok", n) for n in range(4)])] == [1, 2, 3, 4]


def test_next_and_previous_follow_the_queues_order_and_filters(api, reviewer_client, reviewer):
    high = post_package(
        api,
        run_id="r1",
        title="high",
        confidence=0.51,
        cost_of_delay={"impact": "critical", "blocking": True},
    )
    mid = post_package(api, run_id="r2", title="mid", confidence=0.6)
    low = post_package(
        api,
        run_id="r3",
        title="low",
        confidence=0.69,
        cost_of_delay={"impact": "low", "blocking": False},
    )
    assert high.priority >= mid.priority >= low.priority
    step_url = lambda name, e, q="": reverse(f"reviews:{name}", args=[e.pk]) + q  # noqa: E731

    response = reviewer_client.get(step_url("next", high))
    assert response.url == reverse("reviews:detail", args=[mid.pk])
    assert reviewer_client.get(step_url("next", mid)).url == reverse(
        "reviews:detail", args=[low.pk]
    )
    assert reviewer_client.get(step_url("previous", low)).url == reverse(
        "reviews:detail", args=[mid.pk]
    )
    # the queue's filters: a search that leaves "mid" out
    assert reviewer_client.get(step_url("next", high, "?q=low")).url == reverse(
        "reviews:detail", args=[low.pk]
    )
    # past the end: back to the queue, with its filters
    assert reviewer_client.get(step_url("next", low, "?q=low")).url == "/?q=low"
    # a decided escalation keeps its place: next is the one after it
    decided = reviewer_client.post(
        reverse("reviews:decide", args=[high.pk]), {"kind": "option", "option": "shim"}
    )
    assert decided.status_code == 302
    high.refresh_from_db()
    assert not high.is_open
    assert reviewer_client.get(step_url("next", high)).url == reverse(
        "reviews:detail", args=[mid.pk]
    )


def test_an_empty_search_is_not_the_all_clear_and_the_tab_counts_follow_it(api, reviewer_client):
    post_package(api, run_id="r1", title="billing shim")
    post_package(api, run_id="r2", title="warehouse column")
    page = reviewer_client.get("/?q=nothing-like-this").content.decode()
    assert "Nothing matches these filters" in page
    assert 'class="empty-mark"' not in page  # the green tick means "nothing waits", not "no match"
    assert 'data-count="open">0<' in page
    assert 'data-count="open">1<' in reviewer_client.get("/?q=warehouse").content.decode()
    assert 'data-count="open">2<' in reviewer_client.get("/").content.decode()


def test_a_created_event_without_tier_or_priority_leaves_no_dangling_comma(api, reviewer_client):
    from escalations.models import Event

    escalation = post_package(api)
    escalation.events.filter(kind="created").update(data={})
    assert Event.objects.filter(escalation=escalation, kind="created").exists()
    page = reviewer_client.get(reverse("reviews:detail", args=[escalation.pk])).content.decode()
    assert "tier ," not in page
    assert ", priority" not in page
