#!/usr/bin/env python
"""`make bench-slack`: beat's Slack sweep (notifications.tasks.sweep_slack_task), and its decision expiry, at 1,000,000
escalations.

PostgreSQL on 127.0.0.1 (user postgres), nothing else. It drops and re-creates its own
database `handoff_bench_slack`, migrates it to notifications 0005, generates with SQL generate_series N escalations, --open
of them open (0.2%: a queue of 2,000) and the rest closed (8% decided and never acknowledged,
as a polling agent that never acks leaves them; 4% expired, 10% withdrawn, the rest resumed), each with one or two messages the Slack app posted
(1.5 on average), every one up to date with its escalation's status (an open one's blank),
except --behind escalations' (half decided and still showing their buttons, half expired
and still showing the decision), with a decision each (valid_until only on the expired ones
and a tenth of those decided in the last week), runs the later migrations over them (timed), VACUUM ANALYZE, and:

1. the SQL slack_behind(limit=20) runs (captured from the ORM), with EXPLAIN (ANALYZE,
   BUFFERS), and its time (p50 of 20 runs after 3 warm-up, fewer past 30 s);
2. the messages behind brought up to date (as the sweep would), then the sweep end to end with
   nothing behind, the case of almost every minute (p50 of 20 runs), and its plan.

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

# --open of them pending, 8% decided, 4% expired, 10% withdrawn, the rest resumed.
STATUS = """CASE WHEN r1 < %(open)s THEN 'pending' WHEN r1 < %(open)s + 0.08 THEN 'decided'
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
    from escalations.models import Decision, Escalation, Run

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
            updated_at="CASE WHEN status = 'pending' THEN created_at ELSE created_at + interval '1 hour' END",
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
        insert_select(notification, {
            "id": "md5('s' || i || ':' || n)::uuid", "key": "'bench:slack:' || i || ':' || n",
            "kind": "'halt_created'", "channel": "'slack'", "recipient": "'reviewer-' || n",
            "target": "'UREV' || n", "subject": "'s'", "text": "'t'", "link": "'l'",
            "escalation_id": "md5(i::text)::uuid", "status": "'sent'", "attempts": "1",
            "next_attempt_at": "created_at", "created_at": "created_at", "sent_at": "created_at",
            "slack_channel": "'UREV' || n", "slack_ts": "'1700000000.' || lpad(i::text, 7, '0') || n",
            "slack_shown_status": "CASE WHEN status = 'pending' THEN '' ELSE status END",
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
    return {"generate_s": execute(statements(notification), params)}


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


def timed(call, runs: int = 20, seconds: float = 30) -> float:
    for _ in range(3):
        call()
    samples: list[float] = []
    deadline = time.monotonic() + seconds  # a slow case: fewer runs
    while len(samples) < runs and (not samples or time.monotonic() < deadline):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return percentile(samples, 50)


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
    return 0 if max(m["selector_ms"], m["sweep_ms"]) <= TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
