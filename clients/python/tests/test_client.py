"""The clients against a real local HTTP server that scripts its answers."""

import time
import uuid

import pytest

from handoff_client import (
    AsyncHandoff,
    Backoff,
    Conflict,
    Handoff,
    NotFound,
    ServerError,
    TransportError,
    ValidationFailed,
    WaitTimeout,
)
from stub import DROP, Reply, StubServer, decided_json, escalation_json

FAST = Backoff(base=0.01, cap=0.05, max_retries=3)
PACKAGE = {
    "run_id": "run-42",
    "title": "Drop the legacy table?",
    "uncertainty": "The table still receives writes although the plan says it is unused.",
    "reason": "irreversible_action",
    "confidence": 0.6,
    "history": [{"at": "2026-11-21T10:00:00Z", "action": "Counted rows", "outcome": "ok"}],
    "options": [{"key": "drop", "label": "Drop it", "recommended": True, "irreversible": True}],
    "cost_of_delay": {"blocking": True, "impact": "medium"},
}


def fail_first(failure):
    """An app whose first request fails with `failure`, then answers 201."""
    state = {"calls": 0}

    def app(request):
        state["calls"] += 1
        if state["calls"] == 1:
            return failure
        return Reply(201, escalation_json())

    return app


@pytest.mark.parametrize(
    "failure",
    [DROP, Reply(503, {"status": 503}), Reply(500, {"status": 500}), Reply(429, {"status": 429})],
    ids=["network-error", "503", "500", "429"],
)
def test_escalate_retries_with_the_same_idempotency_key(failure):
    with StubServer(fail_first(failure)) as server:
        with Handoff(server.url, "tok", backoff=FAST) as client:
            escalation = client.escalate(PACKAGE)
    assert escalation.id == escalation_json()["id"]
    keys = [r.headers["idempotency-key"] for r in server.requests]
    assert len(keys) == 2
    assert keys[0] == keys[1]
    assert uuid.UUID(keys[0]).version == 4
    assert server.requests[0].json() == server.requests[1].json() == PACKAGE
    assert server.requests[0].headers["authorization"] == "Bearer tok"


def test_every_escalate_gets_its_own_key_unless_given():
    with StubServer(lambda r: Reply(201, escalation_json())) as server:
        with Handoff(server.url, "tok", backoff=FAST) as client:
            client.escalate(PACKAGE)
            client.escalate(PACKAGE)
            client.escalate(PACKAGE, idempotency_key="run-42:step-7")
    keys = [r.headers["idempotency-key"] for r in server.requests]
    assert keys[0] != keys[1]
    assert keys[2] == "run-42:step-7"


def test_retry_after_is_honoured():
    state = {"calls": 0}

    def app(request):
        state["calls"] += 1
        if state["calls"] == 1:
            return Reply(429, {"status": 429}, {"Retry-After": "1"})
        return Reply(201, escalation_json())

    with StubServer(app) as server, Handoff(server.url, "tok", backoff=FAST) as client:
        started = time.monotonic()
        client.escalate(PACKAGE)
        assert time.monotonic() - started >= 1.0


def test_keywords_and_dict_merge_and_datetimes_are_encoded():
    from datetime import UTC, datetime

    with StubServer(lambda r: Reply(201, escalation_json())) as server:
        with Handoff(server.url, "tok", backoff=FAST) as client:
            client.escalate(
                PACKAGE,
                confidence=0.9,
                history=[{"at": datetime(2026, 11, 21, 10, tzinfo=UTC), "action": "x"}],
            )
    sent = server.requests[0].json()
    assert sent["confidence"] == 0.9
    assert sent["history"] == [{"at": "2026-11-21T10:00:00+00:00", "action": "x"}]
    assert sent["title"] == PACKAGE["title"]


def test_naive_datetimes_are_refused_before_sending():
    from datetime import datetime

    with pytest.raises(ValueError, match="timezone"):
        Handoff("http://127.0.0.1:9", "tok").escalate(
            PACKAGE, history=[{"at": datetime(2026, 1, 1), "action": "x"}]
        )


def test_client_errors_are_not_retried():
    body = {
        "status": 422,
        "title": "Invalid",
        "detail": "1 field needs attention",
        "errors": [{"field": "uncertainty", "message": "too generic"}],
    }
    with StubServer(lambda r: Reply(422, body)) as server:
        with Handoff(server.url, "tok", backoff=FAST) as client:
            with pytest.raises(ValidationFailed) as caught:
                client.escalate(PACKAGE)
    assert len(server.requests) == 1
    assert caught.value.errors[0].field == "uncertainty"


