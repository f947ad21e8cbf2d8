"""The backtest on a hand-made set of escalations: counts per tier and the overruled ones,
under the saved rules and under typed ones, in one query; and the page's Backtest button."""

from datetime import timedelta

import pytest
from django.utils import timezone

from escalations import services
from escalations.backtest import backtest
from escalations.models import Escalation, FlagReview, Policy
from escalations.policy import Rules
from people.models import Profile
from tests.conftest import make_user, post_package

IRREVERSIBLE_OPTIONS = [
    {"key": "drop", "label": "Drop the table", "recommended": True, "irreversible": True},
    {"key": "keep", "label": "Keep it"},
]

# Under the saved default policy (0.90 / 0.70 / 0.50, retry cap 3, scope +50%, novelty on):
#   a 0.95            tier 1, decided by the policy
#   b 0.80            tier 2, decided; a flag review says it should have been another option
#   j 0.70            tier 2 (a threshold belongs to the tier above it)
#   c 0.60            tier 3; the reviewer chose "shim", not the recommended option
#   d 0.40            tier 4; the reviewer halted
#   e 0.95 novelty    tier 3 (novelty rule); the reviewer took the recommended option
#   f 0.95 irrev.     tier 3 (irreversible)
#   g 0.85 scope 4→10 tier 3 (scope over +50%)
# and two that must not count: one 40 days old, one in another domain.
TYPED = Rules(
    autonomous_threshold=0.55,
    flag_threshold=0.50,
    escalate_threshold=0.45,
    scope_tolerance=2.0,
    novelty_escalates=False,
)


@pytest.fixture
def data_set(api, reviewer):
    def human(escalation, **request):
        services.escalation_decide(
            escalation_id=escalation.pk, request=services.DecisionRequest(**request), user=reviewer
        )

    post_package(api, run_id="a", confidence=0.95)
    b = post_package(api, run_id="b", confidence=0.80)
    FlagReview.objects.create(escalation=b, reviewer=reviewer, reviewer_name="alice", verdict="other", option_key="shim")
    post_package(api, run_id="j", confidence=0.70)
    human(post_package(api, run_id="c", confidence=0.60), kind="option", option="shim")
    human(post_package(api, run_id="d", confidence=0.40), kind="halt")
    human(post_package(api, run_id="e", confidence=0.95, reason="novelty"), kind="option", option="update-callers")
    post_package(api, run_id="f", confidence=0.95, options=IRREVERSIBLE_OPTIONS)
    post_package(api, run_id="g", confidence=0.85, action={"name": "refactor", "planned_scope": 4, "actual_scope": 10})

    old = post_package(api, run_id="old", confidence=0.95)
    Escalation.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=40))
    other = post_package(api, run_id="other", confidence=0.95, domain="code")
    assert other.domain == "code"


def counts(result):
    return (result.total, result.auto_decided, result.flagged, result.escalated, result.halted, result.overruled)


def test_the_saved_rules_give_back_the_tiers_the_escalations_got(data_set):
    saved = services.rules_for("default")
    (result,) = backtest(domain="default", rules=[saved], now=timezone.now())
    assert counts(result) == (8, 1, 2, 4, 1, 0)
    stored = Escalation.objects.filter(domain="default", created_at__gte=timezone.now() - timedelta(days=30))
    assert [stored.filter(tier=t).count() for t in (1, 2, 3, 4)] == [1, 2, 4, 1]


def test_typed_thresholds_re_tier_the_window_and_count_the_overruled(data_set):
    # a b j c e g become tier 1; f stays 3 (irreversible); d stays 4 (0.40 < 0.45).
    # Of those six, c (reviewer chose shim) and b (flag review: another option) were overruled.
    (result,) = backtest(domain="default", rules=[TYPED], now=timezone.now())
    assert counts(result) == (8, 6, 0, 1, 1, 2)
    assert result.decided_at_once == 6


def test_a_review_of_a_machines_decision_is_not_the_agent_overruled(data_set, api, reviewer):
    # h 0.60 tier 3, decided by a machine (shim); a person says it should have been
    # update-callers, the agent's recommendation: that judges the machine, not the agent
    Policy.objects.filter(domain="default").update(machine_tiers=[3])
    machine = make_user("claude-reviewer", "reviewer")
    Profile.objects.update_or_create(user=machine, defaults={"is_machine": True})
    h = post_package(api, run_id="h", confidence=0.60)
    services.escalation_decide(
        escalation_id=h.pk, request=services.DecisionRequest(kind="option", option="shim"), user=machine
    )
    services.flag_review_record(escalation_id=h.pk, user=reviewer, verdict="other", option_key="update-callers")
    (result,) = backtest(domain="default", rules=[TYPED], now=timezone.now())
    assert counts(result) == (9, 7, 0, 1, 1, 2)  # h auto-decided under TYPED, not overruled


def test_several_rule_sets_are_counted_in_one_query(data_set, django_assert_num_queries):
    saved = services.rules_for("default")
    with django_assert_num_queries(1):
        results = backtest(domain="default", rules=[saved, TYPED, Rules(retry_cap=1)], now=timezone.now())
    assert [counts(r) for r in results[:2]] == [(8, 1, 2, 4, 1, 0), (8, 6, 0, 1, 1, 2)]
    # retry cap 1: every package with attempts >= 1 is floored; these have none
    assert counts(results[2]) == (8, 1, 2, 4, 1, 0)


