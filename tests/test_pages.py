"""The reviewer pages: queue, escalation page, decision panel, claims, redelivery."""

import json
import re
import uuid
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from escalations import services
from escalations.errors import FieldError, Invalid
from escalations.models import Decision, Delivery, Escalation
from escalations.schemas import EscalationIn
from reviews import queue_views
from reviews.forms import OptionDecisionForm
from tests.conftest import make_package, post_package

HX = {"HTTP_HX_REQUEST": "true"}
XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def create(agent, *, now=None, **overrides) -> Escalation:
    """Through the service (lets a test choose the clock)."""
    body = json.loads(json.dumps(make_package(**overrides), default=str))
    package = EscalationIn.model_validate(body)
    return services.escalation_create(agent=agent, package=package.to_input(body), now=now).escalation


@pytest.fixture
def escalation(api) -> Escalation:
    return post_package(api)


@pytest.fixture
def bob_client(other_reviewer) -> Client:
    client = Client()
    client.force_login(other_reviewer)
    return client


def text(response) -> str:
    return response.content.decode()


# ---------------------------------------------------------------- access


def test_every_reviews_url_sends_anonymous_users_to_login(escalation):
    client = Client()
    pk = escalation.pk
    gets = [
        reverse("reviews:queue"),
        reverse("reviews:detail", args=[pk]),
        reverse("reviews:live", args=[pk]),
    ]
    posts = [
        reverse(f"reviews:{name}", args=[pk])
        for name in ("decide", "claim", "release", "redeliver")
    ]
    for url in gets:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/accounts/login/?next="), url
    for url in posts:
        response = client.post(url, {"kind": "halt", "confirm": "on"})
        assert response.status_code == 302, url
        assert response["Location"].startswith("/accounts/login/"), url
    escalation.refresh_from_db()
    assert escalation.status == Escalation.Status.PENDING


