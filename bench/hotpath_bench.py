#!/usr/bin/env python
"""`make bench-hotpath`: the CPU and the queries of one create and one decide, in-process.

PostgreSQL on 127.0.0.1 (its own database `handoff_bench_hotpath`, dropped, re-created and
migrated) and REDIS_URL (default redis://127.0.0.1:6379/0): the production settings
(DEBUG off, psycopg's pool with server-side binding), everything in this one process, no
server and no network in between, so what is left is the app's own cost. Each operation
runs `--warmup` times, then `--ops` timed times; per operation it takes this process's CPU
time (time.process_time: user + system, immune to the box's queueing, not to its cache
contention) and wall time, and counts the SQL statements sent (a connection execute
wrapper, BEGIN and COMMIT excluded as Django sends them outside it). The PostgreSQL
server processes of the database (the pool's connections) are timed too (/proc, clock
ticks of 10 ms: their mean per operation over the timed run), since on one machine their
CPU is the app's as much.

Operations:
- create: POST /api/v1/escalations through the WSGI application gunicorn serves
  (handoff_site.wsgi: the rate limiter's Redis call, the body limit, Django's middleware,
  ninja, the agent's bearer token), a ~3.1 KB tier-3 package with a new run and
  Idempotency-Key each time (bench/fixtures.Context.package);
- read: GET /api/v1/escalations/{id} through the same application, rotating among 200 of
  the agent's open escalations (figure 1's request);
- decide (service): services.escalation_decide, a human reviewer, option `update-callers`,
  on an open escalation (what a reviewer's decision costs wherever it comes from);
- decide (reviewer API): POST /api/v1/review/escalations/{id}/decision with a reviewer's
  token, through the request cycle.

    .venv/bin/python bench/hotpath_bench.py [--ops 300] [--warmup 30] [--sql] [--only create|read|decide]
    .venv/bin/python bench/hotpath_bench.py --callgrind --only create   # instructions per operation

--callgrind runs this script again under valgrind's callgrind with instrumentation off, and
switches it on (callgrind_control -i) around each kind's timed operations only (default 40
after 20): it prints the instructions this process executed per operation (not
PostgreSQL's or Redis's), repeatable to ~0.1 % at any load, unlike CPU time. The
callgrind.out files stay in bench/results/ for callgrind_annotate.

HOTPATH_DB names its database (default handoff_bench_hotpath), beside another checkout's run.

--without policy,auth,limiter,live measures what a create would cost without those parts
(a ceiling for planning, never a figure: each is replaced in this process only): the
policy and calibration read answered from a per-process memo, the token's read likewise,
the rate limiter's Redis call skipped, the live update after commit not sent.

--sql prints the statements of one more operation of each kind. The table goes to stdout
and to bench/results/hotpath.md.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from lib import ROOT, use_the_project_venv

use_the_project_venv()

import django  # noqa: E402

sys.path.insert(0, str(ROOT))
from app import recreate_database  # noqa: E402
from lib import RESULTS, cpu_seconds, loadavg, log, percentile  # noqa: E402

DB = os.environ.get("HOTPATH_DB", "handoff_bench_hotpath")


def without(parts: set[str]) -> None:
    """Replace the named parts of a create in this process (--without): what it would cost
    without them."""
    from escalations import auth
    from escalations.services import policies
    from escalations.transport import events
    from handoff_site import ratelimit

    def memo(function: Callable[..., Any]) -> Callable[..., Any]:
        found: dict[tuple[Any, ...], Any] = {}
        return lambda *key: found[key] if key in found else found.setdefault(key, function(*key))

    if "policy" in parts:
        policies.rules_and_calibration = memo(policies.rules_and_calibration)
    if "auth" in parts:
        auth.agent_for_token = memo(auth.agent_for_token)  # type: ignore[attr-defined]
    if "limiter" in parts:
        ratelimit.Limiter.check = lambda self, pairs: None  # type: ignore[method-assign]
    if "live" in parts:
        events._send = lambda notice, agent_id: None


def setup_django() -> None:
    os.environ.update(
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{DB}",
        REDIS_URL=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        DEBUG="0",
        SECRET_KEY="bench-hotpath-" + "k" * 40,
        ALLOWED_HOSTS="testserver,127.0.0.1",
        SECURE_SSL_REDIRECT="0",
        HANDOFF_VAR_DIR=str(RESULTS / "var-hotpath"),
        RATE_LIMIT_AGENT="1000000/minute",
        RATE_LIMIT_ADDRESS="1000000/minute",
        DJANGO_SETTINGS_MODULE="handoff_site.settings",
    )
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


@contextmanager
def counting(statements: list[str]) -> Iterator[None]:
    """Every statement the default connection sends meanwhile, appended to `statements`."""
    from django.db import connection

    def wrapper(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        statements.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        yield


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        from django.contrib.auth.models import Group, User
        from django.test import Client
        from fixtures import Context  # the ~3 KB package figure 2 posts

        from escalations import services
        from reviews.services import reviewer_token_issue

        self.args = args
        self.nonce = uuid.uuid4().hex[:8]
        self.context = Context(args=args)
        self.poster = services.agent_create(
            name=f"hotpath-post-{self.nonce}", daily_budget=1_000_000
        )
        self.owner = services.agent_create(
            name=f"hotpath-open-{self.nonce}", daily_budget=1_000_000
        )
        self.reviewer = User.objects.create_user(f"hotpath-reviewer-{self.nonce}")
        self.reviewer.groups.add(Group.objects.get_or_create(name="reviewer")[0])
        self.reviewer_token = reviewer_token_issue(user=self.reviewer)
        self.client = Client()
        self.counter = 0
        self.reads: list[str] = []

    def wsgi(self, method: str, path: str, body: bytes = b"", **headers: str) -> tuple[int, bytes]:
        """One request through handoff_site.wsgi.application, as gunicorn hands it over."""
        import io

        from handoff_site.wsgi import application

        environ = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": "127.0.0.1",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
        }
        if body:
            environ["CONTENT_TYPE"] = "application/json"
            environ["CONTENT_LENGTH"] = str(len(body))
        for name, value in headers.items():
            environ["HTTP_" + name.upper()] = value
        status: list[str] = []
        result = application(environ, lambda s, h, exc_info=None: status.append(s))
        try:
            content = b"".join(result)
        finally:
            getattr(result, "close", lambda: None)()
        return int(status[0].split()[0]), content

    def body(self, prefix: str) -> tuple[str, str]:
        self.counter += 1
        run_id = f"{prefix}-{self.nonce}-{self.counter}"
        return run_id, json.dumps(self.context.package(run_id))

    def create(self) -> None:
        run_id, body = self.body("create")
        status, content = self.wsgi(
            "POST",
            "/api/v1/escalations",
            body.encode(),
            AUTHORIZATION=f"Bearer {self.poster.token}",
            IDEMPOTENCY_KEY=run_id,
        )
        assert status == 201, content
        if len(self.reads) < 200:
            self.reads.append(json.loads(content)["id"])

    def read(self) -> None:
        self.counter += 1
        escalation_id = self.reads[self.counter % len(self.reads)]
        status, content = self.wsgi(
            "GET", f"/api/v1/escalations/{escalation_id}", AUTHORIZATION=f"Bearer {self.poster.token}"
        )
        assert status == 200, content

    def open_escalations(self, n: int) -> list[str]:
        """n open tier-3 escalations of another agent, created through the service."""
        from escalations import services
        from escalations.schemas import EscalationIn

        ids = []
        for _ in range(n):
            _run_id, text = self.body("open")
            body = json.loads(text)
            created = services.escalation_create(
                agent=self.owner.agent, package=EscalationIn.model_validate(body).to_input(body)
            )
            assert created.escalation.is_open, created.escalation.tier
            ids.append(str(created.escalation.pk))
        return ids

    def decide_service(self, escalation_id: str) -> None:
        from escalations import services

        done = services.escalation_decide(
            escalation_id=escalation_id,
            request=services.DecisionRequest(kind="option", option="update-callers"),
            user=self.reviewer,
        )
        assert not done.is_open

    def decide_api(self, escalation_id: str) -> None:
        response = self.client.post(
            f"/api/v1/review/escalations/{escalation_id}/decision",
            json.dumps({"kind": "option", "option": "update-callers"}),
            content_type="application/json",
            headers={"Authorization": f"Bearer {self.reviewer_token}"},
        )
        assert response.status_code == 201, response.content


def backends_cpu() -> dict[int, float]:
    """CPU seconds of every PostgreSQL server process on this bench's database (all of them
    are this process's pooled connections: the pool may lend a request any of them)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        pids = [int(row[0]) for row in cursor.fetchall()]
    found = {}
    for pid in pids:
        with contextlib.suppress(OSError):  # ended meanwhile
            found[pid] = cpu_seconds(pid)
    return found


