"""The agent API's field types: pydantic types that carry the wire's rules (API.md), for the
schemas (escalations.schemas, escalations.review_schemas)."""

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field, StrictInt, StrictStr
from pydantic_core import PydanticCustomError

from .limits import JSON_OBJECT_MAX_BYTES, JSON_OBJECT_TOO_LARGE, TEXT_MAX_CHARS, json_size

MAX_INT = 2_147_483_647  # fits the database's integer columns

# These say nothing about what, specifically, the agent is unsure of.
GENERIC_WORDS = frozenset(
    ["i", "im", "i'm", "am", "is", "it", "its", "it's", "me", "my", "we", "this", "that", "something", "somehow", "stuck", "help", "need", "needs", "needed", "please", "pls", "error", "errors", "an", "a", "the", "went", "wrong", "go", "going", "problem", "problems", "issue", "issues", "not", "working", "work", "works", "doesnt", "doesn't", "dont", "don't", "know", "unsure", "sure", "what", "do", "to", "and", "with", "failed", "failure", "fail", "fails", "broken", "happened", "occurred", "there", "here", "again", "really", "so", "very", "some", "can", "can't", "cant", "cannot", "get", "got", "any", "anything", "idea", "ideas", "unclear", "confused", "trouble", "having", "have", "has", "hit", "ran", "into", "run"]
)


def _time_text(value: Any) -> Any:
    """A time is a string on the wire (RFC 3339): pydantic would also read a number as a Unix
    time, which the contract and its schema do not allow (schemathesis found `"at": 0`
    accepted as 1970)."""
    if isinstance(value, str | datetime):
        return value
    raise PydanticCustomError("datetime_type", "must be an ISO 8601 time with a zone")


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise PydanticCustomError("datetime_range", "is out of range") from None


def _json_object(value: dict[str, Any]) -> dict[str, Any]:
    size = json_size(value)
    if size > JSON_OBJECT_MAX_BYTES:
        raise PydanticCustomError("object_too_large", JSON_OBJECT_TOO_LARGE, {"size": size})
    return value


def not_generic(value: str) -> str:
    words = re.findall(r"[a-z']+|\d+", value.lower())
    meaningful = [w for w in words if w.strip("'") not in GENERIC_WORDS]
    if len(meaningful) < 3:
        raise PydanticCustomError(
            "generic_uncertainty",
            "is too generic: say what specifically you are unsure of "
            "(the choice, the missing fact, the risk), not that you are stuck",
        )
    return value


UtcTime = Annotated[AwareDatetime, BeforeValidator(_time_text), AfterValidator(_to_utc)]
JsonObject = Annotated[dict[str, Any], AfterValidator(_json_object)]


# Field types as aliases (a call in an annotation is not a type to mypy): a string of at most
# N characters is Annotated[StrictStr, Field(min_length=..., max_length=N)].
Line = Annotated[StrictStr, Field(min_length=1, max_length=200)]  # a title, a label, a name, an id
OptionKey = Annotated[StrictStr, Field(min_length=1, max_length=64)]
Prose = Annotated[StrictStr, Field(min_length=0, max_length=TEXT_MAX_CHARS)]  # a description, an instruction
Count = Annotated[StrictInt, Field(ge=0, le=MAX_INT)]
SmallCount = Annotated[StrictInt, Field(ge=0, le=1_000_000)]  # attempts, blocked tasks
