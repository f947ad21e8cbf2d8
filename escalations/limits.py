"""How much people and agents may write, and what a refusal says: one place for the
schemas (the agent and reviewer APIs), the dashboard's forms and the services."""

import json
from typing import Any

# Free text a person reads: the uncertainty, an option's description, an instruction, a
# comment, a note.
TEXT_MAX_CHARS = 4000

# A JSON object in a package or a decision (an option's args, metadata), measured as
# compact UTF-8 JSON: the same object is the same size wherever it is checked.
JSON_OBJECT_MAX_BYTES = 16 * 1024
JSON_OBJECT_TOO_LARGE = "must be at most 16 KiB of JSON ({size} bytes given)"


def json_size(value: Any) -> int:
    """The size of `value` as compact UTF-8 JSON, the measure of JSON_OBJECT_MAX_BYTES."""
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def too_long(max_chars: int, given: int) -> str:
    return f"must be at most {max_chars} characters ({given} given)"
