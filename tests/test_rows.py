"""The hot paths' hand-written statements (escalations.rows) held equal to the ORM's meaning:
the same rows, every field converted the same, the same writes."""

import uuid
from datetime import timedelta

import pytest
from django.db import transaction
from django.db.models.signals import post_save, pre_save
from django.utils import timezone

from escalations import calibration, policy, rows, services
from escalations.errors import AlreadyDecided, NotFound
from escalations.models import Agent, CalibrationBin, Escalation, Policy, Run
from escalations.services import decisions, intake, policies
from escalations.services.calibration import calibration_maps
from tests.conftest import make_package

pytestmark = pytest.mark.django_db


def values(instance) -> dict:
    return {f.attname: getattr(instance, f.attname) for f in type(instance)._meta.concrete_fields}


def read(model, pk):
    """The row by hand-written SQL: every column of `model`, converted by rows.instance."""
    sql = f"SELECT {rows.columns(model, 't')} FROM {model._meta.db_table} t WHERE t.id = %s"  # noqa: S608 (the model's own)
    return rows.one(model, sql, [rows.prep(model, "id", pk)])


@pytest.fixture
def escalation(api):
    """An open escalation with every kind of column filled: JSON lists and objects, times,
    a UUID key, nullable numbers (the package's respond_by, a calibrated confidence)."""
    package = make_package(
        cost_of_delay={"blocking": True, "impact": "high", "respond_by": (timezone.now() + timedelta(hours=2)).isoformat()},
        metadata={"ticket": "BILL-7", "nested": {"list": [1, 2.5, None, "é"]}},
        links=[{"label": "PR", "url": "https://example.com/pr/1"}],
    )
    response = api.escalate(package)
    assert response.status_code == 201, response.content
    Escalation.objects.filter(pk=response.json()["id"]).update(calibrated_confidence=0.55)
    return Escalation.objects.select_related("run", "agent").get(pk=response.json()["id"])


def test_an_instance_from_a_row_is_the_orms_instance(escalation):
    for model, pk in [
        (Escalation, escalation.pk),
        (Run, escalation.run_id),
        (Agent, escalation.agent_id),
        (Policy, Policy.objects.get(domain="default").pk),
    ]:
        by_hand, by_orm = read(model, pk), model.objects.get(pk=pk)
        assert values(by_hand) == values(by_orm), model.__name__
        assert not by_hand._state.adding
        assert by_hand._state.db == by_orm._state.db


def test_the_decisions_locked_read_is_the_escalation_its_run_agent_and_rules(escalation):
    with transaction.atomic():
        locked, rules = decisions._lock_for_decision(escalation.pk)
        assert values(locked) == values(escalation)
        assert values(locked.run) == values(escalation.run)
        assert values(locked.agent) == values(escalation.agent)
        assert rules == services.rules_for(escalation.domain)


def test_a_domain_without_a_policy_gives_the_default_rules(escalation):
    Escalation.objects.filter(pk=escalation.pk).update(domain="gone")
    with transaction.atomic():
        _locked, rules = decisions._lock_for_decision(escalation.pk)
    assert rules == policy.Rules(domain="gone")


def test_the_locked_read_refuses_what_is_not_open_or_not_there(escalation, reviewer):
    with pytest.raises(NotFound), transaction.atomic():
        decisions._lock_for_decision(uuid.uuid4())
    with pytest.raises(NotFound), transaction.atomic():
        decisions._lock_for_decision("not-a-uuid")
    services.escalation_decide(
        escalation_id=escalation.pk,
        request=services.DecisionRequest(kind="option", option="shim"),
        user=reviewer,
    )
    with pytest.raises(AlreadyDecided) as refused, transaction.atomic():
        decisions._lock_for_decision(escalation.pk)
    assert refused.value.escalation.decision.option_key == "shim"


@pytest.mark.parametrize("status", Escalation.Status.values)
def test_the_flip_changes_exactly_the_rows_the_orms_update_would(escalation, status):
    Escalation.objects.filter(pk=escalation.pk).update(status=status)
    expected = Escalation.objects.filter(pk=escalation.pk, status__in=Escalation.OPEN_STATUSES).count()
    now = timezone.now()
    expires = now + timedelta(hours=1)
    params = [Escalation.Status.DECIDED, True, rows.prep(Escalation, "expires_at", expires), rows.prep(Escalation, "updated_at", now), rows.prep(Escalation, "id", escalation.pk), *Escalation.OPEN_STATUSES]
    assert rows.execute(decisions._flip_sql(), params) == expected
    after = Escalation.objects.get(pk=escalation.pk)
    if expected:
        assert (after.status, after.awaiting_look, after.claimed_by_id, after.claimed_until, after.expires_at, after.updated_at) == ("decided", True, None, None, expires, now)
    else:
        assert (after.status, after.awaiting_look) == (status, False)


