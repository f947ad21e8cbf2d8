#!/usr/bin/env python
"""`make bench-queue`: the reviewer's queue at 100,000 open escalations, and its live notices.

    .venv/bin/python bench/queue_bench.py [--rows 100000] [--samples 100] [--clients 100]

(Q) Server time of the queue page with 100,000 open escalations (and 20,000 closed ones,
    half of them flagged tier-2 decisions) on PostgreSQL: the default queue, each sort, a
    few filters and tabs, a deep keyset page, and the live row view. The rows are inserted
    with SQL (INSERT ... SELECT over generate_series, copying a template row the service
    made, so every column is one the app writes). The view runs in this process through
    Django's handler (middleware, view, template; production settings, DEBUG off): p50/p99
    of the wall time of each request, after a warm-up.
(L) The time from a package's POST (through the agent API, on uvicorn) to its notice and its
    row on websockets connected to /ws/queue/ (real sockets, the Redis channel layer), p50/p99
    over every (package, socket) pair, and the server's CPU per package: 1 socket and 100
    (--clients) on one view with the row pushed in the notice (rendered once per view), and
    100 fetching their own row from the row view (what pages did before). Packages go 250 ms
    apart (--interval).

It drops and re-creates its own database `handoff_bench_queue` (BENCH_DB names another), uses
Redis database 12 (flushed; BENCH_REDIS_DBS=N, its first number, names another), and stops the
server it starts. --decided N adds N closed escalations decided by people (and one in a thousand
by a machine reviewer, half of those looked at) behind the flagged ones.
"""

from __future__ import annotations

import os
import sys

from lib import ROOT, use_the_project_venv

use_the_project_venv()

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import django  # noqa: E402
from app import PG_HOST, PG_PORT, PG_USER, app_env, pg, subprocess_run  # noqa: E402
from lib import RESULTS, Processes, free_port, loadavg, log, percentile, python, wait_for_port  # noqa: E402
from seed import analyze, bench_db, execute, insert_select  # noqa: E402

QUEUE_DB = bench_db("handoff_bench_queue")
REDIS_QUEUE = f"redis://127.0.0.1:6379/{os.environ.get('BENCH_REDIS_DBS', '12').split(',')[0]}"
TARGET_MS = 150.0
AGENTS = 20
CLOSED_ROWS = 20_000


def env() -> dict[str, str]:
    return app_env(
        DATABASE_URL=f"postgres://{PG_USER}@{PG_HOST}:{PG_PORT}/{QUEUE_DB}",
        REDIS_URL=REDIS_QUEUE,
        CHANNELS_PREFIX="handoffbenchqueue",
        HANDOFF_VAR_DIR=str(RESULTS / "var-queue"),
    )


# ---------------------------------------------------------------- data


