"""Error answers become typed exceptions carrying the problem+json fields."""

import httpx
import pytest

from handoff_client import (
    BadRequest,
    Conflict,
    HandoffError,
    NotFound,
    RateLimited,
    ServerError,
    Unauthorized,
    ValidationFailed,
)
from handoff_client._core import error_from_response, parse_retry_after
from stub import decision_json, escalation_json

API_MD_EXAMPLE = {
    "type": "https://handoff.dev/problems/incomplete-package",
    "title": "Escalation package is incomplete",
    "status": 422,
    "detail": "2 fields need attention",
    "errors": [
        {"field": "options", "message": "at least one option is required"},
        {"field": "cost_of_delay.impact", "message": "must be one of low, medium, high, critical"},
    ],
}


def problem(status, body, **headers):
    return httpx.Response(
        status,
        json=body,
        headers={"Content-Type": "application/problem+json", **headers},
        request=httpx.Request("POST", "http://x/api/v1/escalations"),
    )


def test_422_carries_every_field():
    error = error_from_response(problem(422, API_MD_EXAMPLE))
    assert isinstance(error, ValidationFailed)
    assert error.status == 422
    assert error.type == "https://handoff.dev/problems/incomplete-package"
    assert error.title == "Escalation package is incomplete"
    assert error.detail == "2 fields need attention"
    assert [(e.field, e.message) for e in error.errors] == [
        ("options", "at least one option is required"),
        ("cost_of_delay.impact", "must be one of low, medium, high, critical"),
    ]
    assert "cost_of_delay.impact: must be one of" in str(error)


def test_409_links_the_open_escalation():
    body = {
        "type": "https://handoff.dev/problems/run-has-open-escalation",
        "title": "The run already has an open escalation",
        "status": 409,
        "detail": "Run 'run-42' already has an open escalation.",
        "open_escalation": escalation_json(),
    }
    error = error_from_response(problem(409, body))
    assert isinstance(error, Conflict)
    assert error.open_escalation is not None
    assert error.open_escalation.run_id == "run-42"
    assert error.open_escalation.is_open
    assert error.decision is None


def test_409_carries_the_decision_that_stands():
    body = {
        "status": 409,
        "title": "Conflict",
        "detail": "already decided",
        "decision": decision_json(option="keep", args={"x": 1}),
    }
    error = error_from_response(problem(409, body))
    assert isinstance(error, Conflict)
    assert error.decision is not None
    assert (error.decision.option, error.decision.args) == ("keep", {"x": 1})
    assert error.decision.decided_by.name == "alice"


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequest),
        (401, Unauthorized),
        (403, Unauthorized),
        (404, NotFound),
        (413, BadRequest),
        (415, BadRequest),
        (429, RateLimited),
        (500, ServerError),
        (503, ServerError),
        (418, HandoffError),
    ],
)
def test_status_classes(status, cls):
    error = error_from_response(problem(status, {"status": status, "detail": "d", "title": "t"}))
    assert type(error) is cls
    assert isinstance(error, HandoffError)
    assert (error.status, error.detail, error.title) == (status, "d", "t")


def test_rate_limited_exposes_retry_after():
    error = error_from_response(problem(429, {"status": 429}, **{"Retry-After": "7"}))
    assert isinstance(error, RateLimited)
    assert error.retry_after == 7


def test_body_that_is_not_json():
    response = httpx.Response(
        502, text="<html>bad gateway</html>", request=httpx.Request("GET", "http://x/")
    )
    error = error_from_response(response)
    assert isinstance(error, ServerError)
    assert error.status == 502
    assert error.detail == "Bad Gateway"
    assert error.errors == []


def test_parse_retry_after():
    assert parse_retry_after("3") == 3
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0  # in the past
