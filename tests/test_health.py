"""/healthz and /readyz (issue 9, "Operable"), on a real gunicorn (the production web-http)
whose database and Redis are private servers of this test, stopped and started again."""

import os
import time

import httpx
import pytest

from tests.conftest import free_port, need
from tests.processes import PostgresCluster, Process, RedisServer, gunicorn, postgres_bin

READY_TIMEOUT = 1.0


def serve(log_dir, **env: str) -> tuple[Process, str]:
    """The production web-http (gunicorn) with `env` (DATABASE_URL, REDIS_URL)."""
    return gunicorn(
        {
            "PATH": os.environ["PATH"],
            "DEBUG": "0",
            "SECRET_KEY": "test-health-" + "x" * 40,
            # Probes come by an internal name: no host check may stand in their way.
            "ALLOWED_HOSTS": "handoff.example.com",
            "SECURE_SSL_REDIRECT": "1",
            "READYZ_TIMEOUT_SECONDS": str(READY_TIMEOUT),
            "HANDOFF_VAR_DIR": str(log_dir / "var"),
            **env,
        },
        log_dir,
    )


class Server:
    def __init__(self, process: Process, url: str) -> None:
        self.process, self.url = process, url

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, timeout=10)

    def log(self) -> str:
        return self.process.log()


def readiness(server: Server) -> tuple[int, dict, float]:
    started = time.monotonic()
    response = server.get("/readyz")
    return response.status_code, response.json(), time.monotonic() - started


def wait_ready(server: Server, timeout: float) -> float:
    """Seconds until /readyz answers 200."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if server.get("/readyz").status_code == 200:
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"/readyz not 200 within {timeout:g} s: {server.get('/readyz').text}\n{server.log()}")


@pytest.fixture
def private(tmp_path):
    bin_dir = postgres_bin()
    need(bin_dir is not None, "PostgreSQL's server binaries (initdb)")
    pg = PostgresCluster(bin_dir)
    redis = RedisServer(tmp_path)
    try:
        pg.start()
        redis.start()
        yield pg, redis
    finally:
        redis.stop()
        pg.destroy()


def test_readyz_names_what_is_down_and_recovers_on_its_own(private, tmp_path):
    pg, redis = private
    server = Server(*serve(tmp_path, DATABASE_URL=pg.url(), REDIS_URL=redis.url))
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
        server.process.stop()


def test_readyz_fails_in_bounded_time_when_nothing_answers(tmp_path):
    """Neither server exists (nothing listens on their ports): 503 naming both, at once."""
    server = Server(
        *serve(
            tmp_path,
            DATABASE_URL=f"postgres://postgres@127.0.0.1:{free_port()}/none",
            REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        )
    )
    try:
        status, body, took = readiness(server)
        assert status == 503, body
        assert sorted(body["failed"]) == ["database", "redis"]
        assert took < READY_TIMEOUT + 1.5
        assert server.get("/healthz").status_code == 200
    finally:
        server.process.stop()
