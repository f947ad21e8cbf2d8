"""Machine reviewers in insights (issue 14): their agreement with the people who looked
after them (a chart, its table and CSV), kept out of the agents' calibration and the people's
time to decision; expired escalations counted. Built through the services on a controlled
clock (tests/insights_data), read through the page's CSV exports."""

import csv
import io
from datetime import timedelta

import pytest

from escalations import services
from escalations.models import Escalation, FlagReview, Policy
from escalations.services import periodic
from insights import services as insights
from insights.models import CalibrationRollup, MachineRollup
from people.models import Profile
from tests.conftest import make_user
from tests.insights_data import DAY, at, create, decide

RANGE = {"start": DAY.isoformat(), "end": DAY.isoformat()}


def export(client, key: str) -> list[dict]:
    response = client.get(f"/insights/export/{key}.csv", RANGE)
    assert response.status_code == 200, response.content
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def recommend(escalation, user, option: str, when) -> None:
    services.escalation_recommend(
        escalation_id=escalation.pk,
        request=services.RecommendationRequest(option=option, note="why", confidence=0.7),
        user=user,
        now=when,
    )


@pytest.fixture
def machine(db):
    user = make_user("claude-reviewer", "reviewer")
    Profile.objects.update_or_create(user=user, defaults={"is_machine": True})
    return user


@pytest.fixture
def judged_day(agent, reviewer, machine):
    """DAY, all tier 3 at 0.62 (the agent recommends update-callers):
    a: the machine recommends update-callers then shim (its last: shim); alice decides shim: agreed;
    b: the machine recommends shim; alice decides update-callers: not agreed;
    c: a person (bob) recommends shim, alice decides shim: no machine, not counted;
    d: the machine decides shim (the policy lets machines decide tier 3); alice reviews it fine
       (the flagged backlog's Fine);
    f: the machine decides shim; alice reviews it on its page: should have been update-callers;
    e: the machine decides shim, with a 60 s lifetime; never acknowledged: expired.
    """
    Policy.objects.filter(domain="default").update(machine_tiers=[3])
    bob = make_user("bob", "reviewer")
    a, b, c, d = (create(agent, f"r{i}", 0.62, at(10 + i)) for i in range(4))
    recommend(a, machine, "update-callers", at(10, 1))
    recommend(a, machine, "shim", at(10, 2))
    decide(a, reviewer, at(10, 30), "shim")
    recommend(b, machine, "shim", at(11, 1))
    decide(b, reviewer, at(11, 30), "update-callers")
    recommend(c, bob, "shim", at(12, 1))
    decide(c, reviewer, at(12, 30), "shim")
    decide(d, machine, at(13, 1), "shim")
    services.flag_reviews_mark_fine(escalation_ids=[d.pk], user=reviewer, now=at(14))
    f = create(agent, "r6", 0.62, at(14, 10))
    decide(f, machine, at(14, 11), "shim")
    services.flag_review_record(
        escalation_id=f.pk, user=reviewer, verdict="other", option_key="update-callers", now=at(14, 20)
    )
    Policy.objects.filter(domain="default").update(decision_lifetime_seconds=60)
    e = create(agent, "r5", 0.62, at(15))
    decide(e, machine, at(15, 1), "shim")
    assert periodic.decisions_expire(now=at(15, 3)) == 1
    insights.rollups_rebuild(days=[DAY])
    assert FlagReview.objects.count() == 2
    return {"a": a, "b": b, "c": c, "d": d, "e": e, "f": f}


def test_the_machines_agreement_with_people(manager_client, judged_day):
    [row] = export(manager_client, "machine-agreement")
    assert row == {
        "machine": "claude-reviewer",
        "recommendations_judged": "2",  # a and b (c's advice is a person's)
        "recommendations_agreed": "1",  # a: its last recommendation, shim, was chosen
        "share_recommendations_agreed": "0.5",
        "decisions_reviewed": "2",  # d and f (e was never reviewed)
        "decisions_agreed": "1",  # d, fine (f should have been update-callers)
        "share_decisions_agreed": "0.5",
        "judged": "4",
        "share_agreed": "0.5",
    }
    page = manager_client.get("/insights/", RANGE).content.decode()
    assert 'id="chart-machine"' in page
    assert "Machine reviewers&#x27; agreement with people" in page


def test_without_machines_the_chart_says_so(manager_client, agent, reviewer):
    decide(create(agent, "r1", 0.62, at(10)), reviewer, at(10, 5), "shim")
    insights.rollups_rebuild(days=[DAY])
    page = manager_client.get("/insights/", RANGE).content.decode()
    assert "No machine reviewer&#x27;s recommendation or decision was judged" in page
    assert "No data for this range" not in page


def test_machine_decisions_stay_out_of_calibration_and_time_to_decision(manager_client, judged_day):
    # the agents' calibration: alice's decisions of a, b and c only (not d, e, f, nor the
    # reviews of d and f: they judge the machine)
    assert sum(CalibrationRollup.objects.values_list("n", flat=True)) == 3
    [summary] = export(manager_client, "calibration-summary")
    assert summary["judged"] == "3"
    [tier3] = export(manager_client, "time-to-decision")
    assert (tier3["escalations"], tier3["human_decisions"]) == ("6", "3")
    # alice's three 30 min decisions alone (the 900-1800 s bucket); the machine's three
    # 1 min ones would pull p50 down
    assert float(tier3["decision_p50_seconds"]) == pytest.approx(900 + 900 * 0.5)
    [load] = export(manager_client, "reviewer-load")
    assert (load["reviewer"], load["decisions"]) == ("alice", "3")
    assert tier3["expired"] == "1"


def test_expired_escalations_are_counted_and_a_refresh_finds_them(manager_client, agent, reviewer, machine):
    Policy.objects.filter(domain="default").update(decision_lifetime_seconds=60)
    escalation = create(agent, "r1", 0.62, at(10))
    decide(escalation, reviewer, at(10, 5), "shim")
    assert insights.rollups_refresh(now=at(10, 10)) >= 1
    [before] = export(manager_client, "time-to-decision")
    assert before["expired"] == "0"
    # the day is older than the refresh's recent days by the time the sweep runs: only
    # the dirty days (expired since the last refresh) bring it back
    later = at(10) + timedelta(days=5)
    insights.rollups_refresh(now=later - timedelta(days=1))
    assert periodic.decisions_expire(now=later) == 1
    assert Escalation.objects.get(pk=escalation.pk).status == "expired"
    insights.rollups_refresh(now=later + timedelta(minutes=1))
    [after] = export(manager_client, "time-to-decision")
    assert after["expired"] == "1"


def test_a_purged_days_machine_agreement_is_kept(judged_day):
    escalations = Escalation.objects.filter(pk__in=[judged_day["a"].pk, judged_day["d"].pk])
    days = insights.rollups_archive(escalations=escalations)
    services.escalations_delete(ids=list(escalations.values_list("pk", flat=True)))
    insights.rollups_rebuild(days=days)
    kept = {
        archived: (r.recommended, r.recommended_agreed, r.decided, r.decided_agreed)
        for archived, r in ((r.archived, r) for r in MachineRollup.objects.all())
    }
    assert kept == {True: (1, 1, 1, 1), False: (1, 0, 1, 0)}
