"""`manage.py seed_demo`: a realistic demo set, loaded through the services; idempotent."""

from io import StringIO

from django.contrib.auth import get_user_model
from django.core.management import call_command

from escalations.models import Agent, Decision, Escalation, Event, Run


def seed() -> str:
    out = StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def counts() -> dict[str, int]:
    return {
        model.__name__: model.objects.count()
        for model in (get_user_model(), Agent, Run, Escalation, Decision, Event)
    }


def test_seed_demo_is_idempotent_and_covers_every_reason_and_tier(db):
    output = seed()
    first = counts()
    assert output.strip().endswith("Demo login: demo / handoff-demo")

    second_output = seed()
    assert counts() == first
    assert "0 new escalations" in second_output

    escalations = Escalation.objects.all()
    assert {e.reason for e in escalations} == set(Escalation.Reason.values)
    assert {e.tier for e in escalations} == {1, 2, 3, 4}
    assert {e.domain for e in escalations} >= {"default", "code", "db-migration", "research"}
    assert any(e.blocking for e in escalations)
    assert any(not e.blocking for e in escalations)
    assert any(e.is_overdue() for e in escalations)
    assert any(len(e.history) >= 30 and e.failed_steps for e in escalations)
    assert any(o.get("irreversible") for e in escalations for o in e.options)
    assert all(a.resume_url == "" for a in Agent.objects.all())
    # tiers 1-2 decided by the policy, a couple by the demo reviewer, one held by sam
    assert all(e.status == "decided" for e in escalations if e.tier <= 2)
    assert Decision.objects.filter(decided_by_type="policy").exists()
    assert Decision.objects.filter(decided_by_type="human", decided_by_name="demo").count() >= 2
    assert Escalation.objects.filter(claimed_by__username="sam", status="claimed").count() == 1
    assert Escalation.objects.open().count() >= 8
    # the escalation page's demo: a run the demo reviewer took over, a comment by sam
    assert Run.objects.filter(status="taken_over", taken_over_by__username="demo").exists()
    assert Event.objects.filter(kind="commented", actor="sam").count() == 1


def test_seed_demo_reviewers_can_sign_in(db, client):
    seed()
    for username in ("demo", "sam"):
        response = client.post("/accounts/login/", {"username": username, "password": "handoff-demo"})
        assert response.status_code == 302, username
        client.logout()