def test_conflict_links_the_open_escalation():
    body = {
        "status": 409,
        "type": "https://handoff.dev/problems/run-has-open-escalation",
        "title": "open",
        "detail": "open",
        "open_escalation": escalation_json(),
    }
    with StubServer(lambda r: Reply(409, body)) as server:
        with Handoff(server.url, "tok", backoff=FAST) as client:
            with pytest.raises(Conflict) as caught:
                client.escalate(PACKAGE)
    assert caught.value.open_escalation.id == escalation_json()["id"]


def test_retries_run_out():
    with StubServer(lambda r: Reply(503, {"status": 503, "detail": "down"})) as server:
        with Handoff(server.url, "tok", backoff=FAST) as client:
            with pytest.raises(ServerError):
                client.escalate(PACKAGE)
    assert len(server.requests) == FAST.max_retries + 1


def test_unreachable_server_raises_transport_error():
    with Handoff("http://127.0.0.1:9", "tok", backoff=FAST) as client:
        with pytest.raises(TransportError):
            client.get("x")


def test_gate_is_not_retried_after_the_request_may_have_arrived():
    with StubServer(lambda r: DROP) as server, Handoff(server.url, "t", backoff=FAST) as client:
        with pytest.raises(TransportError):
            client.gate(action={"name": "rm", "irreversible": True}, confidence=0.5)
    assert len(server.requests) == 1


def test_gate():
    verdict = {"verdict": "escalate", "tier": 3, "reasons": ["irreversible"], "policy": "code"}
    with StubServer(lambda r: Reply(200, verdict)) as server:
        with Handoff(server.url, "tok") as client:
            answer = client.gate(
                action={"name": "rm", "irreversible": True}, confidence=0.5, run_id="r"
            )
    assert (answer.verdict, answer.tier, answer.reasons) == ("escalate", 3, ["irreversible"])
    assert server.requests[0].json() == {
        "action": {"name": "rm", "irreversible": True},
        "confidence": 0.5,
        "attempts": 0,
        "novel": False,
        "run_id": "r",
    }


def test_get_ack_withdraw_paths():
    ident = escalation_json()["id"]
    with StubServer(lambda r: Reply(200, decided_json("drop"))) as server:
        with Handoff(server.url + "/", "tok") as client:
            got = client.get(ident)
            client.ack(got)
            client.withdraw(ident)
    assert [(r.method, r.path) for r in server.requests] == [
        ("GET", f"/api/v1/escalations/{ident}"),
        ("POST", f"/api/v1/escalations/{ident}/ack"),
        ("POST", f"/api/v1/escalations/{ident}/withdraw"),
    ]
    assert got.decision.option == "drop"
    assert got.decision.decided_by.type == "human"
    assert got.created_at.tzinfo is not None


# -- wait: the long-poll loop


def test_wait_long_polls_with_etag_until_decided():
    answers = iter(
        [
            Reply(200, escalation_json(), {"ETag": '"e1"'}),
            DROP,  # a network error in the middle: reconnect
            Reply(304, None, {"ETag": '"e1"'}),
            Reply(503, {"status": 503}, {"Retry-After": "0"}),
            Reply(200, decided_json("drop", args={"table": "t"}), {"ETag": '"e2"'}),
        ]
    )
    with StubServer(lambda r: next(answers)) as server:
        with Handoff(server.url, "tok", backoff=FAST) as client:
            decided = client.wait("abc", timeout=30)
    assert decided.status == "decided"
    assert decided.decision.args == {"table": "t"}
    waits = [int(r.query["wait"]) for r in server.requests]
    assert all(1 <= w <= 60 for w in waits)
    assert "if-none-match" not in server.requests[0].headers
    assert server.requests[2].headers["if-none-match"] == '"e1"'
    assert len(server.requests) == 5


def test_wait_caps_each_poll_at_60_seconds():
    with StubServer(lambda r: Reply(200, decided_json("drop"))) as server:
        with Handoff(server.url, "tok") as client:
            client.wait("abc")
            client.wait("abc", timeout=3600)
            client.wait("abc", timeout=5)
    assert [r.query["wait"] for r in server.requests] == ["60", "60", "5"]


