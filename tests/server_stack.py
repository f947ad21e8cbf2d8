"""Real processes for the fault tests, each a subprocess on 127.0.0.1 that is stopped at the
end whatever happens: a Celery worker (prefork) and beat, the ASGI app under uvicorn, and a
private PostgreSQL cluster (initdb + pg_ctl on a free port in a temp dir) that a test may
stop and start without touching the shared server.

The app's processes get the production settings (DEBUG off, psycopg's pool unless told
otherwise) on the database and Redis they are given: by default the test database and
REDIS_URL.
"""

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import httpx
from conftest import free_port
from django.conf import settings
from django.db import connection

from handoff_site.celery import app

BASE_DIR = Path(settings.BASE_DIR)
BIN = Path(sys.executable).parent


def test_database_url() -> str:
    """The URL of the test database this process uses (for subprocesses to share it)."""
    db = connection.settings_dict
    auth = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"], safe="")
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or "5432"
    return f"postgres://{auth}@{host}:{port}/{db['NAME']}"


test_database_url.__test__ = False  # a helper, not a test


def app_env(**overrides: str) -> dict[str, str]:
    """The environment of an app subprocess: production settings on the test database (and
    on REDIS_URL, when it is set)."""
    return {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "DEBUG": "0",
        "SECRET_KEY": "test-stack-" + "x" * 40,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "CELERY_EMBEDDED_WORKER": "0",
        # plain http, webhooks to the tests' receivers on loopback
        "SECURE_SSL_REDIRECT": "0",
        "OUTBOUND_ALLOW_PRIVATE": "1",
        "PYTHONUNBUFFERED": "1",
        **overrides,
    }


def purge_queue() -> None:
    """Stale messages of other tests (their ids are not in this database) go first."""
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge("celery")


def wait_until(
    condition: Callable[[], object],
    *,
    timeout: float,
    what: str,
    log: Callable[[], str] | None = None,
    tick: Callable[[], object] | None = None,
    every: float = 0.05,
):
    """Poll `condition` until it is truthy (returns it), or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            extra = f"\n{log()}" if log else ""
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}{extra}")
        if tick:
            tick()
        time.sleep(every)


# ---------------------------------------------------------------- processes


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


def is_dead(pid: int) -> bool:
    """Gone, or a zombie waiting for its parent."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


def socket_owner(local_port: int, remote_port: int, pids: list[int]) -> int | None:
    """The pid among `pids` holding the TCP connection 127.0.0.1:local_port -> :remote_port."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            next(lines)
            for line in lines:
                parts = line.split()
                local, remote, inode = parts[1], parts[2], parts[9]
                if int(local.rsplit(":", 1)[1], 16) == local_port and int(
                    remote.rsplit(":", 1)[1], 16
                ) == remote_port:
                    inodes.add(f"socket:[{inode}]")
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        with contextlib.suppress(OSError):
            for fd in fd_dir.iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in inodes:
                        return pid
    return None


class Process:
    """A subprocess in its own process group, its output in a log file."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str]):
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            args,
            cwd=BASE_DIR,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: cleanup reaches the children
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text()[-4000:]
        return ""

    def kill(self) -> None:
        """SIGKILL for the whole group, as a crash or the OOM killer would."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)

    def stop(self, timeout: float = 15) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL for the whole group if it lingers."""
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout)
            self.kill()
        finally:
            self._log.close()


class Worker(Process):
    """`celery -A handoff_site worker -P prefork -c 2`."""

    def __init__(self, log_dir: Path, env: dict[str, str] | None = None):
        self.name = f"test-{uuid.uuid4().hex[:8]}@%h"
        super().__init__(
            [
                str(BIN / "celery"), "-A", "handoff_site", "worker", "-P", "prefork", "-c", "2",
                "--without-gossip", "--without-mingle", "--without-heartbeat",
                "-Q", "celery", "-n", self.name, "--loglevel", "INFO",
            ],
            log_dir / f"worker-{self.name.split('@')[0]}.log",
            app_env(**(env or {})),
        )

    def ping(self, timeout: float = 0.5) -> bool:
        hostname = self.name.replace("%h", os.uname().nodename)
        return bool(app.control.ping(destination=[hostname], timeout=timeout))

    def wait_ready(self, timeout: float = 30) -> float:
        """Until the worker answers a ping over the broker; returns how long it took."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if not self.alive():
                raise AssertionError(f"the worker exited ({self.process.returncode}):\n{self.log()}")
            if self.ping():
                return time.monotonic() - started
        raise AssertionError(f"the worker was not ready within {timeout:g} s:\n{self.log()}")


class Beat(Process):
    """`celery -A handoff_site beat` with the app's schedule (its state file in `log_dir`)."""

    def __init__(self, log_dir: Path, env: dict[str, str] | None = None):
        super().__init__(
            [
                str(BIN / "celery"), "-A", "handoff_site", "beat", "--loglevel", "INFO",
                "-s", str(log_dir / "celerybeat-schedule"),
            ],
            log_dir / "beat.log",
            app_env(**(env or {})),
        )


class WebServer(Process):
    """The ASGI application (handoff_site.asgi) under `uvicorn`, on a free port."""

    def __init__(self, log_dir: Path, env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(
            [
                str(BIN / "uvicorn"), "handoff_site.asgi:application",
                "--host", "127.0.0.1", "--port", str(self.port), "--lifespan", "off",
                "--log-level", "warning",
            ],
            log_dir / f"web-{self.port}.log",
            app_env(PUBLIC_URL=self.url, **(env or {})),
        )

    def wait_ready(self, timeout: float = 30) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if not self.alive():
                raise AssertionError(f"uvicorn exited ({self.process.returncode}):\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return time.monotonic() - started
            time.sleep(0.1)
        raise AssertionError(f"uvicorn was not ready within {timeout:g} s:\n{self.log()}")


def manage(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    """`manage.py <args>` in a subprocess with the app's environment; its standard output."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=app_env(**(env or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


# ---------------------------------------------------------------- a private PostgreSQL


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's server binaries (Debian's layout), if any."""
    root = Path("/usr/lib/postgresql")
    versions = sorted(
        (p for p in root.glob("*/bin") if (p / "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    return versions[-1] if versions else None


class PostgresCluster:
    """A throwaway PostgreSQL cluster in a temp dir, on a free port of 127.0.0.1, trusting
    local connections. Run as the `postgres` user when this process is root (initdb and the
    server refuse root). `stop()` and `start()` as often as a test likes; `destroy()` at
    the end stops it (immediately) and removes its files."""

    def __init__(self, bin_dir: Path):
        self.bin = bin_dir
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="handoff-pg-"))
        self.data = self.dir / "data"
        self.log_path = self.dir / "server.log"
        self._user = None
        if os.geteuid() == 0:
            self._user = "postgres"
            record = pwd.getpwnam(self._user)
            os.chown(self.dir, record.pw_uid, record.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    def _run(self, tool: str, *args: str, timeout: float = 60) -> None:
        result = subprocess.run(
            [str(self.bin / tool), *args],
            user=self._user,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.dir,
        )
        if result.returncode != 0:
            raise AssertionError(f"{tool} failed:\n{result.stdout}\n{result.stderr}\n{self.log()}")

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text()[-3000:]
        return ""

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "-o", options, "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            if self.running():
                self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)
