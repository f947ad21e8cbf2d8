#!/usr/bin/env python
"""`make bench-slack`: beat's Slack sweep (notifications.tasks.sweep_slack_task), its decision expiry and
every other beat job, at 1,000,000 escalations.

PostgreSQL on 127.0.0.1 (user postgres), nothing else. It drops and re-creates its own
database `handoff_bench_slack`, migrates it to notifications 0005, generates with SQL generate_series N escalations, --open
of them open (0.2%: a queue of 2,000, half claimed, at the last escalation level) and the rest closed (8% decided and never acknowledged,
as a polling agent that never acks leaves them; 4% expired, 10% withdrawn, the rest resumed), each with one or two messages the Slack app posted
(1.5 on average), every one up to date with its escalation's status (an open one's blank),
except --behind escalations' (half decided and still showing their buttons, half expired
and still showing the decision), with a decision each (valid_until only on the expired ones
and a tenth of those decided in the last week), the webhook of each resumed one (delivered; 1% failed), an idempotency key on the last 23
hours' escalations, runs the later migrations over them (timed), VACUUM ANALYZE, and:

1. the SQL slack_behind(limit=20) runs (captured from the ORM), with EXPLAIN (ANALYZE,
   BUFFERS), and its time (p50 of 20 runs after 3 warm-up, fewer past 30 s);
2. the messages behind brought up to date (as the sweep would), then the sweep end to end with
   nothing behind, the case of almost every minute (p50 of 20 runs), and its plan;
3. every job of CELERY_BEAT_SCHEDULE with nothing (or next to nothing) due, its task's body in
   this process: a first run, then 10 timed (p50, max), with the rows it handled, its queries
   and its slowest statement (beat_jobs).

    .venv/bin/python bench/slack_sweep_bench.py [--escalations N] [--behind N] [--keep]

Prints the plans and a table, and writes them to bench/results/slack_sweep.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from lib import use_the_project_venv

use_the_project_venv()

from app import recreate_database  # noqa: E402
from lib import RESULTS, loadavg, log, percentile  # noqa: E402
from seed import agent_params, analyze, bench_db, execute, generated, insert_select, start_django  # noqa: E402

DB = bench_db("handoff_bench_slack")
AGENTS = 10
TARGET_MS = 50.0

# --open of them open (half pending, half claimed), 8% decided, 4% expired, 10% withdrawn, the rest resumed.
STATUS = """CASE WHEN r1 < %(open)s / 2 THEN 'pending' WHEN r1 < %(open)s THEN 'claimed' WHEN r1 < %(open)s + 0.08 THEN 'decided'
                  WHEN r1 < %(open)s + 0.12 THEN 'expired' WHEN r1 < %(open)s + 0.22 THEN 'withdrawn' ELSE 'resumed' END"""


# The generated rows go in at this migration, and the later ones run over them (timed): a
# migration that changes the sweep's index is measured on a table of this size.
SEEDED_AT = ("notifications", "0005_slack_shown_status")


def historical(app: str, model: str):
    """The model as it is at SEEDED_AT (its columns then)."""
    from django.db import connection
    from django.db.migrations.loader import MigrationLoader

    return MigrationLoader(connection).project_state(SEEDED_AT).apps.get_model(app, model)


def statements(notification) -> list[str]:
    """`notification`: the model the rows are written as (historical(...) here; the current
    one in tests/test_bench_seeders.py)."""
    from escalations.models import Decision, Delivery, Escalation, Run

    return [
        "SELECT setseed(0.42)",
        """CREATE TEMP TABLE g AS
        SELECT i,
               (%(agents)s::bigint[])[1 + i %% %(n_agents)s] AS agent_id,
               now() - random() * interval '180 days' AS created_at,
               0.3 + 0.69 * random() AS confidence,
               random() AS r1
        FROM generate_series(1, %(n)s) AS i""",
        "ALTER TABLE g ADD COLUMN status text",
        f"UPDATE g SET status = {STATUS}",
        generated(Run),
        generated(
            Escalation, status="status", blocking="true", stuck_since="created_at", domain="'default'",
            tier="4", priority="40",
            updated_at="CASE WHEN status IN ('pending', 'claimed') THEN created_at ELSE created_at + interval '1 hour' END",
            # Beat's other jobs with nothing due: the open ones at the last level (LEVELS), no
            # timeout_option (half have a deadline, long passed), claims renewed (a day ahead:
            # the run outlives a lease); an idempotency key on the last 23 hours' escalations.
            level=f"CASE WHEN status IN ('pending', 'claimed') THEN {len(LEVELS) + 1} ELSE 1 END",
            claimed_until="CASE WHEN status = 'claimed' THEN now() + interval '1 day' END",
            respond_by="CASE WHEN i %% 2 = 0 THEN created_at + interval '4 hours' END",
            idempotency_key="CASE WHEN created_at > now() - interval '23 hours' THEN 'bench-' || i END",
        ),
        # Decisions without valid_until (the default policy's), but the expired ones' and
        # a tenth of those made in the last week (an 8-day lifetime: still decided).
        generated(
            Decision, "WHERE status NOT IN ('pending', 'withdrawn')", decided_at="created_at + interval '1 hour'",
            took_recommended="true",
            valid_until="""CASE WHEN status = 'expired' THEN created_at + interval '2 hours'
                               WHEN status = 'decided' AND i %% 10 = 0 AND created_at > now() - interval '7 days'
                               THEN created_at + interval '8 days' END""",
        ),
        # The webhook of every decision the agent took (resumed), sent; 1% given up (failed).
        generated(
            Delivery, "WHERE status = 'resumed'",
            status="CASE WHEN i %% 100 = 0 THEN 'failed' ELSE 'delivered' END",
            delivered_at="CASE WHEN i %% 100 <> 0 THEN created_at + interval '1 hour 1 second' END",
        ),
        insert_select(notification, {
            "id": "md5('s' || i || ':' || n)::uuid", "key": "'bench:slack:' || i || ':' || n",
            "kind": "'halt_created'", "channel": "'slack'", "recipient": "'reviewer-' || n",
            "target": "'UREV' || n", "subject": "'s'", "text": "'t'", "link": "'l'",
            "escalation_id": "md5(i::text)::uuid", "status": "'sent'", "attempts": "1",
            "next_attempt_at": "created_at", "created_at": "created_at", "sent_at": "created_at",
            "slack_channel": "'UREV' || n", "slack_ts": "'1700000000.' || lpad(i::text, 7, '0') || n",
            "slack_shown_status": "CASE WHEN status IN ('pending', 'claimed') THEN '' ELSE status END",
        }, "g CROSS JOIN LATERAL generate_series(1, 1 + i %% 2) AS n"),
        # Behind: decisions whose update never came (still showing their buttons), and
        # expiries whose update never came (still showing the decision).
        """UPDATE notifications_notification SET slack_shown_status = ''
        WHERE escalation_id IN (SELECT md5(i::text)::uuid FROM g WHERE status = 'decided'
                                ORDER BY i LIMIT %(behind)s / 2)""",
        """UPDATE notifications_notification SET slack_shown_status = 'decided'
        WHERE escalation_id IN (SELECT md5(i::text)::uuid FROM g WHERE status = 'expired'
                                ORDER BY i LIMIT %(behind)s - %(behind)s / 2)""",
        "SELECT setval(pg_get_serial_sequence('escalations_run', 'id'), %(n)s)",
    ]


def generate(n: int, behind: int, notification=None, open_share: float = 0.002) -> dict:
    notification = notification or historical("notifications", "Notification")
    params = agent_params(AGENTS, ["default"]) | {"n": n, "behind": behind, "open": open_share}
    add_levels()
    return {"generate_s": execute(statements(notification), params)}


# The default domain's escalation levels (level 2, 3, ...): (after_minutes, priority_boost).
LEVELS = ((60, 10), (240, 20))


def add_levels() -> None:
    from escalations.models import EscalationLevel, Policy

    policy = Policy.objects.get(domain="default")
    EscalationLevel.objects.bulk_create(
        EscalationLevel(policy=policy, level=number, after_minutes=after, priority_boost=boost)
        for number, (after, boost) in enumerate(LEVELS, start=2)
    )


def behind_sql() -> str:
    """The statement slack_behind(limit=20) runs, as sent (parameters in)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from notifications.selectors import slack_behind

    with CaptureQueriesContext(connection) as queries:
        slack_behind(limit=20)
    (query,) = queries.captured_queries
    return query["sql"]


