"""The app under bench and the baseline project beside it: where they run (PostgreSQL and
Redis on 127.0.0.1), their environments, the commands that serve them, and the decider
processes that decide escalations for figures 3 and 4. Shared by every bench script."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import time

from lib import BENCH_DIR, RESULTS, ROOT, Processes, python, read_line

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
# Two checkouts benching on the same PostgreSQL and Redis at once give each its own:
# BENCH_DB=handoff_x_bench (the baselines' database is its name + "_base"), BENCH_REDIS_DBS=7,8.
BENCH_DB = os.environ.get("BENCH_DB", "handoff_bench")
BASE_DB = f"{BENCH_DB}_base"
# One number (as make bench-queue takes it) gives the baseline the next one.
_REDIS_DBS = [int(n) for n in os.environ.get("BENCH_REDIS_DBS", "13,14").split(",")]
REDIS_APP = f"redis://127.0.0.1:6379/{_REDIS_DBS[0]}"
REDIS_BASE = f"redis://127.0.0.1:6379/{_REDIS_DBS[1] if len(_REDIS_DBS) > 1 else _REDIS_DBS[0] + 1}"
BASE_ROWS = 20_000
SECRET = "bench-" + "k" * 50


def app_env(**extra: str) -> dict[str, str]:
    """The production settings (DATABASE_URL + REDIS_URL, DEBUG off) on the bench database."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=f"postgres://{PG_USER}@{PG_HOST}:{PG_PORT}/{BENCH_DB}",
        REDIS_URL=REDIS_APP,
        DEBUG="0",
        SECRET_KEY=SECRET,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        CHANNELS_PREFIX="handoffbench",
        HANDOFF_VAR_DIR=str(RESULTS / "var"),
        DJANGO_SETTINGS_MODULE="handoff_site.settings",
        PYTHONUNBUFFERED="1",
        # One agent token from one address at full speed: the limits are checked on every
        # call (their cost is in the figures) but set high enough never to refuse.
        SECURE_SSL_REDIRECT="0",  # plain http on 127.0.0.1
        OUTBOUND_ALLOW_PRIVATE="1",  # webhooks go to bench/receiver.py on 127.0.0.1
        RATE_LIMIT_AGENT="1000000/minute",
        RATE_LIMIT_ADDRESS="1000000/minute",
    )
    env.pop("DB_POOL", None)  # the production default: psycopg's pool
    env.update(extra)
    return env


def base_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="baseline.settings",
        PYTHONPATH=str(BENCH_DIR),
        BENCH_BASE_DB=BASE_DB,
        BENCH_BASE_ROWS=str(BASE_ROWS),
        BENCH_CELERY_BROKER=REDIS_BASE,
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def pg(dbname: str = "postgres"):
    import psycopg

    return psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=dbname, autocommit=True)


def recreate_database(name: str) -> None:
    """Drop (with any sessions still on it) and create a bench database."""
    with pg() as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")


def gunicorn_cmd(app: str, port: int) -> list[str]:
    """gunicorn -k sync -w 2: the baseline (a)'s server (the perf anchors' Part 2c)."""
    return [
        python(), "-m", "gunicorn", app, "-k", "sync", "-w", "2", "-b", f"127.0.0.1:{port}",
        "--log-level", "warning", "--backlog", "2048",
    ]


def box_cores() -> int:
    """The cores the bench may use (taskset, cpusets), as deploy/gunicorn.conf.py counts them."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def production_gunicorn_cmd(app: str, port: int) -> list[str]:
    """gunicorn as docker-compose's web-http runs it: `-c deploy/gunicorn.conf.py` (gthread,
    GUNICORN_WORKERS processes of GUNICORN_THREADS threads, each pinned to a core, a connection
    per free thread, no access log of its own (nginx writes it; not run here), worker
    recycling), bound to 127.0.0.1; production_gunicorn_env gives it the box's cores."""
    return [
        python(), "-m", "gunicorn", "-c", str(ROOT / "deploy" / "gunicorn.conf.py"), app,
        "--bind", f"127.0.0.1:{port}", "--backlog", "2048",
    ]


