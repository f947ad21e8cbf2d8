"""Decision receipts (API.md, "The decision"): `<payload>.<signature>`, where `payload` is the
unpadded base64url of a JSON object {escalation, run_id, kind, option, args_sha256,
decided_by, decided_at, valid_until} and `signature` the hex HMAC-SHA256 of `payload` under
the agent's signing secret. An agent's executor checks one before acting, so that what runs
is exactly what was approved. Pure: no ORM, no clock.

`args_sha256` is the hex SHA-256 of the args as canonical JSON, one form for every language
(docs/receipts.md): object keys sorted by UTF-16 code units, no spaces, non-ASCII characters
as themselves (UTF-8), and numbers written as ECMAScript writes them (JSON.stringify): an
integral float is an integer (1.0 is `1`), other numbers the shortest text that reads back
the same, with an exponent only below 1e-6 or from 1e21 (`1e-7`, `1e+21`). So the server
(Python, which writes 1.0), the TypeScript client (JSON.stringify) and the Python client
hash the same args to the same digest, however a JSON parser on the way typed the numbers.
"""

import base64
import hashlib
import hmac
import json
import math
from decimal import Decimal
from typing import Any


def js_number(value: float | int) -> str:
    """`value` as ECMAScript's Number::toString writes it (what JSON.stringify writes)."""
    if isinstance(value, bool):
        raise TypeError("a bool is not a number here")
    if isinstance(value, int):
        value_f = float(value)
        if abs(value) < 2**53:
            return str(value)
    else:
        value_f = value
    if not math.isfinite(value_f):
        raise ValueError("NaN and infinities are not JSON")
    if value_f == 0:
        return "0"
    # The shortest round-trip digits (Python's repr finds the same ones JavaScript does):
    # value = 0.d1d2...dk * 10**n.
    _, digit_tuple, exponent10 = Decimal(repr(abs(value_f))).as_tuple()
    digits = "".join(map(str, digit_tuple)).lstrip("0")
    trimmed = digits.rstrip("0")
    exponent10 = int(exponent10) + len(digits) - len(trimmed)
    digits = trimmed
    k = len(digits)
    n = k + exponent10
    sign = "-" if value_f < 0 else ""
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * (-n) + digits
    else:
        exponent = n - 1
        mark = "+" if exponent >= 0 else "-"
        text = digits[0] + ("." + digits[1:] if k > 1 else "") + "e" + mark + str(abs(exponent))
    return sign + text


def canonical_json(value: Any) -> str:
    """The canonical JSON text of `value` (see the module's docstring)."""
    if value is None or isinstance(value, bool | str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int | float):
        return js_number(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(canonical_json(item) for item in value) + "]"
    if isinstance(value, dict):
        keys = sorted(value, key=lambda key: key.encode("utf-16-be"))
        return "{" + ",".join(
            json.dumps(key, ensure_ascii=False) + ":" + canonical_json(value[key]) for key in keys
        ) + "}"
    raise TypeError(f"{type(value).__name__} is not JSON")


def args_sha256(args: Any) -> str:
    """Hex SHA-256 of `args` as canonical JSON (a receipt's `args_sha256`)."""
    return hashlib.sha256(canonical_json(args).encode()).hexdigest()


def sign(payload: dict[str, Any], secret: str) -> str:
    """The receipt of `payload`: its JSON, base64url without padding, a dot, the hex MAC."""
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    encoded = base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()
    mac = hmac.new(secret.encode(), encoded.encode(), hashlib.sha256).hexdigest()
    return f"{encoded}.{mac}"


def payload_for(
    *, escalation_id: str, run_id: str, kind: str, option: str | None, args: Any,
    decided_by: dict[str, str], decided_at: str, valid_until: str | None,
) -> dict[str, Any]:
    """The receipt's payload, in API.md's order."""
    return {
        "escalation": escalation_id,
        "run_id": run_id,
        "kind": kind,
        "option": option,
        "args_sha256": args_sha256(args),
        "decided_by": decided_by,
        "decided_at": decided_at,
        "valid_until": valid_until,
    }
