#!/usr/bin/env python
"""`make bench`: issue 2's figures, each beside a baseline measured in the same run.

One command, PostgreSQL and Redis on 127.0.0.1, about 3-4 minutes:

    .venv/bin/python bench/run.py            (or: make bench)

It creates (drops and re-creates) its own database `handoff_bench` and migrates it, keeps a
seeded `handoff_bench_base` for the baselines, uses Redis databases 13 (app) and 14
(baseline Celery), starts every server it needs in its own process group on a free port,
and kills them all at the end. The table is printed and written to bench/results/latest.md;
logs, wrk outputs and raw samples go to bench/results/. README.md says what each row means.

Options: --seconds N (wrk duration, default 10), --skip 1,2,3,4,a,b,c (leave phases out).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
_VENV_PY = ROOT / ".venv" / "bin" / "python"

try:  # `python bench/run.py` from any interpreter: hop into the project's venv
    import django  # noqa: F401
except ImportError:
    if _VENV_PY.exists() and Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
        os.execv(str(_VENV_PY), [str(_VENV_PY), *sys.argv])
    raise

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import signal  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402

sys.path.insert(0, str(BENCH_DIR))
from lib import (  # noqa: E402
    LOGS,
    RESULTS,
    Processes,
    cpu_seconds,
    dump_json,
    ensure_wrk,
    free_port,
    http_get,
    loadavg,
    log,
    lua_string,
    percentile,
    python,
    read_line,
    rss_mb,
    run_wrk,
    start_profile,
    summarize_profile,
    summary_ms,
    tcp_local_ports_to,
    wait_for_port,
)

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
BENCH_DB, BASE_DB = "handoff_bench", "handoff_bench_base"
REDIS_APP = "redis://127.0.0.1:6379/13"
REDIS_BASE = "redis://127.0.0.1:6379/14"
BASE_ROWS = 20_000
GET_IDS, HOOK_WARM, HOOK_N, POLL_WARM, POLL_N = 200, 20, 300, 20, 1000
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


def gunicorn_cmd(app: str, port: int) -> list[str]:
    return [
        python(), "-m", "gunicorn", app, "-k", "sync", "-w", "2", "-b", f"127.0.0.1:{port}",
        "--log-level", "warning", "--backlog", "2048",
    ]


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


class DeciderPool:
    """bench/decider.py processes (production settings, bench DB) deciding on a shared schedule.

    Decision i of a batch is due at t0 + i * interval; process k takes every k-th one, so
    the pace holds even when one escalation_decide call takes longer than the interval.
    """

    def __init__(self, procs: Processes, size: int) -> None:
        import subprocess

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
            child.stdin.write((json.dumps({"t0": t0, "interval": interval, "items": items}) + "\n").encode())
            child.stdin.flush()
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
            try:
                child.stdin.write(b'{"quit": true}\n')
                child.stdin.flush()
            except OSError:
                pass
        for child in self.children:
            self.procs.stop(child, timeout=5)


class Bench:
    def __init__(self, args) -> None:
        self.args = args
        self.procs = Processes()
        self.r: dict = {"started": datetime.now(UTC).isoformat(timespec="seconds")}
        self.nonce = uuid.uuid4().hex[:8]
        self.receiver_port = free_port()
        self._deciders: DeciderPool | None = None
        self.profiles: list[str] = []

    # ------------------------------------------------------------ setup

    def prepare(self) -> None:
        ensure_wrk()
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
        RESULTS.mkdir(parents=True, exist_ok=True)
        LOGS.mkdir(parents=True, exist_ok=True)
        for old in [*LOGS.iterdir(), *RESULTS.glob("post-*.lua"), *RESULTS.glob("profile-*")]:
            old.unlink()
        (RESULTS / "var").mkdir(exist_ok=True)

        log(f"databases: drop + create {BENCH_DB}; ensure {BASE_DB}")
        with pg() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {BENCH_DB}")
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (BASE_DB,)).fetchone():
                conn.execute(f"CREATE DATABASE {BASE_DB}")
            self.r["postgres"] = conn.execute("SHOW server_version").fetchone()[0]
        with pg(BASE_DB) as conn:
            conn.execute(
                """CREATE TABLE IF NOT EXISTS bench_escalation (
                     id bigserial PRIMARY KEY, created_at timestamptz NOT NULL,
                     priority integer NOT NULL, status varchar(16) NOT NULL, payload jsonb NOT NULL)"""
            )
            conn.execute(
                "CREATE INDEX IF NOT EXISTS bench_escalation_queue ON bench_escalation "
                "(status, priority DESC, created_at)"
            )
            rows, top = conn.execute("SELECT count(*), coalesce(max(id), 0) FROM bench_escalation").fetchone()
            if rows != BASE_ROWS or top != BASE_ROWS:
                log(f"seeding bench_escalation with {BASE_ROWS} rows of ~3 KB")
                conn.execute("TRUNCATE bench_escalation RESTART IDENTITY")
                conn.execute(
                    """INSERT INTO bench_escalation (created_at, priority, status, payload)
                       SELECT now() - g * interval '1 minute', (g * 7919) %% 100,
                              (ARRAY['pending','claimed','decided','resumed'])[1 + g %% 4],
                              jsonb_build_object('n', g, 'text', repeat(md5(g::text), 94))
                       FROM generate_series(1, %s) AS g""",
                    (BASE_ROWS,),
                )
                conn.execute("VACUUM ANALYZE bench_escalation")
            conn.execute(
                """CREATE TABLE IF NOT EXISTS bench_write (
                     id bigserial PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT now(),
                     payload jsonb NOT NULL)"""
            )
            conn.execute("TRUNCATE bench_write")

        import redis

        for url in (REDIS_APP, REDIS_BASE):
            redis.Redis.from_url(url).flushdb()

        log("migrating handoff_bench")
        started = time.monotonic()
        result = subprocess_run(
            [python(), "manage.py", "migrate", "--noinput"], env=app_env(), timeout=300
        )
        if result.returncode != 0:
            raise RuntimeError(f"migrate failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
        log(f"migrated in {time.monotonic() - started:.1f} s")

        os.environ.update(app_env())
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        self.fixtures()

    def fixtures(self) -> None:
        """Four agents; the first escalation of each through the service, the rest cloned.

        services.escalation_create costs 20-50 ms a call on this box, most of it the
        channel-layer group_send after commit; 1,500 of them would take a minute. The clones
        are the template's rows (escalation, run, 'created' event) with a new id and run.
        """
        from django.contrib.auth import get_user_model

        from escalations import services
        from escalations.models import Escalation, Event, Run
        from escalations.schemas import EscalationIn

        started = time.monotonic()
        self.agents = {}
        for role in ("get", "post", "hook", "poll"):
            resume_url = f"http://127.0.0.1:{self.receiver_port}/hook" if role == "hook" else ""
            self.agents[role] = services.agent_create(
                name=f"bench-{role}-{self.nonce}", domain="default", resume_url=resume_url,
                daily_budget=1_000_000,
            )
        get_user_model().objects.create_user("bench-reviewer", password=None)

        def create(role: str, count: int) -> list[str]:
            agent = self.agents[role].agent
            body = self.package(f"{role}-{self.nonce}-0")
            created = services.escalation_create(
                agent=agent, package=EscalationIn.model_validate(body), body=body
            )
            template = created.escalation
            assert created.created, template.tier
            assert template.tier >= 3, template.tier
            assert template.is_open, template.tier
            event = Event.objects.get(escalation=template, kind=Event.Kind.CREATED)
            runs = Run.objects.bulk_create(
                [Run(agent=agent, run_id=f"{role}-{self.nonce}-{i}") for i in range(1, count)]
            )
            fields = [f.attname for f in Escalation._meta.concrete_fields if not f.primary_key]
            clones = []
            for run in runs:
                clone = Escalation(**{name: getattr(template, name) for name in fields})
                clone.id, clone.run_id, clone.idempotency_key = uuid.uuid4(), run.id, None
                clones.append(clone)
            Escalation.objects.bulk_create(clones, batch_size=500)
            Event.objects.bulk_create(
                [Event(escalation_id=c.id, kind=event.kind, actor=event.actor, data=event.data, at=event.at)
                 for c in clones],
                batch_size=500,
            )
            return [str(template.id)] + [str(c.id) for c in clones]

        self.ids = {
            "get": create("get", GET_IDS),
            "hook": create("hook", HOOK_WARM + HOOK_N),
            "poll": create("poll", POLL_WARM + POLL_N),
        }
        n = sum(len(v) for v in self.ids.values())
        log(f"fixtures: 4 agents, {n} open escalations in {time.monotonic() - started:.1f} s")

    _package_base: dict | None = None

    def package(self, run_id: str) -> dict:
        """A valid tier-3 package of about 3 KB (tests/conftest.make_package, padded history)."""
        if self._package_base is None:
            try:
                from tests.conftest import make_package  # the tests' own valid package
            except Exception:
                make_package = None
            t = datetime.now(UTC)
            if make_package is not None:
                base = make_package()
            else:
                base = {
                    "run_id": "x",
                    "title": "Update the 14 callers of charge() or add a shim?",
                    "uncertainty": "charge() changed signature; 14 callers in billing/ break. Updating them "
                    "touches billing/legacy which has no tests; a shim keeps them working.",
                    "reason": "approach_choice",
                    "confidence": 0.62,
                    "history": [],
                    "options": [
                        {"key": "update-callers", "label": "Update all 14 callers", "recommended": True,
                         "args": {"paths": ["billing/"]}},
                        {"key": "shim", "label": "Add a compatibility shim"},
                    ],
                    "cost_of_delay": {"blocking": True, "impact": "high", "blocked_tasks": 3},
                }
            history = list(base.get("history") or [])
            i = 0
            while len(json.dumps({**base, "history": history, "run_id": "bench-xxxxxxxx-t1-000000"})) < 3000:
                history.append({
                    "at": (t - timedelta(minutes=60 - i)).isoformat(),
                    "action": f"step {i}: ran pytest billing/tests/test_charge.py -k legacy_{i}",
                    "outcome": "failed" if i % 3 == 0 else "ok",
                    "detail": f"AssertionError in billing/legacy/invoice_{i}.py: charge() got an "
                    f"unexpected keyword argument 'currency' (call site {i * 17})",
                })
                i += 1
            base["history"] = history
            self._package_base = base
        return {**self._package_base, "run_id": run_id}

    # ------------------------------------------------------------ baselines

    def baseline_b(self) -> None:
        """(b) raw psycopg INSERT of a 3 KB JSON + COMMIT, one connection."""
        from psycopg.types.json import Jsonb

        log("baseline (b): raw psycopg INSERT 3 KB jsonb + COMMIT, 1 connection")
        import psycopg

        with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=BASE_DB) as conn:
            sql = "INSERT INTO bench_write (payload) VALUES (%s) RETURNING id"
            size = len(json.dumps(self.package("raw-000000")).encode())

            def one(i: int) -> float:
                t0 = time.perf_counter()
                conn.execute(sql, (Jsonb(self.package(f"raw-{self.nonce}-{i}")),)).fetchone()
                conn.commit()
                return time.perf_counter() - t0

            warm_end = time.monotonic() + 1.0
            i = 0
            while time.monotonic() < warm_end:
                one(i)
                i += 1
            lat = []
            started = time.monotonic()
            while time.monotonic() - started < 5.0 and len(lat) < 50_000:
                lat.append(one(i))
                i += 1
            took = time.monotonic() - started
        self.r["b"] = {"ops": len(lat), "seconds": took, "ops_s": len(lat) / took, "json_bytes": size,
                       **summary_ms(lat)}
        log(f"  (b) {self.r['b']['ops_s']:.0f} ops/s, p50 {self.r['b']['p50']:.2f} ms, "
            f"p99 {self.r['b']['p99']:.2f} ms ({size} B JSON)")

    def baseline_c(self) -> None:
        """(c) Celery no-op delay -> start, prefork -c 2, acks_late, Redis broker."""
        log("baseline (c): Celery no-op delay->start, prefork -c 2, acks_late, 300 tasks 10 ms apart")
        import redis

        os.environ["BENCH_CELERY_BROKER"] = REDIS_BASE
        sys.path.insert(0, str(BENCH_DIR))
        from baseline.celery_app import STARTS_KEY, noop

        rds = redis.Redis.from_url(REDIS_BASE)
        rds.delete(STARTS_KEY)
        proc = self.procs.start("baseline-celery", celery_cmd("baseline.celery_app"), env=base_env(),
                                cwd=BENCH_DIR)
        try:
            for i in range(20):
                noop.delay(f"warm-{i}")
            self._wait(lambda: rds.llen(STARTS_KEY) >= 20, 60, "baseline worker warm-up", proc)
            time.sleep(0.5)
            rds.delete(STARTS_KEY)
            sent = {}
            t0 = time.time() + 0.05
            for i in range(300):
                sleep_until(t0 + i * 0.010)
                sent[str(i)] = time.time()
                noop.delay(str(i))
            self._wait(lambda: rds.llen(STARTS_KEY) >= 300, 30, "baseline no-op tasks", proc)
            starts = {}
            for item in rds.lrange(STARTS_KEY, 0, -1):
                tag, stamp = item.decode().split()
                starts.setdefault(tag, float(stamp))
        finally:
            self.procs.stop(proc)
        lat = [starts[k] - sent[k] for k in sent if k in starts]
        self.r["c"] = {**summary_ms(lat), "sent": len(sent), "started": len(starts)}
        c = self.r["c"]
        log(f"  (c) delay->start p50 {c['p50']:.2f} ms, p99 {c['p99']:.2f} ms, max {c['max']:.2f} ms "
            f"({c['started']}/{c['sent']} ran)")

    # ------------------------------------------------------------ (a), figures 1 and 2

    def http_phase(self) -> None:
        """(a), figure 1 and figure 2, interleaved in rounds: a, 1, 2, a, 1, 2, ...

        Both gunicorns run side by side (the idle one costs nothing), so a change in what else
        the box is doing hits the baseline and the figures alike; each figure is the median
        of its rounds.
        """
        skip, rounds = self.args.skip, self.args.rounds
        log(f"(a), figures 1 and 2: gunicorn sync w=2 each, {rounds} interleaved rounds of "
            f"wrk -d{self.args.seconds}s after 3 s warm-ups")
        base_port, app_port = free_port(), free_port()
        base = self.procs.start("baseline-gunicorn", gunicorn_cmd("baseline.wsgi:application", base_port),
                                env=base_env(), cwd=BENCH_DIR)
        app = self.procs.start("app-gunicorn", gunicorn_cmd("handoff_site.wsgi:application", app_port),
                               env=app_env(), cwd=ROOT)
        runs: dict[str, list] = {"a": [], "1": [], "2": []}
        accounts = []
        try:
            wait_for_port(base_port, base)
            wait_for_port(app_port, app)
            status, body = http_get(base_port, "/escalation")
            if status != 200:
                raise RuntimeError(f"baseline view answered {status}: {body[:300]!r}")
            token = self.agents["get"].token
            status, body = http_get(app_port, f"/api/v1/escalations/{self.ids['get'][0]}",
                                    {"Authorization": f"Bearer {token}"})
            if status != 200 or json.loads(body)["id"] != self.ids["get"][0]:
                raise RuntimeError(f"GET answered {status}: {body[:300]!r}")
            base_url, app_url = f"http://127.0.0.1:{base_port}/escalation", f"http://127.0.0.1:{app_port}"
            get_script = self._get_script()
            sample = json.dumps(self.package(f"bench-{self.nonce}-m1-t1-000001"), separators=(",", ":"))
            self.r["2_json_bytes"] = len(sample.encode())
            if "a" not in skip:
                run_wrk(base_url, threads=1, connections=32, seconds=3, name="a-warmup")
            if "1" not in skip:
                run_wrk(app_url, threads=1, connections=32, seconds=3, script=get_script, name="1-warmup")
            if "2" not in skip:
                run_wrk(app_url, threads=1, connections=8, seconds=3,
                        script=self._post_script(f"bench-{self.nonce}-w"), name="2-warmup")
            for r in range(1, rounds + 1):
                last = r == rounds
                if "a" not in skip:
                    if last:
                        self._profile("a-gunicorn", base.pid, self.args.seconds)
                    res = run_wrk(base_url, threads=1, connections=32, seconds=self.args.seconds, name=f"a-{r}")
                    runs["a"].append(res)
                    log(f"  round {r} (a) {res.rps:.0f} req/s, p99 {res.p99_ms:.1f} ms, errors {res.errors}")
                if "1" not in skip:
                    if last:
                        self._profile("1-gunicorn", app.pid, self.args.seconds)
                    res = run_wrk(app_url, threads=1, connections=32, seconds=self.args.seconds,
                                  script=get_script, name=f"1-{r}")
                    runs["1"].append(res)
                    log(f"  round {r} (1) {res.rps:.0f} req/s, p99 {res.p99_ms:.1f} ms, errors {res.errors}")
                if "2" not in skip:
                    res, account = self._post_round(app_url, app.pid, r, profile=last)
                    runs["2"].append(res)
                    accounts.append(account)
                    log(f"  round {r} (2) {res.rps:.0f} req/s, p99 {res.p99_ms:.1f} ms, errors {res.errors}; "
                        f"WAL commits {account['wal_commits']}, xact_commit {account['xact_commit']}")
        finally:
            self.procs.stop(app)
            self.procs.stop(base)
        for key, results in runs.items():
            if results:
                self.r[key] = aggregate(results)
        if accounts:
            self._commit_accounting(accounts)
        for key in ("a", "1", "2"):
            if key in self.r:
                f = self.r[key]
                log(f"  ({key}) median of {len(f['rounds'])}: {f['rps']:.0f} req/s, p50 {f['p50_ms']:.2f} ms, "
                    f"p99 {f['p99_ms']:.2f} ms, {f['non2xx']} non-2xx, socket errors {f['socket_errors']}")

    def _get_script(self) -> Path:
        token = self.agents["get"].token
        ids = ",\n".join(f'"{i}"' for i in self.ids["get"])
        script = RESULTS / "get.lua"
        script.write_text(f"""-- generated by bench/run.py: rotate among the agent's escalations
