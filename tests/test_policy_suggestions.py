"""Policy suggestions through the real stack: the judged history read in one bounded query,
the suggestion in the policy page's suggestions section (loaded after the page, from its own
URL), and its link into the backtest, whose numbers are the suggestion's; nothing is saved."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from escalations import services
from escalations.backtest import backtest, judged_history, suggestions
from escalations.models import Policy
from escalations.suggestions import FLOOR_REASON, LOWER_FLAG, MIN_JUDGED
from tests.insights_data import create, decide

RECOMMENDED, OTHER = "update-callers", "shim"
SECTION = "/policies/default/suggestions"
HTMX = {"HTTP_HX_REQUEST": "true"}


def section(client) -> str:
    """The suggestions section as the policy page loads it (htmx): the partial alone."""
    response = client.get(SECTION, **HTMX)
    assert response.status_code == 200
    page = response.content.decode()
    assert page.lstrip().startswith('<section id="suggestions"')
    return page


def judged_history_of(
    agent, reviewer, *, n: int, agreed: int, confidence: float, start: int = 0, **package
):
    """n escalations of `agent` over the last days (tier 3 at 0.62 under the default policy),
    each decided by `reviewer`: the first `agreed` with the recommended option."""
    made = []
    for i in range(n):
        when = timezone.now() - timedelta(days=10, hours=-(start + i))
        escalation = create(agent, f"h{start + i}", confidence, when, **package)
        decide(
            escalation, reviewer, when + timedelta(minutes=5), RECOMMENDED if i < agreed else OTHER
        )
        made.append(escalation)
    return made


def flagged_history_of(agent, reviewer, *, n: int, fine: int, start: int = 100):
    """n tier-2 escalations (0.8), decided by the policy, flag-reviewed: `fine` of them fine."""
    for i in range(n):
        when = timezone.now() - timedelta(days=5, hours=-(start + i))
        escalation = create(agent, f"f{start + i}", 0.8, when)
        services.flag_review_record(
            escalation_id=escalation.pk,
            user=reviewer,
            verdict="fine" if i < fine else "other",
            option_key="" if i < fine else OTHER,
        )


@pytest.fixture
def agreeing(agent, reviewer):
    """agent-007: 24 judged approach_choice escalations at 0.62, 23 took the recommended
    option; 3 at 0.56 where people disagreed twice (the threshold stops above them); one
    tier-1 escalation nobody judged."""
    judged_history_of(agent, reviewer, n=24, agreed=23, confidence=0.62)
    judged_history_of(
        agent, reviewer, n=3, agreed=1, confidence=0.56, start=50, reason="missing_information"
    )
    create(agent, "auto", 0.95, timezone.now() - timedelta(days=1))
    return agent


def test_the_judged_history_is_read_in_one_bounded_query(agreeing, django_assert_num_queries):
    now = timezone.now()
    with django_assert_num_queries(1):
        rows = judged_history(domain="default", now=now, calibrated=True)
    assert len(rows) == 27  # the unjudged tier-1 one is not there
    assert sum(one.agreed for one in rows) == 24
    assert {one.situation.reason for one in rows} == {"approach_choice", "missing_information"}
    # At most per_group of each agent and reason, the latest.
    latest = judged_history(domain="default", now=now, calibrated=False, per_group=5)
    approach = [one for one in latest if one.reason == "approach_choice"]
    assert len(approach) == 5
    assert sum(one.agreed for one in approach) == 4  # the last one took "shim"
    assert len(latest) == 8


def test_a_suggestion_counts_what_the_backtest_counts(agreeing):
    saved = services.rules_for("default")
    [suggestion] = suggestions(saved, now=timezone.now()).items
    assert suggestion.kind == LOWER_FLAG
    assert (suggestion.agent, suggestion.reason, suggestion.based_on, suggestion.agreed) == (
        "agent-007",
        "approach_choice",
        24,
        23,
    )
    assert suggestion.rules.flag_threshold == 0.6
    before, after = backtest(domain="default", rules=[saved, suggestion.rules], now=timezone.now())
    assert after.overruled_at_once - before.overruled_at_once == suggestion.effect.changed == 1
    assert before.reach_a_person - after.reach_a_person == suggestion.effect.moved == 24


def test_the_policy_page_loads_the_suggestions_after_itself(agreeing, manager_client):
    page = manager_client.get("/policies/default").content.decode()
    # the section is there, loading itself from its URL (a link without JavaScript)
    assert f'hx-get="{SECTION}" hx-trigger="load, lazy-retry"' in page
    assert 'aria-busy="true"' in page
    assert "Looking through the last 30 days…" in page
    assert f'<a href="{SECTION}">Show the suggestions from history</a>' in page
    assert "agent-007" not in page  # not computed with the page
    # without htmx the section's URL is a page of its own, with the way back
    own = manager_client.get(SECTION)
    assert own.status_code == 200
    assert own["Vary"].count("HX-Request") == 1
    html = own.content.decode()
    assert '<a class="back" href="/policies/default">' in html
    assert "23 of agent-007&#x27;s last 24 judged approach_choice escalations" in html


def test_the_suggestions_section_is_for_managers(agreeing, reviewer_client, client):
    response = reviewer_client.get(SECTION, **HTMX)
    assert response.status_code == 403
    assert "agent-007" not in response.content.decode()
    response = client.get(SECTION, **HTMX)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert response.content == b""
    assert reviewer_client.get("/policies/nowhere/suggestions").status_code == 403


def test_the_suggestions_section_only_reads(agreeing, manager_client):
    assert manager_client.post(SECTION, **HTMX).status_code == 405
    assert manager_client.get("/policies/nowhere/suggestions", **HTMX).status_code == 404


def test_the_section_shows_the_suggestion_and_its_backtest_link(agreeing, manager_client):
    page = section(manager_client)
    assert (
        "23 of agent-007&#x27;s last 24 judged approach_choice escalations took the recommended option"
        in page
    )
    assert "from confidence 0.60 instead of 0.70 would have changed 1 decision of the 24" in page
    link = "/policies/default?flag_threshold=0.6&amp;backtest=1#backtest"
    assert f'<a class="btn btn-small" href="{link}">Open in backtest' in page

    response = manager_client.get("/policies/default", {"flag_threshold": "0.6", "backtest": "1"})
    assert response.context["form"]["flag_threshold"].value() == "0.6"
    saved, typed, _ = response.context["results"]
    assert typed.overruled_at_once - saved.overruled_at_once == 1
    assert saved.reach_a_person - typed.reach_a_person == 24
    # Nothing is saved by a suggestion or its backtest.
    policy = Policy.objects.get(domain="default")
    assert (policy.version, policy.flag_threshold) == (1, 0.7)


def test_a_floor_suggestion_prefills_the_reasons_floor(agent, reviewer, manager_client):
    # 20 flagged approach_choice escalations reviewed, 6 "should have been another option".
    flagged_history_of(agent, reviewer, n=MIN_JUDGED, fine=MIN_JUDGED - 6)
    [suggestion] = suggestions(services.rules_for("default"), now=timezone.now()).items
    assert suggestion.kind == FLOOR_REASON
    page = section(manager_client)
    assert (
        "People chose another option in 6 of the last 20 judged approach_choice escalations" in page
    )
    link = "/policies/default?floor_approach_choice=3&backtest=1#backtest"
    assert link.replace("&", "&amp;") in page
    response = manager_client.get(link)
    assert response.context["form"]["floor_approach_choice"].value() == "3"
    saved, typed, _ = response.context["results"]
    assert saved.overruled_at_once - typed.overruled_at_once == suggestion.effect.changed == 6
    assert Policy.objects.get(domain="default").reason_floors == {}


def test_too_little_history_says_how_much_is_needed(agent, reviewer, manager_client):
    judged_history_of(agent, reviewer, n=3, agreed=3, confidence=0.62)
    page = section(manager_client)
    assert f"A suggestion needs at least {MIN_JUDGED} judged escalations" in page
    assert "the most so far: 3 (agent-007, approach_choice)" in page
    assert "Open in backtest" not in page


def test_enough_history_that_supports_no_change_says_so(agent, reviewer, manager_client):
    # 20 judged at 0.62, 15 agreed: not nearly always, and the policy decided none of them.
    judged_history_of(agent, reviewer, n=MIN_JUDGED, agreed=15, confidence=0.62)
    page = section(manager_client)
    assert "People's judgements of the last 30 days support no change to these settings." in page
    assert "Open in backtest" not in page


def test_the_sections_queries_do_not_grow_with_the_history(agent, reviewer, manager_client):
    def queries(url: str, **headers) -> list[str]:
        with CaptureQueriesContext(connection) as captured:
            assert manager_client.get(url, **headers).status_code == 200
        return [query["sql"] for query in captured]

    judged_history_of(agent, reviewer, n=2, agreed=2, confidence=0.62)
    few = queries(SECTION, **HTMX)
    page = queries("/policies/default")
    judged_history_of(agent, reviewer, n=MIN_JUDGED, agreed=MIN_JUDGED, confidence=0.62, start=10)
    other = services.agent_create(name="other-bot", domain="default").agent
    judged_history_of(other, reviewer, n=4, agreed=4, confidence=0.66, start=40)
    assert "Open in backtest" in section(manager_client)
    assert len(queries(SECTION, **HTMX)) == len(few)
    # The page itself no longer reads the judged history (its row number per agent
    # and reason is that query's alone), nor does a backtest's result page: both load the
    # section after them.
    assert sum("ROW_NUMBER()" in sql for sql in few) == 1
    assert not any("ROW_NUMBER()" in sql for sql in page)
    assert len(queries("/policies/default")) == len(page)
    backtested = queries("/policies/default?flag_threshold=0.6&backtest=1")
    assert not any("ROW_NUMBER()" in sql for sql in backtested)
    assert len(backtested) == len(page) + 1  # the backtest's own query
