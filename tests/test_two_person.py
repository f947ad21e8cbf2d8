"""The two-person rule: an irreversible option needs the policy's N distinct reviewers."""

import json
import threading

import pytest
from django.db import connection

from escalations import selectors, services
from escalations.models import Approval, Decision, Escalation, Event, Policy
from reviews.services import reviewer_token_issue
from tests.conftest import make_user, post_package
from tests.test_browser import LIVE_TIMEOUT_MS, browser, post_escalation, sign_in, wait_live  # noqa: F401 (browser: a fixture)

OPTIONS = [
    {"key": "drop", "label": "Drop the old table", "irreversible": True, "args": {"table": "users_old"}},
    {"key": "keep", "label": "Keep it for now", "recommended": True},
]


@pytest.fixture
def two_people(agent):
    Policy.objects.filter(domain="default").update(approvals_required=2)


def option(escalation, user, key="drop", **extra):
    return services.escalation_decide(
        escalation_id=escalation.pk,
        request=services.DecisionRequest(kind="option", option=key, **extra),
        user=user,
    )


@pytest.mark.django_db
class TestService:
    def test_the_first_approval_leaves_it_open_and_the_second_decides(
        self, api, two_people, reviewer, other_reviewer, django_capture_on_commit_callbacks
    ):
        escalation = post_package(api, options=OPTIONS)
        with django_capture_on_commit_callbacks(execute=True):
            first = option(escalation, reviewer, instruction="Back it up first.")
        assert first.is_open
        assert not Decision.objects.filter(escalation=escalation).exists()
        assert list(Approval.objects.values_list("user_name", "option_key")) == [("alice", "drop")]
        approved = Event.objects.get(escalation=escalation, kind="approved")
        assert (approved.actor, approved.data) == ("alice", {"option": "drop", "approvals": 1, "required": 2})

        second = option(escalation, other_reviewer)
        assert second.status == Escalation.Status.DECIDED
        decision = Decision.objects.get(escalation=escalation)
        assert (decision.option_key, decision.args, decision.decided_by_name) == ("drop", {"table": "users_old"}, "bob")
        assert decision.instruction == "Back it up first."
        decided = Event.objects.get(escalation=escalation, kind="decided")
        assert decided.data["approved_by"] == ["alice", "bob"]

    def test_the_same_reviewer_twice_counts_once(self, api, two_people, reviewer):
        escalation = post_package(api, options=OPTIONS)
        option(escalation, reviewer)
        assert option(escalation, reviewer).is_open
        assert Approval.objects.filter(escalation=escalation).count() == 1
        assert not Decision.objects.filter(escalation=escalation).exists()

    def test_approvals_count_together_only_with_the_same_args(self, api, two_people, reviewer, other_reviewer):
        escalation = post_package(api, options=OPTIONS)
        option(escalation, reviewer)
        assert option(escalation, other_reviewer, args={"table": "users_older"}).is_open
        state = selectors.approval_state(Escalation.objects.get(pk=escalation.pk))
        assert (state.required, state.missing, len(state.approvals)) == (2, 1, 2)
        # alice comes round to bob's args: her approval is replaced and the two agree
        decided = option(escalation, reviewer, args={"table": "users_older"})
        assert decided.status == Escalation.Status.DECIDED
        assert Decision.objects.get(escalation=escalation).args == {"table": "users_older"}

    def test_three_approvals_when_the_policy_says_three(self, api, agent, reviewer, other_reviewer):
        Policy.objects.filter(domain="default").update(approvals_required=3)
        escalation = post_package(api, options=OPTIONS)
        assert option(escalation, reviewer).is_open
        assert option(escalation, other_reviewer).is_open
        assert not option(escalation, make_user("carol", "reviewer")).is_open

    @pytest.mark.parametrize(
        ("request_", "gated"),
        [
            ({"kind": "option", "option": "keep"}, False),
            ({"kind": "halt"}, False),
            ({"kind": "take_over"}, False),
            ({"kind": "instruction", "instruction": "Rename it instead."}, False),
            ({"kind": "option", "option": "drop"}, True),
        ],
    )
    def test_only_irreversible_options_are_gated(self, api, two_people, reviewer, request_, gated):
        escalation = post_package(api, options=OPTIONS)
        result = services.escalation_decide(
            escalation_id=escalation.pk, request=services.DecisionRequest(**request_), user=reviewer
        )
        assert result.is_open is gated

    def test_an_irreversible_action_gates_every_option(self, api, two_people, reviewer):
        escalation = post_package(api, action={"name": "migrate", "irreversible": True})
        assert not escalation.option("shim").get("irreversible")
        assert option(escalation, reviewer, key="shim").is_open

    def test_one_approval_required_decides_at_once(self, api, agent, reviewer):
        escalation = post_package(api, options=OPTIONS)
        assert option(escalation, reviewer).status == Escalation.Status.DECIDED

    def test_an_approval_after_the_decision_is_already_decided(self, api, two_people, reviewer, other_reviewer):
        escalation = post_package(api, options=OPTIONS)
        services.escalation_decide(
            escalation_id=escalation.pk, request=services.DecisionRequest(kind="halt"), user=reviewer
        )
        with pytest.raises(services.AlreadyDecided):
            option(escalation, other_reviewer)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("action", "key", "gated"),
    [(False, "drop", True), (False, "keep", False), (True, "keep", True)],
)
def test_the_page_and_the_service_answer_the_two_person_rule_alike(
    api, two_people, reviewer, action, key, gated
):
    """services.needs_approvals read the package, selectors.approval_state the stored
    is_irreversible flag: a row whose flag was out of step with its package (written by
    another path than intake) was gated by one and not shown by the other."""
    escalation = post_package(
        api, options=OPTIONS, **({"action": {"name": "drop_table", "irreversible": True}} if action else {})
    )
    Escalation.objects.filter(pk=escalation.pk).update(is_irreversible=False)
    escalation = Escalation.objects.get(pk=escalation.pk)
    request = services.DecisionRequest(kind="option", option=key)
    assert (services.needs_approvals(escalation, request) == 2) is gated
    state = selectors.approval_state(escalation)
    assert state is not None  # something here is irreversible
    assert state.required == 2
    assert selectors.approvals_required(escalation, key) == services.needs_approvals(escalation, request)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("trial", range(3))