def test_login_page_signs_a_reviewer_in(reviewer):
    client = Client()
    page = client.get("/accounts/login/")
    assert page.status_code == 200
    assert "Sign in to Handoff" in text(page)
    response = client.post(
        "/accounts/login/", {"username": "alice", "password": "correct-horse-battery"}
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("reviews:queue")


def test_unknown_escalation_is_404(reviewer_client):
    assert reviewer_client.get(reverse("reviews:detail", args=[uuid.uuid4()])).status_code == 404


# ---------------------------------------------------------------- queue


def test_queue_shows_open_escalations_in_priority_order(api, agent, reviewer_client):
    low = post_package(
        api, run_id="low", title="Low and slow", cost_of_delay={"blocking": False, "impact": "low"}
    )
    high = post_package(
        api,
        run_id="high",
        title="Critical and blocking",
        confidence=0.3,
        cost_of_delay={"blocking": True, "impact": "critical", "blocked_tasks": 5},
    )
    decided = post_package(api, run_id="done", title="Already decided one", confidence=0.99)
    assert decided.status == Escalation.Status.DECIDED

    page = text(reviewer_client.get(reverse("reviews:queue")))

    assert page.index("Critical and blocking") < page.index("Low and slow")
    assert "Already decided one" not in page
    assert f'href="/escalations/{high.pk}"' in page
    assert "agent-007" in page
    assert "T4 · Halt" in page
    assert "T3 · Escalated" in page
    assert f">{high.priority}<" in page
    assert f">{low.priority}<" in page
    # the priority's reasons: on hover (title) and visibly
    assert f'title="{", ".join(high.priority_reasons)}"' in page
    assert "blocks 5 tasks" in page
    assert "Approach choice" in page
    assert "blocking 5 tasks" in page
    assert "not blocking" in page
    assert "unclaimed" in page


def test_queue_shows_time_left_overdue_in_red_and_who_claimed(
    agent, reviewer, other_reviewer, reviewer_client
):
    now = timezone.now()
    overdue = create(
        agent,
        run_id="late",
        now=now - timedelta(hours=3),
        history=[
            {"at": (now - timedelta(hours=4)).isoformat(), "action": "tried", "outcome": "failed"}
        ],
        cost_of_delay={"blocking": True, "impact": "high", "respond_by": now - timedelta(hours=1)},
    )
    soon = create(
        agent,
        run_id="soon",
        cost_of_delay={
            "blocking": False,
            "impact": "low",
            "respond_by": now + timedelta(hours=2, minutes=5),
        },
    )
    services.escalation_claim(escalation_id=soon.pk, user=other_reviewer)
    services.escalation_claim(escalation_id=overdue.pk, user=reviewer)

    page = text(reviewer_client.get(reverse("reviews:queue")))

    assert re.search(r'class="deadline overdue"[^>]*>overdue by 1 h', page)
    assert re.search(r"2 h [45] min left", page)
    assert "bob" in page  # claimed by the other reviewer
    assert '<span class="claimer is-me">' in page


def test_queue_empty_state(reviewer_client):
    page = text(reviewer_client.get(reverse("reviews:queue")))
    assert "Nothing waits for a human" in page
    assert "<table" not in page


def test_queue_pages_with_a_keyset_cursor(api, reviewer_client, monkeypatch):
    monkeypatch.setattr(queue_views, "QUEUE_PAGE_SIZE", 2)
    for n in range(5):
        post_package(api, run_id=f"run-{n}", title=f"Escalation number {n}")
    seen = []
    url = reverse("reviews:queue")
    for _ in range(3):
        page = text(reviewer_client.get(url))
        seen += re.findall(r"Escalation number \d", page)
        found = re.search(r'href="(/\?after=[^"]+)"', page)
        if not found:
            break
        url = found.group(1).replace("&amp;", "&")
    assert sorted(seen) == [f"Escalation number {n}" for n in range(5)]
    assert len(seen) == 5


def test_queue_with_a_broken_cursor_goes_back_to_the_first_page(reviewer_client):
    response = reviewer_client.get(reverse("reviews:queue") + "?after=%%%not-a-cursor")
    assert response.status_code == 302
    assert response["Location"] == reverse("reviews:queue")


def test_queue_htmx_request_gets_only_the_table(escalation, reviewer_client):
    page = text(reviewer_client.get(reverse("reviews:queue"), **HX))
    assert page.lstrip().startswith('<div id="queue-table"')
    assert "<html" not in page
    assert escalation.title in page


def test_queue_query_count_does_not_grow_with_rows(
    api, reviewer, other_reviewer, reviewer_client, django_assert_num_queries
):
    def count_queries() -> int:
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as ctx:
            assert reviewer_client.get(reverse("reviews:queue")).status_code == 200
        return len(ctx.captured_queries)

    first = post_package(api, run_id="r0")
    services.escalation_claim(escalation_id=first.pk, user=other_reviewer)
    with_one = count_queries()
    for n in range(1, 12):
        e = post_package(api, run_id=f"r{n}")
        if n % 2:
            services.escalation_claim(
                escalation_id=e.pk, user=reviewer if n % 3 else other_reviewer
            )
    # session, user, the user's groups (role check), the agents and the domains (filter
    # choices), one page of escalations (agent, claimer and decision joined), and the six
    # tab counts (each from an index)
    with django_assert_num_queries(12):
        reviewer_client.get(reverse("reviews:queue"))
    assert with_one == 12


# ---------------------------------------------------------------- escalation page


@pytest.fixture
def full(api) -> Escalation:
    t = timezone.now()
    return post_package(
        api,
        run_id="full",
        title="Drop the orders_archive table?",
        uncertainty="Nobody has read orders_archive in 90 days but finance may need it for the annual audit.",
        reason="irreversible_action",
        history=[
            {
                "at": (t - timedelta(minutes=9)).isoformat(),
                "action": "counted rows",
                "outcome": "ok",
                "detail": "1,204,332 rows",
            },
            {
                "at": (t - timedelta(minutes=8)).isoformat(),
                "action": "checked readers in pg_stat",
                "outcome": "failed",
                "detail": "permission denied for pg_stat_statements",
            },
            {
                "at": (t - timedelta(minutes=7)).isoformat(),
                "action": "looked for a backup",
                "outcome": "skipped",
            },
        ],
        options=[
            {
                "key": "drop",
                "label": "Drop it now",
                "irreversible": True,
                "recommended": True,
                "args": {"table": "orders_archive"},
            },
            {
                "key": "rename",
                "label": "Rename it first",
                "description": "Reads fail loudly; data stays.",
                "args": {"to": "_orders_archive_old"},
            },
        ],
        cost_of_delay={
            "blocking": True,
            "impact": "critical",
            "blocked_tasks": 2,
            "stuck_since": (t - timedelta(hours=2)).isoformat(),
            "respond_by": (t + timedelta(hours=1)).isoformat(),
            "note": "Release 47 waits on this.",
        },
        action={
            "name": "DROP TABLE orders_archive",
            "irreversible": True,
            "planned_scope": 1,
            "actual_scope": 3,
        },
        attempts=2,
        links=[{"label": "Runbook", "url": "https://wiki.example.com/runbooks/drop"}],
        metadata={"database": "shop-prod", "rows": 1204332},
    )


def test_escalation_page_shows_the_whole_package(full, reviewer_client):
    page = text(reviewer_client.get(reverse("reviews:detail", args=[full.pk])))

    # uncertainty first: before the options, the cost of delay and the history
    assert "What the agent is unsure of" in page
    assert (
        page.index("annual audit")
        < page.index('id="options-heading"')
        < page.index('id="delay-heading"')
    )
    assert page.index('id="delay-heading"') < page.index('id="history-heading"')
    # options: recommended marked, irreversible warned
    assert "★ Recommended" in page
    assert "<strong>Irreversible.</strong> Once the agent does this, it cannot be undone." in page
    assert "Reads fail loudly; data stays." in page
    assert "&quot;table&quot;: &quot;orders_archive&quot;" in page
    # cost of delay
    assert "Yes: other work waits on this" in page
    assert ">critical<" in page
    assert "Release 47 waits on this." in page
    assert re.search(r"(59 min|1 h) left", page)
    # action, attempts, scope
    assert "DROP TABLE orders_archive" in page
    assert "larger than planned" in page
    # history with the failed step visible
    assert "3 steps" in page
    assert "1 failed" in page
    assert re.search(r'class="step step-failed[^"]*".*?checked readers in pg_stat', page, re.S)
    assert "permission denied for pg_stat_statements" in page
    # links open safely
    assert (
        'href="https://wiki.example.com/runbooks/drop" rel="noopener noreferrer nofollow"' in page
    )
    assert "&quot;database&quot;: &quot;shop-prod&quot;" in page
    # events and the live socket
    assert 'class="event event-created"' in page
    assert f'ws-connect="/ws/escalations/{full.pk}/"' in page
    assert "This agent has no resume_url" in page


def test_user_supplied_text_is_escaped_everywhere(api, reviewer_client):
    e = post_package(
        api,
        title=f"Title {XSS}",
        uncertainty=f"The specific risk is {XSS} in the billing module tests",
        history=[
            {
                "at": timezone.now().isoformat(),
                "action": f"step {XSS}",
                "outcome": "failed",
                "detail": XSS,
            }
        ],
        options=[
            {
                "key": "a",
                "label": f"Option {XSS}",
                "recommended": True,
                "description": XSS,
                "args": {"x": XSS},
            }
        ],
        links=[{"label": XSS, "url": "https://example.com/?q=<script>"}],
        metadata={"note": XSS},
        cost_of_delay={"blocking": False, "impact": "low", "note": XSS},
    )
    for response in (
        reviewer_client.get(reverse("reviews:detail", args=[e.pk])),
        reviewer_client.get(reverse("reviews:queue")),
        reviewer_client.get(reverse("reviews:live", args=[e.pk]), **HX),
    ):
        page = text(response)
        assert "<script>alert" not in page
        assert "<img src=x" not in page
    page = text(reviewer_client.get(reverse("reviews:detail", args=[e.pk])))
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page


def test_a_javascript_link_is_never_rendered_as_a_link(escalation, reviewer_client):
    # The API refuses non-http links; the page does not trust that alone.
    Escalation.objects.filter(pk=escalation.pk).update(
        links=[{"label": "evil", "url": "javascript:alert(1)"}]
    )
    page = text(reviewer_client.get(reverse("reviews:detail", args=[escalation.pk])))
    assert "javascript:alert" not in page
    assert "(not an http link)" in page


# ---------------------------------------------------------------- deciding


def decide_url(escalation) -> str:
    return reverse("reviews:decide", args=[escalation.pk])


def test_decide_an_option_with_edited_args_by_plain_post(escalation, reviewer_client):
    response = reviewer_client.post(
        decide_url(escalation),
        {
            "kind": "option",
            "option": "update-callers",
            "args-update-callers": '{"paths": ["billing/"], "skip": ["billing/legacy"]}',
            "instruction": "Leave billing/legacy alone.",
        },
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("reviews:detail", args=[escalation.pk])
    decision = Decision.objects.get(escalation=escalation)
    assert (decision.kind, decision.option_key) == ("option", "update-callers")
    assert decision.args == {"paths": ["billing/"], "skip": ["billing/legacy"]}
    assert decision.instruction == "Leave billing/legacy alone."
    assert decision.decided_by_name == "alice"
    assert decision.took_recommended

    page = text(reviewer_client.get(response["Location"]))
    assert "Decision recorded." in page  # the message
    assert "Decided by <strong>alice</strong>" in page
    assert "Leave billing/legacy alone." in page
    assert 'name="option"' not in page  # no controls once decided


def test_decide_by_htmx_returns_the_closed_panel(escalation, reviewer_client):
    response = reviewer_client.post(
        decide_url(escalation), {"kind": "option", "option": "shim", "args-shim": ""}, **HX
    )
    assert response.status_code == 200
    page = text(response)
    assert page.lstrip().startswith('<section id="decision-panel"')
    assert "Decided by <strong>alice</strong>" in page
    assert "Add a compatibility shim" in page
    assert 'data-state="closed"' in page
    assert 'id="escalation-status" class="status status-decided" hx-swap-oob="true"' in page
    assert "<form" not in page.split('id="activity"')[0]
    decision = Decision.objects.get(escalation=escalation)
    assert decision.option_key == "shim"
    assert decision.args is None
    assert not decision.took_recommended


def test_untouched_args_are_sent_as_the_agent_gave_them(escalation, reviewer_client):
    form_page = text(reviewer_client.get(reverse("reviews:detail", args=[escalation.pk])))
    prefilled = re.search(
        r'<textarea name="args-update-callers"[^>]*>(.*?)</textarea>', form_page, re.S
    )
    assert prefilled is not None
    assert "&quot;paths&quot;" in prefilled.group(1)
    raw = prefilled.group(1).replace("&quot;", '"').strip()
    reviewer_client.post(
        decide_url(escalation),
        {"kind": "option", "option": "update-callers", "args-update-callers": raw},
    )
    assert Decision.objects.get(escalation=escalation).args == {"paths": ["billing/"]}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ('{"paths": ["billing/"', "args of “Update all 14 callers” is not valid JSON"),
        ('["billing/"]', "args of “Update all 14 callers” must be a JSON object {…}, not an array"),
        ("null", "must be a JSON object {…}, not null"),
        ("42", "not a number"),
        # What the database cannot keep: infinity was stored as null (or a 500), deep or
        # huge JSON was a 500.
        ('{"n": 1e999}', "args.n: must be a number within ±1.7976931348623157e308"),
        ('{"n": [1, -1e400]}', "args.n.1: must be a number within"),
        ('{"n": NaN}', "args of “Update all 14 callers” is not valid JSON: NaN is not valid JSON"),
        ('{"n": Infinity}', "Infinity is not valid JSON"),
        ('{"n": 1' + "0" * 5000 + "}", "is not valid JSON"),
        ("[" * 100_000 + "]" * 100_000, "is nested too deeply"),
    ],
)
def test_args_that_are_not_a_json_object_are_refused_next_to_the_field(
    escalation, reviewer_client, raw, message
):
    response = reviewer_client.post(
        decide_url(escalation),
        {"kind": "option", "option": "update-callers", "args-update-callers": raw},
        **HX,
    )
    assert response.status_code == 422
    page = text(response)
    assert message in page
    # the error sits under the args field, and what was typed is kept
    assert re.search(
        r'name="args-update-callers".*?</textarea>\s*<p class="field-error"', page, re.S
    )
    assert not Decision.objects.filter(escalation=escalation).exists()


