"""The create's input checks take shortcuts; each is held here to the long way it skips.

- jsontext.unstorable answers a value json.dumps finds plainly storable without walking it:
  its answer is the walk's for every kind of value the walk refuses, wherever it sits.
- The API's input schemas (schemas.Strict) validate a JSON object as it is, where
  ninja's Schema wraps it in a DjangoGetter first: the same models and the same errors
  (type, place, message and context) for good and bad packages, decisions and answers.
"""

import copy
import math
from typing import Any

import pytest
from ninja.schema import DjangoGetter
from pydantic import BaseModel, ValidationError

from escalations import jsontext, review_schemas, schemas
from tests.conftest import make_package

BAD = {
    "a NUL": "a\x00b",
    "a lone surrogate": "a\ud800b",
    "infinity": math.inf,
    "minus infinity": -math.inf,
    "NaN": math.nan,
}


def walked(value: Any, path: str) -> Any:
    """unstorable's answer by the walk alone."""
    original = jsontext._storable_at_a_glance
    try:
        jsontext._storable_at_a_glance = lambda value: False
        return jsontext.unstorable(value, path)
    finally:
        jsontext._storable_at_a_glance = original


def placed(bad: Any) -> list[Any]:
    package = make_package()
    in_key = []
    if isinstance(bad, str):  # a key is text
        in_key = [{**copy.deepcopy(package), "metadata": {"ok": 1, bad: "value"}}]
    return [
        bad,
        [1, "x", bad],
        {"metadata": {"deep": [{"x": bad}]}},
        {**package, "title": bad},
        {**package, "options": [*package["options"], {"key": "k", "args": {"n": bad}}]},
        *in_key,
    ]


@pytest.mark.parametrize("name", sorted(BAD))
def test_what_the_walk_refuses_is_refused_alike(name):
    for value in placed(BAD[name]):
        answer = jsontext.unstorable(value, "body")
        assert answer is not None
        assert answer == walked(value, "body")


@pytest.mark.parametrize("value", [
    make_package(),
    {"text": "\\u0000 written out, not a NUL"},  # a false alarm: walked, and storable
    {"emoji": "\U0001f600", "accents": "é", "numbers": [0, -1, 1.5, 1e300, 2**70]},
    "plain text",
    None,
    [],
])
def test_what_is_storable_is_answered_alike(value):
    assert jsontext.unstorable(value, "body") is None
    assert walked(value, "body") is None


def outcome(model: type[BaseModel], value: Any) -> Any:
    try:
        return ("valid", model.model_validate(value).model_dump())
    except ValidationError as exc:
        return ("invalid", [(e["type"], e["loc"], e["msg"], e.get("ctx")) for e in exc.errors()])


def variants(body: dict[str, Any]) -> list[Any]:
    """`body`, and `body` with each key missing or holding each kind of wrong value."""
    wrongs: tuple[Any, ...] = (None, "abc", 5, -1, 1.5, True, [], {}, [1], {"a": 1}, "2020-01-01T00:00:00")
    found: list[Any] = [body, "a string", 5, None, [body]]
    for key in body:
        found.extend({**body, key: wrong} for wrong in wrongs)
        found.append({k: v for k, v in body.items() if k != key})
    return found


PACKAGE = make_package(
    action={"name": "drop the table", "irreversible": True, "planned_scope": 1, "actual_scope": 2},
    links=[{"url": "https://example.com/a", "label": "A"}],
    metadata={"a": 1},
)
BODIES = {
    schemas.EscalationIn: PACKAGE,
    schemas.StepIn: PACKAGE["history"][1],
    schemas.OptionIn: PACKAGE["options"][0],
    schemas.CostOfDelayIn: PACKAGE["cost_of_delay"],
    schemas.ActionIn: PACKAGE["action"],
    schemas.LinkIn: PACKAGE["links"][0],
    schemas.DecisionIn: {"kind": "option", "option": "shim", "args": {"a": 1}, "instruction": "go"},
    schemas.AnswerIn: {"text": "the answer", "history": PACKAGE["history"], "links": PACKAGE["links"]},
    review_schemas.RecommendationIn: {"option": "shim", "args": {"a": 1}, "note": "why", "confidence": 0.8},
    schemas.GateIn: {"domain": "default", "action": PACKAGE["action"], "confidence": 0.9, "attempts": 1,
                     "novel": True, "run_id": "r"},
}


def test_every_input_schema_is_covered():
    def strict_subclasses(cls: type) -> set[type]:
        found: set[type] = set()
        subclasses: list[type] = cls.__subclasses__()
        for sub in subclasses:
            found |= {sub, *strict_subclasses(sub)}
        return found

    assert strict_subclasses(schemas.Strict) <= set(BODIES), "add its body to BODIES"


@pytest.mark.parametrize("model", list(BODIES), ids=lambda m: m.__name__)
def test_an_object_validates_as_through_ninjas_getter(model):
    for value in variants(BODIES[model]):
        through_getter = DjangoGetter(value, model) if isinstance(value, dict) else value
        assert outcome(model, value) == outcome(model, through_getter), value
