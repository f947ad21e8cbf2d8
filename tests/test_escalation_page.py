"""The escalation page's own work: claim leases, reassigning, deciding over someone's claim,
comments, flag reviews of tier-2 escalations, and taking a run over through to "My runs"."""

import html
import json
import re
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from escalations import services
from escalations.errors import Conflict, Invalid, NotFound
from escalations.models import Decision, Escalation, Event, FlagReview, Run
from tests.conftest import make_user, post_package

HX = {"HTTP_HX_REQUEST": "true"}


def text(response) -> str:
    """The response as a reader sees it (entities decoded)."""
    return html.unescape(response.content.decode())


@pytest.fixture
def escalation(api) -> Escalation:
    return post_package(api)


@pytest.fixture
def bob_client(other_reviewer) -> Client:
    """bob, signed in (alice is `reviewer_client`)."""
    return signed_in(other_reviewer)


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def url(name: str, escalation: Escalation) -> str:
    return reverse(f"reviews:{name}", args=[escalation.pk])


def events(escalation: Escalation, kind: str) -> list[Event]:
    return list(Event.objects.filter(escalation=escalation, kind=kind))


# ---------------------------------------------------------------- recommendations


def test_a_recommendations_args_show_as_json_beside_the_agents(escalation, reviewer_client, other_reviewer):
    services.escalation_recommend(
        escalation_id=escalation.pk,
        request=services.RecommendationRequest(
            option="shim", args={"keep_old": True, "paths": ["a.py"], "limit": None}, note="Legacy has no tests.",
            confidence=0.7,
        ),
        user=other_reviewer,
    )
    page = text(reviewer_client.get(url("detail", escalation)))
    assert "recommends <strong>Add a compatibility shim</strong> <code>shim</code>, 70% confident" in page
    args = re.search(r"Args it would act with</summary><pre class=\"code\">(.*?)</pre>", page, re.S)
    assert args, "the recommendation's args are not shown"
    assert json.loads(args.group(1)) == {"keep_old": True, "paths": ["a.py"], "limit": None}
    assert '\n  "keep_old": true' in args.group(1)  # JSON, indented as the options' args


# ---------------------------------------------------------------- claim leases


def test_renewing_extends_the_holders_lease_quietly(escalation, reviewer, settings):
    t0 = timezone.now()
    services.escalation_claim(escalation_id=escalation.pk, user=reviewer, now=t0)

    renewed = services.escalation_claim_renew(
        escalation_id=escalation.pk, user=reviewer, now=t0 + timedelta(minutes=10)
    )

    expected = t0 + timedelta(minutes=10, seconds=settings.CLAIM_LEASE_SECONDS)
    assert renewed.claimed_until == expected
    assert len(events(escalation, Event.Kind.CLAIMED)) == 1  # no event per heartbeat


def test_a_lapsed_released_or_someone_elses_claim_is_not_renewed(
    escalation, reviewer, other_reviewer
):
    t0 = timezone.now()
    services.escalation_claim(escalation_id=escalation.pk, user=reviewer, now=t0)
    with pytest.raises(services.ClaimLost):
        services.escalation_claim_renew(escalation_id=escalation.pk, user=other_reviewer, now=t0)
    with pytest.raises(services.ClaimLost):
        services.escalation_claim_renew(
            escalation_id=escalation.pk, user=reviewer, now=t0 + timedelta(hours=1)
        )
    services.escalation_release(escalation_id=escalation.pk, user=reviewer)
    with pytest.raises(services.ClaimLost) as lost:
        services.escalation_claim_renew(escalation_id=escalation.pk, user=reviewer)
    assert lost.value.escalation.claimed_by is None


