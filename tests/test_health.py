"""/healthz and /readyz (issue 9, "Operable"), on a real gunicorn (the production web-http)
whose database and Redis are private servers of this test, stopped and started again."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import free_port
from private_services import PostgresCluster, RedisServer, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).with_name("gunicorn")
READY_TIMEOUT = 1.0


class Gunicorn:
    """`gunicorn -c deploy/gunicorn.conf.py` on a free port with the given environment."""

    def __init__(self, log: Path, **env: str) -> None:
        self.port = free_port()
        self.log_path = log
        self._log = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [str(GUNICORN), "handoff_site.wsgi:application", "-c", "deploy/gunicorn.conf.py"],
            cwd=ROOT,
            env={
                "PATH": os.environ["PATH"],
                "DEBUG": "0",
                "SECRET_KEY": "test-health-" + "x" * 40,
                # Probes come by an internal name: no host check may stand in their way.
                "ALLOWED_HOSTS": "handoff.example.com",
                "SECURE_SSL_REDIRECT": "1",
                "GUNICORN_BIND": f"127.0.0.1:{self.port}",
                "GUNICORN_WORKERS": "1",
                "READYZ_TIMEOUT_SECONDS": str(READY_TIMEOUT),
                "HANDOFF_VAR_DIR": str(log.parent / "var"),
                **env,
            },
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for_port(self.port, timeout=30, process=self.process)
        self._wait_serving(timeout=30)

    def _wait_serving(self, timeout: float) -> None:
        """Until the worker (which loads Django after the port opens) answers /healthz."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if self.get("/healthz").status_code == 200:
                    return
            time.sleep(0.1)
        raise AssertionError(f"gunicorn did not serve /healthz within {timeout:g} s:\n{self.log()}")

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=10)

    def log(self) -> str:
        return self.log_path.read_text()[-4000:]

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
        self._log.close()


def readiness(server: Gunicorn) -> tuple[int, dict, float]:
    started = time.monotonic()
    response = server.get("/readyz")
    return response.status_code, response.json(), time.monotonic() - started


def wait_ready(server: Gunicorn, timeout: float) -> float:
    """Seconds until /readyz answers 200."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if server.get("/readyz").status_code == 200:
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"/readyz not 200 within {timeout:g} s: {server.get('/readyz').text}\n{server.log()}")


@pytest.fixture
def private(tmp_path):
    pg = PostgresCluster()
    redis = RedisServer(tmp_path)
    try:
        pg.init().start()
        redis.start()
        yield pg, redis
    finally:
        redis.stop()
        pg.remove()


def test_readyz_names_what_is_down_and_recovers_on_its_own(private, tmp_path):
    pg, redis = private
    server = Gunicorn(tmp_path / "gunicorn.log", DATABASE_URL=pg.url, REDIS_URL=redis.url)
    try:
        status, body, _ = readiness(server)
        assert status == 200, body
        assert body["status"] == "ok"
        assert set(body["checks"]) == {"database", "redis"}
        assert server.get("/readyz").headers["Cache-Control"] == "no-store"

        redis.stop()
        status, body, took = readiness(server)
        assert status == 503, body
        assert body["failed"] == ["redis"]
        assert body["checks"]["redis"]["status"] == "failed"
        assert body["checks"]["database"]["status"] == "ok"
        assert took < READY_TIMEOUT + 1.5
        assert server.get("/healthz").status_code == 200  # alive all the same
        redis.start()
        back_in = wait_ready(server, timeout=10)

        pg.stop()
        status, body, took = readiness(server)
        assert status == 503, body
        assert body["failed"] == ["database"]
        assert body["checks"]["redis"]["status"] == "ok"
        assert took < READY_TIMEOUT + 1.5
        assert server.get("/healthz").json() == {"status": "ok"}
        pg.start()
        db_back_in = wait_ready(server, timeout=30)
        print(f"\n/readyz 200 again {back_in:.1f} s after Redis returned, {db_back_in:.1f} s after PostgreSQL")
    finally:
        server.stop()


def test_readyz_fails_in_bounded_time_when_nothing_answers(tmp_path):
    """Neither server exists (nothing listens on their ports): 503 naming both, at once."""
    server = Gunicorn(
        tmp_path / "gunicorn.log",
        DATABASE_URL=f"postgres://postgres@127.0.0.1:{free_port()}/none",
        REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
    )
    try:
        status, body, took = readiness(server)
        assert status == 503, body
        assert sorted(body["failed"]) == ["database", "redis"]
        assert took < READY_TIMEOUT + 1.5
        assert server.get("/healthz").status_code == 200
    finally:
        server.stop()
