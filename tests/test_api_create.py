"""POST /api/v1/escalations: every field rule of API.md, tiers, idempotency, one open per run."""

import json
from datetime import timedelta
from typing import Any

import pytest

from escalations.models import Decision, Escalation, Event
from tests.conftest import make_package, now

pytestmark = pytest.mark.django_db


def test_a_valid_package_is_created_with_its_tier_and_priority(api):
    response = api.escalate(make_package())

    assert response.status_code == 201
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {
        "id", "run_id", "title", "status", "tier", "tier_reasons", "priority", "priority_reasons",
        "reason", "confidence", "calibrated_confidence", "domain", "question", "respond_by", "created_at", "updated_at",
        "url", "decision",
    }
    assert body["status"] == "pending"
    assert body["tier"] == 3
    assert body["domain"] == "default"
    assert body["decision"] is None
    assert body["created_at"].endswith("Z")
    assert body["url"].endswith(f"/escalations/{body['id']}")
    assert "blocks 3 tasks" in body["priority_reasons"]
    assert response["Location"] == f"/api/v1/escalations/{body['id']}"
    escalation = Escalation.objects.get(pk=body["id"])
    assert escalation.history[1]["outcome"] == "failed"
    assert list(escalation.events.values_list("kind", flat=True)) == ["created"]


@pytest.mark.parametrize("irreversible", [False, True])
def test_tier_reasons_are_the_gates_reasons_and_are_kept(api, irreversible):
    package = make_package(action={"name": "drop table", "irreversible": irreversible})
    body = api.escalate(package).json()
    gate = api.post_json("/api/v1/gate", json.dumps({
        "action": package["action"], "confidence": package["confidence"], "attempts": 0,
    })).json()
    assert body["tier"] == gate["tier"]
    assert body["tier_reasons"] == gate["reasons"]
    assert body["tier_reasons"]
    if irreversible:
        assert "irreversible action needs approval" in body["tier_reasons"]
    assert Escalation.objects.get(pk=body["id"]).tier_reasons == body["tier_reasons"]
    # Every read of the escalation object carries them: the hot read and the feed.
    assert api.get(f"/api/v1/escalations/{body['id']}").json()["tier_reasons"] == body["tier_reasons"]


def test_times_come_back_in_utc_with_z(api):
    respond_by = (now() + timedelta(hours=2)).astimezone(__import__("zoneinfo").ZoneInfo("Asia/Tokyo"))
    package = make_package(cost_of_delay={"blocking": False, "impact": "low", "respond_by": respond_by.isoformat()})
    body = api.escalate(package).json()
    assert body["respond_by"].endswith("Z")


@pytest.mark.parametrize(
    ("confidence", "tier", "status", "decided_by"),
    [(0.95, 1, "decided", "policy"), (0.8, 2, "decided", "policy"), (0.6, 3, "pending", None), (0.3, 4, "pending", None)],
)
def test_policy_tiers_and_auto_decides_tiers_1_and_2(api, confidence, tier, status, decided_by):
    body = api.escalate(make_package(confidence=confidence)).json()
    assert (body["tier"], body["status"]) == (tier, status)
    if decided_by:
        assert body["decision"]["decided_by"] == {"type": "policy", "name": "policy:default"}
        assert body["decision"]["kind"] == "option"
        assert body["decision"]["option"] == "update-callers"
        assert body["decision"]["args"] == {"paths": ["billing/"]}
    else:
        assert body["decision"] is None


def test_anything_irreversible_is_never_below_tier_3(api):
    package = make_package(confidence=0.99)
    package["options"][1]["irreversible"] = True
    body = api.escalate(package).json()
    assert (body["tier"], body["status"]) == (3, "pending")


def test_auto_decide_switch_off_leaves_tier_1_for_a_human(api):
    from escalations.models import Policy

    Policy.objects.filter(domain="default").update(auto_decide=False)
    body = api.escalate(make_package(confidence=0.99)).json()
    assert (body["tier"], body["status"]) == (1, "pending")


def test_the_domain_selects_the_policy(api):
    body = api.escalate(make_package(confidence=0.86, domain="code")).json()
    assert (body["domain"], body["tier"]) == ("code", 1)
    body = api.escalate(make_package(run_id="r2", confidence=0.86, domain="db-migration")).json()
    assert (body["domain"], body["tier"]) == ("db-migration", 2)


