"""verify_webhook against a vector computed independently (openssl), and its refusals."""

import pytest

from handoff_client import InvalidSignature, compute_signature, sign_webhook, verify_webhook

SECRET = "whsec_test_secret"
T = 1700000000
BODY = b'{"event":"escalation.decided","delivery_id":"3f1c2a9e-0000-4000-8000-000000000001"}'
# printf '%s' "1700000000.$BODY" | openssl dgst -sha256 -hmac whsec_test_secret
KNOWN = "a43f6616567691beeb9269255ebb04f460a592381a778d609e33a463bdb079b8"
# the same with the secret "other_secret"
KNOWN_OTHER = "1021616b99cc5ba63d01ec367262b0ced15b7c71eeda764969d440cfad3cae70"


def test_known_vector():
    assert compute_signature(SECRET, BODY, T) == KNOWN
    assert compute_signature("other_secret", BODY.decode(), T) == KNOWN_OTHER
    assert sign_webhook(SECRET, BODY, T) == f"t={T},v1={KNOWN}"


def test_valid_signature_returns_the_event():
    headers = {"Handoff-Signature": f"t={T},v1={KNOWN}"}
    event = verify_webhook(headers, BODY, SECRET, now=T + 10)
    assert event["delivery_id"] == "3f1c2a9e-0000-4000-8000-000000000001"


def test_header_name_is_case_insensitive_and_body_may_be_str():
    headers = {"handoff-signature": f"t={T},v1={KNOWN}"}
    assert verify_webhook(headers, BODY.decode(), SECRET, now=T)["event"] == "escalation.decided"


def test_any_v1_may_match_during_rotation():
    header = f"t={T},v1={KNOWN_OTHER},v1={KNOWN}"
    assert verify_webhook({"Handoff-Signature": header}, BODY, SECRET, now=T)
    assert verify_webhook({"Handoff-Signature": header}, BODY, "other_secret", now=T)


@pytest.mark.parametrize("skew", [301, -301, 10_000])
def test_timestamps_outside_the_tolerance_are_replays(skew):
    with pytest.raises(InvalidSignature, match="tolerance"):
        verify_webhook({"Handoff-Signature": f"t={T},v1={KNOWN}"}, BODY, SECRET, now=T + skew)


def test_tolerance_is_configurable():
    header = {"Handoff-Signature": f"t={T},v1={KNOWN}"}
    assert verify_webhook(header, BODY, SECRET, tolerance=3600, now=T + 3000)
    with pytest.raises(InvalidSignature):
        verify_webhook(header, BODY, SECRET, tolerance=5, now=T + 6)


@pytest.mark.parametrize(
    ("header", "body", "secret"),
    [
        (f"t={T},v1={KNOWN}", BODY + b" ", SECRET),  # body changed (or re-serialized)
        (f"t={T},v1={KNOWN}", BODY, "wrong"),  # wrong secret
        (f"t={T + 1},v1={KNOWN}", BODY, SECRET),  # timestamp changed
        (f"t={T},v0={KNOWN}", BODY, SECRET),  # no v1
        (f"v1={KNOWN}", BODY, SECRET),  # no t
        (f"t=soon,v1={KNOWN}", BODY, SECRET),
        ("garbage", BODY, SECRET),
        (f"t={T},v1=é{KNOWN[1:]}", BODY, SECRET),  # non-ASCII must not crash compare_digest
    ],
)
def test_refusals(header, body, secret):
    with pytest.raises(InvalidSignature):
        verify_webhook({"Handoff-Signature": header}, body, secret, now=T)


def test_missing_header():
    with pytest.raises(InvalidSignature, match="missing"):
        verify_webhook({}, BODY, SECRET, now=T)


def test_fresh_signature_with_the_real_clock():
    header = sign_webhook(SECRET, BODY)
    assert verify_webhook({"Handoff-Signature": header}, BODY, SECRET)
