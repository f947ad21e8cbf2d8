"""Decision lifetime and receipts (issue 14): valid_until from the domain's policy, a receipt
the client verifies, an ack after valid_until is 409 and the escalation `expired`."""

import base64
import json
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from django.utils import timezone

from escalations import receipts, services
from escalations.models import Escalation, Event, Policy
from tests.conftest import make_package

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "clients" / "python" / "src"))
from handoff_client import DecisionExpired, Handoff, InvalidReceipt, verify_receipt  # type: ignore[import-not-found]
from handoff_client import receipts as client_receipts

# The TypeScript client's vector (clients/typescript/test/signatures.test.ts).
TS_ARGS = {"paths": ["billing/"], "note": "é ünïcode", "n": 3, "nested": {"b": 1, "a": [True, None]}}
TS_ARGS_SHA = "3ab7d2c7bba3b2dde604efbdb279188ea67df239d8c237ed8641d8364a410038"


def test_canonical_json_is_the_javascript_form_on_both_sides():
    floats = {**TS_ARGS, "n": 3.0, "nested": {"b": 1.0, "a": [True, None]}}
    for side in (receipts, client_receipts):
        assert side.args_sha256(TS_ARGS) == TS_ARGS_SHA
        assert side.args_sha256(floats) == TS_ARGS_SHA  # Python's 1.0 is JavaScript's 1
        assert side.canonical_json([1e21, 1e-7, 0.1, 1e16, -0.0]) == "[1e+21,1e-7,0.1,10000000000000000,0]"


def decided_with_lifetime(api, reviewer, seconds=60, args=None):
    Policy.objects.filter(domain="default").update(decision_lifetime_seconds=seconds)
    created = api.escalate(make_package()).json()
    services.escalation_decide(
        escalation_id=created["id"],
        request=services.DecisionRequest(kind="option", option="update-callers", args=args),
        user=reviewer,
    )
    return created["id"]


@pytest.mark.django_db
def test_the_decision_carries_valid_until_and_a_receipt_the_client_verifies(api, agent, reviewer):
    pk = decided_with_lifetime(api, reviewer, args={"paths": ["billing/"], "ratio": 1.0})
    body = api.get(f"/api/v1/escalations/{pk}").json()  # the agents' hot read
    decision = body["decision"]
    decided_at = Escalation.objects.get(pk=pk).decision.decided_at
    assert decision["valid_until"] == (decided_at + timedelta(seconds=60)).isoformat().replace("+00:00", "Z")
    payload = verify_receipt(decision["receipt"], agent.signing_secret, args={"paths": ["billing/"], "ratio": 1})
    assert payload["escalation"] == pk
    assert payload["option"] == "update-callers"
    assert payload["decided_by"] == {"type": "human", "name": "alice"}
    # the feed (the ORM path) signs the same receipt
    feed = api.get("/api/v1/decisions").json()["items"]
    assert feed[0]["decision"]["receipt"] == decision["receipt"]


@pytest.mark.django_db
def test_an_ack_after_valid_until_is_409_and_the_escalation_expires(api, reviewer):
    pk = decided_with_lifetime(api, reviewer, seconds=60)
    with time_machine.travel(timezone.now() + timedelta(seconds=61), tick=False):
        answer = api.post_json(f"/api/v1/escalations/{pk}/ack")
        again = api.post_json(f"/api/v1/escalations/{pk}/ack")
    assert answer.status_code == 409
    assert again.status_code == 409
    assert answer.json()["type"].endswith("/decision-expired")
    assert Escalation.objects.get(pk=pk).status == "expired"
    assert Event.objects.filter(escalation_id=pk, kind="expired").count() == 1
    assert api.get(f"/api/v1/escalations/{pk}").json()["status"] == "expired"


@pytest.mark.django_db
def test_an_ack_within_valid_until_resumes(api, reviewer):
    pk = decided_with_lifetime(api, reviewer, seconds=60)
    assert api.post_json(f"/api/v1/escalations/{pk}/ack").json()["status"] == "resumed"


def test_the_client_refuses_a_tampered_or_expired_decision(live_server_asgi, agent_with_token, reviewer):
    agent, token = agent_with_token
    Policy.objects.filter(domain="default").update(decision_lifetime_seconds=60)
    with Handoff(live_server_asgi, token, signing_secret=agent.signing_secret) as client:
        created = client.escalate(make_package())
        services.escalation_decide(
            escalation_id=created.id,
            request=services.DecisionRequest(kind="option", option="update-callers"),
            user=reviewer,
        )
        decided = client.wait(created, timeout=10)  # verified on the way
        assert decided.decision is not None
        assert decided.decision.valid_until is not None

        receipt = decided.decision.receipt or ""
        encoded, signature = receipt.split(".")
        payload = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
        forged = base64.urlsafe_b64encode(json.dumps({**payload, "option": "shim"}).encode()).rstrip(b"=").decode()
        with pytest.raises(InvalidReceipt, match="signature"):
            verify_receipt(f"{forged}.{signature}", agent.signing_secret)
        with pytest.raises(InvalidReceipt, match="approved args"):
            verify_receipt(receipt, agent.signing_secret, args={"paths": ["everything/"]})
        with pytest.raises(InvalidReceipt):
            Handoff(live_server_asgi, token, signing_secret="not-the-secret").get(created.id)

        with time_machine.travel(timezone.now() + timedelta(seconds=61), tick=False), pytest.raises(DecisionExpired):
            client.get(created.id)