def test_wait_returns_a_closed_escalation_without_asking():
    from handoff_client import Escalation

    with Handoff("http://127.0.0.1:9", "tok") as client:
        decided = Escalation.from_dict(decided_json("drop"))
        assert client.wait(decided) is decided


def test_wait_times_out_with_the_last_state():
    # This stub answers at once (no long-poll support): the client must pace itself.
    with StubServer(lambda r: Reply(200, escalation_json(status="claimed"))) as server:
        with Handoff(server.url, "tok") as client:
            started = time.monotonic()
            with pytest.raises(WaitTimeout) as caught:
                client.wait("abc", timeout=2)
            elapsed = time.monotonic() - started
    assert caught.value.escalation.status == "claimed"
    assert isinstance(caught.value, TimeoutError)
    assert 2 <= elapsed < 5
    assert len(server.requests) <= 3


def test_wait_zero_asks_once():
    with StubServer(lambda r: Reply(200, escalation_json())) as server:
        with Handoff(server.url, "tok") as client, pytest.raises(WaitTimeout):
            client.wait("abc", timeout=0)
    assert [r.query["wait"] for r in server.requests] == ["0"]


def test_wait_raises_not_found_at_once():
    with StubServer(lambda r: Reply(404, {"status": 404, "detail": "no"})) as server:
        with Handoff(server.url, "tok") as client, pytest.raises(NotFound):
            client.wait("abc", timeout=30)
    assert len(server.requests) == 1


# -- the decisions feed


def feed_app(pages):
    def app(request):
        return Reply(200, pages.get(request.query.get("after"), {"items": [], "next_cursor": "9"}))

    return app


def test_decisions_follow_next_cursor_and_stop_when_caught_up():
    a, b, c = (decided_json("x", id=f"00000000-0000-4000-8000-00000000000{i}") for i in (1, 2, 3))
    pages = {
        None: {"items": [a, b], "next_cursor": "2"},
        "2": {"items": [c], "next_cursor": "3"},
        "3": {"items": [], "next_cursor": "3"},
    }
    with StubServer(feed_app(pages)) as server, Handoff(server.url, "tok") as client:
        feed = client.decisions()
        seen = []
        for escalation in feed:
            seen.append((escalation.id[-1], feed.cursor))
    assert seen == [("1", None), ("2", "2"), ("3", "3")]
    assert feed.cursor == "3"
    assert [r.query.get("after") for r in server.requests] == [None, "2", "3"]
    assert all(r.query["limit"] == "100" and r.query["wait"] == "0" for r in server.requests)


def test_decisions_with_wait_keep_polling():
    a = decided_json("x")
    pages = {"5": {"items": [], "next_cursor": "5"}}
    state = {"n": 0}

    def app(request):
        state["n"] += 1
        if state["n"] == 1:
            return DROP
        if state["n"] < 4:
            return Reply(200, pages["5"])
        return Reply(200, {"items": [a], "next_cursor": "6"})

    with StubServer(app) as server, Handoff(server.url, "tok", backoff=FAST) as client:
        feed = client.decisions(after="5", wait=1)
        first = next(feed)
    assert first.id == a["id"]
    assert feed.cursor == "6"
    assert all(r.query["after"] == "5" and r.query["wait"] == "1" for r in server.requests)


# -- the async twin


async def test_async_escalate_retries_with_the_same_key():
    with StubServer(fail_first(DROP)) as server:
        async with AsyncHandoff(server.url, "tok", backoff=FAST) as client:
            escalation = await client.escalate(PACKAGE, title="Another title")
    keys = [r.headers["idempotency-key"] for r in server.requests]
    assert len(keys) == 2 and keys[0] == keys[1]
    assert server.requests[1].json()["title"] == "Another title"
    assert escalation.is_open


async def test_async_wait_and_feed():
    answers = iter([Reply(304, None), Reply(200, decided_json("drop"))])
    pages = {None: {"items": [decided_json("x")], "next_cursor": "1"}}
    with StubServer(lambda r: next(answers)) as server:
        async with AsyncHandoff(server.url, "tok", backoff=FAST) as client:
            decided = await client.wait("abc", timeout=10)
    assert decided.decision.option == "drop"
    with StubServer(feed_app(pages)) as server:
        async with AsyncHandoff(server.url, "tok") as client:
            feed = client.decisions()
            items = [e async for e in feed]
    assert len(items) == 1 and feed.cursor == "1"
