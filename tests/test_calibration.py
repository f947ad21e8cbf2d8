"""Calibrated tiers: the pure map (shrinkage, bins, enough history), and through the real
stack an agent whose stated 0.9 is right 60% of the time: after enough judged history the
rollup refresh stores its map, a calibrated policy sends its 0.9 packages to a person, the
gate says the calibrated confidence, and the backtest shows fewer decided against people."""

import dataclasses

import pytest
from django.utils import timezone

from escalations import calibration, services
from escalations.backtest import backtest
from escalations.calibration import Bin, CalibrationMap, bin_of, maps_from_counts, shrunk
from escalations.inputs import GateInput
from escalations.models import CalibrationBin, Policy
from insights.services import rollups_refresh
from tests.conftest import post_package


def test_a_bin_with_few_judgements_barely_moves_the_stated_confidence():
    assert shrunk(0.9, 0, 0) == pytest.approx(0.9)
    assert shrunk(0.9, 2, 1) == pytest.approx((1 + 9) / 12)  # 0.83: two judgements move it a little
    assert shrunk(0.9, 90, 54) == pytest.approx((54 + 9) / 100)  # 0.63: ninety move it most of the way


@pytest.mark.parametrize(("confidence", "number"), [(0.0, 0), (0.1, 1), (0.3, 3), (0.7, 7), (0.69999, 6), (0.9, 9), (1.0, 9)])
def test_bins_are_the_half_open_tenths_the_sql_compares(confidence, number):
    assert bin_of(confidence) == number
    low, high = calibration.bin_bounds(number)
    assert low <= confidence < high


def test_a_map_needs_enough_judgements_in_its_scope():
    few = {(1, "code", 9): (calibration.MIN_JUDGED - 1, 10)}
    assert maps_from_counts(few) == {}
    # Two domains short of the minimum each, enough together: the agent-wide map only.
    split = {(1, "code", 9): (20, 12), (1, "ops", 8): (20, 10)}
    maps = maps_from_counts(split)
    assert set(maps) == {(1, "")}
    assert calibration.map_for({"": maps[(1, "")]}, "code").judged == 40


def test_the_sentence_says_the_bin_the_rate_and_how_many():
    bins = tuple(Bin(38, 23) if i == 8 else Bin() for i in range(10))
    found = CalibrationMap("", 38, bins)
    assert found.sentence(0.88).startswith(
        "states 0.88; when it said 0.8-0.9, people agreed 61% of the time (23 of 38 judged), so 0.6"
    )
    assert "no judged escalation yet when it said 0.3-0.4" in found.sentence(0.35)


JUDGED = 40  # 24 agreed: 60%


@pytest.fixture
def overconfident(api, reviewer):
    """An agent that states 0.9 and is right 60% of the time, judged by a person 40 times
    (the policy auto-decided nothing then, so every package reached a person)."""
    policy = Policy.objects.get(domain="default")
    services.policy_update(policy_id=policy.pk, changes={"auto_decide": False})
    for i in range(JUDGED):
        escalation = post_package(api, run_id=f"h{i}", confidence=0.9)
        option = "update-callers" if i % 5 < 3 else "shim"
        services.escalation_decide(
            escalation_id=escalation.pk,
            request=services.DecisionRequest(kind="option", option=option),
            user=reviewer,
        )
    services.policy_update(policy_id=policy.pk, changes={"auto_decide": True})
    return policy


def test_calibration_on_sends_the_overconfident_agents_0_9_to_a_person(api, agent, overconfident):
    # Before the refresh there is no map: the stated 0.9 is auto-decided, calibrated is null.
    before = api.escalate(dict(_package(run_id="before"))).json()
    assert (before["tier"], before["calibrated_confidence"]) == (1, None)

    rollups_refresh()
    assert CalibrationBin.objects.filter(agent=agent, domain="").count() == calibration.BINS
    expected = (24 + 10 * 0.9) / (JUDGED + 10)  # 0.66

    # The switch off: tiered as stated, the calibrated value said beside it.
    off = api.escalate(_package(run_id="off")).json()
    assert off["tier"] == 1
    assert off["calibrated_confidence"] == pytest.approx(expected)

    services.policy_update(policy_id=overconfident.pk, changes={"tier_by_calibrated": True})
    on = api.escalate(_package(run_id="on")).json()
    assert (on["tier"], on["status"], on["decision"]) == (3, "pending", None)
    assert on["tier_reasons"] == [f"calibrated confidence {expected:.2f} (stated 0.90) below 0.70"]

    gate = api.post_json("/api/v1/gate", {"confidence": 0.9}).json()
    assert (gate["verdict"], gate["calibrated_confidence"]) == ("escalate", pytest.approx(expected))
    verdict, _ = services.gate_check(agent=agent, data=GateInput(confidence=0.9))
    assert verdict.tier == 3


def test_the_backtest_shows_fewer_decided_against_people_on_calibrated_confidence(overconfident):
    rollups_refresh()
    stated = services.rules_for("default")
    calibrated = dataclasses.replace(stated, tier_by_calibrated=True)
    saved, on = backtest(domain="default", rules=[stated, calibrated], now=timezone.now())
    assert (saved.total, saved.auto_decided, saved.overruled) == (JUDGED, JUDGED, 16)
    assert (on.auto_decided, on.escalated, on.overruled, on.overruled_at_once) == (0, JUDGED, 0, 0)
    assert on.reach_a_person - saved.reach_a_person == JUDGED


def test_a_domain_with_its_own_history_uses_its_own_map(agent):
    counts = {(agent.pk, "default", 9): (calibration.MIN_JUDGED, calibration.MIN_JUDGED), (agent.pk, "ops", 9): (5, 0)}
    assert services.calibration_store(counts=counts) == 2  # default's own, and the agent-wide one
    assert services.calibration_for(agent.pk, "default").domain == "default"
    assert services.calibration_for(agent.pk, "ops").domain == ""
    services.calibration_store(counts={})
    assert services.calibration_for(agent.pk, "default") is None


def _package(**overrides):
    from tests.conftest import make_package

    return make_package(**{"confidence": 0.9, **overrides})


def test_a_prefilled_backtest_compares_stated_and_calibrated_without_saving(overconfident, manager_client):
    rollups_refresh()
    html = manager_client.get("/policies/default", {"tier_by_calibrated": "on", "backtest": "1"}).content.decode()
    html = " ".join(html.split())
    assert "These on stated confidence" in html
    # saved (stated): all 40 auto-decided, 16 against people; typed (calibrated): none.
    assert "Decided at once (tiers 1-2), yet a person chose another option</th><td>16</td><td>0</td><td>16</td>" in html
    assert f"<th scope=\"row\">Reach a person</th><td>0</td><td>{JUDGED}</td><td>0</td>" in html
    assert Policy.objects.get(domain="default").tier_by_calibrated is False


def test_a_reason_floor_is_said_in_tier_reasons_and_prefills_a_backtest(api, manager_client):
    policy = Policy.objects.get(domain="default")
    services.policy_update(policy_id=policy.pk, changes={"reason_floors": {"approach_choice": 3}})
    body = api.escalate(_package(run_id="f", reason="approach_choice", confidence=0.95)).json()
    assert (body["tier"], body["tier_reasons"]) == (3, ["approach_choice escalations are at least tier 3"])
    html = manager_client.get("/policies/default", {"floor_approach_choice": "", "backtest": "1"}).content.decode()
    assert "would have been <strong>1</strong> auto-decided" in " ".join(html.split())