def test_form_errors_without_javascript_render_the_page(escalation, reviewer_client):
    response = reviewer_client.post(
        decide_url(escalation),
        {"kind": "option", "option": "update-callers", "args-update-callers": "{"},
    )
    assert response.status_code == 422
    assert "<html" in text(response)
    assert "is not valid JSON" in text(response)


def test_an_unknown_option_is_refused(escalation, reviewer_client):
    response = reviewer_client.post(
        decide_url(escalation), {"kind": "option", "option": "nope"}, **HX
    )
    assert response.status_code == 422
    assert "Select a valid choice" in text(response)


def test_unknown_decision_kind_is_a_bad_request(escalation, reviewer_client):
    assert reviewer_client.post(decide_url(escalation), {"kind": "maybe"}).status_code == 400


def test_irreversible_option_needs_explicit_confirmation(full, reviewer_client):
    data = {"kind": "option", "option": "drop", "args-drop": '{"table": "orders_archive"}'}
    refused = reviewer_client.post(decide_url(full), data, **HX)
    assert refused.status_code == 422
    assert "“Drop it now” cannot be undone: tick the box to confirm." in text(refused)
    assert not Decision.objects.filter(escalation=full).exists()

    accepted = reviewer_client.post(decide_url(full), {**data, "confirm-drop": "on"}, **HX)
    assert accepted.status_code == 200
    assert Decision.objects.get(escalation=full).option_key == "drop"


