"""examples/agent.py and examples/webhook_receiver.py, run as a user would, against the
real server: the agent escalates, a reviewer decides, the agent resumes and the receiver
gets the signed webhook."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid

import pytest

from conftest import SERVER_ROOT, free_port

pytestmark = pytest.mark.live
EXAMPLES = SERVER_ROOT / "examples"


def wait_for(pattern: str, path, timeout: float = 30) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, path.read_text())
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"{pattern!r} not in {path}:\n{path.read_text()}")


def test_example_agent_and_receiver(_server, reviewer, tmp_path):
    port = free_port()
    token, secret = _server.create_agent(
        f"example-{uuid.uuid4().hex[:6]}", f"http://127.0.0.1:{port}/handoff"
    )
    env = {
        **os.environ,
        "HANDOFF_URL": _server.base_url,
        "HANDOFF_TOKEN": token,
        "HANDOFF_SIGNING_SECRET": secret,
    }
    receiver_log, agent_log = tmp_path / "receiver.log", tmp_path / "agent.log"
    with receiver_log.open("w") as rlog, agent_log.open("w") as alog:
        receiver = subprocess.Popen(
            [sys.executable, str(EXAMPLES / "webhook_receiver.py"), "--port", str(port)],
            env=env,
            stdout=rlog,
            stderr=subprocess.STDOUT,
        )
        agent = subprocess.Popen(
            [sys.executable, str(EXAMPLES / "agent.py"), "--timeout", "60"],
            env=env,
            stdout=alog,
            stderr=subprocess.STDOUT,
        )
        try:
            url = wait_for(r"(http://\S+/escalations/([0-9a-f-]{36}))", agent_log)
            reviewer.decide(
                url.group(2),
                option="delete",
                args={"branches": ["spike/graphql"], "remote": "origin"},
            )
            assert agent.wait(30) == 0, agent_log.read_text()
            # JSON objects are unordered (PostgreSQL's jsonb reorders keys).
            decided = r"option delete args=\{[^\n]*\"branches\": \[\"spike/graphql\"\]"
            wait_for(decided, receiver_log)
        finally:
            for process in (agent, receiver):
                if process.poll() is None:
                    process.terminate()
                    process.wait(10)
    output = agent_log.read_text()
    assert "git push origin --delete spike/graphql" in output
    assert "feature/dark-mode" not in output.split("decision by")[1].split("Deleted")[0]
    assert output.rstrip().endswith("[agent] done")
