"""Handoff's production shape as real subprocesses, for the fault tests: a private
redis-server and a private PostgreSQL cluster that a test may stop and start again, uvicorn
(as production serves websockets and long-polls), a Celery worker and Celery beat, all on
the test database unless told otherwise.

Every process writes its output to a file beside the test (shown when an assertion fails)
and runs in a process group of its own, so stop() ends it with whatever it forked.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import redis
from django.conf import settings
from django.db import connection

from tests.conftest import free_port

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


test_database_url.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


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


def purge_queue() -> None:
    """Stale messages of other tests (their ids are not in this database) go first, and so
    does the mark of a send task waiting (another test's, whose message is gone)."""
    from escalations.tasks import _unmark
    from handoff_site.celery import app

    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge("celery")  # type: ignore[attr-defined]
    _unmark()


def command_line(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return ""


def workers_answering(broker_url: str, timeout: float = 1.0) -> list[str]:
    """The names of the Celery workers on `broker_url` that answer a ping."""
    from celery import Celery

    probe = Celery("probe", broker=broker_url, set_as_current=False)
    try:
        return [name for reply in probe.control.ping(timeout=timeout) or [] for name in reply]
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

    def kill(self) -> None:
        """SIGKILL for the whole group, as a crash or the OOM killer would."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)

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
        # on loopback (production refuses private addresses: operations.egress)
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


def gunicorn(env: dict[str, str], log_dir: Path, port: int | None = None) -> tuple[Process, str]:
    """gunicorn with deploy/gunicorn.conf.py and one worker, as docker-compose's web-http
    runs it; (process, URL) once the worker answers /healthz."""
    port = port or free_port()
    process = Process(
        "gunicorn",
        [str(BIN / "gunicorn"), "handoff_site.wsgi:application", "-c", "deploy/gunicorn.conf.py"],
        {**env, "GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_WORKERS": "1"},
        log_dir,
    )
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
            urllib.request.urlopen(url, timeout=2) as response,  # noqa: S310 - a local http URL
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


class Worker(Process):
    """`celery -A handoff_site worker -P prefork -c 2` under a name of its own, so that a
    test can wait for this one to answer a ping."""

    def __init__(self, log_dir: Path, env: dict[str, str] | None = None):
        self.node = f"test-{uuid.uuid4().hex[:8]}@%h"
        environment = production_env(redis_url=os.environ["REDIS_URL"], var_dir=log_dir, **(env or {}))
        super().__init__(
            f"worker-{self.node.split('@')[0]}",
            [
                str(BIN / "celery"), "-A", "handoff_site", "worker", "-P", "prefork", "-c", "2",
                "--without-gossip", "--without-mingle", "--without-heartbeat",
                "-Q", "celery", "-n", self.node, "--loglevel", "INFO",
            ],
            environment,
            log_dir,
        )  # fmt: skip

    def ping(self, timeout: float = 0.5) -> bool:
        from handoff_site.celery import app

        hostname = self.node.replace("%h", os.uname().nodename)
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


def manage(*args: str, env: dict[str, str], timeout: float = 120) -> str:
    """`manage.py <args>` in a subprocess with `env`; its standard output."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


REVIEWER_SESSION = """
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.auth.models import Group
from django.contrib.sessions.backends.db import SessionStore
user = get_user_model().objects.create_user({username!r}, "{username}@example.com", "correct-horse-battery")
user.groups.add(Group.objects.get_or_create(name="reviewer")[0])
session = SessionStore()
session[SESSION_KEY] = str(user.pk)
session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
session[HASH_SESSION_KEY] = user.get_session_auth_hash()
session.create()
print(session.session_key)
"""


def reviewer_session(username: str, env: dict[str, str]) -> str:
    """A new reviewer's signed-in session key, made by a process with `env` (its database)."""
    script = REVIEWER_SESSION.format(username=username)
    return manage("shell", "-c", script, env=env).strip().splitlines()[-1]


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's server binaries (Debian's layout), if any."""
    versions = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    return versions[-1] if versions else None


class PostgresCluster:
    """A throwaway PostgreSQL cluster (initdb) in a temp dir, on a free port of 127.0.0.1,
    trusting local connections; never the shared server. Run as the `postgres` user when
    this process is root (initdb and the server refuse root). stop() and start() as often as
    a test likes; destroy() stops it (immediately) and removes its files."""

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