def with_(path: str, value):
    """A package with the value at a dotted path replaced (or deleted when value is DELETE)."""
    package = make_package()
    target: Any = package
    parts = path.split(".")
    for part in parts[:-1]:
        target = target[int(part)] if part.isdigit() else target[part]
    last = parts[-1]
    if value is DELETE:
        del target[int(last) if last.isdigit() else last]
    elif last.isdigit():
        target[int(last)] = value
    else:
        target[last] = value
    return package


DELETE = object()
LONG = "x" * 201


@pytest.mark.parametrize(
    ("path", "value", "field", "message"),
    [
        ("run_id", DELETE, "run_id", "is required"),
        ("run_id", "", "run_id", "must not be empty"),
        ("run_id", LONG, "run_id", "must be at most 200 characters"),
        ("run_id", 42, "run_id", "must be a string"),
        ("title", None, "title", "must be a string"),
        ("title", LONG, "title", "must be at most 200 characters"),
        ("uncertainty", "too short", "uncertainty", "must be at least 20 characters"),
        ("uncertainty", "y" * 4001, "uncertainty", "must be at most 4000 characters"),
        ("uncertainty", "I'm stuck and need help, something went wrong", "uncertainty", "is too generic"),
        ("uncertainty", "Error. Error. Error. Error. Error.", "uncertainty", "is too generic"),
        ("reason", "because", "reason", "must be one of approach_choice"),
        ("confidence", 1.5, "confidence", "must be at most 1"),
        ("confidence", -0.1, "confidence", "must be at least 0"),
        ("confidence", "0.5", "confidence", "must be a number"),
        ("confidence", True, "confidence", "must be a number"),
        ("history", [], "history", "needs at least 1 item"),
        ("history.0.at", "yesterday", "history.0.at", "ISO 8601"),
        ("history.0.at", "2026-11-20T10:00:00", "history.0.at", "time zone"),
        ("history.0.at", 0, "history.0.at", "ISO 8601"),  # not a Unix time: the schema says a string
        ("history.0.at", 1764000000.5, "history.0.at", "ISO 8601"),
        ("cost_of_delay.respond_by", 4102444800, "cost_of_delay.respond_by", "ISO 8601"),
        ("cost_of_delay.stuck_since", True, "cost_of_delay.stuck_since", "ISO 8601"),
        ("history.1.action", "", "history.1.action", "must not be empty"),
        ("history.1.outcome", "exploded", "history.1.outcome", "must be one of ok, failed, skipped, info"),
        ("history.1.detail", "d" * 20001, "history.1.detail", "at most 20000"),
        ("options", [], "options", "needs at least 1 item"),
        ("options.0.key", "Update Callers", "options.0.key", "must be a slug"),
        ("options.0.key", "-lead", "options.0.key", "must be a slug"),
        ("options.1.label", "", "options.1.label", "must not be empty"),
        ("options.1.irreversible", "yes", "options.1.irreversible", "must be true or false"),
        ("options.0.recommended", False, "options", "exactly one option must be recommended (0 are)"),
        ("options.1.recommended", True, "options", "exactly one option must be recommended (2 are)"),
        ("options.1.key", "update-callers", "options", "option keys must be unique"),
        ("options.0.args", ["a"], "options.0.args", "must be an object"),
        ("options.0.args", {"blob": "z" * 17000}, "options.0.args", "16 KiB"),
        ("cost_of_delay", DELETE, "cost_of_delay", "is required"),
        ("cost_of_delay.blocking", DELETE, "cost_of_delay.blocking", "is required"),
        ("cost_of_delay.impact", "huge", "cost_of_delay.impact", "must be one of low, medium, high, critical"),
        ("cost_of_delay.blocked_tasks", -1, "cost_of_delay.blocked_tasks", "must be at least 0"),
        ("cost_of_delay.blocked_tasks", 2.5, "cost_of_delay.blocked_tasks", "must be an integer"),
        ("cost_of_delay.note", "n" * 501, "cost_of_delay.note", "at most 500"),
        ("attempts", -2, "attempts", "must be at least 0"),
        ("attempts", 10**30, "attempts", "must be at most"),
        ("domain", "Not A Slug", "domain", "must be a slug"),
        ("domain", "payments", "domain", "unknown domain 'payments'"),
        ("links", [{"label": "x", "url": "javascript:alert(1)"}], "links.0.url", "http or https"),
        ("links", [{"label": "x", "url": "ftp://example.com"}], "links.0.url", "http or https"),
        ("links", [{"label": "l", "url": "https://e.com"}] * 21, "links", "at most 20 items"),
        ("metadata", {"k": "v" * 17000}, "metadata", "16 KiB"),
        ("metadata", "text", "metadata", "must be an object"),
        ("action", {"irreversible": True}, "action.name", "is required"),
        ("action", {"name": "migrate", "planned_scope": -1}, "action.planned_scope", "must be at least 0"),
    ],
)
def test_each_invalid_field_is_named_in_a_422(api, path, value, field, message):
    response = api.escalate(with_(path, value))

    assert response.status_code == 422, response.content
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "https://handoff.dev/problems/incomplete-package"
    assert problem["status"] == 422
    matching = [e for e in problem["errors"] if e["field"] == field]
    assert matching, problem["errors"]
    assert message in matching[0]["message"]
    assert Escalation.objects.count() == 0


