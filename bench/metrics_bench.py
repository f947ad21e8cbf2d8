#!/usr/bin/env python
"""`make bench-metrics`: GET /metrics and the retention purge at 100,000 escalations.

PostgreSQL and Redis on 127.0.0.1. Drops and re-creates its own database
`handoff_bench_metrics`, migrates it, and generates with SQL generate_series N escalations
over 8 weeks (--open of them open, across the four tiers; the rest decided or resumed),
their runs, decisions, claim events, one webhook delivery each (2% still retrying), 1.2
attempts per delivery, and a notification for every tenth (1% pending), then VACUUM
ANALYZE (as autovacuum does after a bulk load: index-only scans need the visibility map).
Then:

1. the scrape: GET /metrics through Django's whole request cycle in this process (the
   production settings, psycopg's pool, the Redis counters), 20 warm-up and N timed;
2. for comparison, what deriving the counters and the latency histogram from the rows
   would cost at each scrape (the design this replaces: operations.metrics says why);
3. the retention purge: RETENTION_DAYS=30 over the same data (about 60% expired), batch
   after batch, escalations per second, with the insights' figures checked unchanged.

    .venv/bin/python bench/metrics_bench.py [--escalations N] [--open N] [--requests N]

Prints a table and writes it to bench/results/metrics.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import date

from lib import use_the_project_venv

use_the_project_venv()

from app import recreate_database  # noqa: E402
from lib import RESULTS, loadavg, log, percentile  # noqa: E402
from seed import agent_params, analyze, bench_db, execute, generated, insert_select, start_django  # noqa: E402

DB = bench_db("handoff_bench_metrics")
AGENTS = 10
TARGET_MS = 250.0  # "well under 1 s"


def statements() -> list[str]:
    from escalations.models import Decision, Delivery, DeliveryAttempt, Escalation, Event, Run
    from notifications.models import Notification

    return [
        "SELECT setseed(0.42)",
        """CREATE TEMP TABLE g AS
        SELECT i,
               (%(agents)s::bigint[])[1 + i %% %(n_agents)s] AS agent_id,
               now() - random() * interval '56 days' AS created_at,
               0.3 + 0.69 * random() AS confidence,
               i <= %(open)s AS is_open,
               random() AS r1, random() AS r2
        FROM generate_series(1, %(n)s) AS i""",
        "ALTER TABLE g ADD COLUMN tier int",
        """UPDATE g SET tier = CASE WHEN is_open THEN 3 + (i %% 2) WHEN confidence < 0.5 THEN 4
                                 WHEN confidence < 0.7 THEN 3 WHEN confidence < 0.9 THEN 2 ELSE 1 END""",
        generated(Run),
        generated(
            Escalation,
            status="""CASE WHEN is_open THEN (CASE WHEN r2 < 0.1 THEN 'claimed' ELSE 'pending' END)
                      WHEN r1 < 0.05 THEN 'decided' ELSE 'resumed' END""",
            blocking="tier >= 3", stuck_since="created_at - interval '20 minutes'", domain="'default'",
            tier="tier", priority="10 * tier",
            updated_at="CASE WHEN is_open THEN created_at ELSE created_at + interval '1 hour' END",
        ),
        generated(
            Decision, "WHERE NOT is_open",
            decided_by_type="CASE WHEN tier >= 3 THEN 'human' ELSE 'policy' END",
            decided_by_name="CASE WHEN tier >= 3 THEN 'reviewer-' || (i %% 8) ELSE 'policy:default' END",
            decided_at="created_at + interval '1 hour'", took_recommended="random() < confidence",
        ),
        generated(Event, "WHERE NOT is_open AND tier >= 3", at="created_at + interval '10 minutes'"),
        generated(
            Delivery, "WHERE NOT is_open",
            status="CASE WHEN r1 < 0.02 THEN 'retrying' WHEN r1 < 0.03 THEN 'failed' ELSE 'delivered' END",
            next_attempt_at="created_at + interval '2 hours'",
            delivered_at="CASE WHEN r1 >= 0.03 THEN created_at + interval '1 hour 1 second' END",
        ),
        insert_select(DeliveryAttempt, {
            "delivery_id": "md5('d' || i::text)::uuid", "number": "n", "started_at": "created_at + interval '1 hour'",
            "duration_ms": "12", "status_code": "CASE WHEN n = 1 AND r2 < 0.2 THEN 500 ELSE 200 END",
        }, "g CROSS JOIN LATERAL generate_series(1, CASE WHEN r2 < 0.2 THEN 2 ELSE 1 END) AS n WHERE NOT is_open"),
        insert_select(Notification, {
            "id": "md5('n' || i::text)::uuid", "key": "'bench:' || i", "kind": "'halt_created'",
            "channel": "'email'", "recipient": "'demo'", "target": "'d@example.com'", "subject": "'s'",
            "text": "'t'", "link": "'l'", "escalation_id": "md5(i::text)::uuid",
            "status": "CASE WHEN r2 < 0.01 THEN 'pending' ELSE 'sent' END", "attempts": "1",
            "next_attempt_at": "created_at", "created_at": "created_at", "sent_at": "created_at",
        }, "g WHERE i %% 10 = 0"),
        "SELECT setval(pg_get_serial_sequence('escalations_run', 'id'), %(n)s)",
    ]


# What deriving the counters from the rows would run at every scrape.
ROW_DERIVED = {
    "decisions by kind and decided_by": (
        "SELECT kind, decided_by_type, count(*) FROM escalations_decision GROUP BY 1, 2"
    ),
    "webhook attempts by result": (
        "SELECT status_code BETWEEN 200 AND 299, count(*) FROM escalations_deliveryattempt GROUP BY 1"
    ),
    "deliveries failed": "SELECT count(*) FROM escalations_delivery WHERE status = 'failed'",
    "decision-to-webhook histogram": """
        SELECT width_bucket(extract(epoch FROM v.delivered_at - d.decided_at),
                            ARRAY[0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600]), count(*)
        FROM escalations_delivery v JOIN escalations_decision d USING (escalation_id)
        WHERE v.status = 'delivered' GROUP BY 1""",
}


def generate(n: int, open_count: int) -> float:
    return execute(statements(), agent_params(AGENTS, ["default"]) | {"n": n, "open": open_count})


def timed(fn, runs: int, warmup: int = 20) -> dict:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return {"p50": percentile(samples, 50), "p99": percentile(samples, 99), "max": max(samples)}


def scrape(requests: int) -> tuple[dict, dict, int]:
    from django.test import Client
    from prometheus_client.parser import text_string_to_metric_families

    client = Client()
    whole = timed(lambda: client.get("/metrics"), requests)
    response = client.get("/metrics")  # warm: what each source took in one scrape
    assert response.status_code == 200, response.status_code
    families = list(text_string_to_metric_families(response.content.decode()))
    sources = {
        s.labels["source"]: s.value * 1000
        for f in families if f.name == "handoff_scrape_duration_seconds" for s in f.samples
    }
    return whole, sources, len(response.content)


def row_derivation(runs: int) -> dict[str, dict]:
    from django.db import connection

    out = {}
    for name, sql in ROW_DERIVED.items():
        def run(sql=sql):
            with connection.cursor() as cursor:
                cursor.execute(sql)
                cursor.fetchall()
        out[name] = timed(run, runs, warmup=3)
    return out


def purge_all(days: int) -> dict:
    from insights import selectors as insights
    from insights import services as rollups
    from operations import services

    rollups.rollups_refresh()
    f = insights.Filters(date(2000, 1, 1), date(2100, 1, 1))
    before = (insights.outcomes_by(f, "tier"), insights.activity_rows(f))
    started, batches, purged, slowest = time.monotonic(), 0, 0, 0.0
    while True:
        batch_started = time.monotonic()
        count = services.retention_purge(days=days)
        slowest = max(slowest, time.monotonic() - batch_started)
        if not count:
            break
        batches += 1
        purged += count
    took = time.monotonic() - started
    after = (insights.outcomes_by(f, "tier"), insights.activity_rows(f))

    def key(rows):
        return sorted(map(repr, rows))

    unchanged = all(key(a) == key(b) for a, b in zip(before, after, strict=True))
    return {
        "purged": purged, "batches": batches, "seconds": took, "slowest_batch_s": slowest,
        "per_second": purged / took if took else 0.0, "insights_unchanged": unchanged,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--escalations", type=int, default=100_000)
    parser.add_argument("--open", type=int, default=2_000, help="how many of them are open")
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--no-purge", action="store_true")
    args = parser.parse_args()
    loads = [loadavg()]
    log(f"creating {DB}")
    recreate_database(DB)
    start_django(DB, "metrics", redis_url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), static=False)
    log(f"generating {args.escalations:,} escalations ({args.open:,} open)")
    generated_s = generate(args.escalations, args.open)
    analyze(vacuum=True)  # index-only scans need the visibility map
    log(f"timing GET /metrics, {args.requests} requests")
    whole, sources, size = scrape(args.requests)
    log("timing the row-derived alternative")
    derived = row_derivation(max(5, args.requests // 10))
    purge = None if args.no_purge else purge_all(30)
    if purge:
        log("timing the scrape again, after the purge")
    after_purge = scrape(args.requests)[0] if purge else None
    loads.append(loadavg())

    lines = [
        f"# GET /metrics at {args.escalations:,} escalations ({args.open:,} open)",
        "",
        f"Load average at start / end: {loads[0]} / {loads[1]}. Generated in {generated_s:.1f} s.",
        "Whole request = Django's request cycle in this process (the operations middleware,",
        "the Redis counters, the database gauges, prometheus_client's text encoding).",
        "",
        "| what | p50 ms | p99 ms | max ms |",
        "| --- | ---: | ---: | ---: |",
        f"| GET /metrics, whole request ({size:,} bytes) | {whole['p50']:.1f} | {whole['p99']:.1f} | {whole['max']:.1f} |",
    ]
    for source, ms in sources.items():
        lines.append(f"| of which {source} (one warm scrape) | {ms:.1f} | | |")
    if after_purge:
        lines.append(
            f"| GET /metrics after the purge | {after_purge['p50']:.1f} | {after_purge['p99']:.1f} | {after_purge['max']:.1f} |"
        )
    total = sum(d["p50"] for d in derived.values())
    lines += ["", "Counting the rows instead, at every scrape (not what /metrics does):", "",
              "| row-derived query | p50 ms | p99 ms |", "| --- | ---: | ---: |"]
    for name, d in derived.items():
        lines.append(f"| {name} | {d['p50']:.1f} | {d['p99']:.1f} |")
    lines.append(f"| all four | {total:.1f} | |")
    if purge:
        lines += [
            "",
            "| retention purge (RETENTION_DAYS=30) | value |",
            "| --- | ---: |",
            f"| escalations purged | {purge['purged']:,} |",
            f"| batches (500 each) | {purge['batches']:,} |",
            f"| seconds | {purge['seconds']:.1f} |",
            f"| escalations per second | {purge['per_second']:.0f} |",
            f"| slowest batch | {purge['slowest_batch_s'] * 1000:.0f} ms |",
            f"| insights figures unchanged | {'yes' if purge['insights_unchanged'] else 'NO'} |",
        ]
    table = "\n".join(lines) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "metrics.md").write_text(table)
    print(table)
    ok = whole["p99"] <= TARGET_MS and (purge is None or purge["insights_unchanged"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