def test_the_page_heartbeat_renews_and_says_when_the_claim_was_lost(
    escalation, reviewer, reviewer_client
):
    services.escalation_claim(escalation_id=escalation.pk, user=reviewer)
    page = reviewer_client.get(url("detail", escalation)).content.decode()
    assert f'hx-post="{url("claim_renew", escalation)}"' in page
    assert 'hx-trigger="every 60s"' in page

    assert reviewer_client.post(url("claim_renew", escalation), **HX).status_code == 204

    Escalation.objects.filter(pk=escalation.pk).update(
        claimed_until=timezone.now() - timedelta(seconds=1)
    )
    lost = reviewer_client.post(url("claim_renew", escalation), **HX)
    assert lost.status_code == 409
    assert "Your claim lapsed: claim it again if you are still on it." in text(lost)
    assert "Nobody has claimed this yet." in text(lost)


def test_a_lapsed_claim_does_not_show_as_claimed(escalation, other_reviewer, reviewer_client):
    services.escalation_claim(escalation_id=escalation.pk, user=other_reviewer)
    Escalation.objects.filter(pk=escalation.pk).update(
        claimed_until=timezone.now() - timedelta(minutes=1)
    )  # not yet returned by the periodic job: still "claimed" in the row

    page = text(reviewer_client.get(url("detail", escalation)))

    assert "Nobody has claimed this yet." in page
    assert "is on this" not in page
    assert re.search(r'id="escalation-status" class="status status-pending"[^>]*>Pending<', page)
    assert "Decide anyway" not in page


def test_a_live_claim_carries_when_it_lapses_for_the_page_to_refresh(
    escalation, other_reviewer, reviewer_client
):
    claimed = services.escalation_claim(escalation_id=escalation.pk, user=other_reviewer)
    page = reviewer_client.get(url("detail", escalation)).content.decode()
    assert f'data-claim-lapses="{claimed.claimed_until.isoformat()}"' in page


# ---------------------------------------------------------------- reassign


