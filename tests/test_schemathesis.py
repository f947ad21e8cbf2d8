"""schemathesis against the served OpenAPI document of a real server: every check, agent and
reviewer tokens, a few minutes. No 5xx, and every answer as the document says (status,
content type, headers, body). The configuration is tests/schemathesis/schemathesis.toml."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from reviews.services import reviewer_token_issue

pytestmark = pytest.mark.django_db(transaction=True)

CONFIG = Path(__file__).parent / "schemathesis" / "schemathesis.toml"
EXAMPLES_PER_OPERATION = 50
MAX_SECONDS = 180


def test_the_api_answers_every_generated_case_as_its_document_says(
    live_server_asgi, agent_with_token, reviewer, settings, capsys
):
    # Long-polls answer within a second here (a fuzzer asks for wait=60 often), and the rate
    # limits are far above what the run sends: both are tested on their own.
    settings.LONG_POLL_MAX_SECONDS = 1
    settings.RATE_LIMIT_AGENT = settings.RATE_LIMIT_REVIEWER = "1000000/minute"
    settings.RATE_LIMIT_ADDRESS = "1000000/minute"
    env = dict(
        os.environ,
        HANDOFF_AGENT_TOKEN=agent_with_token[1],
        HANDOFF_REVIEWER_TOKEN=reviewer_token_issue(user=reviewer),
        NO_COLOR="1",
        COLUMNS="120",
    )
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("st")), "--config-file", str(CONFIG), "run",
            f"{live_server_asgi}/api/v1/openapi.json",
            "--checks", "all",
            "--max-examples", str(EXAMPLES_PER_OPERATION),
            "--max-time", str(MAX_SECONDS),
            "--request-timeout", "10",
            "--seed", os.environ.get("SCHEMATHESIS_SEED", "20261204"),
        ],
        env=env, capture_output=True, text=True, timeout=MAX_SECONDS + 180,
    )
    output = result.stdout + result.stderr
    cases = re.search(r"Test cases:\s*\n\s*(.+)", output)
    summary = cases.group(1).strip() if cases else "no summary"
    with capsys.disabled():
        print(f"\nschemathesis: {summary}")
    assert result.returncode == 0, output[-12000:]
    generated = int(re.match(r"(\d+) generated", summary).group(1))
    assert generated >= 500, summary
