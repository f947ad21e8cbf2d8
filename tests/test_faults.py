"""Faults survived, in the production shape (issue 9): real subprocesses (uvicorn, a Celery
worker and beat) on the test database, a real HTTP receiver, and Redis that goes away.

- The channel layer waits quietly on an idle channel: no timeout after 5 s (redis-py 8 reads
  with a 5 s socket timeout by default, and channels-redis blocks 5 s on its read).
- An idle websocket under uvicorn stays open a minute, and presence does not flap.
- Redis stopped for 20 s while the worker holds countdown retries and reviewers decide:
  no 5xx, the worker stays up, every decision made in the outage reaches the agent within
  30 s of Redis returning, sockets are refused cleanly meanwhile, reconnect and catch up.

Needs PostgreSQL and Redis (DATABASE_URL, REDIS_URL) and redis-server: skipped locally
without them, a failure in CI. About three minutes in all.
"""

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta

import httpx
import pytest
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.test import Client
from django.utils import timezone
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from escalations import services
from escalations.models import Delivery
from reviews.services import reviewer_token_issue
from tests.conftest import free_port, make_package, make_user, need
from tests.processes import (
    Process,
    RedisServer,
    celery,
    children_of,
    command_line,
    production_env,
    uvicorn,
    wait_http,
    workers_answering,
)
from tests.receiver import Receiver

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

# channels-redis's blocking read on an idle channel lasts this long (RedisChannelLayer.brpop_timeout).
LAYER_BLOCKING_READ_SECONDS = 5


@pytest.fixture(autouse=True)
def _services():
    need(bool(os.environ.get("REDIS_URL")), "Redis (REDIS_URL)")
    need(connection.vendor == "postgresql", "PostgreSQL (DATABASE_URL)")


# ---------------------------------------------------------------- helpers


def session_of(user) -> str:
    """A signed-in session for `user` (its cookie value), as a browser would hold."""
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