def test_reassigning_an_unclaimed_escalation_gives_the_assignee_a_lease(
    escalation, reviewer, other_reviewer, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        services.escalation_reassign(
            escalation_id=escalation.pk, user=reviewer, assignee=other_reviewer
        )
    escalation.refresh_from_db()
    assert escalation.status == Escalation.Status.CLAIMED
    assert escalation.claimed_by == other_reviewer
    assert escalation.claim_is_live()
    [event] = events(escalation, Event.Kind.REASSIGNED)
    assert (event.actor, event.data["from"], event.data["to"]) == ("alice", None, "bob")
    assert len(callbacks) == 1  # the live announcement


def test_only_the_holder_or_a_manager_hands_a_live_claim_on(
    escalation, reviewer, other_reviewer, manager
):
    services.escalation_claim(escalation_id=escalation.pk, user=other_reviewer)
    for assignee in (reviewer, other_reviewer):
        with pytest.raises(services.ClaimedByOther):
            services.escalation_reassign(
                escalation_id=escalation.pk, user=reviewer, assignee=assignee
            )

    services.escalation_reassign(
        escalation_id=escalation.pk, user=manager, assignee=reviewer, override=True
    )
    escalation.refresh_from_db()
    assert escalation.claimed_by == reviewer
    assert events(escalation, Event.Kind.REASSIGNED)[0].data["from"] == "bob"

    # the holder hands it on without anyone's override
    services.escalation_reassign(escalation_id=escalation.pk, user=reviewer, assignee=manager)
    escalation.refresh_from_db()
    assert escalation.claimed_by == manager
    assert [e.data["to"] for e in events(escalation, Event.Kind.REASSIGNED)] == ["alice", "maya"]


def test_reassigning_refuses_inactive_people_and_decided_escalations(
    escalation, reviewer, other_reviewer
):
    other_reviewer.is_active = False
    other_reviewer.save()
    with pytest.raises(Invalid) as refused:
        services.escalation_reassign(
            escalation_id=escalation.pk, user=reviewer, assignee=other_reviewer
        )
    assert refused.value.errors[0].field == "assignee"

    services.escalation_decide(
        escalation_id=escalation.pk, request=services.DecisionRequest(kind="halt"), user=reviewer
    )
    with pytest.raises(services.AlreadyDecided):
        services.escalation_reassign(escalation_id=escalation.pk, user=reviewer, assignee=reviewer)


def test_reassign_by_htmx_and_without_javascript(escalation, reviewer_client, other_reviewer):
    make_user("not-a-reviewer")
    page = text(reviewer_client.get(url("detail", escalation)))
    assert '<option value="bob">bob</option>' in page
    assert "not-a-reviewer" not in page  # only reviewers and managers are offered

    missing = reviewer_client.post(url("reassign", escalation), {"assignee": ""}, **HX)
    assert missing.status_code == 422
    assert "Pick the reviewer to assign it to." in text(missing)
    outsider = reviewer_client.post(
        url("reassign", escalation), {"assignee": "not-a-reviewer"}, **HX
    )
    assert outsider.status_code == 422
    assert "That person is not a reviewer who can take it." in text(outsider)

    plain_error = reviewer_client.post(url("reassign", escalation), {"assignee": "nobody"})
    assert plain_error.status_code == 422
    assert "<h1>" in text(plain_error)  # the whole page, the form open with its error
    assert "That person is not a reviewer who can take it." in text(plain_error)
    assert '<details class="reassign" open>' in text(plain_error)

    done = reviewer_client.post(url("reassign", escalation), {"assignee": "bob"}, **HX)
    assert done.status_code == 200
    assert text(done).lstrip().startswith('<div id="claim-box"')
    assert "Assigned to bob." in text(done)
    assert "<strong>bob</strong> is on this" in text(done)

    refused = reviewer_client.post(url("reassign", escalation), {"assignee": "alice"})
    assert refused.status_code == 302
    follow = text(reviewer_client.get(refused["Location"]))
    assert "bob holds the claim: only they or a manager can hand it on." in follow


def test_a_manager_can_take_a_claim_off_someone(escalation, other_reviewer, manager_client):
    services.escalation_claim(escalation_id=escalation.pk, user=other_reviewer)
    page = text(manager_client.get(url("detail", escalation)))
    assert "Hand it to someone else" in page
    response = manager_client.post(url("reassign", escalation), {"assignee": "maya"}, **HX)
    assert response.status_code == 200
    escalation.refresh_from_db()
    assert escalation.claimed_by.username == "maya"


# ---------------------------------------------------------------- deciding over a claim


def test_deciding_over_someone_elses_claim_asks_for_confirmation(
    escalation, reviewer_client, bob_client
):
    # alice's page was open before bob claimed: her plain decision is stopped, not lost
    bob_client.post(url("claim", escalation))
    refused = reviewer_client.post(
        url("decide", escalation), {"kind": "option", "option": "shim"}, **HX
    )
    assert refused.status_code == 422
    page = text(refused)
    assert "bob has claimed this: tick the box to decide over their claim." in page
    assert "Decide anyway, over bob’s claim" in page
    assert not Decision.objects.filter(escalation=escalation).exists()

    decided = reviewer_client.post(
        url("decide", escalation),
        {"kind": "option", "option": "shim", "override_claim": "on"},
        **HX,
    )
    assert decided.status_code == 200
    assert Decision.objects.get(escalation=escalation).decided_by_name == "alice"


def test_every_decision_form_offers_the_confirmation_when_someone_holds_a_claim(
    escalation, reviewer_client, other_reviewer
):
    page = text(reviewer_client.get(url("detail", escalation)))
    assert "Decide anyway" not in page
    services.escalation_claim(escalation_id=escalation.pk, user=other_reviewer)
    page = text(reviewer_client.get(url("detail", escalation)))
    assert page.count('name="override_claim"') == 4
    assert page.count("has claimed this and may be deciding right now") == 4


def test_the_holder_decides_without_confirmation(escalation, reviewer, reviewer_client):
    services.escalation_claim(escalation_id=escalation.pk, user=reviewer)
    response = reviewer_client.post(url("decide", escalation), {"kind": "halt", "confirm": "on"})
    assert response.status_code == 302
    assert Decision.objects.get(escalation=escalation).kind == "halt"


def test_the_decision_service_refuses_to_decide_over_someone_elses_live_claim(
    api, reviewer, other_reviewer
):
    """The rule lived in the dashboard's form alone: any other caller of the service decided
    over a live claim. It is the service's now, under the row lock of the decision."""
    halt = services.DecisionRequest(kind="halt")
    escalation = post_package(api)
    services.escalation_claim(escalation_id=escalation.pk, user=other_reviewer)
    with pytest.raises(services.ClaimedByOther) as refused:
        services.escalation_decide(escalation_id=escalation.pk, request=halt, user=reviewer)
    assert refused.value.escalation.claimed_by == other_reviewer
    assert not Decision.objects.filter(escalation=escalation).exists()

    services.escalation_decide(
        escalation_id=escalation.pk, request=halt, user=reviewer, override_claim=True
    )
    assert Decision.objects.get(escalation=escalation).decided_by_name == "alice"


def test_an_approval_over_someone_elses_live_claim_asks_too(api, reviewer, other_reviewer):
    from escalations.models import Approval, Policy

    Policy.objects.filter(domain="default").update(approvals_required=2)
    escalation = post_package(
        api,
        options=[
            {"key": "drop", "label": "Drop it", "irreversible": True},
            {"key": "keep", "label": "Keep it", "recommended": True},
        ],
    )
    services.escalation_claim(escalation_id=escalation.pk, user=other_reviewer)
    drop = services.DecisionRequest(kind="option", option="drop")
    with pytest.raises(services.ClaimedByOther):
        services.escalation_decide(escalation_id=escalation.pk, request=drop, user=reviewer)
    assert not Approval.objects.exists()
    services.escalation_decide(
        escalation_id=escalation.pk, request=drop, user=reviewer, override_claim=True
    )
    assert Approval.objects.get().user_name == "alice"


def test_a_timeout_or_policy_decision_ignores_claims(api, reviewer):
    respond_by = timezone.now() + timedelta(minutes=2)  # within the claim's lease
    escalation = post_package(
        api, cost_of_delay={"blocking": True, "impact": "high", "respond_by": respond_by.isoformat()}
    )
    services.escalation_claim(escalation_id=escalation.pk, user=reviewer)
    with time_machine.travel(escalation.respond_by, tick=False):
        services.escalation_decide(
            escalation_id=escalation.pk,
            request=services.DecisionRequest(kind="halt"),
            decided_by_type=Decision.DecidedBy.TIMEOUT,
        )
    assert Decision.objects.get(escalation=escalation).decided_by_type == "timeout"


def test_an_irreversible_option_says_what_cannot_be_undone(api, reviewer_client):
    escalation = post_package(
        api,
        action={"name": "drop_table", "irreversible": True, "planned_scope": 1, "actual_scope": 3},
        options=[
            {"key": "drop", "label": "Drop the table", "recommended": True, "irreversible": True,
             "description": "Deletes every row of <b>orders_old</b>."},
            {"key": "keep", "label": "Keep it"},
        ],
    )
    page = text(reviewer_client.get(url("detail", escalation)))
    assert "“Drop the table” cannot be undone" in page
    assert "What happens: Deletes every row of <b>orders_old</b>." in page  # as text
    assert "The action drop_table touches 3 items (1 planned)." in re.sub(r"<[^>]+>", "", page)
    assert 'data-json-object="args of “Drop the table”"' in page


# ---------------------------------------------------------------- what a re-render leaves

SLOT = '<div id="unsent" class="unsent-slot" data-unsent hx-preserve>'


def test_every_render_of_the_panel_holds_the_not_sent_slot_for_htmx_to_preserve(
    escalation, reviewer_client
):
    """escalation.js keeps text whose form a re-render took away in #unsent; htmx carries
    the slot over only into a render that has it, so every render of the panel does, once."""
    open_page = text(reviewer_client.get(url("detail", escalation)))
    claimed = text(reviewer_client.post(url("claim", escalation), **HX))  # the claim box only
    live_open = text(reviewer_client.get(url("live", escalation), **HX))  # not the open panel
    decided = text(
        reviewer_client.post(url("decide", escalation), {"kind": "option", "option": "shim"}, **HX)
    )
    live_closed = text(reviewer_client.get(url("live", escalation), **HX))
    closed_page = text(reviewer_client.get(url("detail", escalation)))
    for render in (open_page, decided, live_closed, closed_page):
        assert render.count(SLOT) == 1
    for render in (claimed, live_open):
        assert SLOT not in render


def said(render: str) -> list[str]:
    """What each part of a render tells the not-sent box happened (escalation.js shows it)."""
    return [m.strip() for m in re.findall(r"<template data-unsent-why>(.*?)</template>", render, re.S)]


def test_every_part_a_re_render_takes_forms_from_says_who_did_what(
    escalation, reviewer, reviewer_client, other_reviewer, manager
):
    def live() -> list[str]:
        return said(text(reviewer_client.get(url("live", escalation), **HX)))

    assert live() == [""]  # nothing has happened: nothing to say
    services.escalation_claim(escalation_id=escalation.pk, user=other_reviewer)
    assert live() == ["bob claimed this escalation while you were writing: only they can ask the agent now."]
    refused = reviewer_client.post(url("claim", escalation), **HX)
    assert refused.status_code == 409
    assert said(text(refused)) == ["bob has already claimed this."]  # the refusal's own words
    services.escalation_reassign(escalation_id=escalation.pk, user=manager, assignee=reviewer, override=True)
    assert live() == [""]  # hers now
    services.escalation_reassign(escalation_id=escalation.pk, user=manager, assignee=other_reviewer, override=True)
    assert live() == ["maya handed this escalation to bob while you were writing: only they can ask the agent now."]
    services.escalation_ask(escalation_id=escalation.pk, user=other_reviewer, text="Which callers are in scope?")
    assert live() == ["bob asked the agent a question while you were writing: this waits for its answer."]

    services.escalation_decide(
        escalation_id=escalation.pk,
        request=services.DecisionRequest(kind="option", option="shim"),
        user=other_reviewer,
        override_claim=True,
    )
    assert live() == ["bob decided this escalation while you were writing."]
    refused = reviewer_client.post(url("decide", escalation), {"kind": "option", "option": "shim"}, **HX)
    assert refused.status_code == 409
    assert said(text(refused)) == ["Refused: bob decided this escalation first."]


def test_a_withdrawn_escalation_says_the_agent_took_it_back(escalation, reviewer_client):
    services.escalation_withdraw(escalation=escalation)
    assert said(text(reviewer_client.get(url("live", escalation), **HX))) == [
        "The agent took this escalation back while you were writing."
    ]
    refused = reviewer_client.post(url("decide", escalation), {"kind": "option", "option": "shim"}, **HX)
    assert refused.status_code == 409
    assert said(text(refused)) == ["Refused: the agent took this escalation back."]


# ---------------------------------------------------------------- comments


def test_a_comment_lands_in_the_timeline_with_its_author(
    escalation, reviewer, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        event = services.escalation_comment(
            escalation_id=escalation.pk, user=reviewer, body="  Ask billing first.\n"
        )
    assert (event.kind, event.actor, event.data) == ("commented", "alice", {"body": "Ask billing first."})
    assert len(callbacks) == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("   ", "Write something first."),
        ("x" * 4001, "must be at most 4000 characters"),
        ("nul \x00 here", "must not contain NUL characters"),
    ],
)
def test_a_comment_must_be_storable_text(escalation, reviewer, body, message):
    with pytest.raises(Invalid) as refused:
        services.escalation_comment(escalation_id=escalation.pk, user=reviewer, body=body)
    assert refused.value.errors[0].field == "body"
    assert message in refused.value.errors[0].message


