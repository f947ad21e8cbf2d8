"""Errors are problem+json with the right status, and no input produces a 5xx."""

import json

import pytest
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from escalations import services
from escalations.models import AgentToken, Escalation
from tests.conftest import AgentClient, make_package

pytestmark = pytest.mark.django_db


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status
    assert problem["type"].startswith("https://handoff.dev/problems/")
    assert problem["title"]
    assert problem["detail"]
    return problem


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer nope", "Basic dXNlcjpwYXNz", "Bearer " + "x" * 5000])
def test_missing_or_unknown_tokens_are_401(db, header):
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    response = Client(**extra).get("/api/v1/decisions")
    assert_problem(response, 401)
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_revoked_token_is_401(api, agent):
    services.token_revoke(token=AgentToken.objects.get(agent=agent))
    assert_problem(api.get("/api/v1/decisions"), 401)


def test_a_deactivated_agent_is_401(api, agent):
    agent.is_active = False
    agent.save()
    assert_problem(api.escalate(make_package()), 401)


def test_auth_is_checked_before_the_body(db):
    response = Client().post("/api/v1/escalations", "{}", content_type="application/json")
    assert_problem(response, 401)


def test_another_agents_escalation_is_404_never_403(api):
    other = AgentClient(services.agent_create(name="someone-else").token)
    theirs = other.escalate(make_package()).json()["id"]

    for response in (
        api.get(f"/api/v1/escalations/{theirs}"),
        api.post(f"/api/v1/escalations/{theirs}/ack"),
        api.post(f"/api/v1/escalations/{theirs}/withdraw"),
    ):
        assert_problem(response, 404)
    assert Escalation.objects.get(pk=theirs).status == "pending"


@pytest.mark.parametrize("escalation_id", ["not-a-uuid", "00000000-0000-0000-0000-000000000000"])
def test_unknown_escalations_are_404(api, escalation_id):
    assert_problem(api.get(f"/api/v1/escalations/{escalation_id}"), 404)


def test_a_nul_in_the_path_is_400(api):
    assert_problem(api.get("/api/v1/escalations/%00"), 400)


def test_unknown_paths_are_404_problems(api):
    assert_problem(api.get("/api/v1/nothing-here"), 404)


def test_wrong_methods_are_405_with_allow(api):
    response = api.delete("/api/v1/escalations")
    assert_problem(response, 405)
    assert "POST" in response["Allow"]
    assert_problem(api.put("/api/v1/gate", "{}", content_type="application/json"), 405)


def test_bodies_over_one_mib_are_413(api):
    body = json.dumps(make_package(metadata={"blob": "x" * (1024 * 1024)}))
    assert_problem(api.post_json("/api/v1/escalations", body), 413)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"])
def test_non_json_bodies_are_415(api, content_type):
    response = api.post("/api/v1/escalations", json.dumps(make_package()), content_type=content_type)
    assert_problem(response, 415)


def test_json_with_charset_is_accepted(api):
    response = api.post(
        "/api/v1/escalations", json.dumps(make_package()), content_type="application/json; charset=utf-8"
    )
    assert response.status_code == 201


@pytest.mark.parametrize(
    "body",
    [b"{", b"{'a': 1}", b"[1,]", b"\xff\xfe\x00", b'{"confidence": NaN}', b'{"confidence": Infinity}', b"[" * 100_000],
)
def test_malformed_json_is_400(api, body):
    assert_problem(api.post("/api/v1/escalations", body, content_type="application/json"), 400)


def test_json_nested_too_deep_is_400(api):
    body = json.dumps(make_package(metadata=json.loads("{\"a\":" * 70 + "1" + "}" * 70)))
    assert_problem(api.post_json("/api/v1/escalations", body), 400)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ('"title": "nul\\u0000here"', "title"),
        ('"title": "lone \\ud800 surrogate"', "title"),
        ('"metadata": {"k\\u0000": 1}', "metadata"),
    ],
)
def test_text_the_database_cannot_store_is_422(api, raw, field):
    package = json.dumps(make_package())
    body = package[:-1] + ", " + raw + "}"
    problem = assert_problem(api.post_json("/api/v1/escalations", body), 422)
    assert problem["errors"][0]["field"] == field


@pytest.mark.parametrize("body", ["null", "[]", '"text"', "42", "true", "{}"])
def test_bodies_that_are_not_packages_are_422(api, body):
    assert_problem(api.post_json("/api/v1/escalations", body), 422)


def test_nulls_everywhere_are_422_naming_each_required_field(api):
    package = dict.fromkeys(make_package())
    problem = assert_problem(api.escalate(package), 422)
    fields = {e["field"] for e in problem["errors"]}
    assert {"run_id", "title", "uncertainty", "reason", "confidence", "history", "options"} <= fields
    assert any(field.startswith("cost_of_delay") for field in fields)


def test_unicode_round_trips(api):
    title = "Déployer 🚀 на проде? 本番環境"
    body = api.escalate(make_package(title=title)).json()
    assert body["title"] == title
    assert api.get(f"/api/v1/escalations/{body['id']}").json()["title"] == title