local ids = {{{ids}}}
local headers = {{["Authorization"] = "Bearer {token}", ["Accept"] = "application/json"}}
local n = 0
function init(args) n = math.random(#ids) end
function request()
  n = n % #ids + 1
  return wrk.format("GET", "/api/v1/escalations/" .. ids[n], headers)
end
""")
        return script

    def _post_script(self, prefix: str) -> Path:
        token = self.agents["post"].token
        marker = "@@RUN@@"
        body = json.dumps(self.package(marker), separators=(",", ":"))
        head, tail = body.split(marker)
        script = RESULTS / f"post-{prefix}.lua"
        script.write_text(f"""-- generated by bench/run.py: a unique run_id and Idempotency-Key per request
local head = {lua_string(head)}
local tail = {lua_string(tail)}
local token = "Bearer {token}"
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
local counter = 0
local prefix = ""
function init(args) prefix = "{prefix}-t" .. tostring(tid) .. "-" end
function request()
  counter = counter + 1
  local run = prefix .. string.format("%06d", counter)
  return wrk.format("POST", "/api/v1/escalations", {{
    ["Content-Type"] = "application/json", ["Accept"] = "application/json",
    ["Authorization"] = token, ["Idempotency-Key"] = run}}, head .. run .. tail)
end
""")
        return script

    def _post_round(self, url: str, pid: int, r: int, *, profile: bool):
        script = self._post_script(f"bench-{self.nonce}-m{r}")
        with pg() as mon:
            time.sleep(2.5)  # idle backends flush their statistics within ~1 s (PostgreSQL 15)
            before = self._db_counters(mon)
            if profile:
                self._profile("2-gunicorn", pid, self.args.seconds)
            result = run_wrk(url, threads=1, connections=8, seconds=self.args.seconds, script=script, name=f"2-{r}")
            time.sleep(2.5)
            after = self._db_counters(mon)
            wal = self._wal_commits(mon, before["lsn"], after["lsn"])
        return result, {
            "ok": result.ok,
            "xact_commit": after["xact_commit"] - before["xact_commit"],
            "xact_rollback": after["xact_rollback"] - before["xact_rollback"],
            "xids": after["next_xid"] - before["next_xid"],
            "wal_commits": wal["commits"] if wal else None,
            "wal_subxacts": wal["subxacts"] if wal else None,
        }

    def _commit_accounting(self, accounts: list[dict]) -> None:
        from escalations.models import Escalation, Event

        esc, ev = Escalation._meta.db_table, Event._meta.db_table
        with pg(BENCH_DB) as conn:
            rows, txns, event_apart = conn.execute(
                f"""SELECT count(DISTINCT e.id), count(DISTINCT e.xmin::text),
                           count(DISTINCT e.id) FILTER (WHERE v.xmin::text <> e.xmin::text)
                    FROM {esc} e JOIN {ev} v ON v.escalation_id = e.id
                    WHERE e.idempotency_key LIKE %s""",
                (f"bench-{self.nonce}-m%",),
            ).fetchone()
        ok = sum(a["ok"] for a in accounts)
        commits = sum(a["xact_commit"] for a in accounts)
        have_wal = all(a["wal_commits"] is not None for a in accounts)
        wal = {"commits": sum(a["wal_commits"] for a in accounts),
               "subxacts": sum(a["wal_subxacts"] for a in accounts)} if have_wal else None
        self.r["2_commits"] = {
            "ok_requests": ok, "rows": rows, "xact_commit": commits,
            "xact_rollback": sum(a["xact_rollback"] for a in accounts),
            "xact_commit_per_request": commits / ok if ok else float("nan"),
            "xids_cluster": sum(a["xids"] for a in accounts),
            "distinct_write_txns": txns, "event_row_in_other_txn": event_apart, "wal": wal,
            "rounds": accounts,
        }
        c = self.r["2_commits"]
        log(f"  (2) commits: {rows} escalations stored in {txns} transactions; WAL commit records "
            f"{wal['commits'] if wal else 'n/a'}; xact_commit/2xx {c['xact_commit_per_request']:.2f}; "
            f"event rows in another txn: {event_apart}")

    def _db_counters(self, mon) -> dict:
        commits, rollbacks = mon.execute(
            "SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = %s", (BENCH_DB,)
        ).fetchone()
        next_xid = int(mon.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text").fetchone()[0])
        lsn = mon.execute("SELECT pg_current_wal_flush_lsn()::text").fetchone()[0]
        return {"xact_commit": commits, "xact_rollback": rollbacks, "next_xid": next_xid, "lsn": lsn}

    def _wal_commits(self, mon, start_lsn: str, end_lsn: str) -> dict | None:
        """Commit records in the WAL between two LSNs of transactions that wrote to the bench DB.

        pg_waldump reads the cluster's WAL; a transaction is ours if any of its records (or
        its subtransactions' records) touches a relation of handoff_bench. Read-only
        transactions write no commit record, so this counts exactly the write commits.
        """
        import glob
        import re
        import subprocess

        major = mon.execute("SHOW server_version_num").fetchone()[0][:2]
        tools = sorted(glob.glob(f"/usr/lib/postgresql/{major}/bin/pg_waldump")) or sorted(
            glob.glob("/usr/lib/postgresql/*/bin/pg_waldump")
        )
        if not tools:
            return None
        data_dir = mon.execute("SHOW data_directory").fetchone()[0]
        dboid = str(mon.execute("SELECT oid FROM pg_database WHERE datname = %s", (BENCH_DB,)).fetchone()[0])
        try:
            result = subprocess.run(
                [tools[-1], "-p", f"{data_dir}/pg_wal", "-s", start_lsn, "-e", end_lsn],
                capture_output=True, text=True, timeout=120,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        ours: set[str] = set()
        commits: list[tuple[str, list[str]]] = []
        for line in result.stdout.splitlines():
            tx = re.search(r"tx:\s+(\d+),", line)
            if not tx:
                continue
            if "desc: COMMIT" in line:
                subs = re.search(r"subxacts: ([\d ]+)", line)
                commits.append((tx.group(1), subs.group(1).split() if subs else []))
            for rel in re.findall(r"rel \d+/(\d+)/\d+", line):
                if rel == dboid:
                    ours.add(tx.group(1))
        mine = [(top, subs) for top, subs in commits if top in ours or any(s in ours for s in subs)]
        if not commits:
            return None
        return {"commits": len(mine), "subxacts": sum(len(subs) for _, subs in mine),
                "cluster_commits": len(commits)}

    # ------------------------------------------------------------ figure 3

    def _wait(self, done, timeout: float, what: str, proc=None) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{what}: process exited with {proc.returncode} (see {LOGS})")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what}: not done after {timeout:.0f} s")
            time.sleep(0.05)

    def _profile(self, name: str, pid: int, seconds: float) -> None:
        """With --profile: py-spy samples `pid` and its children for `seconds` (in the background)."""
        if self.args.profile:
            self.profiles.append(name)
            start_profile(self.procs, pid, name, max(1, round(seconds)))

    def deciders(self) -> DeciderPool:
        if self._deciders is None:
            self._deciders = DeciderPool(self.procs, self.args.deciders)
        return self._deciders

    def figure_3(self) -> None:
        log("figure 3: decision commit -> signed webhook received; Celery prefork -c 2 on Redis; "
            f"{HOOK_N} decisions 20 ms apart")
        from handoff_site.celery import app as celery_app

        celery_app.set_current()
        out = RESULTS / "webhooks.jsonl"
        out.unlink(missing_ok=True)
        secret = self.agents["hook"].agent.signing_secret
        receiver = self.procs.start("receiver", [python(), str(BENCH_DIR / "receiver.py"),
                                                 str(self.receiver_port), secret, str(out)],
                                    env=dict(os.environ), cwd=BENCH_DIR)
        worker = None
        deciders = self.deciders()
        try:
            wait_for_port(self.receiver_port, receiver)
            worker = self.procs.start("app-celery", celery_cmd("handoff_site"), env=app_env(), cwd=ROOT)

            def received() -> dict[str, dict]:
                found = {}
                if out.exists():
                    for line in out.read_text().splitlines():
                        item = json.loads(line)
                        found.setdefault(item["escalation"], item)
                return found

            ids = self.ids["hook"]
            warm, measured = ids[:HOOK_WARM], ids[HOOK_WARM:]
            warm_stamps, _ = deciders.run(warm, 0.020)
            self._wait(lambda: len(received()) >= HOOK_WARM, 60, "webhook warm-up", worker)
            time.sleep(1.0)
            pace = min(50.0, deciders.sustainable_rate(warm_stamps))
            self._profile("3-celery", worker.pid, HOOK_N / pace + 2)
            stamps, late = deciders.run(measured, 1.0 / pace)
            self._wait(lambda: len(received()) >= len(ids), 30, "webhooks", worker)
            time.sleep(0.5)
            lines = out.read_text().splitlines()
        finally:
            if worker is not None:
                self.procs.stop(worker)
            self.procs.stop(receiver)
        got = received()
        arrivals = sorted(got[i]["t"] for i in measured if i in got)
        delivered_per_s = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) if len(arrivals) > 1 else float("nan")
        first = [got[i]["t"] - stamps[i][1] for i in measured[:10] if i in got]
        from_commit = [got[i]["t"] - stamps[i][1] for i in measured if i in got]
        from_return = [got[i]["t"] - stamps[i][2] for i in measured if i in got]
        decide_s = [(stamps[i][2] - stamps[i][0]) for i in measured]
        hooks_s = [(stamps[i][2] - stamps[i][1]) for i in measured]
        span = max(s[0] for s in stamps.values()) - min(s[0] for s in stamps.values())
        self.r["3"] = {
            **summary_ms(from_commit),
            "from_return": summary_ms(from_return),
            "decide_call": summary_ms(decide_s),
            "after_commit_hooks": summary_ms(hooks_s),
            "late_p99_ms": percentile(late, 99),
            "decisions": len(measured), "received": sum(1 for i in measured if i in got),
            "deliveries_total": len(lines), "duplicates": len(lines) - len(got),
            "bad_signatures": sum(1 for line in lines if not json.loads(line)["signature_ok"]),
            "status_not_decided": sum(1 for i in measured if i in got and got[i]["status"] != "decided"),
            "pace_per_s": (len(measured) - 1) / span if span else float("nan"),
            "pace_requested": 50.0,
            "delivered_per_s": delivered_per_s,
            "first10_p50": percentile([x * 1000 for x in first], 50),
        }
        f = self.r["3"]
        log(f"  (3) commit->received p50 {f['p50']:.2f} ms, p99 {f['p99']:.2f} ms, max {f['max']:.2f} ms; "
            f"{f['received']}/{f['decisions']} received, {f['bad_signatures']} bad signatures, "
            f"{f['duplicates']} duplicates; on-commit hooks p50 {f['after_commit_hooks']['p50']:.2f} ms; "
            f"decisions at {f['pace_per_s']:.0f}/s (late p99 {f['late_p99_ms']:.1f} ms), webhooks arrived at "
            f"{delivered_per_s:.0f}/s; the first 10: p50 {f['first10_p50']:.1f} ms")

    # ------------------------------------------------------------ figure 4

    def _server_db(self, mon, pid: int) -> dict:
        ports = tcp_local_ports_to(pid, PG_PORT)
        rows = mon.execute(
            "SELECT client_port, coalesce(state, '?') FROM pg_stat_activity WHERE datname = %s", (BENCH_DB,)
        ).fetchall()
        states = [state for port, state in rows if port in ports]
        return {
            "total": len(states),
            "idle": states.count("idle"),
            "active": states.count("active"),
            "idle_in_transaction": sum(1 for s in states if s.startswith("idle in transaction")),
            "bench_db_all_clients": len(rows),
        }

    def _longpoll_client(self, port: int, ids: list[str], name: str, deadline: float):
        import subprocess

        ids_file = RESULTS / f"{name}-ids.txt"
        ids_file.write_text("\n".join(ids))
        out = RESULTS / f"{name}.json"
        out.unlink(missing_ok=True)
        proc = self.procs.start(
            name, [python(), str(BENCH_DIR / "longpoll_client.py"), str(port), self.agents["poll"].token,
                   str(ids_file), str(out), "60", str(deadline)],
            env=dict(os.environ), cwd=BENCH_DIR, stdout=subprocess.PIPE,
        )
        return proc, out

    def figure_4(self) -> None:
        log(f"figure 4: {POLL_N} agents long-polling at once (?wait=60), uvicorn 1 process")
        port = free_port()
        deciders = self.deciders()
        server = self.procs.start(
            "app-uvicorn",
            [python(), "-m", "uvicorn", "handoff_site.asgi:application", "--host", "127.0.0.1", "--port",
             str(port), "--lifespan", "off", "--log-level", "warning", "--no-access-log",
             "--backlog", "4096"],
            env=app_env(), cwd=ROOT,
        )
        clients = []
        try:
            wait_for_port(port, server)
            token = self.agents["poll"].token
            for esc_id in self.ids["poll"][:5]:  # warm Django up under ASGI (answers at once)
                status, body = http_get(port, f"/api/v1/escalations/{esc_id}", {"Authorization": f"Bearer {token}"})
                if status != 200:
                    raise RuntimeError(f"uvicorn GET answered {status}: {body[:300]!r}")
            rss_idle = rss_mb(server.pid)[0]
            warm_ids, ids = self.ids["poll"][:POLL_WARM], self.ids["poll"][POLL_WARM:]

            # warm-up round: 20 long-polls woken by 20 decisions (starts the Redis listener)
            client, _ = self._longpoll_client(port, warm_ids, "longpoll-warmup", 40)
            clients.append(client)
            read_line(client, 40, "long-poll warm-up client")
            time.sleep(1.0)
            warm_stamps, _ = deciders.run(warm_ids, 0.020)
            if read_line(client, 40, "long-poll warm-up client") != "DONE":
                raise RuntimeError("long-poll warm-up failed")
            self.procs.stop(client)

            # the measured round
            client, out = self._longpoll_client(port, ids, "longpoll", 100)
            clients.append(client)
            t_open = time.monotonic()
            _, sent, connect_errors = read_line(client, 45, "long-poll client").split()
            sent_s = time.monotonic() - t_open
            # A long-poll on an already decided escalation answers once its first check has run;
            # the checks run one at a time in one thread, in arrival order, so its answer means
            # every waiter before it has done its first check and is waiting.
            time.sleep(0.5)
            t_sentinel = time.monotonic()
            status, _ = http_get(port, f"/api/v1/escalations/{warm_ids[0]}?wait=60",
                                 {"Authorization": f"Bearer {token}"}, timeout=70)
            settle_s = time.monotonic() - t_sentinel
            samples = []
            self._profile("4-uvicorn-waiting", server.pid, 4)
            cpu0, t_cpu0 = cpu_seconds(server.pid), time.monotonic()
            with pg() as mon:
                for _ in range(8):
                    rss, hwm = rss_mb(server.pid)
                    samples.append({"t": time.time(), "rss_mb": rss, "hwm_mb": hwm,
                                    **self._server_db(mon, server.pid)})
                    time.sleep(0.5)
            waiting_cpu = (cpu_seconds(server.pid) - cpu0) / (time.monotonic() - t_cpu0)
            cpu_before = cpu_seconds(server.pid)
            pace = min(self.args.pace, deciders.sustainable_rate(warm_stamps))
            self._profile("4-uvicorn", server.pid, len(ids) / pace + 2)
            stamps, late = deciders.run(ids, 1.0 / pace)
            line = read_line(client, 90, "long-poll client")
            if line != "DONE":
                raise RuntimeError(f"long-poll client: {line!r}")
            server_cpu = cpu_seconds(server.pid) - cpu_before
            rss_after, hwm_after = rss_mb(server.pid)
            records = json.loads(out.read_text())
        finally:
            for client in clients:
                self.procs.stop(client)
            self.procs.stop(server)
        first_commit = min(s[1] for s in stamps.values())
        answered = [r for r in records if "t_recv" in r]
        early = [r for r in answered if r["t_recv"] < stamps[r["id"]][1]]
        wake = [r["t_recv"] - stamps[r["id"]][1] for r in answered if r["t_recv"] >= stamps[r["id"]][1]]
        wake_return = [r["t_recv"] - stamps[r["id"]][2] for r in answered if r["t_recv"] >= stamps[r["id"]][1]]
        span = max(s[0] for s in stamps.values()) - min(s[0] for s in stamps.values())
        by_commit = sorted((stamps[r["id"]][1], r["t_recv"] - stamps[r["id"]][1]) for r in answered)
        first20 = [lat * 1000 for _, lat in by_commit[:20]]
        worst = max(samples, key=lambda s: (s["active"] + s["idle_in_transaction"], s["total"]))
        self.r["4"] = {
            "clients": len(ids), "sent": int(sent), "connect_errors": int(connect_errors),
            "send_s": sent_s, "settle_s": settle_s, "waiting_cpu": waiting_cpu,
            "rss_idle_mb": rss_idle, "rss_waiting_mb": max(s["rss_mb"] for s in samples),
            "rss_after_mb": rss_after, "hwm_mb": hwm_after,
            "db_samples": samples, "db_worst": worst,
            "db_total_max": max(s["total"] for s in samples),
            "db_busy_max": max(s["active"] + s["idle_in_transaction"] for s in samples),
            **summary_ms(wake),
            "from_return": summary_ms(wake_return),
            "answered": len(answered), "early": len(early),
            "http_200": sum(1 for r in answered if r.get("http") == 200),
            "decided": sum(1 for r in answered if r.get("status") == "decided"),
            "errors": sum(1 for r in records if "error" in r),
            "pace_per_s": (len(ids) - 1) / span if span else float("nan"),
            "late_p99_ms": percentile(late, 99), "pace_requested": self.args.pace,
            "first20_p50": percentile(first20, 50),
            "polls_max": max((r.get("polls", 1) for r in records), default=0),
            "server_cpu_s": server_cpu, "decide_s": span, "first_commit": first_commit,
        }
        dump_json(RESULTS / "longpoll-stamps.json", stamps)
        f = self.r["4"]
        log(f"  (4) {f['sent']} waiting (sent in {sent_s:.1f} s, all first checks done {settle_s:.1f} s later; "
            f"server at {waiting_cpu * 100:.0f}% of a core while they wait); RSS {f['rss_waiting_mb']:.1f} MB "
            f"(idle {rss_idle:.1f} MB); server DB connections <= {f['db_total_max']}, "
            f"active/idle-in-txn <= {f['db_busy_max']}")
        log(f"      wake-up p50 {f['p50']:.2f} ms, p99 {f['p99']:.2f} ms, max {f['max']:.2f} ms; "
            f"{f['decided']}/{f['clients']} answered 'decided', {f['early']} early, {f['errors']} errors; "
            f"decisions at {f['pace_per_s']:.0f}/s (late p99 {f['late_p99_ms']:.1f} ms)")

    # ------------------------------------------------------------ report

    def run(self) -> int:
        skip = self.args.skip
        self.r["load_start"] = loadavg()
        self.r["seconds_per_round"] = self.args.seconds
        self.prepare()
        stamp = source_stamp()
        for key, phase in (("b", self.baseline_b), ("a12", self.http_phase),
                           ("c", self.baseline_c), ("3", self.figure_3), ("4", self.figure_4)):
            if all(k in skip for k in key):
                continue
            if source_stamp() != stamp:  # the app changed under us: new servers run the new code
                stamp = source_stamp()
                log(f"the app's code changed before phase {key}: migrating again")
                self.r.setdefault("code_changed_before", []).append(key)
                subprocess_run([python(), "manage.py", "migrate", "--noinput"], env=app_env(), timeout=300)
            try:
                phase()
            except Exception as exc:  # report the others; the table shows the hole
                log(f"phase {key} FAILED: {type(exc).__name__}: {exc}")
                self.r.setdefault("failures", {})[key] = f"{type(exc).__name__}: {exc}"
        if self._deciders is not None:
            self._deciders.close()
        self.r["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        self.r["load_end"] = loadavg()
        self.r["profiled"] = bool(self.profiles)
        dump_json(RESULTS / "latest.json", self.r)
        table = report(self.r)
        print()
        print(table)
        (RESULTS / "latest.md").write_text(table + "\n")
        if self.profiles:
            time.sleep(1.0)
            summaries = "\n\n".join(summarize_profile(name) for name in self.profiles)
            print()
            print(summaries)
            with open(RESULTS / "latest.md", "a") as fh:
                fh.write("\n```\n" + summaries + "\n```\n")
        log(f"written to {RESULTS / 'latest.md'} (raw numbers: latest.json, logs: {LOGS})")
        return 0 if not self.r.get("failures") else 1


def aggregate(results: list) -> dict:
    """Rounds of one wrk measurement: medians of req/s and of the latency percentiles, sums of counts."""
    from statistics import median

    errors: dict[str, int] = {}
    for res in results:
        for kind, n in res.socket_errors.items():
            errors[kind] = errors.get(kind, 0) + n
    return {
        "rps": median(r.rps for r in results),
        "p50_ms": median(r.p50_ms for r in results),
        "p90_ms": median(r.p90_ms for r in results),
        "p99_ms": median(r.p99_ms for r in results),
        "requests": sum(r.requests for r in results),
        "seconds": sum(r.seconds for r in results),
        "non2xx": sum(r.non2xx for r in results),
        "socket_errors": errors,
        "errors": sum(r.errors for r in results),
        "ok": sum(r.ok for r in results),
        "rounds": [{"rps": r.rps, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms, "errors": r.errors} for r in results],
    }


def source_stamp() -> str:
    """A fingerprint of the app's code (other engineers edit this tree while the bench runs)."""
    import hashlib

    digest = hashlib.sha1(usedforsecurity=False)
    for package in ("escalations", "reviews", "handoff_site"):
        for path in sorted((ROOT / package).rglob("*.py")):
            stat = path.stat()
            digest.update(f"{path}:{stat.st_mtime_ns}:{stat.st_size}".encode())
    return digest.hexdigest()


def subprocess_run(cmd, *, env, timeout):
    import subprocess

    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------- the table


def _fmt(value, unit: str = "", digits: int = 1) -> str:
    if value is None or value != value:  # None or NaN
        return "n/a"
    text = f"{value:,.{digits}f}"
    return f"{text} {unit}".strip()


def spread(num: dict | None, den: dict | None, key: str) -> str:
    """min-max over the rounds of a per-round ratio, e.g. figure 1 req/s over (a) req/s."""
    if not num or not den or len(num.get("rounds", [])) < 2:
        return ""
    ratios = [n[key] / d[key] for n, d in zip(num["rounds"], den["rounds"], strict=False) if d[key]]
    if not ratios:
        return ""
    if key == "rps":
        return f" (rounds {min(ratios) * 100:.0f}-{max(ratios) * 100:.0f}%)"
    return f" (rounds {min(ratios):.2f}-{max(ratios):.2f}x)"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def report(r: dict) -> str:
    a, b, c = r.get("a"), r.get("b"), r.get("c")
    f1, f2, f3, f4 = r.get("1"), r.get("2"), r.get("3"), r.get("4")
    c2 = r.get("2_commits")
    rows = []

    def row(fig, what, value, base, ratio, target, ok):
        rows.append(f"| {fig} | {what} | {value} | {base} | {ratio} | {target} | {verdict(ok)} |")

    a_rps = a["rps"] if a else None
    a_p99 = a["p99_ms"] if a else None
    if f1:
        ratio = f1["rps"] / a_rps if a_rps else None
        row("1", "`GET /api/v1/escalations/{id}`, 32 conns: throughput", _fmt(f1["rps"], "req/s", 0),
            f"(a) {_fmt(a_rps, 'req/s', 0)}", _fmt(ratio and ratio * 100, "%", 0) + spread(f1, a, "rps"),
            ">= 70% of (a)",
            ratio is not None and ratio >= 0.70 and f1["non2xx"] == 0)
        ratio = f1["p99_ms"] / a_p99 if a_p99 else None
        row("1", "same: p99 latency", _fmt(f1["p99_ms"], "ms", 2), f"(a) {_fmt(a_p99, 'ms', 2)}",
            _fmt(ratio, "x", 2) + spread(f1, a, "p99_ms"), "<= 2x (a)", ratio is not None and ratio <= 2.0)
        row("1", "same: non-2xx / socket errors", f"{f1['non2xx']} / {sum(f1['socket_errors'].values())}",
            "-", "-", "0", f1["errors"] == 0)
    if f2:
        ratio = f2["rps"] / a_rps if a_rps else None
        row("2", f"`POST /api/v1/escalations`, 8 conns, {r.get('2_json_bytes', 0):,} B packages: throughput",
            _fmt(f2["rps"], "req/s", 0), f"(a) {_fmt(a_rps, 'req/s', 0)}",
            _fmt(ratio and ratio * 100, "%", 0) + spread(f2, a, "rps"), ">= 35% of (a)", ratio is not None and ratio >= 0.35)
        ratio = f2["p99_ms"] / a_p99 if a_p99 else None
        row("2", "same: p99 latency", _fmt(f2["p99_ms"], "ms", 2), f"(a) {_fmt(a_p99, 'ms', 2)}",
            _fmt(ratio, "x", 2) + spread(f2, a, "p99_ms"), "<= 4x (a)", ratio is not None and ratio <= 4.0)
        if b:
            ratio = f2["rps"] / b["ops_s"]
            row("2", "same: throughput vs raw INSERT+COMMIT", _fmt(f2["rps"], "req/s", 0),
                f"(b) {_fmt(b['ops_s'], 'ops/s', 0)}", _fmt(ratio * 100, "%", 0), "(info)", None)
        if c2:
            wal = c2.get("wal")
            if wal:
                per_row = wal["commits"] / c2["rows"] if c2["rows"] else float("nan")
                row("2", "same: write commits per stored escalation (WAL COMMIT records of txns writing "
                    "handoff_bench / escalations the run stored)",
                    f"{_fmt(per_row, '', 3)} ({wal['commits']:,} / {c2['rows']:,})", "-", "-", "1 per request",
                    wal["commits"] == c2["rows"] == c2["distinct_write_txns"] and c2["event_row_in_other_txn"] == 0)
            row("2", "same: pg_stat_database xact_commit delta / 2xx (read-only autocommit statements count too)",
                _fmt(c2["xact_commit_per_request"], "", 2), "-", "-", "(reported)", None)
        row("2", "same: non-2xx / socket errors", f"{f2['non2xx']} / {sum(f2['socket_errors'].values())}",
            "-", "-", "0", f2["errors"] == 0)
    if f3:
        base_p50, base_p99 = (c["p50"], c["p99"]) if c else (None, None)
        row("3", f"decision commit -> webhook received (decisions at {f3['pace_per_s']:.0f}/s): p50", _fmt(f3["p50"], "ms", 2),
            f"(c) {_fmt(base_p50, 'ms', 2)}", _fmt(base_p50 and f3["p50"] / base_p50, "x", 1), "<= 10 ms",
            f3["p50"] <= 10.0 and f3["received"] == f3["decisions"])
        row("3", "same: p99", _fmt(f3["p99"], "ms", 2), f"(c) {_fmt(base_p99, 'ms', 2)}",
            _fmt(base_p99 and f3["p99"] / base_p99, "x", 1), "<= 40 ms",
            f3["p99"] <= 40.0 and f3["received"] == f3["decisions"])
        row("3", "same: received / decisions, bad signatures", f"{f3['received']}/{f3['decisions']}, "
            f"{f3['bad_signatures']}", "-", "-", "all, 0", f3["received"] == f3["decisions"]
            and f3["bad_signatures"] == 0)
    if f4:
        row("4", f"{f4['clients']:,} agents long-polling: server RSS while waiting",
            _fmt(f4["rss_waiting_mb"], "MB", 1), f"idle server {_fmt(f4['rss_idle_mb'], 'MB', 1)}", "-",
            "<= 200 MB", f4["rss_waiting_mb"] <= 200)
        w = f4["db_worst"]
        row("4", "same: server's DB connections while they wait (worst of 8 samples, pg_stat_activity)",
            f"{w['total']} held: {w['active']} active, {w['idle_in_transaction']} idle in txn, "
            f"{w['idle']} idle (pool)", "-", "-", "none held per waiting request: <= pool max (10), "
            "0 idle in txn", f4["db_total_max"] <= 10 and all(s["idle_in_transaction"] == 0 for s in f4["db_samples"]))
        base_p99 = c["p99"] if c else None
        row("4", f"same: wake-up (decision commit -> answer), decisions at {f4['pace_per_s']:.0f}/s: p99",
            _fmt(f4["p99"], "ms", 2), f"p50 {_fmt(f4['p50'], 'ms', 2)}", "-", "<= 50 ms",
            f4["p99"] <= 50.0 and f4["decided"] == f4["clients"])
        row("4", "same: answered 'decided' / early / errors",
            f"{f4['decided']}/{f4['clients']} / {f4['early']} / {f4['errors']}", "-", "-", "all / 0 / 0",
            f4["decided"] == f4["clients"] and f4["early"] == 0 and f4["errors"] == 0)

    lines = [
        f"## Handoff bench, {r.get('started', '')} (PostgreSQL {r.get('postgres', '?')}, 127.0.0.1)",
        "",
        f"Machine: {os.cpu_count()} CPUs, load average {r.get('load_start', '?')} at the start and "
        f"{r.get('load_end', '?')} at the end (1, 5, 15 min; other work on the box shares these CPUs)."
        + (" Profiled run: py-spy was sampling the servers, which perturbs the figures." if r.get("profiled") else "")
        + (f" The app's code changed during the run (before phases {', '.join(r['code_changed_before'])}): "
           "later phases ran the newer code." if r.get("code_changed_before") else ""),
        "",
        "| # | figure | measured | baseline (this run) | ratio | target | result |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        "Baselines measured in this run:",
        "",
        "| baseline | throughput | p50 | p99 | notes |",
        "| --- | --- | --- | --- | --- |",
    ]
    if a:
        lines.append(f"| (a) bare Django PK-SELECT view, gunicorn sync w=2, wrk -t1 -c32, median of {len(a['rounds'])} x "
                     f"{r.get('seconds_per_round', 10)} s | "
                     f"{_fmt(a['rps'], 'req/s', 0)} | {_fmt(a['p50_ms'], 'ms', 2)} | {_fmt(a['p99_ms'], 'ms', 2)} | "
                     f"{a['requests']:,} requests, {a['non2xx']} non-2xx, {sum(a['socket_errors'].values())} socket errors |")
    if b:
        lines.append(f"| (b) raw psycopg INSERT {b['json_bytes']:,} B jsonb + COMMIT, 1 conn | "
                     f"{_fmt(b['ops_s'], 'ops/s', 0)} | {_fmt(b['p50'], 'ms', 2)} | {_fmt(b['p99'], 'ms', 2)} | "
                     f"{b['ops']:,} commits in {b['seconds']:.1f} s |")
    if c:
        lines.append(f"| (c) Celery no-op delay->start, prefork -c 2, acks_late, Redis | - | "
                     f"{_fmt(c['p50'], 'ms', 2)} | {_fmt(c['p99'], 'ms', 2)} | {c['started']}/{c['sent']} tasks, "
                     f"10 ms apart, max {_fmt(c['max'], 'ms', 2)} |")
    details = []
    if f1:
        details.append(f"- (1) {f1['requests']:,} requests in {f1['seconds']:.1f} s ({len(f1['rounds'])} rounds "
                       f"interleaved with (a) and (2); medians shown), p50 {_fmt(f1['p50_ms'], 'ms', 2)}, "
                       f"p90 {_fmt(f1['p90_ms'], 'ms', 2)}; per round: "
                       + ", ".join(f"{x['rps']:.0f} req/s p99 {x['p99_ms']:.0f} ms" for x in f1["rounds"])
                       + (("; (a) per round: " + ", ".join(f"{x['rps']:.0f} req/s p99 {x['p99_ms']:.0f} ms"
                                                          for x in a["rounds"])) if a else "") + ".")
    if f2 and c2:
        details.append(
            f"- (2) {f2['requests']:,} requests ({c2['ok_requests']:,} 2xx) in {f2['seconds']:.1f} s, p50 "
            f"{_fmt(f2['p50_ms'], 'ms', 2)}; {c2['rows']:,} escalations stored by the measured run, in "
            f"{c2['distinct_write_txns']:,} distinct transactions (xmin), their 'created' events in another "
            f"transaction: {c2['event_row_in_other_txn']}; WAL commit records of transactions writing "
            f"{BENCH_DB}: {(c2.get('wal') or {}).get('commits', 'n/a')}, with "
            f"{(c2.get('wal') or {}).get('subxacts', 'n/a')} savepoint subtransactions inside them (a savepoint "
            f"is no extra commit and no extra WAL flush); pg_stat_database xact_commit delta "
            f"{c2['xact_commit']:,} ({_fmt(c2['xact_commit_per_request'], '', 2)}/request: each autocommit "
            f"SELECT outside the write transaction counts as a read-only commit, without a WAL flush); XIDs "
            f"assigned cluster-wide {c2['xids_cluster']:,}; rollbacks {c2['xact_rollback']}.")
    if f3:
        details.append(
            f"- (3) commit stamped by wrapping the decider processes' connection.commit() (time.time() right after "
            f"COMMIT returns, before the on-commit hooks); measured from the service's return instead: p50 "
            f"{_fmt(f3['from_return']['p50'], 'ms', 2)}, p99 {_fmt(f3['from_return']['p99'], 'ms', 2)}. "
            f"On-commit hooks in the deciding process (Celery publish, channel-layer group_send x2, wake-up "
            f"publish): p50 {_fmt(f3['after_commit_hooks']['p50'], 'ms', 2)}, p99 "
            f"{_fmt(f3['after_commit_hooks']['p99'], 'ms', 2)}; whole escalation_decide call p50 "
            f"{_fmt(f3['decide_call']['p50'], 'ms', 2)}. Max {_fmt(f3['max'], 'ms', 2)}, paced at "
            f"{f3['pace_per_s']:.0f}/s (50/s asked), {f3['duplicates']} duplicate deliveries. Webhooks arrived at "
            f"{f3['delivered_per_s']:.1f}/s: below the decision rate the worker queues, and latency grows with "
            f"the queue; the first 10 decisions (empty queue): p50 {_fmt(f3['first10_p50'], 'ms', 1)}.")
    if f4:
        details.append(
            f"- (4) {f4['sent']:,} requests open in {f4['send_s']:.1f} s ({f4['connect_errors']} connect errors), "
            f"all first checks done {f4['settle_s']:.1f} s later; the server then used "
            f"{f4['waiting_cpu'] * 100:.0f}% of a core while they waited (re-checks); RSS idle {_fmt(f4['rss_idle_mb'], 'MB')}, waiting "
            f"{_fmt(f4['rss_waiting_mb'], 'MB')}, after {_fmt(f4['rss_after_mb'], 'MB')} (peak {_fmt(f4['hwm_mb'], 'MB')}); "
            f"all clients of {BENCH_DB} while waiting: {f4['db_worst']['bench_db_all_clients']}. Wake-up p50 "
            f"{_fmt(f4['p50'], 'ms', 2)}, p90 {_fmt(f4['p90'], 'ms', 2)}, max {_fmt(f4['max'], 'ms', 2)}; from the "
            f"service's return: p99 {_fmt(f4['from_return']['p99'], 'ms', 2)}; the first 20 decisions: p50 "
            f"{_fmt(f4['first20_p50'], 'ms', 1)}. {f4['clients']:,} decisions in {f4['decide_s']:.1f} s "
            f"({f4['pace_requested']:.0f}/s asked; the deciders sustain less), server CPU meanwhile "
            f"{f4['server_cpu_s']:.1f} s; polls per agent at most: {f4['polls_max']} (a 2nd one means its first "
            f"wait ran out before its decision).")
    if details:
        lines += ["", "Details:", "", *details]
    if r.get("failures"):
        lines += ["", "Phases that failed:", ""]
        lines += [f"- {k}: {v}" for k, v in r["failures"].items()]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration per measured run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of (a), 1 and 2")
    parser.add_argument("--pace", type=float, default=200.0, help="figure 4 decisions per second")
    parser.add_argument("--deciders", type=int, default=4, help="decider processes (figures 3 and 4)")
    parser.add_argument("--profile", action="store_true", help="py-spy the servers during the measured phases")
    parser.add_argument("--skip", default="", help="comma list of phases to leave out: a,b,c,1,2,3,4")
    args = parser.parse_args()
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    bench = Bench(args)

    def on_signal(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    started = time.monotonic()
    try:
        return bench.run()
    finally:
        bench.procs.stop_all()
        log(f"all bench processes stopped; {time.monotonic() - started:.0f} s in all")


if __name__ == "__main__":
    sys.exit(main())