UNDER_CALLGRIND = os.environ.get("HOTPATH_UNDER_CALLGRIND") == "1"


def callgrind_instrument(on: bool) -> None:
    """Callgrind's instrumentation of this process on or off."""
    import subprocess

    subprocess.run(["callgrind_control", "-i", "on" if on else "off", str(os.getpid())], check=True, capture_output=True)


def callgrind_total(out_file: str) -> int:
    """The instructions (Ir) callgrind counted in `out_file`: its `totals:` or `summary:` line."""
    total = 0
    with open(out_file) as f:
        for line in f:
            if line.startswith(("totals:", "summary:")):
                total = int(line.split()[1])
    return total


def callgrind_count(op: Callable[[], None], ops: int) -> int:
    """Instructions per `op` over `ops` calls: instrumentation on around them, then a dump
    (which zeroes the counts) whose total is read back."""
    import subprocess

    pid = str(os.getpid())
    before = set(RESULTS.glob(f"callgrind.hotpath.{pid}.*"))
    callgrind_instrument(True)
    for _ in range(ops):
        op()
    callgrind_instrument(False)
    subprocess.run(["callgrind_control", "-d", pid], check=True, capture_output=True)
    (dumped,) = set(RESULTS.glob(f"callgrind.hotpath.{pid}.*")) - before
    return callgrind_total(str(dumped)) // ops