def explain(sql: str) -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        for _ in range(3):  # warm: the last of three
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
            plan = "\n".join(row[0] for row in cursor.fetchall())
    return plan


def sampled(call, runs: int = 20, seconds: float = 30, warmup: int = 3) -> list[float]:
    """ms of each of `runs` calls after `warmup` (fewer past `seconds`: a slow case)."""
    for _ in range(warmup):
        call()
    samples: list[float] = []
    deadline = time.monotonic() + seconds
    while len(samples) < runs and (not samples or time.monotonic() < deadline):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def timed(call, runs: int = 20, seconds: float = 30) -> float:
    return percentile(sampled(call, runs, seconds), 50)


# A setting a job runs under here: retention on, with nothing old enough (the history is 180
# days); with RETENTION_DAYS=0, the default, the purge returns before any query.
BEAT_SETTINGS = {"purge-expired-escalations": {"RETENTION_DAYS": 365}}


def beat_jobs(runs: int = 10) -> list[dict]:
    """Every job of CELERY_BEAT_SCHEDULE, its task's body run in this process with nothing (or
    next to nothing) due: a first run (the insights' first refresh rebuilds every day), one
    counted (its queries, the slowest statement), then `runs` timed. `touched`: what the task
    returns, the rows it handled."""
    import importlib

    from django.conf import settings
    from django.db import connection
    from django.test.utils import CaptureQueriesContext, override_settings

    out = []
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        module, _, attr = str(entry["task"]).rpartition(".")
        task = getattr(importlib.import_module(module), attr)
        log(f"beat: {name}")
        with override_settings(**BEAT_SETTINGS.get(name, {})):
            started = time.perf_counter()
            task()
            first_ms = (time.perf_counter() - started) * 1000
            with CaptureQueriesContext(connection) as queries:
                touched = task()
            samples = sampled(task, runs, warmup=0)
        slowest = max(queries.captured_queries, key=lambda q: float(q["time"]), default=None)
        out.append({
            "job": name, "every_s": entry["schedule"], "first_ms": first_ms, "p50_ms": percentile(samples, 50),
            "max_ms": max(samples), "runs": len(samples), "touched": touched, "queries": len(queries),
            "slowest_ms": float(slowest["time"]) * 1000 if slowest else 0.0,
            "slowest_sql": slowest["sql"] if slowest else "",
        })
    return out


