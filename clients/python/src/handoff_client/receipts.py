"""Decision receipts (API.md, "The decision"): check one before acting, so that what runs is
exactly what was approved, and not after the decision's `valid_until`.

A receipt is `<payload>.<signature>`: `payload` the unpadded base64url of a JSON object
{escalation, run_id, kind, option, args_sha256, decided_by, decided_at, valid_until} and
`signature` the hex HMAC-SHA256 of `payload` under the agent's signing secret.
`args_sha256` hashes the args as canonical JSON: keys sorted, no spaces, UTF-8, numbers as
JavaScript writes them (1.0 is `1`), the same form the server and the TypeScript client use.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import time
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .errors import DecisionExpired, InvalidReceipt

if TYPE_CHECKING:
    from .models import Escalation


def _number(value: float | int) -> str:
    """`value` as JSON.stringify writes it (ECMAScript Number::toString)."""
    if isinstance(value, int) and abs(value) < 2**53:
        return str(value)
    value = float(value)
    if not math.isfinite(value):
        raise ValueError("NaN and infinities are not JSON")
    if value == 0:
        return "0"
    _, digit_tuple, exponent = Decimal(repr(abs(value))).as_tuple()
    digits = "".join(map(str, digit_tuple)).lstrip("0")
    trimmed = digits.rstrip("0")
    exponent = int(exponent) + len(digits) - len(trimmed)
    digits, k = trimmed, len(trimmed)
    n = k + exponent
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        sign = "+" if e >= 0 else "-"
        text = digits[0] + ("." + digits[1:] if k > 1 else "") + f"e{sign}{abs(e)}"
    return ("-" if value < 0 else "") + text


def canonical_json(value: Any) -> str:
    """JSON with keys sorted (by UTF-16 code units, as JavaScript sorts), no spaces,
    non-ASCII as itself, numbers as JavaScript writes them."""
    if value is None or isinstance(value, bool | str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int | float):
        return _number(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(canonical_json(item) for item in value) + "]"
    if isinstance(value, dict):
        keys = sorted(value, key=lambda key: key.encode("utf-16-be"))
        items = (f"{json.dumps(k, ensure_ascii=False)}:{canonical_json(value[k])}" for k in keys)
        return "{" + ",".join(items) + "}"
    raise TypeError(f"{type(value).__name__} is not JSON")


def args_sha256(args: Any) -> str:
    """Hex SHA-256 of `args` as canonical JSON: a receipt's `args_sha256`."""
    return hashlib.sha256(canonical_json(args).encode()).hexdigest()


_UNSET: Any = object()


def verify_receipt(
    receipt: str,
    secret: str | bytes,
    *,
    args: Any = _UNSET,
    escalation: Escalation | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """Check a receipt and return its payload. Raises InvalidReceipt when it is malformed,
    its signature does not match (forged or altered), it does not match `args` (the args
    about to run) or `escalation`'s decision; DecisionExpired (an InvalidReceipt) once its
    `valid_until` has passed (`now`: unix seconds, for tests)."""
    parts = receipt.split(".") if isinstance(receipt, str) else []
    if len(parts) != 2 or not parts[0] or len(parts[1]) != 64:
        raise InvalidReceipt("a receipt is <base64url payload>.<hex signature>")
    encoded, signature = parts
    key = secret.encode() if isinstance(secret, str) else secret
    expected = hmac.new(key, encoded.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature.lower()):
        raise InvalidReceipt("the receipt's signature does not match (forged or altered)")
    try:
        payload = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    except (ValueError, binascii.Error):
        raise InvalidReceipt("the receipt's payload is not JSON") from None
    if not isinstance(payload, dict):
        raise InvalidReceipt("the receipt's payload is not a JSON object")
    until = payload.get("valid_until")
    if until:
        try:
            deadline = datetime.fromisoformat(str(until).replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise InvalidReceipt("the receipt's valid_until is not a time") from None
        if (time.time() if now is None else now) > deadline:
            raise DecisionExpired(f"the decision expired at {until}: do not act on it")
    if args is not _UNSET and args_sha256(args) != payload.get("args_sha256"):
        raise InvalidReceipt("the args to run are not the approved args")
    if escalation is not None:
        decision = escalation.decision
        if (
            decision is None
            or payload.get("escalation") != escalation.id
            or payload.get("run_id") != escalation.run_id
            or payload.get("kind") != decision.kind
            or payload.get("option") != decision.option
            or args_sha256(decision.args) != payload.get("args_sha256")
        ):
            raise InvalidReceipt("the receipt is not for this escalation's decision")
    return payload


def check_decided(escalation: Escalation, secret: str | bytes | None) -> Escalation:
    """What the client runs on every escalation it hands out: an expired one raises
    DecisionExpired; a decided one, when the client has the agent's signing secret, must
    carry a receipt that verifies (InvalidReceipt, DecisionExpired past valid_until)."""
    if escalation.status == "expired":
        raise DecisionExpired(
            "the decision expired before it was acknowledged: do not act on it; escalate again"
        )
    if secret is None or escalation.decision is None or escalation.status != "decided":
        return escalation
    receipt = escalation.decision.receipt
    if not receipt:
        raise InvalidReceipt("the decision carries no receipt (a server older than this client)")
    verify_receipt(receipt, secret, escalation=escalation)
    return escalation