def test_huge_numbers_are_422_not_500(api):
    package = make_package()
    package["cost_of_delay"]["blocked_tasks"] = 10**40
    package["action"] = {"name": "x", "planned_scope": 10**20, "actual_scope": 10**20}
    problem = assert_problem(api.escalate(package), 422)
    assert {e["field"] for e in problem["errors"]} == {
        "cost_of_delay.blocked_tasks", "action.planned_scope", "action.actual_scope",
    }


def raw_number(body, literal: str) -> str:
    """`body` as JSON text with the string "NUMBER" replaced by a raw number literal (json.dumps
    cannot write 1e400: it writes Infinity)."""
    return json.dumps(body).replace('"NUMBER"', literal)


@pytest.mark.parametrize(
    ("place", "literal", "field"),
    [
        (lambda p: p.update(metadata={"x": "NUMBER"}), "1e400", "metadata.x"),
        (lambda p: p.update(metadata={"x": [0, {"y": "NUMBER"}]}), "-1E999", "metadata.x.1.y"),
        (lambda p: p["options"][0].update(args={"n": "NUMBER"}), "1e999", "options.0.args.n"),
        (lambda p: p["options"][1].update(args={"n": "NUMBER"}), "-2e308", "options.1.args.n"),
        (lambda p: p.update(confidence="NUMBER"), "1e400", "confidence"),
    ],
)
def test_numbers_beyond_a_double_are_422_naming_the_field(api, place, literal, field):
    """1e400 reads as infinity: PostgreSQL refused it (a 500), and in option args it was
    silently stored as null."""
    package = make_package()
    place(package)
    response = api.post_json("/api/v1/escalations", raw_number(package, literal))
    problem = assert_problem(response, 422)
    assert [e["field"] for e in problem["errors"]] == [field]
    assert "1.7976931348623157e308" in problem["errors"][0]["message"]
    assert Escalation.objects.count() == 0


def test_numbers_beyond_a_double_are_422_at_the_gate(api):
    body = raw_number({"confidence": 0.5, "action": {"name": "x", "planned_scope": "NUMBER"}}, "1e400")
    problem = assert_problem(api.post_json("/api/v1/gate", body), 422)
    assert [e["field"] for e in problem["errors"]] == ["action.planned_scope"]


def test_large_but_finite_numbers_are_kept(api):
    package = make_package(metadata={"big": "NUMBER", "small": 5e-324, "int": 10**30})
    package["options"][0]["args"] = {"n": 1.7976931348623157e308}
    response = api.post_json("/api/v1/escalations", raw_number(package, "1e308"))
    assert response.status_code == 201, response.content
    escalation = Escalation.objects.get(pk=response.json()["id"])
    # (PostgreSQL's jsonb keeps the decimal written: 1e308 may come back as the integer 10**308.)
    assert {k: float(v) for k, v in escalation.metadata.items()} == {"big": 1e308, "small": 5e-324, "int": 1e30}
    assert float(escalation.options[0]["args"]["n"]) == 1.7976931348623157e308


def test_far_future_times_with_offsets_are_handled(api):
    package = make_package()
    package["cost_of_delay"]["respond_by"] = "9999-12-31T23:59:59-23:59"
    response = api.escalate(package)
    assert response.status_code in (201, 422)


@pytest.mark.parametrize(
    "query", ["wait=61", "wait=-1", "wait=abc", "limit=0", "limit=101", "after=xyz", "after=-5", "after=1e5"]
)
def test_bad_queries_are_400(api, query):
    problem = assert_problem(api.get(f"/api/v1/decisions?{query}"), 400)
    assert problem["errors"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(sorted(make_package())), value=json_values)
def test_any_value_in_any_field_never_gives_a_5xx(api, field, value):
    package = make_package(run_id="fuzz")
    package[field] = value
    response = api.escalate(package)
    assert response.status_code < 500, response.content
    if response.status_code == 201:
        api.post(f"/api/v1/escalations/{response.json()['id']}/withdraw")


@hsettings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=300))
def test_any_bytes_never_give_a_5xx(api, body):
    for path in ("/api/v1/escalations", "/api/v1/gate"):
        response = api.post(path, body, content_type="application/json")
        assert response.status_code < 500, response.content


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=json_values)
def test_any_json_to_gate_never_gives_a_5xx(api, body):
    assert api.post_json("/api/v1/gate", json.dumps(body)).status_code < 500


def test_the_one_query_read_still_tells_401_from_404(api, agent):
    escalation_id = api.escalate(make_package()).json()["id"]
    assert_problem(Client(HTTP_AUTHORIZATION="Bearer hnd_unknown").get(f"/api/v1/escalations/{escalation_id}"), 401)
    assert_problem(Client().get(f"/api/v1/escalations/{escalation_id}"), 401)
    missing = api.get("/api/v1/escalations/00000000-0000-0000-0000-000000000000")
    assert_problem(missing, 404)
    assert missing["Handoff-Budget-Limit"] == "50"  # an agent's answer carries its budget
    services.token_revoke(token=AgentToken.objects.get(agent=agent))
    assert_problem(api.get(f"/api/v1/escalations/{escalation_id}"), 401)
