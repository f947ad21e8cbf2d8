"""@requires_approval against a local HTTP server that plays the reviewer."""

import pytest

from handoff_client import (
    AsyncHandoff,
    Backoff,
    Halted,
    Handoff,
    HandoffError,
    InstructionGiven,
    Rejected,
    TakenOver,
    WaitTimeout,
    Withdrawn,
    requires_approval,
)
from stub import Reply, StubServer, decided_json, escalation_json

FAST = Backoff(base=0.01, cap=0.05, max_retries=2)
UNCERTAINTY = "The table billing_legacy still gets writes; the plan says nobody uses it."


def reviewer(decision):
    """POST answers pending; GET answers `decision` (a decided escalation object)."""

    def app(request):
        if request.method == "POST" and request.path.endswith("/escalations"):
            return Reply(201, escalation_json())
        if request.method == "POST" and request.path.endswith("/ack"):
            return Reply(200, {**decision, "status": "resumed"})
        return Reply(200, decision)

    return app


def test_runs_with_the_args_the_reviewer_approved():
    calls = []
    decision = decided_json("proceed", args={"table": "billing_legacy", "cascade": False})
    with StubServer(reviewer(decision)) as server, Handoff(server.url, "t", backoff=FAST) as c:

        @requires_approval(
            c, title="Drop a table", uncertainty=UNCERTAINTY, confidence=0.6, run_id="run-7"
        )
        def drop_table(table: str, cascade: bool = True) -> str:
            calls.append((table, cascade))
            return f"dropped {table}"

        assert drop_table("billing_legacy") == "dropped billing_legacy"
    assert calls == [("billing_legacy", False)]
    posted = server.requests[0].json()
    assert posted["run_id"] == "run-7"
    assert posted["reason"] == "irreversible_action"
    assert posted["action"] == {"name": "drop_table", "irreversible": True}
    proceed, skip = posted["options"]
    assert proceed == {
        "key": "proceed",
        "label": "Run drop_table with these arguments",
        "irreversible": True,
        "recommended": True,
        "args": {"table": "billing_legacy", "cascade": True},
    }
    assert skip["key"] == "skip" and not skip.get("recommended")
    assert [r.path.rsplit("/", 1)[-1] for r in server.requests if r.method == "POST"] == [
        "escalations",
        "ack",
    ]


def test_methods_leave_self_out_and_titles_may_be_callables():
    decision = decided_json("proceed", args={"amount": 5})

    with StubServer(reviewer(decision)) as server, Handoff(server.url, "t", backoff=FAST) as c:

        class Payments:
            @requires_approval(
                c,
                title=lambda a: f"Refund {a['amount']} EUR",
                uncertainty=UNCERTAINTY,
                confidence=0.8,
            )
            def refund(self, amount: int) -> int:
                return amount

        assert Payments().refund(50) == 5
    posted = server.requests[0].json()
    assert posted["title"] == "Refund 50 EUR"
    assert posted["options"][0]["args"] == {"amount": 50}
    assert posted["run_id"].startswith("test_methods_leave_self_out")


@pytest.mark.parametrize(
    ("decision", "error"),
    [
        (decided_json(kind="halt"), Halted),
        (decided_json(kind="take_over"), TakenOver),
        (decided_json(kind="instruction", instruction="Archive it instead."), InstructionGiven),
        (decided_json("skip"), Rejected),
        (escalation_json(status="withdrawn"), Withdrawn),
    ],
)
def test_other_outcomes_raise_and_never_run(decision, error):
    ran = []
    with StubServer(reviewer(decision)) as server, Handoff(server.url, "t", backoff=FAST) as c:

        @requires_approval(c, title="Drop", uncertainty=UNCERTAINTY, confidence=0.6)
        def drop(table: str) -> None:
            ran.append(table)

        with pytest.raises(error) as caught:
            drop("x")
    assert ran == []
    if error is InstructionGiven:
        assert caught.value.instruction == "Archive it instead."
    if error is Rejected:
        assert caught.value.option == "skip"


def test_unknown_approved_arg_fails_closed():
    decision = decided_json("proceed", args={"table": "x", "force": True})
    with StubServer(reviewer(decision)) as server, Handoff(server.url, "t", backoff=FAST) as c:

        @requires_approval(c, title="Drop", uncertainty=UNCERTAINTY, confidence=0.6)
        def drop(table: str) -> None:
            raise AssertionError("must not run")

        with pytest.raises(HandoffError, match="force"):
            drop("x")


def test_timeout_raises_and_does_not_run():
    with StubServer(reviewer(escalation_json())) as server, Handoff(server.url, "t") as c:

        @requires_approval(c, title="Drop", uncertainty=UNCERTAINTY, confidence=0.6, timeout=0)
        def drop(table: str) -> None:
            raise AssertionError("must not run")

        with pytest.raises(WaitTimeout):
            drop("x")


def test_client_kind_must_match_the_function():
    with pytest.raises(TypeError):

        @requires_approval(
            AsyncHandoff("http://x", "t"), title="t", uncertainty=UNCERTAINTY, confidence=0.5
        )
        def sync_fn() -> None: ...

    with pytest.raises(TypeError):

        @requires_approval(
            Handoff("http://x", "t"), title="t", uncertainty=UNCERTAINTY, confidence=0.5
        )
        async def async_fn() -> None: ...


def test_arguments_must_be_json():
    with Handoff("http://127.0.0.1:9", "t") as c:

        @requires_approval(c, title="t", uncertainty=UNCERTAINTY, confidence=0.5)
        def f(x: object) -> None: ...

        with pytest.raises(TypeError, match="JSON"):
            f(object())


async def test_async_functions_with_the_async_client():
    decision = decided_json("proceed", args={"to": "ops@example.com"})
    with StubServer(reviewer(decision)) as server:
        async with AsyncHandoff(server.url, "t", backoff=FAST) as c:

            @requires_approval(
                c,
                title="Send",
                uncertainty=UNCERTAINTY,
                confidence=0.7,
                domain="mail",
                metadata={"ticket": 7},
            )
            async def send(to: str) -> str:
                return to

            assert await send("all@example.com") == "ops@example.com"
    posted = server.requests[0].json()
    assert posted["domain"] == "mail" and posted["metadata"] == {"ticket": 7}