def test_retry_cap_floors_in_sql_as_in_python(api):
    post_package(api, run_id="r", confidence=0.95, attempts=2)
    (three, two) = backtest(domain="default", rules=[Rules(retry_cap=3), Rules(retry_cap=2)], now=timezone.now())
    assert (three.auto_decided, three.escalated) == (1, 0)
    assert (two.auto_decided, two.escalated) == (0, 1)


def test_an_empty_window_counts_nothing(agent):
    (result,) = backtest(domain="default", rules=[Rules()], now=timezone.now())
    assert counts(result) == (0, 0, 0, 0, 0, 0)


FORM = {
    "autonomous_threshold": "0.55",
    "flag_threshold": "0.5",
    "escalate_threshold": "0.45",
    "retry_cap": "3",
    "scope_tolerance": "2",
    "auto_decide": "on",
    "approvals_required": "1",
}


def test_the_backtest_button_renders_both_columns_without_saving(manager_client, data_set):
    response = manager_client.post("/policies/default/backtest", FORM, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="backtest"')  # the partial only
    assert (
        "With these thresholds, the last 30 days would have been <strong>6</strong> auto-decided, "
        "<strong>0</strong> flagged, <strong>1</strong> escalated, <strong>1</strong> halted; of the "
        "auto-decided, <strong>2</strong> were escalations where the reviewer chose another option."
    ) in " ".join(html.split())
    assert "Saved (v1)" in html
    policy = Policy.objects.get(domain="default")
    assert (policy.version, policy.autonomous_threshold) == (1, 0.90)


def test_the_backtest_works_without_javascript(manager_client, data_set):
    response = manager_client.post("/policies/default/backtest", FORM)
    assert response.status_code == 200
    html = response.content.decode()
    assert "<h1>" in html
    assert "would have been" in html
    assert 'value="0.55"' in html  # the typed values stay in the form


def test_a_backtest_of_invalid_thresholds_names_the_field(manager_client, agent):
    response = manager_client.post(
        "/policies/default/backtest", {**FORM, "flag_threshold": "0.9"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "Proceed with a flag from</label>: must not be above the autonomous threshold (0.55)" in html


def test_the_backtest_says_when_there_is_nothing_to_test_against(manager_client, agent):
    html = manager_client.post("/policies/default/backtest", FORM, HTTP_HX_REQUEST="true").content.decode()
    assert "nothing to backtest against yet" in html


# ---------------------------------------------------------------- SQL and Python agree

GRID_RULES = [
    Rules(),
    Rules(reason_floors={"approach_choice": 3, "missing_access": 2}),
    Rules(reason_floors={"scope_mismatch": 4, "other": 2}, novelty_escalates=False),
    Rules(tier_by_calibrated=True),
    Rules(tier_by_calibrated=True, reason_floors={"approach_choice": 2, "novelty": 4}, retry_cap=2),
    Rules(autonomous_threshold=0.6, flag_threshold=0.55, escalate_threshold=0.3, tier_by_calibrated=True),
]


def test_the_sql_re_tiers_every_row_as_verdict_for_does(api, agent):
    """The backtest's CASE (floors per reason, calibrated confidence) and policy.verdict_for
    give every row the same tier, under rule sets that exercise each branch."""
    from escalations import calibration, policy

    reasons = ["approach_choice", "missing_access", "novelty", "scope_mismatch", "other"]
    confidences = [0.2, 0.45, 0.58, 0.69, 0.7, 0.75, 0.88, 0.9, 0.97, 1.0]
    for i, confidence in enumerate(confidences):
        for j, reason in enumerate(reasons):
            extra = {}
            if (i + j) % 4 == 0:
                extra["action"] = {"name": "refactor", "planned_scope": 4, "actual_scope": 10}
            if (i + j) % 5 == 1:
                extra["attempts"] = 2
            if (i + j) % 7 == 3:
                extra["options"] = IRREVERSIBLE_OPTIONS
            post_package(api, run_id=f"g{i}-{j}", confidence=confidence, reason=reason, **extra)
    # A map for the agent: bins 5-9 judged 40 times each, agreeing less as it is surer.
    counts = {(agent.pk, "default", b): (40, 40 - 6 * (b - 4)) for b in range(5, 10)}
    services.calibration_store(counts=counts)
    found = services.calibration_for(agent.pk, "default")
    assert found is not None

    rows = list(Escalation.objects.filter(domain="default"))
    results = backtest(domain="default", rules=GRID_RULES, now=timezone.now())
    for rules, result in zip(GRID_RULES, results, strict=True):
        tiers = [
            policy.verdict_for(
                rules,
                policy.Situation(
                    confidence=e.confidence,
                    irreversible=e.is_irreversible,
                    attempts=e.attempts,
                    planned_scope=(e.action or {}).get("planned_scope"),
                    actual_scope=(e.action or {}).get("actual_scope"),
                    novel=e.reason == "novelty",
                    reason=e.reason,
                    calibrated_confidence=found.calibrate(e.confidence),
                ),
            ).tier
            for e in rows
        ]
        python = [tiers.count(t) for t in (1, 2, 3, 4)]
        assert [result.auto_decided, result.flagged, result.escalated, result.halted] == python, rules
    assert calibration.bin_of(0.7) == 7