def test_all_errors_are_reported_at_once(api):
    package = make_package(options=[], reason="nope")
    package["cost_of_delay"]["impact"] = "huge"
    problem = api.escalate(package).json()
    assert {e["field"] for e in problem["errors"]} == {"options", "reason", "cost_of_delay.impact"}
    assert problem["detail"] == "3 fields need attention"


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (lambda p: p["cost_of_delay"].update(respond_by=(now() - timedelta(minutes=1)).isoformat()),
         "cost_of_delay.respond_by", "must be in the future"),
        (lambda p: p.update(timeout_option="shim"), "timeout_option", "needs cost_of_delay.respond_by"),
        (lambda p: p.update(timeout_option="nope",
                            cost_of_delay={"blocking": True, "impact": "low",
                                           "respond_by": (now() + timedelta(hours=1)).isoformat()}),
         "timeout_option", "must be the key of an option"),
        (lambda p: (p["options"][1].update(irreversible=True), p.update(
            timeout_option="shim",
            cost_of_delay={"blocking": True, "impact": "low", "respond_by": (now() + timedelta(hours=1)).isoformat()})),
         "timeout_option", "must name a reversible option"),
        (lambda p: p["history"][0].update(at=(now() + timedelta(days=1)).isoformat()),
         "history.0.at", "must not be in the future"),
        (lambda p: p["history"][1].update(at=(now() + timedelta(minutes=6)).isoformat()),
         "history.1.at", "must not be in the future"),
        (lambda p: p["cost_of_delay"].update(stuck_since=(now() + timedelta(minutes=6)).isoformat()),
         "cost_of_delay.stuck_since", "must not be in the future"),
        (lambda p: p["cost_of_delay"].update(respond_by=now().isoformat()),
         "cost_of_delay.respond_by", "must be in the future"),
    ],
)
def test_rules_across_fields(api, change, field, message):
    package = make_package()
    change(package)
    problem = api.escalate(package).json()
    assert problem["status"] == 422
    assert any(e["field"] == field and message in e["message"] for e in problem["errors"]), problem


def test_times_a_little_ahead_of_the_servers_clock_are_accepted(api):
    """An agent's clock may run a few minutes fast: up to 5 minutes ahead is not the future."""
    package = make_package()
    ahead = (now() + timedelta(minutes=4)).isoformat()
    package["history"][-1]["at"] = ahead
    package["cost_of_delay"]["stuck_since"] = ahead
    assert api.escalate(package).status_code == 201


def test_a_timeout_option_with_respond_by_is_accepted(api):
    package = make_package(
        timeout_option="shim",
        cost_of_delay={"blocking": True, "impact": "low", "respond_by": (now() + timedelta(hours=1)).isoformat()},
    )
    assert api.escalate(package).status_code == 201


def test_optional_fields_accept_null(api):
    package = make_package(action=None, domain=None, timeout_option=None)
    package["options"][1]["description"] = None
    package["options"][1]["args"] = None
    package["cost_of_delay"]["note"] = None
    package["cost_of_delay"]["respond_by"] = None
    assert api.escalate(package).status_code == 201


def test_unknown_fields_are_ignored_for_forward_compatibility(api):
    assert api.escalate(make_package(future_field={"x": 1})).status_code == 201


def test_a_run_has_at_most_one_open_escalation(api):
    first = api.escalate(make_package()).json()
    response = api.escalate(make_package(title="another question"))

    assert response.status_code == 409
    problem = response.json()
    assert problem["type"] == "https://handoff.dev/problems/run-has-open-escalation"
    assert problem["open_escalation"]["id"] == first["id"]
    assert api.escalate(make_package(run_id="other-run")).status_code == 201