def test_commenting_by_htmx_returns_a_fresh_form_and_the_timeline(escalation, reviewer_client):
    response = reviewer_client.post(
        url("comment", escalation), {"body": "<script>alert(1)</script> looks risky"}, **HX
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert body.lstrip().startswith('<form id="comment-form"')
    assert "Comment added." in body
    assert 'id="activity"' in body
    assert 'hx-swap-oob="true"' in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt; looks risky" in body
    assert "<script>alert(1)" not in body
    assert "</textarea>" in body
    assert "looks risky</textarea>" not in body  # the form is emptied


def test_commenting_without_javascript_and_with_errors(escalation, reviewer_client):
    empty = reviewer_client.post(url("comment", escalation), {"body": ""})
    assert empty.status_code == 422
    assert "Write something first." in text(empty)
    assert "<h1>" in text(empty)  # the whole page, with the error at the field

    done = reviewer_client.post(url("comment", escalation), {"body": "Checked the logs."})
    assert done.status_code == 302
    page = text(reviewer_client.get(done["Location"]))
    assert "Comment added." in page
    assert "Checked the logs." in page
    assert "Ctrl+Enter posts it." in page


def test_comments_are_not_sent_to_the_agent(escalation, reviewer, api):
    services.escalation_comment(escalation_id=escalation.pk, user=reviewer, body="internal")
    assert "internal" not in api.get(f"/api/v1/escalations/{escalation.pk}").content.decode()


# ---------------------------------------------------------------- flag review


@pytest.fixture
def flagged(api) -> Escalation:
    """A tier-2 escalation the policy decided at once (0.80 in the default domain)."""
    escalation = post_package(api, run_id="flagged", confidence=0.80)
    assert escalation.tier == 2
    assert escalation.decision.decided_by_type == "policy"
    return escalation


def test_a_flag_review_is_recorded_once(flagged, reviewer, other_reviewer):
    review = services.flag_review_record(
        escalation_id=flagged.pk, user=reviewer, verdict="other", option_key="shim", note="Legacy."
    )
    assert (review.verdict, review.option_key, review.reviewer_name) == ("other", "shim", "alice")
    [event] = events(flagged, Event.Kind.FLAG_REVIEWED)
    assert event.data == {"verdict": "other", "option": "shim"}
    with pytest.raises(Conflict) as again:
        services.flag_review_record(escalation_id=flagged.pk, user=other_reviewer, verdict="fine")
    assert isinstance(again.value, Conflict)
    assert "alice has already reviewed" in again.value.detail
    assert FlagReview.objects.count() == 1


@pytest.mark.parametrize(
    ("verdict", "option", "field"),
    [("other", "", "option_key"), ("other", "nope", "option_key"),
     ("other", "update-callers", "option_key"), ("maybe", "", "verdict")],
)
def test_a_flag_review_names_what_is_wrong(flagged, reviewer, verdict, option, field):
    with pytest.raises(Invalid) as refused:
        services.flag_review_record(
            escalation_id=flagged.pk, user=reviewer, verdict=verdict, option_key=option
        )
    assert isinstance(refused.value, Invalid)
    assert refused.value.errors[0].field == field


def test_only_policy_decided_tier_two_escalations_are_flag_reviewed(escalation, reviewer):
    with pytest.raises(Conflict) as refused:
        services.flag_review_record(escalation_id=escalation.pk, user=reviewer, verdict="fine")
    assert isinstance(refused.value, Conflict)


def test_flag_review_controls_on_the_page(flagged, reviewer_client, escalation):
    assert 'id="flag-review"' not in text(reviewer_client.get(url("detail", escalation)))
    page = text(reviewer_client.get(url("detail", flagged)))
    assert "Flagged: was the policy right?" in page
    assert "Fine: “Update all 14 callers” was right" in page
    assert '<option value="shim">Add a compatibility shim</option>' in page
    assert '<option value="update-callers">' not in page  # not the policy's own choice

    unpicked = reviewer_client.post(url("flag_review", flagged), {"verdict": "other"}, **HX)
    assert unpicked.status_code == 422
    assert "Pick the option it should have been." in text(unpicked)

    done = reviewer_client.post(
        url("flag_review", flagged), {"verdict": "other", "option_key": "shim"}, **HX
    )
    assert done.status_code == 200
    assert "says it should have been" in text(done)
    assert "Add a compatibility shim" in text(done)
    assert 'id="activity"' in text(done)

    again = reviewer_client.post(url("flag_review", flagged), {"verdict": "fine"}, **HX)
    assert again.status_code == 409
    assert "alice has already reviewed this one." in text(again)

    plain = reviewer_client.post(url("flag_review", escalation), {"verdict": "fine"})
    assert plain.status_code == 302
    follow = text(reviewer_client.get(plain["Location"]))
    assert "Only the policy's tier-2 decisions and machine reviewers' decisions are reviewed afterwards." in follow


def test_a_flag_review_reaches_other_viewers_live(flagged, reviewer, bob_client):
    services.flag_review_record(escalation_id=flagged.pk, user=reviewer, verdict="fine")
    live = text(bob_client.get(url("live", flagged), **HX))
    assert re.search(r'<section id="flag-review"[^>]*hx-swap-oob="true"', live)
    assert "marked it <strong>fine</strong>" in live
    assert said(live)[-1] == "alice reviewed this decision while you were writing."  # for a note bob typed


# ---------------------------------------------------------------- take over and my runs


def take_over(escalation, user, note="I'll finish the migration by hand."):
    return services.escalation_decide(
        escalation_id=escalation.pk,
        request=services.DecisionRequest(kind="take_over", instruction=note),
        user=user,
    )


def test_taking_over_marks_the_run_and_tells_the_agent_to_stop(escalation, reviewer, api):
    take_over(escalation, reviewer)
    run = Run.objects.get(pk=escalation.run_id)
    assert (run.status, run.taken_over_by) == (Run.Status.TAKEN_OVER, reviewer)
    decision = api.get(f"/api/v1/escalations/{escalation.pk}").json()["decision"]
    assert decision["kind"] == "take_over"


def test_closing_a_taken_over_run(escalation, reviewer, other_reviewer, django_capture_on_commit_callbacks):
    take_over(escalation, reviewer)
    with pytest.raises(Invalid) as empty:
        services.run_close(run_id=escalation.run_id, user=reviewer, note=" ")
    assert empty.value.errors[0].field == "note"
    with pytest.raises(NotFound) as not_theirs:
        services.run_close(run_id=escalation.run_id, user=other_reviewer, note="done")
    assert isinstance(not_theirs.value, NotFound)

    with django_capture_on_commit_callbacks() as callbacks:
        run = services.run_close(run_id=escalation.run_id, user=reviewer, note="Migrated by hand.")
    assert (run.status, run.close_note) == (Run.Status.CLOSED, "Migrated by hand.")
    assert run.closed_at is not None
    [event] = events(escalation, Event.Kind.RUN_CLOSED)
    assert (event.actor, event.data) == ("alice", {"note": "Migrated by hand."})
    assert len(callbacks) == 1
    with pytest.raises(Conflict) as again:
        services.run_close(run_id=escalation.run_id, user=reviewer, note="twice")
    assert isinstance(again.value, Conflict)


def test_my_runs_lists_taken_over_runs_and_closes_them(
    escalation, reviewer, reviewer_client, bob_client
):
    empty = text(reviewer_client.get(reverse("reviews:my_runs")))
    assert "No runs taken over" in empty
    assert f'href="{reverse("reviews:my_runs")}" aria-current="page">My runs<' in empty

    take_over(escalation, reviewer)
    detail = text(reviewer_client.get(url("detail", escalation)))
    assert "The run is yours now: close it from" in detail
    assert "The run is yours now" not in text(bob_client.get(url("detail", escalation)))
    page = text(reviewer_client.get(reverse("reviews:my_runs")))
    assert "run-42" in page
    assert "Yours to finish" in page
    assert escalation.title in page
    assert "I'll finish the migration by hand." in page
    assert "No runs taken over" in text(bob_client.get(reverse("reviews:my_runs")))
    close_url = reverse("reviews:run_close", args=[escalation.run_id])
    assert bob_client.post(close_url, {"note": "mine now"}).status_code == 404

    missing = reviewer_client.post(close_url, {"note": ""}, **HX)
    assert missing.status_code == 422
    assert text(missing).lstrip().startswith(f'<li id="run-{escalation.run_id}"')
    assert "Say how the run ended (a line is enough)." in text(missing)

    closed = reviewer_client.post(close_url, {"note": "Done <b>by hand</b>."}, **HX)
    assert closed.status_code == 200
    assert "Closed. It stays listed here for the record." in text(closed)
    assert "Done &lt;b&gt;by hand&lt;/b&gt;." in closed.content.decode()

    again = reviewer_client.post(close_url, {"note": "again"})
    assert again.status_code == 302
    assert "This run is already closed." in text(reviewer_client.get(again["Location"]))
    detail = text(reviewer_client.get(url("detail", escalation)))
    assert "Run Closed" in detail
    assert "Done <b>by hand</b>." in detail


def test_my_runs_close_form_errors_without_javascript(escalation, reviewer, reviewer_client):
    take_over(escalation, reviewer)
    response = reviewer_client.post(
        reverse("reviews:run_close", args=[escalation.run_id]), {"note": ""}
    )
    assert response.status_code == 422
    assert "<h1>My runs</h1>" in text(response)
    assert "Say how the run ended" in text(response)


def test_a_package_of_another_agent_does_not_leak_into_my_runs(api, reviewer, reviewer_client):
    first = post_package(api, run_id="r-1")
    post_package(api, run_id="r-2", title="Other run")
    take_over(first, reviewer)
    page = text(reviewer_client.get(reverse("reviews:my_runs")))
    assert "r-1" in page
    assert "r-2" not in page


def test_the_page_reads_the_same_number_of_queries_however_long_the_timeline(
    escalation, reviewer, other_reviewer, reviewer_client, django_assert_max_num_queries
):
    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert reviewer_client.get(url("detail", escalation)).status_code == 200
        return len(queries)

    services.escalation_claim(escalation_id=escalation.pk, user=other_reviewer)
    services.escalation_comment(escalation_id=escalation.pk, user=reviewer, body="one")
    few = count()
    for n in range(10):
        services.escalation_comment(escalation_id=escalation.pk, user=reviewer, body=f"more {n}")
    services.escalation_reassign(
        escalation_id=escalation.pk, user=other_reviewer, assignee=other_reviewer
    )
    assert count() == few
    with django_assert_max_num_queries(few):
        reviewer_client.get(url("detail", escalation))


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("reassign", {"assignee": "bo\x00b"}),
        ("comment", {"body": "nul \x00"}),
        ("flag_review", {"verdict": "other\x00", "option_key": "shim\x00", "note": "\x00"}),
        ("decide", {"kind": "halt", "confirm": "on", "override_claim": "\x00", "instruction": "\x00"}),
    ],
)
def test_nul_characters_are_refused_not_a_500(escalation, reviewer_client, name, data):
    response = reviewer_client.post(url(name, escalation), data, **HX)
    assert response.status_code in (409, 422), response.status_code


def test_closing_a_run_with_nul_characters_is_refused(escalation, reviewer, reviewer_client):
    take_over(escalation, reviewer)
    response = reviewer_client.post(
        reverse("reviews:run_close", args=[escalation.run_id]), {"note": "done \x00"}
    )
    assert response.status_code == 422
    assert Run.objects.get(pk=escalation.run_id).status == Run.Status.TAKEN_OVER
