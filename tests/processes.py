"""Handoff's production shape as real subprocesses, for the fault tests: a private
redis-server that a test may stop and start again, uvicorn (as production serves websockets
and long-polls), a Celery worker and Celery beat, all on the test database.

Every process writes its output to a file beside the test (shown when an assertion fails)
and runs in a process group of its own, so stop() ends it with whatever it forked.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

import redis
from conftest import free_port
from django.conf import settings
from django.db import connection

BASE_DIR = Path(settings.BASE_DIR)
BIN = Path(sys.executable).parent


def test_database_url() -> str:
    """The URL of the test database, for processes that must share it."""
    db = connection.settings_dict
    auth = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"], safe="")
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or "5432"
    return f"postgres://{auth}@{host}:{port}/{db['NAME']}"


test_database_url.__test__ = False  # a helper, not a test


def children_of(pid: int) -> list[int]:
    """Child pids from /proc (no psutil)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def command_line(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return ""


def workers_answering(broker_url: str, timeout: float = 1.0) -> list[str]:
    """The names of the Celery workers on `broker_url` that answer a ping."""
    from celery import Celery

    probe = Celery("probe", broker=broker_url, set_as_current=False)
    try:
        return [name for reply in probe.control.ping(timeout=timeout) for name in reply]
    finally:
        probe.close()


class Process:
    """One subprocess with its output in `<log_dir>/<name>.log`."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            argv,
            cwd=BASE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self, tail: int = 6000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-tail:]
        return ""

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM (a warm shutdown: a worker finishes its tasks), then SIGKILL for the whole
        group if anything lingers."""
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(5)
        finally:
            self._log.close()


class RedisServer:
    """A redis-server of the test's own on a free port (never the shared one), without
    persistence. stop() and start() again give an outage on the same address."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.port = free_port()
        self.process: Process | None = None
        self.started = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10) -> None:
        self.started += 1
        self.process = Process(
            f"redis-{self.started}",
            [
                "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self.directory),
            ],
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            log_dir=self.directory,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not self.ping():
            if time.monotonic() > deadline or not self.process.alive():
                raise AssertionError(f"redis-server did not start:\n{self.process.log()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def ping(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=1)


def production_env(*, redis_url: str, var_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a production process on the test database and `redis_url`."""
    return {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "REDIS_URL": redis_url,
        "DEBUG": "0",
        "SECRET_KEY": settings.SECRET_KEY,  # so the sessions this process signs are valid there
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_COOKIES": "0",
        # plain http on 127.0.0.1 (no redirect to https), webhooks to the tests' receivers
        # on loopback (production refuses private addresses: handoff_site.egress)
        "SECURE_SSL_REDIRECT": "0",
        "OUTBOUND_ALLOW_PRIVATE": "1",
        "HANDOFF_VAR_DIR": str(var_dir),  # beat's schedule file
        "CELERY_EMBEDDED_WORKER": "0",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def uvicorn(env: dict[str, str], log_dir: Path, port: int | None = None) -> tuple[Process, str]:
    """uvicorn serving handoff_site.asgi as docker-compose's web-async does; (process, URL)."""
    port = port or free_port()
    process = Process(
        "web",
        [
            str(BIN / "uvicorn"), "handoff_site.asgi:application", "--host", "127.0.0.1",
            "--port", str(port), "--no-server-header", "--lifespan", "off",
            "--timeout-graceful-shutdown", "3",
        ],
        env,
        log_dir,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/healthz", process)
    return process, url


def wait_http(url: str, process: Process, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            raise AssertionError(f"{process.name} exited:\n{process.log()}")
        with (
            contextlib.suppress(urllib.error.URLError, OSError),
            urllib.request.urlopen(url, timeout=2) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {timeout:g} s:\n{process.log()}")


def celery(role: str, env: dict[str, str], log_dir: Path) -> Process:
    """`celery worker` (prefork, 2 children) or `celery beat`, as docker-compose runs them."""
    argv = [str(BIN / "celery"), "-A", "handoff_site", role, "--loglevel", "INFO"]
    if role == "worker":
        argv += ["-P", "prefork", "-c", "2", "-n", f"{role}-{free_port()}@%h"]
        argv += ["--without-gossip", "--without-mingle"]
    return Process(role, argv, env, log_dir)