def test_a_run_can_escalate_again_once_the_first_is_closed(api):
    first = api.escalate(make_package()).json()
    api.post(f"/api/v1/escalations/{first['id']}/withdraw")
    assert api.escalate(make_package()).status_code == 201


def test_key_order_and_spacing_do_not_change_the_body(api):
    package = make_package()
    first = api.escalate(package, HTTP_IDEMPOTENCY_KEY="key-1")
    reordered = json.dumps(dict(reversed(list(package.items()))), indent=2)
    replay = api.post_json("/api/v1/escalations", reordered, HTTP_IDEMPOTENCY_KEY="key-1")

    assert (first.status_code, replay.status_code) == (201, 200)
    assert replay.json()["id"] == first.json()["id"]
    assert Escalation.objects.count() == 1


def test_idempotency_same_key_same_body_200_other_body_409(api):
    package = make_package()
    first = api.escalate(package, HTTP_IDEMPOTENCY_KEY="k")
    replay = api.escalate(package, HTTP_IDEMPOTENCY_KEY="k")
    other = api.escalate(dict(package, title="changed"), HTTP_IDEMPOTENCY_KEY="k")

    assert (first.status_code, replay.status_code, other.status_code) == (201, 200, 409)
    assert replay.json() == first.json()
    assert other.json()["type"] == "https://handoff.dev/problems/idempotency-key-reused"
    assert Escalation.objects.count() == 1


def test_idempotency_keys_are_scoped_to_the_agent(api, db):
    from escalations import services
    from tests.conftest import AgentClient

    other = AgentClient(services.agent_create(name="other-agent").token)
    assert api.escalate(make_package(), HTTP_IDEMPOTENCY_KEY="shared").status_code == 201
    assert other.escalate(make_package(), HTTP_IDEMPOTENCY_KEY="shared").status_code == 201


def test_a_key_past_the_retention_window_is_new(api, settings, time_machine):
    time_machine.move_to(now(), tick=False)
    package = make_package()
    api.escalate(package, HTTP_IDEMPOTENCY_KEY="old")
    Escalation.objects.update(status="withdrawn")
    time_machine.shift(timedelta(seconds=settings.IDEMPOTENCY_RETENTION_SECONDS + 60))
    response = api.escalate(dict(package, title="a new request"), HTTP_IDEMPOTENCY_KEY="old")
    assert response.status_code == 201
    assert Escalation.objects.count() == 2


@pytest.mark.parametrize("key", ["", "k" * 256, "naïve", "tab\tkey"])
def test_bad_idempotency_keys_are_400(api, key):
    response = api.escalate(make_package(), HTTP_IDEMPOTENCY_KEY=key)
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "Idempotency-Key"


def test_budget_headers_count_todays_escalations(api, agent):
    agent.daily_budget = 2
    agent.save()
    first = api.escalate(make_package(run_id="a"))
    second = api.escalate(make_package(run_id="b"))
    third = api.escalate(make_package(run_id="c"))

    assert first["Handoff-Budget-Limit"] == "2"
    assert [r["Handoff-Budget-Used"] for r in (first, second, third)] == ["1", "2", "3"]
    assert [r["Handoff-Budget-Remaining"] for r in (first, second, third)] == ["1", "0", "0"]
    assert third.status_code == 201  # going over budget is never refused
    agent.refresh_from_db()
    assert agent.budget_used == 3


def test_policy_decision_is_recorded_with_an_event(api):
    body = api.escalate(make_package(confidence=0.97)).json()
    decision = Decision.objects.get(escalation_id=body["id"])
    assert decision.took_recommended
    assert decision.decided_by_type == "policy"
    kinds = list(Event.objects.filter(escalation_id=body["id"]).values_list("kind", flat=True))
    assert kinds == ["created", "decided"]


def test_a_replay_is_answered_even_after_its_respond_by_passed(api, time_machine):
    """A retry after an outage gets its escalation back, not a 422 for a deadline gone by."""
    time_machine.move_to(now(), tick=False)
    package = make_package(cost_of_delay={
        "blocking": True, "impact": "high", "respond_by": (now() + timedelta(minutes=30)).isoformat()})
    first = api.escalate(package, HTTP_IDEMPOTENCY_KEY="retry-me")
    time_machine.shift(timedelta(hours=2))
    replay = api.escalate(package, HTTP_IDEMPOTENCY_KEY="retry-me")
    assert (first.status_code, replay.status_code) == (201, 200)
    assert replay.json()["id"] == first.json()["id"]