def catch_up() -> int:
    """The messages behind, brought up to date in the database (no Slack here)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("""
            UPDATE notifications_notification n SET slack_shown_status = e.status
            FROM escalations_escalation e
            WHERE n.escalation_id = e.id AND n.channel = 'slack' AND n.slack_ts > ''
              AND e.status IN ('decided', 'resumed', 'withdrawn', 'expired') AND n.slack_shown_status <> e.status""")
        return cursor.rowcount


def measure() -> dict:
    from notifications.selectors import slack_behind
    from notifications.tasks import sweep_slack_task

    out: dict = {}
    sql = behind_sql()
    out["sql"] = sql
    out["found"] = len(slack_behind(limit=20))
    out["plan_behind"] = explain(sql)
    out["selector_ms"] = timed(lambda: slack_behind(limit=20))
    out["caught_up"] = catch_up()
    analyze()
    assert sweep_slack_task() == 0
    out["plan_none"] = explain(behind_sql())
    out["sweep_ms"] = timed(sweep_slack_task)
    # Beat's other periodic read over every decided escalation (every 30 s), on the same data:
    # nothing is past its lifetime here, so it expires nothing and the data stays as it is.
    from escalations.services.periodic import decisions_expire

    out["expire_ms"] = timed(decisions_expire)
    out["beat"] = beat_jobs()
    return out


def counts() -> dict:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("""
            SELECT (SELECT count(*) FROM escalations_escalation),
                   (SELECT count(*) FROM notifications_notification WHERE channel = 'slack'),
                   (SELECT count(*) FROM escalations_escalation WHERE status = 'decided'),
                   (SELECT count(*) FROM escalations_escalation WHERE status IN ('pending', 'claimed'))""")
        escalations, messages, decided, open_count = cursor.fetchone()
    return {"escalations": escalations, "messages": messages, "decided": decided, "open": open_count}


def report(n: dict, timings: dict, m: dict, loads: tuple) -> str:
    lines = [
        f"# The Slack sweep at {n['escalations']:,} escalations, {n['messages']:,} Slack messages",
        "",
        f"Load average before/after: {loads[0]} / {loads[-1]}. {n['open']:,} escalations open,"
        f" {n['decided']:,} decided and never acknowledged. Target: under {TARGET_MS:.0f} ms.",
        "",
    ]
    if timings:
        lines += [
            f"Generation: {timings['generate_s']:.0f} s; the migrations after {SEEDED_AT[1]}, over them:"
            f" {timings['migrate_s']:.0f} s.", "",
        ]
    lines += [
        "| case | ms (p50) |", "| --- | ---: |",
        f"| slack_behind(limit=20), {m['found']} escalations behind | {m['selector_ms']:.1f} |",
        f"| sweep_slack_task, nothing behind | {m['sweep_ms']:.1f} |",
        f"| decisions_expire (beat's decision expiry), nothing due | {m['expire_ms']:.1f} |",
        "", f"Beat's jobs with nothing due: the task's body, {m['beat'][0]['runs']} runs each after a first"
        f" (over {TARGET_MS:.0f} ms a run with nothing due reads history):", "",
        "| job | every | first run ms | ms p50 | ms max | rows touched | queries | slowest statement ms | |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        *(
            f"| {j['job']} | {j['every_s']:.0f} s | {j['first_ms']:.1f} | {j['p50_ms']:.1f} | {j['max_ms']:.1f}"
            f" | {j['touched']} | {j['queries']} | {j['slowest_ms']:.1f} | {'over' if j['p50_ms'] > TARGET_MS else 'ok'} |"
            for j in m["beat"]
        ),
        "", "The slowest statement of each job over the bar:", "",
        *(
            line for j in m["beat"] if j["p50_ms"] > TARGET_MS
            for line in (f"- {j['job']} ({j['slowest_ms']:.1f} ms):", "", "  ```sql", f"  {j['slowest_sql']}", "  ```", "")
        ),
        "", "slack_behind's SQL:", "", "```sql", m["sql"], "```",
        "", "Its plan, escalations behind:", "", "```", m["plan_behind"], "```",
        "", f"Its plan, nothing behind ({m['caught_up']} messages brought up to date):", "",
        "```", m["plan_none"], "```",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--escalations", type=int, default=1_000_000)
    parser.add_argument("--behind", type=int, default=6)
    parser.add_argument("--open", type=float, default=0.002, help="the share of escalations open (pending)")
    parser.add_argument("--keep", action="store_true", help="reuse the database of a previous run")
    args = parser.parse_args()
    # The Slack app configured (else the sweep returns at once); no message is sent here.
    os.environ.update({"SLACK_BOT_TOKEN": "xoxb-bench", "SLACK_SIGNING_SECRET": "bench", "SLACK_API_URL": "http://127.0.0.1:9/"})
    loads = [loadavg()]
    timings: dict = {}
    if not args.keep:
        log(f"creating {DB}")
        recreate_database(DB)
    start_django(DB, "slack", static=False)
    if not args.keep:
        from django.core.management import call_command

        call_command("migrate", *SEEDED_AT, verbosity=0)
        log(f"generating {args.escalations:,} escalations")
        timings |= generate(args.escalations, args.behind, open_share=args.open)
        log("migrating over them")
        started = time.monotonic()
        call_command("migrate", verbosity=0)
        timings["migrate_s"] = time.monotonic() - started
    analyze(vacuum=True)  # as autovacuum leaves it: the visibility map set
    log("measuring")
    m = measure()
    loads.append(loadavg())
    table = report(counts(), timings, m, tuple(loads))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "slack_sweep.md").write_text(table)
    print(table)
    slowest = max([m["selector_ms"], m["sweep_ms"], *(j["p50_ms"] for j in m["beat"])])
    return 0 if slowest <= TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