def test_a_reversible_option_needs_no_confirmation(full, reviewer_client):
    response = reviewer_client.post(decide_url(full), {"kind": "option", "option": "rename"}, **HX)
    assert response.status_code == 200
    assert Decision.objects.get(escalation=full).args == {"to": "_orders_archive_old"}


def test_a_different_instruction_is_required_text(escalation, reviewer_client):
    empty = reviewer_client.post(
        decide_url(escalation), {"kind": "instruction", "instruction": "   "}, **HX
    )
    assert empty.status_code == 422
    assert "Write the instruction the agent should follow." in text(empty)
    assert re.search(
        r'<details class="alt" open>\s*<summary>Give a different instruction', text(empty)
    )

    done = reviewer_client.post(
        decide_url(escalation),
        {"kind": "instruction", "instruction": "Revert and open an issue."},
        **HX,
    )
    assert done.status_code == 200
    decision = Decision.objects.get(escalation=escalation)
    assert (decision.kind, decision.instruction, decision.option_key) == (
        "instruction",
        "Revert and open an issue.",
        "",
    )
    assert "Follow an instruction" in text(done)
    assert "Revert and open an issue." in text(done)


@pytest.mark.parametrize(("kind", "run_status"), [("take_over", "taken_over"), ("halt", "halted")])
def test_take_over_and_halt_need_confirmation(escalation, reviewer_client, kind, run_status):
    refused = reviewer_client.post(decide_url(escalation), {"kind": kind}, **HX)
    assert refused.status_code == 422
    assert "Tick the box to confirm" in text(refused)
    assert not Decision.objects.filter(escalation=escalation).exists()

    done = reviewer_client.post(
        decide_url(escalation),
        {"kind": kind, "confirm": "on", "instruction": "I'll finish it."},
        **HX,
    )
    assert done.status_code == 200
    escalation.run.refresh_from_db()
    assert escalation.run.status == run_status
    assert Decision.objects.get(escalation=escalation).kind == kind