def prepare() -> None:
    (RESULTS / "var-queue").mkdir(parents=True, exist_ok=True)
    log(f"database: drop + create {QUEUE_DB}; flush {REDIS_QUEUE}")
    with pg() as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {QUEUE_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {QUEUE_DB}")
    import redis

    redis.Redis.from_url(REDIS_QUEUE).flushdb()
    # The pages render with the manifest static storage of production: collect first.
    for command in (["migrate", "--noinput"], ["collectstatic", "--noinput"]):
        result = subprocess_run([python(), "manage.py", *command], env=env(), timeout=300)
        if result.returncode != 0:
            raise RuntimeError(f"{command[0]} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    os.environ.update(env())
    sys.path.insert(0, str(ROOT))
    django.setup()


def seed(rows: int, closed_rows: int = CLOSED_ROWS, decided_rows: int = 0):
    """(reviewer, the posting agent's token, open count): `rows` open escalations,
    `closed_rows` closed tier-2 ones (policy decisions, half looked at) and `decided_rows` closed
    tier-3 ones decided by people (one in a thousand more by a machine reviewer, half of those
    looked at), spread over AGENTS agents and 4 domains, copies of a template the service made
    but for the columns below."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from escalations import services
    from escalations.models import Decision, Escalation, FlagReview, Run
    from escalations.schemas import EscalationIn
    from tests.conftest import make_package

    started = time.monotonic()
    reviewer = get_user_model().objects.create_user("bench-queue-reviewer", password=None)
    reviewer.groups.add(Group.objects.get_or_create(name="reviewer")[0])
    other = get_user_model().objects.create_user("bench-queue-other", password=None)
    agents = [
        services.agent_create(name=f"bench-queue-{n:02d}", domain="default", daily_budget=10**9)
        for n in range(AGENTS)
    ]
    body = make_package(run_id="template")
    template = services.escalation_create(
        agent=agents[0].agent, package=EscalationIn.model_validate(body).to_input(body)
    ).escalation
    agent = f"(%(agents)s::bigint[])[1 + g %% {AGENTS}]"
    common = {
        "id": "gen_random_uuid()",
        "agent_id": "r.agent_id",
        "run_id": "r.id",
        "title": "'Escalation ' || g || ': ' || md5(g::text)",
        "reason": "(ARRAY['approach_choice','missing_information','missing_access','irreversible_action',"
                  "'novelty','scope_mismatch','repeated_failure','other'])[1 + g %% 8]",
        "impact": "(ARRAY['low','medium','high','critical'])[1 + g %% 4]",
        "blocking": "g %% 3 = 0",
        "blocked_tasks": "g %% 7",
        "domain": "(ARRAY['default','code','research','db-migration'])[1 + g %% 4]",
        "is_irreversible": "g %% 50 = 0",
        "priority": "(g::bigint * 7919) %% 100",
        "idempotency_key": "NULL",
    }
    opened = {
        **common,
        "status": "CASE WHEN g %% 10 = 0 THEN 'claimed' ELSE 'pending' END",
        # 10% claimed: one in a hundred of those by the measuring reviewer ("mine").
        "claimed_by_id": f"CASE WHEN g %% 1000 = 0 THEN {reviewer.id} WHEN g %% 10 = 0 THEN {other.id} END",
        "claimed_until": "CASE WHEN g %% 10 = 0 THEN now() + interval '10 minutes' END",
        "tier": "CASE WHEN g %% 5 = 0 THEN 4 ELSE 3 END",
        "respond_by": "CASE WHEN g %% 3 = 0 THEN NULL ELSE now() + ((g %% 600) - 60) * interval '1 minute' END",
        "created_at": "now() - g * interval '1 second'",
        "updated_at": "now() - g * interval '1 second'",
        "stuck_since": "now() - g * interval '1 second'",
    }
    closed = {
        **common,
        "status": "'resumed'",
        "tier": "2",
        "respond_by": "NULL",
        "created_at": "now() - interval '3 days' - g * interval '1 second'",
        "updated_at": "now() - interval '3 days'",
        "stuck_since": "now() - interval '3 days' - g * interval '1 second'",
    }
    decided = {
        **closed,
        "tier": "3",
        "created_at": "now() - interval '4 days' - g * interval '1 second'",
        "stuck_since": "now() - interval '4 days' - g * interval '1 second'",
    }
    # The run's prefix says who decided: c the policy (tier 2), d a person, m a machine.
    batches = (("o", rows, opened), ("c", closed_rows, closed), ("d", decided_rows, decided),
               ("m", decided_rows // 1000, decided))
    template_run = f"(SELECT * FROM escalations_run WHERE id = {template.run_id}) t"
    template_row = f"(SELECT * FROM escalations_escalation WHERE id = '{template.id}') t"
    statements = []
    for prefix, count, _ in batches:
        statements.append(insert_select(
            Run, {"agent_id": agent, "run_id": f"'{prefix}-' || g", "created_at": "now()"},
            f"{template_run}, generate_series(1, {count}) g", template="t",
        ))
    for prefix, count, values in batches:
        statements.append(insert_select(
            Escalation, values,
            f"{template_row}, generate_series(1, {count}) g "
            f"JOIN escalations_run r ON r.agent_id = {agent} AND r.run_id = '{prefix}-' || g",
            template="t",
        ))
    statements.append(insert_select(Decision, {
        "escalation_id": "e.id", "agent_id": "e.agent_id",
        "seq": "row_number() OVER (PARTITION BY e.agent_id ORDER BY e.id)", "kind": "'option'",
        "option_key": "'update-callers'",
        "decided_by_type": "CASE left(r.run_id, 1) WHEN 'c' THEN 'policy' WHEN 'm' THEN 'machine' ELSE 'human' END",
        "decided_by_name": "CASE left(r.run_id, 1) WHEN 'c' THEN 'policy:' || e.domain "
                           f"WHEN 'm' THEN 'bench-machine' ELSE '{reviewer.username}' END",
        "decided_by_user_id": f"CASE left(r.run_id, 1) WHEN 'd' THEN {reviewer.id} END",
        "decided_at": "e.created_at", "took_recommended": "true",
    }, "escalations_escalation e JOIN escalations_run r ON r.id = e.run_id WHERE e.status = 'resumed'"))
    statements.append(insert_select(FlagReview, {
        "escalation_id": "e.id", "reviewer_id": str(reviewer.id), "reviewer_name": "'bench'",
        "verdict": "'fine'", "at": "now()",
    }, "escalations_escalation e JOIN escalations_run r ON r.id = e.run_id"
       " WHERE e.status = 'resumed' AND left(r.run_id, 1) IN ('c', 'm') AND e.blocked_tasks %% 2 = 0"))
    execute(statements, {"agents": [a.agent.id for a in agents]})
    # As the decisions' and the reviews' services leave them (and migration 0009 filled them).
    Escalation.objects.filter(FlagReview.APPLIES, flag_review__isnull=True).update(awaiting_look=True)
    open_count = Escalation.objects.open().count()
    log(f"seeded {open_count:,} open and {closed_rows + decided_rows + decided_rows // 1000:,} closed escalations "
        f"in {time.monotonic() - started:.1f} s")
    poster = services.agent_create(name="bench-queue-poster", domain="default", daily_budget=10**9)
    return reviewer, poster.token, open_count


# ---------------------------------------------------------------- (Q) server time


def scenarios(reviewer) -> list[tuple[str, str]]:
    from django.urls import reverse

    from escalations.models import Escalation
    from reviews import queue

    base = reverse("reviews:queue")
    deep = Escalation.objects.open().order_by(*queue.SORTS["priority"].order_by())[2000]
    some = Escalation.objects.open().order_by("created_at")[5000]
    word = some.title.split(": ")[1][:8]
    # A word of one closed escalation's title, and one of every row's uncertainty (the template's).
    shut = Escalation.objects.exclude(status__in=Escalation.OPEN_STATUSES)
    closed = shut.order_by("created_at")[5000]
    # A closed-tab cursor 2,000 rows in (by priority): its keyset page reads on from there.
    deep_closed = shut.order_by(*queue.SORTS["priority"].order_by())[2000]
    rare, common = closed.title.split(": ")[1][:8], "shim"
    return [
        ("open, by priority (default)", base),
        ("open, by time left", f"{base}?sort=time_left"),
        ("open, oldest first", f"{base}?sort=age"),
        ("impact=critical, blocking", f"{base}?impact=critical&blocking=true"),
        ("tier 4, unclaimed", f"{base}?tier=4&claimed=unclaimed"),
        ("agent + domain", f"{base}?agent=bench-queue-07&domain=db-migration"),
        ("a filter that matches nothing", f"{base}?agent=bench-queue-07&domain=code"),
        ("irreversible, by time left", f"{base}?irreversible=true&sort=time_left"),
        (f"search {word!r}", f"{base}?q={word}"),
        (f"search {common!r} (every row's uncertainty)", f"{base}?q={common}"),
        (f"search {rare!r}, tab: closed", f"{base}?tab=closed&q={rare}"),
        (f"search {rare!r}, tab: flagged", f"{base}?tab=flagged&q={rare}"),
        ("tab: mine", f"{base}?tab=mine"),
        ("tab: overdue", f"{base}?tab=overdue"),
        ("tab: flagged", f"{base}?tab=flagged"),
        ("tab: closed, by priority", f"{base}?tab=closed"),
        ("tab: closed, by time left", f"{base}?tab=closed&sort=time_left"),
        ("tab: closed, oldest first", f"{base}?tab=closed&sort=age"),
        ("tab: closed, page 41", f"{base}?tab=closed&after={queue.Cursor.of(deep_closed, 'priority').encode()}"),
        ("flagged page, newest first", reverse("reviews:flagged")),
        ("flagged page, most uncertain first", reverse("reviews:flagged") + "?sort=uncertain"),
        ("page 41 (keyset cursor)", f"{base}?after={queue.Cursor.of(deep, 'priority').encode()}"),
        ("row view (live fetch)", reverse("reviews:queue_row", args=[some.pk])),
    ]


def server_time(reviewer, samples: int) -> list[dict]:
    from django.db import connection
    from django.test import Client

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(reviewer)
    results = []
    for name, url in scenarios(reviewer):
        for _ in range(5):
            assert client.get(url).status_code == 200, url
        queries: list[str] = []

        def count(execute, sql, *args, queries=queries):
            queries.append(sql)
            return execute(sql, *args)

        with connection.execute_wrapper(count):
            client.get(url)
        times, cpu = [], []
        for _ in range(samples):
            started, started_cpu = time.perf_counter(), time.process_time()
            response = client.get(url)
            times.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - started_cpu) * 1000)
            assert response.status_code == 200
        rows = response.content.count(b"data-row ") + response.content.count(b"data-flagged-row=")
        results.append({
            "name": name, "p50": percentile(times, 50), "p99": percentile(times, 99),
            "cpu_p50": percentile(cpu, 50), "queries": len(queries), "rows": rows,
        })
        log(f"  {name}: p50 {results[-1]['p50']:.1f} ms, p99 {results[-1]['p99']:.1f} ms")
    return results


# ---------------------------------------------------------------- (L) live notices


async def live(
    port: int, pid: int, cookie: str, token: str, *, clients: int, posts: int, warm: int, interval: float, mode: str
) -> dict:
    """One round: `clients` queue sockets, packages posted `interval` apart.

    mode "push": every socket says its view (the default queue) and takes the row from the
    notice, rendered by the server once per view (reviews/live_rows.py). mode "fetch": what
    pages did before, and still do when a notice has no row: every socket fetches its row
    from the row view. Row arrival = the row (a <tr>) in hand - the POST's send. The server's
    CPU (utime + stime of the uvicorn process) is read across the measured posts, plus 2 s
    for the last rows: robust to the box's load, unlike the wall times.
    """
    import httpx
    import websockets
    from lib import cpu_seconds
    from websockets.typing import Origin

    from tests.conftest import make_package

    base, ws_url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/ws/queue/"
    headers = {"Cookie": f"sessionid={cookie}"}
    seen: dict[str, list[float]] = {}
    rows: dict[str, list[float]] = {}
    failed: list[int] = []
    http = httpx.AsyncClient(
        base_url=base, headers=headers, timeout=30, limits=httpx.Limits(max_connections=clients)
    )

    async def fetch_row(escalation_id: str) -> None:
        try:
            response = await http.get(f"/queue/rows/{escalation_id}", headers={"HX-Request": "true"})
        except httpx.HTTPError:
            failed.append(0)
            return
        if response.status_code == 200 and b"<tr" in response.content:
            rows.setdefault(escalation_id, []).append(time.time())
        else:
            failed.append(response.status_code)

    async def listen(socket) -> None:
        async for message in socket:
            now = time.time()
            notice = json.loads(message)
            if notice.get("kind") != "created":
                continue
            seen.setdefault(notice["id"], []).append(now)
            if mode == "push" and "<tr" in notice.get("html", ""):
                rows.setdefault(notice["id"], []).append(now)
            elif mode == "fetch":
                asyncio.get_running_loop().create_task(fetch_row(notice["id"]))

    sockets = [
        await websockets.connect(ws_url, additional_headers=headers, origin=Origin(base), max_queue=None)
        for _ in range(clients)
    ]
    if mode == "push":
        for socket in sockets:
            await socket.send(json.dumps({"view": ""}))
    listeners = [asyncio.create_task(listen(s)) for s in sockets]
    posted: dict[str, float] = {}
    answered: list[float] = []
    agent = httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    async def post(package: dict) -> httpx.Response | None:
        try:
            return await agent.post("/api/v1/escalations", json=package)
        except httpx.HTTPError:
            return None

    nonce = f"{mode}-{clients}-{time.time():.0f}"
    cpu_start = 0.0
    retried = 0
    for i in range(warm + posts):
        if i == warm:
            await asyncio.sleep(2)  # the warm-up's rows are in
            cpu_start = cpu_seconds(pid)
        package = make_package(run_id=f"live-{nonce}-{i}", title=f"Live package {i}")
        started = time.time()
        response = await post(package)
        while response is None or response.status_code == 503:
            # The row fetches of "fetch" can hold every pooled connection: retry, as agents do.
            assert time.time() - started < 30, "the server did not take a package for 30 s"
            retried += 1
            await asyncio.sleep(0.5)
            response = await post(package)
        assert response.status_code == 201, response.text
        if i >= warm:
            posted[response.json()["id"]] = started
            answered.append((time.time() - started) * 1000)
        await asyncio.sleep(interval)
    await asyncio.sleep(2)
    cpu = cpu_seconds(pid) - cpu_start
    for task in listeners:
        task.cancel()
    for socket in sockets:
        await socket.close()
    await agent.aclose()
    await http.aclose()
    notice_ms = [(t - posted[i]) * 1000 for i in posted for t in seen.get(i, [])]
    row_ms = [(t - posted[i]) * 1000 for i in posted for t in rows.get(i, [])]
    return {
        "mode": mode, "clients": clients, "posts": posts, "interval": interval,
        "expected": clients * posts, "received": len(notice_ms),
        "notice_p50": percentile(notice_ms, 50), "notice_p99": percentile(notice_ms, 99),
        "row_n": len(row_ms), "row_p50": percentile(row_ms, 50), "row_p99": percentile(row_ms, 99),
        "post_p50": percentile(answered, 50), "post_p99": percentile(answered, 99),
        "cpu_ms_per_post": cpu * 1000 / posts,
        "post_retries": retried, "row_fetch_failures": len(failed),
    }


# (mode, sockets, posts, seconds apart): 1 vs many browsers on one view, rows pushed; and the
# many fetching their own rows, as before (fewer posts, further apart: each costs ~100 fetches).
ROUNDS = (("push", 1, 40, 0.25), ("push", None, 40, 0.25), ("fetch", None, 10, 1.0))


def live_phase(reviewer, token: str, clients: int, posts: int, interval: float) -> list[dict]:
    from django.test import Client

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(reviewer)
    cookie = client.cookies["sessionid"].value
    procs = Processes()
    port = free_port()
    server = procs.start(
        "queue-uvicorn",
        [python(), "-m", "uvicorn", "handoff_site.asgi:application", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning", "--lifespan", "off"],
        env=env(),
    )
    try:
        wait_for_port(port, server)
        results = []
        for mode, sockets, n, apart in ROUNDS:
            n = posts if mode == "push" else n
            apart = interval if mode == "push" else apart
            results.append(asyncio.run(live(
                port, server.pid, cookie, token,
                clients=sockets or clients, posts=n, warm=10, interval=apart, mode=mode,
            )))
            r = results[-1]
            log(f"  {mode} x{r['clients']}: {r['cpu_ms_per_post']:.1f} ms CPU per post, rows {r['row_n']} "
                f"of {r['expected']}, p50 {r['row_p50']:.0f} ms, p99 {r['row_p99']:.0f} ms")
        return results
    finally:
        procs.stop_all()


# ---------------------------------------------------------------- report


def report(server: list[dict], notices: list[dict], open_count: int, closed: int, load: tuple[str, str]) -> str:
    lines = [
        f"# Queue figures ({time.strftime('%Y-%m-%d %H:%M')} UTC, load {load[0]} -> {load[1]})",
        "",
        f"(Q) queue page server time, {open_count:,} open + {closed:,} closed escalations, PostgreSQL",
        "",
        "Wall time of each request through Django's handler; CPU is this process's own time",
        "(view, templates, psycopg), which the box's load does not inflate.",
        "",
        "| view | rows | queries | p50 ms | p99 ms | CPU p50 ms | target |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in server:
        ok = "ok" if r["p99"] < TARGET_MS else ("p50 ok, p99 over" if r["p50"] < TARGET_MS else "MISSED")
        lines.append(
            f"| {r['name']} | {r['rows']} | {r['queries']} | {r['p50']:.1f} | {r['p99']:.1f} "
            f"| {r['cpu_p50']:.1f} | < {TARGET_MS:.0f} ms: {ok} |"
        )
    if not notices:
        return "\n".join(lines) + "\n"
    one = next((r for r in notices if r["mode"] == "push" and r["clients"] == 1), None)
    lines += [
        "",
        "(L) POST -> row on every queue socket (Redis channel layer, one uvicorn process; the",
        "server's CPU is its utime+stime over the measured posts and 2 s after, per post: the",
        "POST itself, the notices, and the rows)",
        "",
        "| round | sockets | posts | POST p50 / p99 ms | notices | notice p50 / p99 ms "
        "| rows | row p50 / p99 ms | server CPU per post ms | vs 1 socket |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for n in notices:
        what = "rows pushed (one render per view)" if n["mode"] == "push" else "each page fetches its row (before)"
        ratio = f"{n['cpu_ms_per_post'] / one['cpu_ms_per_post']:.2f} x" if one else "-"
        lines.append(
            f"| {what} | {n['clients']} | {n['posts']} | {n['post_p50']:.1f} / {n['post_p99']:.1f} "
            f"| {n['received']} of {n['expected']} | {n['notice_p50']:.1f} / {n['notice_p99']:.1f} "
            f"| {n['row_n']} | {n['row_p50']:.1f} / {n['row_p99']:.1f} | {n['cpu_ms_per_post']:.1f} | {ratio} |"
        )
    for n in notices:
        if n["post_retries"] or n["row_fetch_failures"]:
            lines.append(
                f"\n{n['mode']} x{n['clients']}: {n['post_retries']} POSTs answered 503 (no pooled "
                f"connection in time) and were retried; {n['row_fetch_failures']} row fetches failed."
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--decided", type=int, default=0, help="closed escalations decided by people")
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--posts", type=int, default=50)
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between posts")
    parser.add_argument("--skip", default="", help="comma list of phases to leave out: q,live")
    args = parser.parse_args()
    load_start = loadavg()
    prepare()
    reviewer, token, open_count = seed(args.rows, decided_rows=args.decided)
    analyze(vacuum=True)
    skip = {part.strip() for part in args.skip.split(",")}
    server: list[dict] = []
    notices: list[dict] = []
    if "q" not in skip:
        log("(Q) queue page server time")
        server = server_time(reviewer, args.samples)
    if "live" not in skip:
        log(f"(L) POST -> notice on {args.clients} websockets")
        notices = live_phase(reviewer, token, args.clients, args.posts, args.interval)
    closed = CLOSED_ROWS + args.decided + args.decided // 1000
    table = report(server, notices, open_count, closed, (load_start, loadavg()))
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "queue.md").write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
