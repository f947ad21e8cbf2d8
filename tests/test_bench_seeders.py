"""The bench scripts' SQL seeders, on a few rows of the test database (PostgreSQL): a column the
models gain fails here, not an hour into a million-row bench run. Each seeder's rows are read
back through the ORM, every field of every row."""

import importlib
import sys
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import TypeVar

import pytest
from django.db import connection
from django.db.models import Model

from escalations import models
from notifications.models import Notification
from tests.conftest import need

BENCH = Path(__file__).resolve().parent.parent / "bench"

pytestmark = pytest.mark.django_db
M = TypeVar("M", bound=Model)


@pytest.fixture(autouse=True)
def _postgresql() -> None:
    need(connection.vendor == "postgresql", "PostgreSQL (DATABASE_URL)")


def bench(name: str) -> ModuleType:
    if str(BENCH) not in sys.path:
        sys.path.append(str(BENCH))
    return importlib.import_module(name)


def read_back(model: type[M]) -> list[M]:
    """Every row as an instance, every concrete field's value converted by the ORM."""
    rows = list(model._default_manager.all())
    for row in rows:
        for field in model._meta.concrete_fields:
            getattr(row, field.attname)
    return rows


def test_insights_seeder() -> None:
    bench("insights_bench").generate(40, gates=7)
    escalations = read_back(models.Escalation)
    assert len(escalations) == 40
    assert len(read_back(models.Run)) == 40
    assert {e.waited_on_agent for e in escalations} == {timedelta(0)}
    assert {(e.question_text, e.question_by) for e in escalations} == {("", "")}
    assert {o["key"] for o in escalations[0].options} == {"a", "b"}
    decided = [e for e in escalations if e.status == models.Escalation.Status.DECIDED]
    assert len(read_back(models.Decision)) == len(decided)
    assert len(read_back(models.Event)) == sum(e.tier >= 3 for e in decided)
    assert len(read_back(models.FlagReview)) <= sum(e.tier == 2 for e in escalations)
    assert len(read_back(models.GateCheck)) == 7


def test_precedents_seeder() -> None:
    bench("precedents_bench").generate(30)
    escalations = read_back(models.Escalation)
    assert len(escalations) == 30
    assert all(" the " in e.title for e in escalations)
    assert len(read_back(models.Decision)) == sum(e.status == models.Escalation.Status.DECIDED for e in escalations)


def test_metrics_seeder() -> None:
    bench("metrics_bench").generate(50, 5)
    escalations = read_back(models.Escalation)
    assert len(escalations) == 50
    assert sum(e.is_open for e in escalations) == 5
    deliveries = read_back(models.Delivery)
    assert len(deliveries) == len(read_back(models.Decision)) == 45
    assert len(read_back(models.DeliveryAttempt)) >= 45
    assert len(read_back(Notification)) == 5


def test_queue_seeder() -> None:
    _reviewer, _token, open_count = bench("queue_bench").seed(6, closed_rows=4)
    escalations = read_back(models.Escalation)
    assert open_count == 7  # the service's template and its 6 copies
    assert len(escalations) == 11
    template = models.Escalation.objects.get(run__run_id="template")
    copies = [e for e in escalations if e.pk != template.pk]
    assert all(e.history == template.history and e.run_id != template.run_id for e in copies)
    assert len(read_back(models.Decision)) == 4
    assert len(read_back(models.FlagReview)) == 2


def test_slack_sweep_seeder() -> None:
    bench("slack_sweep_bench").generate(40, 2, notification=Notification)
    escalations = read_back(models.Escalation)
    assert len(escalations) == 40
    messages = read_back(Notification)
    assert len(messages) == 60  # one or two each
    assert {m.channel for m in messages} == {"slack"}
    assert all(m.slack_ts for m in messages)
    decided = [e for e in escalations if e.status not in ("pending", "claimed", "withdrawn")]
    assert len(read_back(models.Decision)) == len(decided)
    assert len(read_back(models.Delivery)) == sum(e.status == "resumed" for e in escalations)
    assert len(read_back(models.EscalationLevel)) == 2


def test_a_column_the_seeder_does_not_fill_is_named() -> None:
    """A NOT NULL column without a default (as a new one would be) stops the statement's build."""
    seed = bench("seed")
    values = {"id": "i", "agent_id": "1", "run_id": "'r'", "created_at": "now()"}
    run = seed.insert_select(models.Run, values, "g")
    assert "close_note" in run  # '' as the ORM writes it
    assert "'active'" in run  # the field's default
    sql = seed.insert_select(models.Escalation, {"id": "gen_random_uuid()"}, "g", template="t")
    assert "t.question_by" in sql
    assert "t.waited_on_agent" in sql
    with pytest.raises(seed.SeederOutOfDate, match=r"escalations_escalation\.agent_id"):
        seed.insert_select(models.Escalation, {"id": "gen_random_uuid()"}, "g")
    with pytest.raises(seed.SeederOutOfDate, match=r"escalations_escalation\.id is unique"):
        seed.insert_select(models.Escalation, {}, "g")
    with pytest.raises(seed.SeederOutOfDate, match=r"escalations_escalation\.id is unique"):
        seed.insert_select(models.Escalation, {}, "g", template="t")  # the template's own id, copied
    with pytest.raises(seed.SeederOutOfDate, match="no column gone"):
        seed.insert_select(models.Run, values | {"gone": "1"}, "g")