def test_a_concurrent_decision_shows_who_decided_and_changes_nothing(
    escalation, reviewer_client, other_reviewer
):
    # bob decides first (another browser); alice's form, opened before, is then posted
    services.escalation_decide(
        escalation_id=escalation.pk,
        request=services.DecisionRequest(kind="halt", instruction="Stop: billing freeze."),
        user=other_reviewer,
    )
    response = reviewer_client.post(
        decide_url(escalation),
        {"kind": "option", "option": "update-callers", "args-update-callers": "{}"},
        **HX,
    )
    assert response.status_code == 409
    page = text(response)
    assert "Not recorded: bob decided first." in page
    assert "Decided by <strong>bob</strong>" in page
    assert "Halt the run" in page
    assert "Stop: billing freeze." in page
    decision = Decision.objects.get(escalation=escalation)
    assert (decision.kind, decision.decided_by_name) == ("halt", "bob")

    plain = reviewer_client.post(
        decide_url(escalation), {"kind": "halt", "confirm": "on"}, follow=True
    )
    assert "Not recorded: bob decided first." in text(plain)


def test_a_service_problem_is_shown_next_to_the_field_it_names(escalation):
    form = OptionDecisionForm(
        {"kind": "option", "option": "shim", "args-shim": "{}"}, escalation=escalation
    )
    assert form.is_valid()
    form.add_refusal(
        Invalid([FieldError("args", "must be an object"), FieldError("kind", "odd")])
    )
    assert form.errors["args-shim"] == ["must be an object"]
    assert form.errors["kind"] == ["odd"]
    form.add_refusal(Invalid([FieldError("history.3.at", "bad")]))
    assert "history.3.at: bad" in form.non_field_errors()


