"""Domain policies: the novelty rule and the other new rules, versioning, the default
respond_by, the gate for each rule, and the managers' pages."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from escalations import services
from escalations.errors import Invalid
from escalations.models import Policy, PolicyVersion
from escalations.policy import (
    Change,
    Rules,
    Situation,
    default_respond_minutes,
    rules_changes,
    rules_errors,
    verdict_for,
)
from tests.conftest import make_package, make_user, post_package

# ---------------------------------------------------------------- pure rules (no database)


@pytest.mark.parametrize(
    ("novelty_escalates", "tier", "reasons"),
    [(True, 3, ["novel situation"]), (False, 1, ["confidence 0.95 ≥ 0.90"])],
)
def test_the_novelty_rule_floors_novel_situations_only_while_it_is_on(novelty_escalates, tier, reasons):
    verdict = verdict_for(Rules(novelty_escalates=novelty_escalates), Situation(confidence=0.95, novel=True))
    assert verdict.tier == tier
    assert verdict.reasons == reasons


def test_with_the_novelty_rule_off_other_floors_still_apply():
    verdict = verdict_for(Rules(novelty_escalates=False), Situation(confidence=0.95, novel=True, attempts=3))
    assert verdict.tier == 3
    assert verdict.reasons == ["3 attempts reached the retry cap of 3"]


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"flag_threshold": 0.95}, "flag_threshold", "must not be above the autonomous threshold (0.9)"),
        ({"escalate_threshold": 0.8}, "escalate_threshold", "must not be above the flag threshold (0.7)"),
        ({"autonomous_threshold": 1.2}, "autonomous_threshold", "must be between 0 and 1"),
        ({"escalate_threshold": -0.1}, "escalate_threshold", "must be between 0 and 1"),
        ({"retry_cap": 0}, "retry_cap", "must be at least 1"),
        ({"scope_tolerance": -1}, "scope_tolerance", "must not be negative"),
        ({"respond_minutes_tier3": 0}, "respond_minutes_tier3", "must be at least 1 minute, or empty for no default"),
        ({"approvals_required": 0}, "approvals_required", "must be at least 1"),
    ],
)
def test_rules_errors_name_the_field_at_fault(changes, field, message):
    assert rules_errors(Rules(**changes)) == [(field, message)]


def test_usable_rules_have_no_errors():
    assert rules_errors(Rules()) == []
    assert rules_errors(Rules(autonomous_threshold=0.5, flag_threshold=0.5, escalate_threshold=0.5)) == []


@pytest.mark.parametrize(("tier", "minutes"), [(1, None), (2, None), (3, 60), (4, 15)])
def test_default_respond_minutes_by_tier(tier, minutes):
    rules = Rules(respond_minutes_tier3=60, respond_minutes_tier4=15)
    assert default_respond_minutes(rules, tier) == minutes


def test_rules_changes_lists_what_differs_as_old_and_new():
    old = {"retry_cap": 3, "flag_threshold": 0.7, "managers": [], "respond_minutes_tier3": 30}
    new = {"retry_cap": 5, "flag_threshold": 0.7, "managers": ["maya"], "respond_minutes_tier3": None}
    assert rules_changes(old, new) == [
        Change("retry_cap", 3, 5),
        Change("managers", [], ["maya"]),
        Change("respond_minutes_tier3", 30, None),
    ]


def test_a_setting_an_old_snapshot_did_not_record_is_not_shown_as_changed():
    assert rules_changes({"retry_cap": 3}, {"retry_cap": 3, "managers": ["maya"], "description": "x"}) == []


# ---------------------------------------------------------------- versioning


def test_rules_for_reads_every_setting_of_the_policy(agent):
    Policy.objects.filter(domain="default").update(
        novelty_escalates=False, respond_minutes_tier3=30, respond_minutes_tier4=5, approvals_required=2
    )
    rules = services.rules_for("default")
    assert (rules.novelty_escalates, rules.respond_minutes_tier3, rules.respond_minutes_tier4) == (False, 30, 5)
    assert rules.approvals_required == 2


def test_every_save_is_a_new_version_with_its_snapshot_author_and_note(agent, manager):
    policy = Policy.objects.get(domain="default")
    assert policy.version == 1
    assert PolicyVersion.objects.filter(policy=policy).count() == 1  # from the migration

    policy, changes = services.policy_update(
        policy_id=policy.pk, changes={"autonomous_threshold": 0.8, "retry_cap": 5}, user=manager, note="fewer asks"
    )
    assert policy.version == 2
    assert changes == [Change("autonomous_threshold", 0.9, 0.8), Change("retry_cap", 3, 5)]
    saved = PolicyVersion.objects.get(policy=policy, version=2)
    assert saved.rules["autonomous_threshold"] == 0.8
    assert saved.rules["retry_cap"] == 5
    assert saved.rules["managers"] == []
    assert saved.rules["description"] == "Anything without a domain of its own."
    assert (saved.changed_by, saved.changed_by_name, saved.note) == (manager, "maya", "fewer asks")

    policy, changes = services.policy_update(policy_id=policy.pk, changes={"managers": [manager]}, user=manager)
    assert policy.version == 3
    assert changes == [Change("managers", [], ["maya"])]
    assert list(policy.managers.all()) == [manager]
    assert PolicyVersion.objects.filter(policy=policy).count() == 3


def test_a_save_that_changes_nothing_makes_no_version(agent, manager):
    policy = Policy.objects.get(domain="default")
    policy, changes = services.policy_update(policy_id=policy.pk, changes={"retry_cap": 3}, user=manager)
    assert (policy.version, changes) == (1, [])
    assert PolicyVersion.objects.filter(policy=policy).count() == 1


def test_an_invalid_save_is_refused_naming_the_field_and_changes_nothing(agent, manager):
    policy = Policy.objects.get(domain="default")
    with pytest.raises(Invalid) as raised:
        services.policy_update(policy_id=policy.pk, changes={"flag_threshold": 0.95}, user=manager)
    assert isinstance(raised.value, Invalid)
    assert [e.field for e in raised.value.errors] == ["flag_threshold"]
    policy.refresh_from_db()
    assert (policy.version, policy.flag_threshold) == (1, 0.70)


def test_escalations_record_the_policy_version_that_tiered_them(api, manager):
    before = post_package(api, run_id="before", confidence=0.80)
    assert (before.policy_version, before.tier) == (1, 2)

    policy = Policy.objects.get(domain="default")
    services.policy_update(policy_id=policy.pk, changes={"flag_threshold": 0.85, "autonomous_threshold": 0.95}, user=manager)

    after = post_package(api, run_id="after", confidence=0.80)
    assert (after.policy_version, after.tier) == (2, 3)
    before.refresh_from_db()
    assert before.policy_version == 1


def test_the_escalation_page_names_the_policy_version_that_tiered_it(api, manager_client, reviewer_client):
    escalation = post_package(api)
    assert "Tiered by the default policy, version 1." in reviewer_client.get(f"/escalations/{escalation.pk}").content.decode()
    page = manager_client.get(f"/escalations/{escalation.pk}").content.decode()
    assert '<a href="/policies/default">the default policy</a>, version 1.' in page


def test_policy_create_starts_at_version_one(db, manager):
    policy = services.policy_create(domain="payments", description="Money moves", user=manager, approvals_required=2)
    assert (policy.version, policy.approvals_required) == (1, 2)
    first = PolicyVersion.objects.get(policy=policy)
    assert (first.version, first.note, first.changed_by_name) == (1, "created", "maya")
    assert first.rules["approvals_required"] == 2


# ---------------------------------------------------------------- default respond_by


@pytest.fixture
def deadlines(agent):
    Policy.objects.filter(domain="default").update(respond_minutes_tier3=60, respond_minutes_tier4=15)


@pytest.mark.parametrize(("confidence", "minutes"), [(0.62, 60), (0.30, 15)])
def test_a_package_without_respond_by_gets_the_policys_deadline_for_its_tier(api, deadlines, confidence, minutes):
    start = timezone.now()
    escalation = post_package(api, confidence=confidence)
    assert start + timedelta(minutes=minutes) <= escalation.respond_by <= timezone.now() + timedelta(minutes=minutes)
    assert escalation.timeout_option == ""  # a default deadline never decides anything by itself


def test_the_packages_own_respond_by_wins(api, deadlines):
    own = (timezone.now() + timedelta(hours=5)).replace(microsecond=0)
    cost = {"blocking": True, "impact": "high", "respond_by": own.isoformat()}
    escalation = post_package(api, cost_of_delay=cost)
    assert escalation.respond_by == own


def test_no_default_deadline_for_policy_decided_tiers_or_without_minutes(api, deadlines):
    assert post_package(api, run_id="t1", confidence=0.95).respond_by is None
    Policy.objects.filter(domain="default").update(respond_minutes_tier3=None)
    assert post_package(api, run_id="t3", confidence=0.62).respond_by is None


def test_timeout_option_still_needs_the_packages_own_respond_by(api, deadlines):
    response = api.escalate(make_package(timeout_option="shim"))
    assert response.status_code == 422
    assert {"field": "timeout_option", "message": "needs cost_of_delay.respond_by"} in response.json()["errors"]


def test_the_default_deadline_is_on_the_wire(api, deadlines):
    body = api.escalate(make_package()).json()
    respond_by = datetime.fromisoformat(body["respond_by"].replace("Z", "+00:00"))
    assert respond_by.tzinfo == UTC
    assert timedelta(minutes=59) < respond_by - timezone.now() <= timedelta(minutes=60)


# ---------------------------------------------------------------- the gate, rule by rule


def gate(api, **body):
    response = api.post_json("/api/v1/gate", {"confidence": 0.95, **body})
    assert response.status_code == 200, response.content
    return response.json()


@pytest.mark.parametrize(
    ("body", "verdict", "reason"),
    [
        ({"confidence": 0.95}, "proceed", "confidence 0.95 ≥ 0.90"),
        ({"confidence": 0.80}, "flag", "confidence 0.80 below autonomous 0.90"),
        ({"confidence": 0.60}, "escalate", "confidence 0.60 below 0.70"),
        ({"confidence": 0.30}, "halt", "confidence 0.30 below 0.50: halt"),
        ({"action": {"name": "drop table", "irreversible": True}}, "escalate", "irreversible action needs approval"),
        ({"attempts": 3}, "escalate", "3 attempts reached the retry cap of 3"),
        ({"action": {"name": "refactor", "planned_scope": 4, "actual_scope": 7}}, "escalate", "scope 7 exceeds planned 4 by more than 50%"),
        ({"novel": True}, "escalate", "novel situation"),
    ],
)
def test_the_gate_answers_each_rule_with_its_reason(api, body, verdict, reason):
    answer = gate(api, **body)
    assert answer["verdict"] == verdict
    assert reason in answer["reasons"]
    assert answer["policy"] == "default"


def test_the_gate_follows_a_saved_policy_change(api, manager):
    assert gate(api, novel=True)["verdict"] == "escalate"
    policy = Policy.objects.get(domain="default")
    services.policy_update(policy_id=policy.pk, changes={"novelty_escalates": False, "retry_cap": 5}, user=manager)
    assert gate(api, novel=True)["verdict"] == "proceed"
    assert gate(api, attempts=4)["verdict"] == "proceed"
    assert gate(api, attempts=5)["verdict"] == "escalate"


def test_a_novelty_package_is_tier_3_only_while_the_rule_is_on(api, manager):
    assert post_package(api, run_id="a", reason="novelty", confidence=0.95).tier == 3
    policy = Policy.objects.get(domain="default")
    services.policy_update(policy_id=policy.pk, changes={"novelty_escalates": False}, user=manager)
    assert post_package(api, run_id="b", reason="novelty", confidence=0.95).tier == 1


# ---------------------------------------------------------------- the managers' pages


FORM = {
    "description": "Anything without a domain of its own.",
    "autonomous_threshold": "0.9",
    "flag_threshold": "0.7",
    "escalate_threshold": "0.5",
    "retry_cap": "3",
    "scope_tolerance": "0.5",
    "auto_decide": "on",
    "novelty_escalates": "on",
    "respond_minutes_tier3": "",
    "respond_minutes_tier4": "",
    "approvals_required": "1",
    "note": "",
}


def test_policy_pages_are_for_managers(reviewer_client, agent):
    for url in ("/policies/", "/policies/default", "/policies/new"):
        response = reviewer_client.get(url)
        assert response.status_code == 403
        assert "This page is for managers." in response.content.decode()


def test_the_list_shows_every_domain_policy(manager_client, agent):
    page = manager_client.get("/policies/").content.decode()
    for domain in ("default", "code", "db-migration", "research"):
        assert f'href="/policies/{domain}"' in page
    assert "0.95 / 0.80 / 0.60" in page
    assert 'href="/policies/"' in page  # the manager's nav link


def test_saving_the_form_makes_a_version_and_the_history_shows_what_changed(manager_client, manager):
    other = make_user("sam", "manager")
    form = {**FORM, "autonomous_threshold": "0.8", "approvals_required": "2", "managers": [str(other.pk)], "note": "two people for drops"}
    response = manager_client.post("/policies/default", form)
    assert response.status_code == 302
    assert response["Location"] == "/policies/default"

    policy = Policy.objects.get(domain="default")
    assert (policy.version, policy.autonomous_threshold, policy.approvals_required) == (2, 0.8, 2)
    page = manager_client.get("/policies/default").content.decode()
    assert "Saved as version 2: autonomous threshold: 0.9 → 0.8; approvals required: 1 → 2; managers: none → sam." in page
    assert "<li>autonomous threshold: 0.9 → 0.8</li>" in page
    assert "two people for drops" in page
    assert "Save as version 3" in page

    # the next version's history names the managers and the description too
    form.update(managers=[], description="Everything else", note="")
    assert manager_client.post("/policies/default", form).status_code == 302
    page = manager_client.get("/policies/default").content.decode()
    assert "<li>description: Anything without a domain of its own. → Everything else</li>" in page
    assert "<li>managers: sam → none</li>" in page


def test_thresholds_out_of_order_are_refused_next_to_the_field(manager_client, agent):
    response = manager_client.post("/policies/default", {**FORM, "flag_threshold": "0.95"})
    assert response.status_code == 422
    page = response.content.decode()
    assert "Proceed with a flag from: must not be above the autonomous threshold (0.9)" in page
    assert Policy.objects.get(domain="default").version == 1


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("autonomous_threshold", "abc", "Enter a number."),
        ("autonomous_threshold", "nan", "Enter a number."),
        ("escalate_threshold", "1.5", "Ensure this value is less than or equal to 1."),
        ("retry_cap", "0", "Ensure this value is greater than or equal to 1."),
        ("approvals_required", "99999999999999999999", "Ensure this value is less than or equal to 10."),
        ("description", "x" * 301, "Ensure this value has at most 300 characters"),
    ],
)
def test_bad_input_is_a_422_naming_the_field_never_a_500(manager_client, agent, field, value, message):
    response = manager_client.post("/policies/default", {**FORM, field: value})
    assert response.status_code == 422
    assert message in response.content.decode()


def test_a_save_without_changes_says_so(manager_client, agent):
    response = manager_client.post("/policies/default", FORM)
    assert response.status_code == 422
    assert "Nothing changed" in response.content.decode()


def test_creating_a_domain_policy(manager_client, agent):
    response = manager_client.post("/policies/new", {**FORM, "domain": "payments", "approvals_required": "2"})
    assert response.status_code == 302
    assert Policy.objects.get(domain="payments").approvals_required == 2
    taken = manager_client.post("/policies/new", {**FORM, "domain": "payments"})
    assert taken.status_code == 422
    assert "A policy for “payments” exists already." in taken.content.decode()


def test_the_new_policy_form_starts_from_the_defaults(manager_client, agent):
    page = manager_client.get("/policies/new").content.decode()
    assert 'name="autonomous_threshold" value="0.9"' in page


def test_user_text_is_escaped(manager_client, agent):
    manager_client.post("/policies/default", {**FORM, "description": "<script>x</script>", "note": "<b>n</b>"})
    page = manager_client.get("/policies/default").content.decode()
    assert "<script>x</script>" not in page
    assert "&lt;script&gt;x&lt;/script&gt;" in page
    assert "&lt;b&gt;n&lt;/b&gt;" in page


def test_unknown_policy_is_404(manager_client, agent):
    assert manager_client.get("/policies/nope").status_code == 404