def run_under_callgrind(argv: list[str]) -> None:
    """This script again under callgrind, instrumentation off at the start: each kind of
    operation's timed loop switches it on, and its instructions are read back per kind."""
    import subprocess

    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "callgrind.hotpath.%p"
    env = dict(os.environ, HOTPATH_UNDER_CALLGRIND="1")
    cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}", sys.executable, __file__, *argv]
    subprocess.run(cmd, env=env, check=True)


def measure(name: str, op: Callable[[], None], warmup: int, ops: int, show_sql: bool) -> dict[str, Any]:
    for _ in range(warmup):
        op()
    if UNDER_CALLGRIND:
        return {"name": name, "ops": ops, "instructions": callgrind_count(op, ops)}
    cpu, wall, queries = [], [], []
    backends_before = backends_cpu()
    for _ in range(ops):
        statements: list[str] = []
        with counting(statements):
            c0, w0 = time.process_time(), time.perf_counter()
            op()
            c1, w1 = time.process_time(), time.perf_counter()
        cpu.append((c1 - c0) * 1000)
        wall.append((w1 - w0) * 1000)
        queries.append(len(statements))
    backends_after = backends_cpu()
    spent = sum(cpu - backends_before.get(pid, 0.0) for pid, cpu in backends_after.items())
    backend_ms = spent * 1000 / ops  # a server process that ended meanwhile is not counted
    if show_sql:
        statements = []
        with counting(statements):
            op()
        print(f"\n-- {name}: {len(statements)} statements")
        for sql in statements:
            print("  ", sql[:300])
    return {
        "name": name,
        "ops": ops,
        "cpu_p50": percentile(cpu, 50),
        "cpu_p90": percentile(cpu, 90),
        "wall_p50": percentile(wall, 50),
        "backend_mean": backend_ms,
        "queries": sorted(queries)[len(queries) // 2],
        "queries_max": max(queries),
    }


def decide_next(decide: Callable[[str], None], ids: Iterator[str]) -> None:
    decide(next(ids))


def table(rows: list[dict[str, Any]], load_before: str, load_after: str) -> str:
    if UNDER_CALLGRIND:
        lines = ["instructions per operation (callgrind, this process only)", "", "| operation | ops | instructions |", "| --- | ---: | ---: |"]
        lines += [f"| {r['name']} | {r['ops']} | {r['instructions']:,} |" for r in rows]
        return "\n".join(lines)
    lines = [
        f"load average {load_before} -> {load_after} (2 cores)",
        "",
        "| operation | ops | CPU p50 ms | CPU p90 ms | PostgreSQL CPU mean ms | wall p50 ms | queries |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        queries = str(r["queries"]) + (f" (max {r['queries_max']})" if r["queries_max"] != r["queries"] else "")
        lines.append(
            f"| {r['name']} | {r['ops']} | {r['cpu_p50']:.2f} | {r['cpu_p90']:.2f} | {r['backend_mean']:.2f}"
            f" | {r['wall_p50']:.2f} | {queries} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", type=int, default=300, help="timed operations of each kind")
    parser.add_argument("--warmup", type=int, default=30, help="untimed operations first")
    parser.add_argument("--sql", action="store_true", help="print one operation's statements")
    parser.add_argument("--only", choices=["create", "read", "decide"], help="measure only creates (read: and reads), or only decides")
    parser.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)  # Context reads it
    parser.add_argument("--without", default="", help="comma list of policy, auth, limiter, live: a create without them (a ceiling)")
    parser.add_argument("--callgrind", action="store_true", help="instructions per operation under callgrind (default --ops 40 --warmup 20)")
    args = parser.parse_args()
    if args.callgrind:
        argv = [a for a in sys.argv[1:] if a != "--callgrind"]
        if "--ops" not in argv:
            argv += ["--ops", "40"]
        if "--warmup" not in argv:
            argv += ["--warmup", "20"]
        run_under_callgrind(argv)
        return

    log(f"databases: drop + create {DB}, migrate")
    recreate_database(DB)
    setup_django()
    parts = {part for part in args.without.split(",") if part}
    if unknown := parts - {"policy", "auth", "limiter", "live"}:
        parser.error(f"--without: unknown {sorted(unknown)}")
    without(parts)
    bench = Bench(args)
    load_before = loadavg()
    n = args.warmup + args.ops + (1 if args.sql else 0)
    rows = []
    if args.only in (None, "create", "read"):
        log("create")
        creates = args.ops if UNDER_CALLGRIND else max(args.ops, 200)
        rows.append(measure("create (POST /api/v1/escalations)", bench.create, args.warmup, creates, args.sql))
    if args.only in (None, "read"):
        log("read")
        rows.append(measure("read (GET /api/v1/escalations/{id})", bench.read, args.warmup, args.ops, args.sql))
    for name, decide in (
        ("decide (services.escalation_decide)", bench.decide_service),
        ("decide (reviewer API POST .../decision)", bench.decide_api),
    ):
        if args.only in ("create", "read"):
            break
        log(f"{n} open escalations for {name}")
        ids = iter(bench.open_escalations(n))
        log(name)
        rows.append(measure(name, functools.partial(decide_next, decide, ids), args.warmup, args.ops, args.sql))
    text = table(rows, load_before, loadavg())
    if parts:
        text = f"without {', '.join(sorted(parts))} (a ceiling, not a figure)\n\n{text}"
    print()
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / ("hotpath.callgrind.md" if UNDER_CALLGRIND else "hotpath.md")).write_text(text + "\n")


if __name__ == "__main__":
    main()