class LiveSocket:
    """A page's websocket (what live.js holds): the session cookie, a same-origin Origin,
    and a thread recording every message and the close, each with its time."""

    def __init__(self, base: str, path: str, session: str):
        self._context = contextlib.ExitStack()
        self.ws = self._context.enter_context(
            connect(
                base.replace("http", "ws", 1) + path,
                additional_headers={
                    "Cookie": f"{settings.SESSION_COOKIE_NAME}={session}",
                    "Origin": base,
                },
                open_timeout=10,
                close_timeout=2,
                ping_interval=None,  # like a browser: it answers the server's pings, sends none
            )
        )
        self.opened = time.monotonic()
        self.messages: list[tuple[float, dict]] = []
        self.closed: tuple[float, int | None] | None = None  # (when, close code)
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for text in self.ws:
                with self._changed:
                    self.messages.append((time.monotonic(), json.loads(text)))
                    self._changed.notify_all()
        except ConnectionClosed:
            pass
        finally:
            with self._changed:
                self.closed = (time.monotonic(), self.ws.close_code)
                self._changed.notify_all()

    def send(self, text: str) -> None:
        self.ws.send(text)

    def wait_for(self, predicate, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for _, message in self.messages:
                    if predicate(message):
                        return message
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    raise AssertionError(
                        f"no {what} within {timeout:g} s: {self.messages}, closed {self.closed}"
                    )
                self._changed.wait(left)

    def wait_closed(self, timeout: float) -> tuple[float, int | None] | None:
        with self._changed:
            self._changed.wait_for(lambda: self.closed is not None, timeout)
            return self.closed

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._context.close()


def is_notice(escalation_id: str, kind: str):
    return lambda message: message.get("id") == escalation_id and message.get("kind") == kind


def agent_named(name: str, url: str) -> str:
    """An agent in the default domain resuming at `url`; its API token."""
    from tests.conftest import ensure_default_policies

    ensure_default_policies()
    return services.agent_create(name=name, domain="default", resume_url=url).token


class Api:
    """HTTP to the served app; every answer is kept, so a test can say none was a 5xx."""

    def __init__(self, base: str):
        self.http = httpx.Client(base_url=base, timeout=20)
        self.answers: list[tuple[str, int, float]] = []

    def call(self, method: str, path: str, token: str, body=None) -> httpx.Response:
        started = time.monotonic()
        response = self.http.request(
            method, path, json=body, headers={"Authorization": f"Bearer {token}"}
        )
        self.answers.append((f"{method} {path}", response.status_code, time.monotonic() - started))
        assert response.status_code < 500, (
            method,
            path,
            response.status_code,
            response.text[:2000],
        )
        return response

    def escalate(self, token: str, run_id: str) -> str:
        response = self.call("POST", "/api/v1/escalations", token, make_package(run_id=run_id))
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def decide(self, token: str, escalation_id: str) -> httpx.Response:
        response = self.call(
            "POST", f"/api/v1/review/escalations/{escalation_id}/decision", token,
            {"kind": "option", "option": "shim"},
        )  # fmt: skip
        assert response.status_code == 201, response.text
        return response


def wait_until(condition, *, timeout: float, what: str, logs=()) -> float:
    """Poll `condition` until true; the seconds it took. AssertionError (with the logs of
    `logs`, processes.Process objects) after `timeout`."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            shown = "".join(f"\n--- {p.name} log:\n{p.log()}" for p in logs)
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}{shown}")
        time.sleep(0.1)
    return time.monotonic() - started


# ---------------------------------------------------------------- quiet Redis


async def test_the_channel_layer_waits_quietly_on_an_idle_channel():
    """A websocket consumer's read on the layer blocks until a message comes, however long;
    a socket timeout at or under channels-redis's blocking read drops every idle socket."""
    layer = get_channel_layer()
    channel = await layer.new_channel()
    started = time.monotonic()
    with pytest.raises(TimeoutError):  # ours, below; not the layer's
        await asyncio.wait_for(layer.receive(channel), timeout=LAYER_BLOCKING_READ_SECONDS + 3)
    assert time.monotonic() - started >= LAYER_BLOCKING_READ_SECONDS + 3 - 0.1

    # And it still delivers on that channel afterwards.
    await layer.send(channel, {"type": "hello"})
    assert await asyncio.wait_for(layer.receive(channel), timeout=3) == {"type": "hello"}


# ---------------------------------------------------------------- an idle socket


IDLE_SECONDS = 60
PRESENCE_PING_SECONDS = 25  # what escalation.js sends ("ping") to say it is still there


def test_an_idle_socket_under_uvicorn_stays_open_a_minute_and_presence_holds(tmp_path, api):
    """Two reviewers on one escalation's page, nothing happening for a minute, under uvicorn
    on the Redis channel layer: neither socket closes, and the second sees the first present
    throughout (its "here" every ping, never a leave or a second join). Then a decision still
    reaches both."""
    escalation_id = str(services_escalation(api))
    alice, bob = make_user("alice", "reviewer"), make_user("bob", "reviewer")
    env = production_env(
        redis_url=os.environ["REDIS_URL"],
        var_dir=tmp_path,
        CHANNELS_PREFIX=f"idle-{uuid.uuid4().hex[:8]}",
    )
    web, base = uvicorn(env, tmp_path)
    path = f"/ws/escalations/{escalation_id}/"
    sockets = []
    try:
        first = LiveSocket(base, path, session_of(alice))
        sockets.append(first)
        second = LiveSocket(base, path, session_of(bob))
        sockets.append(second)
        # Bob hears Alice (her answer to his join), Alice hears Bob join.
        seen = second.wait_for(lambda m: m.get("user") == "alice", 5, "alice's presence")
        first.wait_for(
            lambda m: m.get("user") == "bob" and m["presence"] == "join", 5, "bob's join"
        )
        alice_id = seen["id"]

        started = time.monotonic()
        next_ping = started + PRESENCE_PING_SECONDS
        while time.monotonic() - started < IDLE_SECONDS:
            for socket in sockets:
                assert socket.closed is None, (
                    f"a socket closed after {socket.closed[0] - socket.opened:.1f} s idle "
                    f"(code {socket.closed[1]})\n{web.log()}"
                )
            if time.monotonic() >= next_ping:
                first.send("ping")
                second.send("ping")
                next_ping += PRESENCE_PING_SECONDS
            time.sleep(0.2)
        lifetime = time.monotonic() - min(socket.opened for socket in sockets)

        # Presence as the second viewer saw the first: present throughout, one socket id.
        about_alice = [(at, m) for at, m in second.messages if m.get("user") == "alice"]
        assert {m["presence"] for _, m in about_alice} == {"here"}, about_alice
        assert {m["id"] for _, m in about_alice} == {alice_id}, about_alice
        times = [second.opened] + [at for at, _ in about_alice] + [time.monotonic()]
        longest_silence = max(b - a for a, b in itertools.pairwise(times))
        assert longest_silence < PRESENCE_PING_SECONDS + 10, about_alice

        # Still live: a decision reaches both pages.
        reviewer = Api(base)
        reviewer.decide(reviewer_token_issue(user=alice), escalation_id)
        for socket in sockets:
            socket.wait_for(is_notice(escalation_id, "decided"), 5, "the decision notice")
        first.close()
        second.wait_for(lambda m: m.get("presence") == "leave", 5, "alice leaving")
        print(
            f"\nidle sockets open {lifetime:.1f} s with no close; the second viewer heard the "
            f"first every {longest_silence:.1f} s at most"
        )
    finally:
        for socket in sockets:
            socket.close()
        web.stop()


def services_escalation(api) -> str:
    """An open escalation (posted through the agent API in this process); its id."""
    response = api.escalate(make_package(run_id=f"run-{uuid.uuid4().hex[:6]}"))
    assert response.status_code == 201, response.content
    return response.json()["id"]


# ---------------------------------------------------------------- Redis goes away


OUTAGE_SECONDS = 20
DELIVERED_WITHIN_SECONDS = 30  # of Redis returning, for every decision made in the outage
BACKOFF_SECONDS = "8"  # a failing delivery waits 4-8 s between attempts: a held countdown


class Reconnecting:
    """A page's socket that reconnects after a close, as live.js does (here every 0.5 s);
    every refused handshake is recorded with its status."""

    def __init__(self, base: str, path: str, session: str):
        self.base, self.path, self.session = base, path, session
        self.socket = LiveSocket(base, path, session)
        self.first = self.socket
        self.refusals: list[tuple[int, bytes]] = []
        self.other_errors: list[str] = []
        self.reconnected_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.socket.closed is None:
                self._stop.wait(0.1)
                continue
            try:
                self.socket = LiveSocket(self.base, self.path, self.session)
                self.reconnected_at = self.socket.opened
            except InvalidStatus as refused:
                self.refusals.append((refused.response.status_code, bytes(refused.response.body)))
            except (OSError, TimeoutError) as exc:
                self.other_errors.append(f"{type(exc).__name__}: {exc}")
            self._stop.wait(0.5)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.socket.close()
        self.first.close()


def test_a_redis_outage_loses_no_decision_and_answers_no_5xx(tmp_path):
    """Redis stopped for 20 s under web (uvicorn), a Celery worker and beat, while the worker
    holds countdown retries of failing deliveries and a reviewer keeps deciding through the
    reviewer API. No request answers a 5xx; the worker stays up; every decision made in the
    outage reaches the agent within 30 s of Redis returning, and so do the held retries; a
    socket opened in the outage is refused with a 503 (not a 500); the open page's socket
    is closed with 1013, reconnects once Redis is back, and catches up."""
    need(bool(shutil.which("redis-server")), "redis-server")
    broker = RedisServer(tmp_path)
    broker.start()
    env = production_env(
        redis_url=broker.url,
        var_dir=tmp_path,
        WEBHOOK_TIMEOUT_SECONDS="3",
        WEBHOOK_BACKOFF_BASE_SECONDS=BACKOFF_SECONDS,
        WEBHOOK_BACKOFF_MAX_SECONDS=BACKOFF_SECONDS,
    )
    processes, sockets = [], []
    with Receiver() as agent_endpoint, Receiver(default=500) as failing_endpoint:
        try:
            web, base = uvicorn(env, tmp_path)
            processes.append(web)
            worker, beat = celery("worker", env, tmp_path), celery("beat", env, tmp_path)
            processes += [worker, beat]
            steady = agent_named("steady", agent_endpoint.url)
            flaky = agent_named("flaky", failing_endpoint.url)
            alice = make_user("alice", "reviewer")
            reviewer, session = reviewer_token_issue(user=alice), session_of(alice)
            api = Api(base)
            steady_ids = [api.escalate(steady, f"run-{n}") for n in range(9)]
            flaky_ids = [api.escalate(flaky, f"flaky-{n}") for n in range(2)]

            # Warm: a decision goes through web, worker and the agent's endpoint.
            page = Reconnecting(base, "/ws/queue/", session)
            sockets.append(page)
            api.decide(reviewer, steady_ids[0])
            agent_endpoint.wait_for(1, timeout=30)
            page.first.wait_for(is_notice(steady_ids[0], "decided"), 5, "the first decision")

            # Failing deliveries, retried on the worker's countdowns (held, unacknowledged).
            for escalation_id in flaky_ids:
                api.decide(reviewer, escalation_id)
            failing_endpoint.wait_for(2, timeout=30)
            held = wait_until(
                lambda: (
                    broker.client().hlen("unacked") >= 1
                    and Delivery.objects.filter(
                        escalation__agent__name="flaky",
                        status=Delivery.Status.RETRYING,
                        next_attempt_at__gt=timezone.now() + timedelta(seconds=2),
                    ).exists()
                ),
                timeout=20,
                what="a countdown retry held by the worker",
                logs=processes,
            )
            assert held >= 0
            worker_pid = worker.pid

            # ---- the outage
            broker.stop()
            down_at = time.monotonic()
            in_outage = steady_ids[1:7]
            refused = None
            for n, escalation_id in enumerate(in_outage):
                api.decide(reviewer, escalation_id)
                api.call("GET", "/api/v1/review/queue", reviewer)
                api.call("GET", f"/api/v1/escalations/{escalation_id}", steady)
                if n == 1:  # a page opened now is turned away cleanly
                    with pytest.raises(InvalidStatus) as refused:
                        LiveSocket(base, f"/ws/escalations/{steady_ids[8]}/", session)
                assert worker.alive(), f"the worker exited in the outage:\n{worker.log()}"
                time.sleep(
                    max(0.0, down_at + (n + 1) * OUTAGE_SECONDS / len(in_outage) - time.monotonic())
                )
            closed = page.first.wait_closed(timeout=5)
            logs = "".join(p.log() for p in processes)
            assert worker.alive(), logs
            assert beat.alive(), logs
            assert web.alive(), logs

            broker.start()
            up_at = time.monotonic()
            failing_endpoint.answer_from_now_on(200)

            # ---- every decision of the outage reaches the agent, and the held retries too
            def delivered(ids) -> dict[str, float]:
                return {
                    r.json()["escalation"]["id"]: r.at
                    for r in agent_endpoint.requests + failing_endpoint.requests
                    if r.answered == 200 and r.json()["escalation"]["id"] in ids
                }

            wait_until(
                lambda: len(delivered(in_outage)) == len(in_outage),
                timeout=DELIVERED_WITHIN_SECONDS,
                what=f"the {len(in_outage)} decisions of the outage to reach the agent",
                logs=processes,
            )
            last_delivery = max(delivered(in_outage).values()) - up_at
            wait_until(
                lambda: len(delivered(flaky_ids)) == len(flaky_ids),
                timeout=DELIVERED_WITHIN_SECONDS,
                what="the retries held in the outage",
                logs=processes,
            )
            retries_done = max(delivered(flaky_ids).values()) - up_at
            assert worker.alive(), worker.log()
            assert worker.pid == worker_pid, worker.log()

            # ---- sockets: refused cleanly in the outage, closed with 1013, back and caught up
            status, body = refused.value.response.status_code, bytes(refused.value.response.body)
            assert status == 503, (status, body)
            assert b"Traceback" not in body, (status, body)
            assert closed is not None, closed
            assert closed[1] == 1013, closed
            assert all(status == 503 for status, _ in page.refusals), page.refusals
            wait_until(
                lambda: page.reconnected_at is not None, timeout=10, what="the page to reconnect"
            )
            reconnect = max(0.0, page.reconnected_at - up_at)
            open_ids = {
                e["id"] for e in api.call("GET", "/api/v1/review/queue", reviewer).json()["items"]
            }
            assert open_ids.isdisjoint(in_outage)  # what the page re-fetches on reconnecting
            api.decide(reviewer, steady_ids[7])
            page.socket.wait_for(
                is_notice(steady_ids[7], "decided"), 5, "a decision after the outage"
            )
        finally:
            for socket in sockets:
                socket.stop()
            for process in processes:
                process.stop()
            broker.stop()

    assert max(status for _, status, _ in api.answers) < 500
    slowest = max(took for _, _, took in api.answers)
    print(
        f"\nRedis down {up_at - down_at:.1f} s: {len(api.answers)} requests, none a 5xx (slowest "
        f"{slowest * 1000:.0f} ms); last decision of the outage delivered {last_delivery:.1f} s "
        f"after Redis returned, held retries {retries_done:.1f} s; page socket closed with "
        f"{closed[1]}, {len(page.refusals)} reconnects refused with 503, back {reconnect:.1f} s "
        f"after Redis"
    )


# ---------------------------------------------------------------- supervision


def test_make_run_restarts_a_killed_worker_and_beat_and_says_so(tmp_path):
    """`make run`'s runner (scripts/run.py) in the three-process shape: a worker killed with
    SIGKILL comes back and answers again, so does beat; the runner says so, and web never
    stopped."""
    need(bool(shutil.which("redis-server")), "redis-server")
    broker = RedisServer(tmp_path)
    broker.start()
    port = free_port()
    runner = Process(
        "run",
        [
            sys.executable,
            "scripts/run.py",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--grace",
            "5",
        ],
        production_env(redis_url=broker.url, var_dir=tmp_path),
        tmp_path,
    )
    base = f"http://127.0.0.1:{port}"

    def child(role: str) -> int | None:
        found = [pid for pid in children_of(runner.pid) if f" {role} " in command_line(pid) + " "]
        return found[0] if found else None

    try:
        wait_http(base + "/healthz", runner)
        wait_until(
            lambda: workers_answering(broker.url), timeout=30, what="the worker", logs=[runner]
        )
        web = child("uvicorn")
        for role in ("worker", "beat"):
            victim = child(role)
            assert victim, runner.log()
            os.kill(victim, signal.SIGKILL)
            killed = time.monotonic()
            back = wait_until(
                lambda role=role, victim=victim: child(role) not in (None, victim),
                timeout=15,
                what=f"a new {role}",
                logs=[runner],
            )
            if role == "worker":
                wait_until(lambda: workers_answering(broker.url), timeout=30, what="the new worker")
                answering = time.monotonic() - killed
            log = runner.log()
            assert f"{role} exited with code -9; restarting it in 1 s" in log, log
            assert f"{role} restarted (pid {child(role)})" in log, log
            print(f"\n{role} killed: restarted after {back:.1f} s", end="")
        print(f"; the worker answered again {answering:.1f} s after it was killed")
        assert child("uvicorn") == web, runner.log()
        assert runner.alive(), runner.log()
    finally:
        if runner.alive():
            runner.process.send_signal(signal.SIGTERM)  # as Ctrl-C would: the runner stops all
            with contextlib.suppress(subprocess.TimeoutExpired):
                runner.process.wait(15)
        exit_code = runner.process.poll()
        runner.stop()
        broker.stop()
    assert exit_code == 0, runner.log()
    assert "run | stopped" in runner.log()


def test_a_crash_loop_backs_off(monkeypatch, capsys):
    """A worker that dies at once is restarted after 1, 2, 4, ... s (here scaled down to
    0.1, 0.2, 0.4, ...), not in a spin; web exiting still stops the run."""
    from scripts import run

    monkeypatch.setattr(run, "RESTART_FIRST_SECONDS", 0.1)
    crasher = run.Child("worker", [sys.executable, "-c", "raise SystemExit(3)"], restart=True)
    web = run.Child("web", [sys.executable, "-c", "import time; time.sleep(30)"])
    children = [web, crasher]
    for process in children:
        process.start()
    started, starts = time.monotonic(), 1
    try:
        while time.monotonic() - started < 3.2:
            before = crasher.proc
            assert run.supervise(children) == 0
            starts += crasher.proc is not before
            time.sleep(0.02)
        # Restarts due 0.1, 0.3, 0.7, 1.5 and 3.1 s after the first exit: five, not hundreds.
        assert 4 <= starts - 1 <= 6, starts
        assert "worker exited with code 3; restarting it in 0.8 s (4 exits in a row)" in (
            capsys.readouterr().out
        )
        web.signal_group(signal.SIGKILL)
        web.proc.wait(5)
        assert run.supervise(children) == -signal.SIGKILL  # web gone: the run stops
    finally:
        for process in children:
            process.signal_group(signal.SIGKILL)