def test_withdrawn_escalation_page_has_no_controls(escalation, reviewer_client):
    services.escalation_withdraw(escalation=escalation)
    page = text(reviewer_client.get(reverse("reviews:detail", args=[escalation.pk])))
    assert "The agent took this escalation back" in page
    assert 'name="option"' not in page
    response = reviewer_client.post(decide_url(escalation), {"kind": "halt", "confirm": "on"}, **HX)
    assert response.status_code == 409
    assert "Not recorded: the escalation is withdrawn." in text(response)


# ---------------------------------------------------------------- claims


def test_claim_and_release_by_htmx(escalation, reviewer_client):
    claimed = reviewer_client.post(reverse("reviews:claim", args=[escalation.pk]), **HX)
    assert claimed.status_code == 200
    page = text(claimed)
    assert page.lstrip().startswith('<div id="claim-box"')
    assert "<strong>You</strong> have claimed this until" in page
    assert "status-claimed" in page  # the status badge, out of band
    escalation.refresh_from_db()
    assert escalation.claimed_by.username == "alice"

    released = reviewer_client.post(reverse("reviews:release", args=[escalation.pk]), **HX)
    assert "Nobody has claimed this yet." in text(released)
    escalation.refresh_from_db()
    assert escalation.status == Escalation.Status.PENDING
    assert escalation.claimed_by is None


def test_claim_without_javascript_redirects_back(escalation, reviewer_client):
    response = reviewer_client.post(reverse("reviews:claim", args=[escalation.pk]))
    assert response.status_code == 302
    page = text(reviewer_client.get(response["Location"]))
    assert "Claimed: it is yours for now." in page
    assert "<strong>You</strong> have claimed this" in page


def test_someone_elses_claim_is_shown_and_kept(escalation, reviewer_client, bob_client):
    bob_client.post(reverse("reviews:claim", args=[escalation.pk]))
    page = text(reviewer_client.get(reverse("reviews:detail", args=[escalation.pk])))
    assert "<strong>bob</strong> is on this" in page
    assert "You can still decide." in page

    taken = reviewer_client.post(reverse("reviews:claim", args=[escalation.pk]), **HX)
    assert taken.status_code == 409
    assert "bob has already claimed this." in text(taken)
    refused = reviewer_client.post(reverse("reviews:release", args=[escalation.pk]), **HX)
    assert refused.status_code == 409
    assert "Only bob can release it." in text(refused)
    escalation.refresh_from_db()
    assert escalation.claimed_by.username == "bob"


def test_claiming_a_decided_escalation_shows_the_decision(
    escalation, reviewer_client, other_reviewer
):
    services.escalation_decide(
        escalation_id=escalation.pk,
        request=services.DecisionRequest(kind="option", option="shim"),
        user=other_reviewer,
    )
    response = reviewer_client.post(reverse("reviews:claim", args=[escalation.pk]), **HX)
    assert response.status_code == 409
    assert response["HX-Retarget"] == "#decision-panel"
    assert "Decided by <strong>bob</strong>" in text(response)


# ---------------------------------------------------------------- live