def test_the_next_decision_number_is_one_more_each_time(agent):
    first = rows.fetch_one(decisions.NEXT_SEQ_SQL, [agent.pk])
    second = rows.fetch_one(decisions.NEXT_SEQ_SQL, [agent.pk])
    assert (first, second) == ((1,), (2,))
    assert Agent.objects.get(pk=agent.pk).decision_seq == 2


def test_the_budget_counts_today_and_starts_again_on_a_new_day(agent):
    now = timezone.now()
    intake._count_against_budget(agent, now)
    intake._count_against_budget(agent, now)
    assert (agent.budget_used, agent.budget_day) == (2, now.date())
    stored = Agent.objects.get(pk=agent.pk)
    assert (stored.budget_used, stored.budget_day) == (2, now.date())
    intake._count_against_budget(agent, now + timedelta(days=1))
    stored = Agent.objects.get(pk=agent.pk)
    assert (agent.budget_used, stored.budget_used, stored.budget_day) == (1, 1, (now + timedelta(days=1)).date())


def test_rules_for_reads_the_policy_row(agent):  # (its fixture puts the default policies back)
    row = Policy.objects.get(domain="default")
    assert policies.rules_for("default") == policies.rules_of(row)
    assert policies.rules_for("no-such-domain") is None


def test_calibration_maps_read_the_bins_the_orm_reads(agent):
    counts = {
        (agent.pk, domain, number): (40 + number, 20 + number)
        for domain in ("default", calibration.ALL_DOMAINS, "other")
        for number in range(calibration.BINS)
    }
    services.calibration_store(counts=counts)
    by_orm = list(
        CalibrationBin.objects.filter(agent_id=agent.pk, domain__in=["default", calibration.ALL_DOMAINS])
        .order_by("domain", "bin")
    )
    maps = calibration_maps(agent.pk, ["default"])
    assert set(maps) == {"default", calibration.ALL_DOMAINS}
    for domain, found in maps.items():
        bins = [b for b in by_orm if b.domain == domain]
        assert found.judged == bins[0].judged
        assert found.bins == tuple(calibration.Bin(b.n, b.agreed) for b in bins)


@pytest.mark.parametrize("stored", ["domain and all domains", "all domains only", "another domain only", "none"])
def test_the_rules_and_calibration_read_is_rules_for_and_calibration_for(agent, stored):
    domains = {
        "domain and all domains": ("default", calibration.ALL_DOMAINS, "code"),
        "all domains only": (calibration.ALL_DOMAINS,),
        "another domain only": ("code",),
        "none": (),
    }[stored]
    counts = {
        (agent.pk, domain, number): (40 + number + len(domain), 20 + number)
        for domain in domains
        for number in range(calibration.BINS)
    }
    services.calibration_store(counts=counts)
    for domain in ("default", "code"):
        rules, found = policies.rules_and_calibration(agent.pk, domain)
        assert rules == policies.rules_for(domain)
        assert found == services.calibration_for(agent.pk, domain)
    assert policies.rules_and_calibration(agent.pk, "no-such-domain") == (None, None)