def test_two_reviewers_approving_at_once_make_exactly_one_decision(trial, api, two_people, django_user_model):
    escalation = post_package(api, options=OPTIONS)
    users = [make_user(f"r{trial}-{i}", "reviewer") for i in range(2)]
    barrier = threading.Barrier(2)
    results: list = [None, None]

    def approve(i: int) -> None:
        barrier.wait()
        try:
            results[i] = option(escalation, users[i])
        except Exception as exc:  # asserted below
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=approve, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert all(isinstance(r, Escalation) for r in results), results
    assert sorted(r.is_open for r in results) == [False, True]
    assert Decision.objects.filter(escalation=escalation).count() == 1
    assert Approval.objects.filter(escalation=escalation).count() == 2


@pytest.mark.django_db
def test_the_reviewer_api_answers_202_with_the_approvals_then_201(api, two_people, reviewer, other_reviewer):
    escalation = post_package(api, options=OPTIONS)
    url = f"/api/v1/review/escalations/{escalation.pk}/decision"

    def post(user):
        token = reviewer_token_issue(user=user)
        return api.__class__(token).post(url, json.dumps({"kind": "option", "option": "drop"}), content_type="application/json")

    first = post(reviewer)
    assert first.status_code == 202, first.content
    body = first.json()
    assert body["decision"] is None
    assert body["approvals"] == {"required": 2, "approved": 1, "option": "drop", "approved_by": ["alice"]}

    second = post(other_reviewer)
    assert second.status_code == 201, second.content
    assert second.json()["decision"]["decided_by"] == {"type": "human", "name": "bob"}