def test_live_update_refreshes_claim_status_and_timeline_while_open(
    escalation, reviewer_client, other_reviewer
):
    services.escalation_claim(escalation_id=escalation.pk, user=other_reviewer)
    page = text(reviewer_client.get(reverse("reviews:live", args=[escalation.pk]), **HX))
    assert '<div id="claim-box" class="claim-box" hx-swap-oob="true">' in page
    assert (
        'id="activity" class="card section" aria-labelledby="activity-heading" hx-swap-oob="true"'
        in page
    )
    assert "<strong>bob</strong> is on this" in page
    assert 'id="decision-panel"' not in page  # forms being filled in are left alone


def test_live_update_closes_the_panel_once_decided_elsewhere(
    escalation, reviewer_client, other_reviewer
):
    services.escalation_decide(
        escalation_id=escalation.pk,
        request=services.DecisionRequest(kind="instruction", instruction="Ship the shim."),
        user=other_reviewer,
    )
    page = text(reviewer_client.get(reverse("reviews:live", args=[escalation.pk]), **HX))
    assert re.search(r'<section id="decision-panel"[^>]*hx-swap-oob="true"', page)
    assert "Decided by <strong>bob</strong>" in page
    assert "Ship the shim." in page


# ---------------------------------------------------------------- deliveries


@pytest.fixture
def hooked_escalation(db):
    agent = services.agent_create(
        name="hooked", domain="default", resume_url="http://127.0.0.1:9/resume"
    ).agent
    return create(agent, run_id="hooked-run")


def test_deliveries_show_their_attempts_and_can_be_redelivered(
    hooked_escalation, reviewer_client, reviewer
):
    e = hooked_escalation
    # no redeliver while open
    assert "Redeliver</button>" not in text(
        reviewer_client.get(reverse("reviews:detail", args=[e.pk]))
    )
    services.escalation_decide(
        escalation_id=e.pk,
        request=services.DecisionRequest(kind="option", option="shim"),
        user=reviewer,
    )
    delivery = Delivery.objects.get(escalation=e)
    services.delivery_record_attempt(
        delivery=delivery,
        started_at=timezone.now(),
        duration_ms=37,
        status_code=503,
        error="HTTP 503",
    )
    services.delivery_record_attempt(
        delivery=delivery,
        started_at=timezone.now(),
        duration_ms=10002,
        status_code=None,
        error="connection refused",
    )
    page = text(reviewer_client.get(reverse("reviews:detail", args=[e.pk])))
    assert "Webhook deliveries" in page
    assert "http://127.0.0.1:9/resume" in page
    assert (
        "<td>503</td>" in page
    )
    assert (
        "37 ms" in page
    )
    assert (
        "connection refused" in page
    )
    assert (
        "10002 ms" in page
    )
    assert "Redeliver</button>" in page

    response = reviewer_client.post(reverse("reviews:redeliver", args=[e.pk]), **HX)
    assert response.status_code == 200
    assert text(response).lstrip().startswith('<div id="deliveries"')
    assert "Queued a new delivery of the decision." in text(response)
    assert Delivery.objects.filter(escalation=e).count() == 2

    plain = reviewer_client.post(reverse("reviews:redeliver", args=[e.pk]), follow=True)
    assert "Queued a new delivery of the decision." in text(plain)
    assert Delivery.objects.filter(escalation=e).count() == 3


def test_redeliver_refuses_an_open_escalation(hooked_escalation, reviewer_client):
    response = reviewer_client.post(
        reverse("reviews:redeliver", args=[hooked_escalation.pk]), follow=True
    )
    assert "Only a decided escalation can be redelivered." in text(response)
    assert not Delivery.objects.exists()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ('{"paths": ["nul\\u0000byte"]}', "must not contain NUL characters"),
        ('{"blob": "' + "x" * 17000 + '"}', "at most 16 KiB"),
    ],
)
def test_args_the_database_cannot_store_are_refused_not_a_500(escalation, reviewer_client, raw, message):
    response = reviewer_client.post(
        decide_url(escalation), {"kind": "option", "option": "update-callers", "args-update-callers": raw}
    )
    assert response.status_code == 422
    assert message in text(response)
    assert not Decision.objects.filter(escalation=escalation).exists()