@pytest.mark.parametrize("case", ["reviewer and manager, a machine", "no group, no profile", "revoked", "inactive user"])
def test_the_reviewer_token_read_is_the_orms(case, django_user_model, django_assert_num_queries):
    from django.contrib.auth.models import Group

    from people.models import Profile
    from people.roles import _groups, is_machine
    from reviews.api import live_reviewer_token
    from reviews.models import ReviewerToken
    from reviews.services import reviewer_token_issue, reviewer_token_revoke

    user = django_user_model.objects.create_user("rita")
    token = reviewer_token_issue(user=user, label="ci")
    if case.startswith("reviewer"):
        user.groups.add(*(Group.objects.get_or_create(name=name)[0] for name in ("reviewer", "manager")))
        Profile.objects.create(user=user, is_machine=True)
    elif case == "revoked":
        reviewer_token_revoke(token=ReviewerToken.objects.get(user=user))
    elif case == "inactive user":
        django_user_model.objects.filter(pk=user.pk).update(is_active=False)

    digest = ReviewerToken.hash(token)
    by_orm = ReviewerToken.objects.select_related("user").filter(
        token_hash=digest, revoked_at__isnull=True, user__is_active=True
    ).first()
    with django_assert_num_queries(1):
        found = live_reviewer_token(digest)
        if found is not None:  # the roles the API checks are read with it
            _groups(found.user)
            is_machine(found.user)
    assert (found is None) == (by_orm is None)
    if by_orm is not None:
        assert values(found) == values(by_orm)
        assert values(found.user) == values(by_orm.user)
        assert _groups(found.user) == frozenset(by_orm.user.groups.values_list("name", flat=True))
        assert is_machine(found.user) == is_machine(django_user_model.objects.get(pk=user.pk))


def _both_ways(escalation, model_name):
    """Two new instances of one model, alike but in what must differ (their key, and for an
    escalation or a decision, what is unique to one), the first to be saved by the ORM."""
    from escalations.models import Decision, Event

    now, agent = timezone.now(), escalation.agent
    fields = {f.attname: getattr(escalation, f.attname) for f in Escalation._meta.concrete_fields}

    def closed_escalation(run_id):
        run = Run.objects.create(agent=agent, run_id=run_id)
        return {**fields, "id": uuid.uuid4(), "run_id": run.pk, "idempotency_key": None, "status": "decided"}

    if model_name == "Escalation":
        return Escalation(**closed_escalation("run-a")), Escalation(**closed_escalation("run-b"))
    if model_name == "Event":
        event = {"escalation": escalation, "kind": "created", "actor": "agent-007", "at": now, "data": {"é": [None, 1.5]}}
        return Event(**event), Event(**event)
    if model_name == "Decision":
        decision = {"agent": agent, "kind": "option", "option_key": "shim", "args": {"a": [1]}, "instruction": "",
                    "decided_by_type": "human", "decided_by_name": "alice", "decided_at": now, "took_recommended": False}
        first, second = (Escalation.objects.create(**closed_escalation(run)) for run in ("run-a", "run-b"))
        return Decision(escalation=first, seq=1, **decision), Decision(escalation=second, seq=2, **decision)
    return Run(agent=agent, run_id="run-a"), Run(agent=agent, run_id="run-b")


@pytest.mark.parametrize("model_name", ["Escalation", "Event", "Decision", "Run"])
def test_insert_writes_the_row_save_writes(escalation, model_name):
    by_orm, by_hand = _both_ways(escalation, model_name)
    model = type(by_orm)
    # What save() does beyond the row, insert does not: no receiver may listen, no column be
    # left to its database default (get_db_prep_save cannot send DEFAULT).
    assert [signal.has_listeners(model) for signal in (pre_save, post_save)] == [False, False]
    assert not [f.name for f in model._meta.concrete_fields if f.has_db_default()]
    by_orm.save(force_insert=True)
    rows.insert(by_hand)

    assert by_hand.pk is not None
    assert (by_hand._state.adding, by_hand._state.db) == (False, by_orm._state.db)
    stored_orm, stored_hand = values(model.objects.get(pk=by_orm.pk)), values(model.objects.get(pk=by_hand.pk))
    assert stored_hand == values(by_hand)  # what was written is what the instance holds
    differ = {"id", "run_id", "escalation_id", "seq", "created_at"}
    assert {k: v for k, v in stored_hand.items() if k not in differ} == {
        k: v for k, v in stored_orm.items() if k not in differ
    }


def test_the_run_upsert_returns_the_existing_run(agent):
    first = Run(agent=agent, run_id="run-7")
    rows.insert(first, on_conflict="(agent_id, run_id) DO UPDATE SET run_id = EXCLUDED.run_id")
    again = Run(agent=agent, run_id="run-7")
    rows.insert(again, on_conflict="(agent_id, run_id) DO UPDATE SET run_id = EXCLUDED.run_id")
    assert again.pk == first.pk
    assert Run.objects.filter(agent=agent, run_id="run-7").count() == 1
    stored = Run.objects.get(pk=first.pk)
    assert (stored.status, stored.close_note, stored.created_at) == ("active", "", first.created_at)