@pytest.mark.django_db
def test_the_page_says_where_the_approvals_stand(api, two_people, reviewer_client, other_reviewer):
    escalation = post_package(api, options=OPTIONS)
    url = f"/escalations/{escalation.pk}"
    before = reviewer_client.get(url).content.decode()
    assert "Two-person rule:" in before

    response = reviewer_client.post(
        f"{url}/decide", {"kind": "option", "option": "drop", "args-drop": "", "confirm-drop": "on"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    panel = " ".join(response.content.decode().split())
    assert "Your approval is recorded; the decision waits for another reviewer&#x27;s." in panel
    assert "1 of 2 approvals</span>: <strong>alice</strong> approved “Drop the old table”; needs one more reviewer." in panel
    assert "You approved “Drop the old table”" in panel

    live = reviewer_client.get(f"{url}/live").content.decode()
    assert 'id="approvals" hx-swap-oob="true"' in live


@pytest.mark.django_db
def test_the_form_without_javascript_redirects_after_an_approval(api, two_people, reviewer_client):
    escalation = post_package(api, options=OPTIONS)
    response = reviewer_client.post(
        f"/escalations/{escalation.pk}/decide", {"kind": "option", "option": "drop", "args-drop": "", "confirm-drop": "on"}
    )
    assert response.status_code == 302
    page = reviewer_client.get(response["Location"]).content.decode()
    assert "Your approval is recorded" in page
    assert "needs one more reviewer" in page


# ---------------------------------------------------------------- in a real browser


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_two_reviewers_in_the_browser_the_first_approves_the_second_decides(
    live_server_asgi, browser, agent_with_token, reviewer, other_reviewer  # noqa: F811
):
    Policy.objects.filter(domain="default").update(approvals_required=2)
    base, token = live_server_asgi, agent_with_token[1]
    escalation = post_escalation(base, token, options=OPTIONS)
    url = f"{base}/escalations/{escalation['id']}"
    alice, bob = sign_in(browser, base, "alice"), sign_in(browser, base, "bob")
    for page in (alice, bob):
        page.goto(url)
        wait_live(page)
        assert "Two-person rule:" in page.text_content("#approvals")

    def approve(page) -> None:
        page.check("input[name=option][value=drop]")
        page.check("input[name='confirm-drop']")
        page.click("text=Decide: proceed with this option")

    # the first approval leaves it open and says so, on both pages
    approve(alice)
    alice.wait_for_selector("#approvals >> text=1 of 2 approvals", timeout=LIVE_TIMEOUT_MS)
    said = " ".join(alice.text_content("#approvals").split())
    assert "1 of 2 approvals: alice approved “Drop the old table”; needs one more reviewer." in said
    assert "Your approval is recorded" in alice.text_content("#decision-panel")
    assert alice.locator("#decision-panel .decided").count() == 0
    assert alice.text_content("#escalation-status").strip() == "Pending"
    bob.wait_for_selector("#approvals >> text=alice approved", timeout=LIVE_TIMEOUT_MS)
    assert not Decision.objects.filter(escalation_id=escalation["id"]).exists()

    # the second decides
    approve(bob)
    decided = bob.locator("#decision-panel .decided")
    decided.wait_for(timeout=LIVE_TIMEOUT_MS)
    assert "Decided by bob" in decided.text_content()
    alice.locator("#decision-panel .decided").wait_for(timeout=LIVE_TIMEOUT_MS)
    assert "Decided by bob" in alice.text_content("#decision-panel")

    decision = Decision.objects.get(escalation_id=escalation["id"])
    assert (decision.option_key, decision.args) == ("drop", {"table": "users_old"})
    assert Approval.objects.filter(escalation_id=escalation["id"]).count() == 2
    assert alice.js_errors == []
    assert bob.js_errors == []