def production_gunicorn_env(env: dict[str, str]) -> dict[str, str]:
    """One worker per core of the box (docker-compose's empty GUNICORN_WORKERS), 8 threads each."""
    env = dict(env)
    env["GUNICORN_WORKERS"] = str(box_cores())
    env["GUNICORN_THREADS"] = "8"
    for knob in ("GUNICORN_BIND", "GUNICORN_TIMEOUT", "GUNICORN_MAX_REQUESTS", "GUNICORN_CONTROL_SOCKET",
                 "GUNICORN_LOG_LEVEL", "GUNICORN_PIN_WORKERS", "GUNICORN_ACCESS_LOG", "LOG_FORMAT"):
        env.pop(knob, None)  # the file's defaults, as docker-compose leaves them
    return env


def celery_cmd(app: str) -> list[str]:
    return [
        python(), "-m", "celery", "-A", app, "worker", "-P", "prefork", "-c", "2",
        "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "warning",
    ]


def sleep_until(target: float) -> None:
    while True:
        left = target - time.time()
        if left <= 0:
            return
        time.sleep(min(left, 0.05) if left > 0.002 else 0)


def subprocess_run(cmd, *, env, timeout):
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def source_stamp() -> str:
    """A fingerprint of the app's code (other engineers edit this tree while the bench runs)."""
    digest = hashlib.sha1(usedforsecurity=False)
    for package in ("escalations", "reviews", "handoff_site"):
        for path in sorted((ROOT / package).rglob("*.py")):
            stat = path.stat()
            digest.update(f"{path}:{stat.st_mtime_ns}:{stat.st_size}".encode())
    return digest.hexdigest()


def _tell(child: subprocess.Popen, message: dict) -> None:
    """One line of JSON to a decider (started with stdin=PIPE)."""
    if child.stdin is None:
        raise RuntimeError("a decider without its input pipe")
    child.stdin.write((json.dumps(message) + "\n").encode())
    child.stdin.flush()


class DeciderPool:
    """bench/decider.py processes (production settings, bench DB) deciding on a shared schedule.

    Decision i of a batch is due at t0 + i * interval; process k takes every k-th one, so
    the pace holds even when one escalation_decide call takes longer than the interval.
    """

    def __init__(self, procs: Processes, size: int) -> None:
        self.procs = procs
        self.children = [
            procs.start(f"decider-{k}", [python(), str(BENCH_DIR / "decider.py")], env=app_env(), cwd=ROOT,
                        stdout=subprocess.PIPE, stdin=subprocess.PIPE)
            for k in range(size)
        ]
        for child in self.children:
            if not json.loads(read_line(child, 60, "decider")).get("ready"):
                raise RuntimeError("decider did not start")

    def run(self, ids: list[str], interval: float, lead: float = 0.2) -> tuple[dict, list[float]]:
        t0 = time.time() + lead
        size = len(self.children)
        for k, child in enumerate(self.children):
            items = [[i, esc_id] for i, esc_id in enumerate(ids) if i % size == k]
            _tell(child, {"t0": t0, "interval": interval, "items": items})
        stamps, late = {}, []
        budget = lead + len(ids) * interval + 120
        for child in self.children:
            answer = json.loads(read_line(child, budget, "decider"))
            stamps.update(answer["stamps"])
            late += answer["late_ms"]
        return stamps, late

    def sustainable_rate(self, stamps: dict) -> float:
        """Decisions/s these processes can keep up (at 50% busy), from a batch's call times."""
        calls = sorted(s[2] - s[0] for s in stamps.values())
        median = calls[len(calls) // 2] if calls else 0.05
        return 0.5 * len(self.children) / max(median, 1e-3)

    def close(self) -> None:
        for child in self.children:
            with contextlib.suppress(OSError):
                _tell(child, {"quit": True})
        for child in self.children:
            self.procs.stop(child, timeout=5)
