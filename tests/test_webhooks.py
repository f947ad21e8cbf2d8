"""The webhook signature (Stripe scheme, API.md "Webhook") and the HTTP POST, no database."""

import hashlib
import hmac
import json
import time

import pytest

from escalations.transport import webhooks
from tests.conftest import free_port
from tests.receiver import CLOSE, Receiver, Reply

SECRET = "whsec_test_0123456789"
BODY = b'{"event":"escalation.decided","delivery_id":"d-1","escalation":{"id":"e-1"}}'
T = 1_700_000_000


def independent_mac(secret: str, payload: bytes) -> str:
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def test_github_published_vector_for_the_raw_mac():
    # https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
    assert (
        webhooks.raw_mac("It's a Secret to Everybody", b"Hello, World!")
        == "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    )


def test_sign_is_hmac_sha256_over_timestamp_dot_raw_body():
    expected = independent_mac(SECRET, f"{T}.".encode() + BODY)
    assert webhooks.sign(SECRET, BODY, T) == f"t={T},v1={expected}"


def test_verify_accepts_a_fresh_signature():
    header = webhooks.sign(SECRET, BODY, T)
    assert webhooks.verify(SECRET, BODY, header, now=T + 10)
    assert webhooks.verify(SECRET, BODY.decode(), header, now=T)  # a str body is its UTF-8


def test_verify_with_the_real_clock():
    header = webhooks.sign(SECRET, BODY, int(time.time()))
    assert webhooks.verify(SECRET, BODY, header)


@pytest.mark.parametrize(
    "change",
    ["secret", "body", "timestamp"],
)
def test_verify_rejects_any_tampering(change):
    header = webhooks.sign(SECRET, BODY, T)
    secret, body = SECRET, BODY
    if change == "secret":
        secret = SECRET + "x"
    elif change == "body":
        body = BODY.replace(b"e-1", b"e-2")
    else:
        header = header.replace(f"t={T}", f"t={T + 1}")
    assert not webhooks.verify(secret, body, header, now=T)


def test_verify_rejects_replays_outside_the_tolerance():
    header = webhooks.sign(SECRET, BODY, T)
    assert webhooks.verify(SECRET, BODY, header, now=T + 300)
    assert not webhooks.verify(SECRET, BODY, header, now=T + 301)
    assert not webhooks.verify(SECRET, BODY, header, now=T - 301)  # from the future
    assert webhooks.verify(SECRET, BODY, header, now=T + 3600, tolerance=3600)


def test_any_v1_may_match_during_secret_rotation():
    old, new = "whsec_old", "whsec_new"
    both = f"t={T},v1={independent_mac(old, f'{T}.'.encode() + BODY)},v1={independent_mac(new, f'{T}.'.encode() + BODY)}"
    assert webhooks.verify(old, BODY, both, now=T)
    assert webhooks.verify(new, BODY, both, now=T)
    assert not webhooks.verify("whsec_other", BODY, both, now=T)
    # order and spacing do not matter
    mac = independent_mac(new, f"{T}.".encode() + BODY)
    assert webhooks.verify(new, BODY, f" v1=deadbeef , v1={mac} , t={T} ", now=T)


@pytest.mark.parametrize(
    "header",
    [
        "",
        None,
        b"t=1,v1=00",
        "garbage",
        "t=,v1=",
        f"t={T}",
        f"v1={'0' * 64}",
        f"t=abc,v1={'0' * 64}",
        f"t={T}.5,v1={'0' * 64}",
        f"t={T},v1=",
        f"t={T},v1=é{'0' * 63}",
        f"t={T},v0={'0' * 64}",
        "t=1e9,v1=00",
        "=,=,=",
        "t" * 10_000,
    ],
)
def test_malformed_headers_are_false_never_an_exception(header):
    assert webhooks.verify(SECRET, BODY, header, now=T) is False


# ---------------------------------------------------------------- the POST


def test_post_sends_the_signed_raw_body_and_headers():
    payload = {"event": "escalation.decided", "delivery_id": "d-1", "escalation": {"title": "Ünïcode ✓"}}
    with Receiver() as receiver:
        outcome = webhooks.post(receiver.url, payload, delivery_id="d-1", secret=SECRET)
        (request,) = receiver.wait_for(1)
    assert outcome.status_code == 200
    assert outcome.error == ""
    assert request.method == "POST"
    assert request.header("content-type") == "application/json"
    assert request.header("handoff-event") == "escalation.decided"
    assert request.header("handoff-delivery") == "d-1"
    assert webhooks.verify(SECRET, request.body, request.header("handoff-signature"))
    assert json.loads(request.body) == payload


def test_post_never_raises_and_recovers_after_a_dropped_connection():
    with Receiver(script=[CLOSE, 503, 200]) as receiver:
        dropped = webhooks.post(receiver.url, {"event": "x"}, delivery_id="d", secret=SECRET)
        unavailable = webhooks.post(receiver.url, {"event": "x"}, delivery_id="d", secret=SECRET)
        ok = webhooks.post(receiver.url, {"event": "x"}, delivery_id="d", secret=SECRET)
        assert len(receiver.wait_for(3)) == 3
    assert dropped.status_code is None
    assert dropped.error
    assert unavailable.status_code == 503
    assert ok.status_code == 200


def test_post_to_a_refused_port_is_an_error_outcome():
    outcome = webhooks.post(f"http://127.0.0.1:{free_port()}/x", {}, delivery_id="d", secret=SECRET)
    assert outcome.status_code is None
    assert "Connect" in outcome.error


def test_post_times_out(settings):
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.3
    with Receiver(script=[Reply(200, delay=5)]) as receiver:
        started = time.monotonic()
        outcome = webhooks.post(receiver.url, {}, delivery_id="d", secret=SECRET)
        elapsed = time.monotonic() - started
        receiver.release()
    assert outcome.status_code is None
    assert "timed out" in outcome.error
    assert elapsed < 3


@pytest.mark.parametrize("url", ["not a url", "ftp://127.0.0.1/x", "http://", ""])
def test_post_to_an_unusable_url_is_an_error_outcome(url):
    outcome = webhooks.post(url, {}, delivery_id="d", secret=SECRET)
    assert outcome.status_code is None
    assert outcome.error


def test_post_reads_only_an_excerpt_of_a_huge_answer():
    with Receiver(script=[Reply(200, body=b"x" * 5_000_000)]) as receiver:
        outcome = webhooks.post(receiver.url, {}, delivery_id="d", secret=SECRET)
    assert outcome.status_code == 200
    assert len(outcome.excerpt) <= 500
