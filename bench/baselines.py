"""The baselines measured in every run beside the figures: (b) a raw INSERT + COMMIT and
(c) a Celery no-op; (a), the bare Django view, runs interleaved with figures 1 and 2
(http_bench.py)."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from app import BASE_DB, PG_HOST, PG_PORT, PG_USER, REDIS_BASE, base_env, celery_cmd, sleep_until
from fixtures import Context
from lib import BENCH_DIR, log, summary_ms, wait_for


def baseline_b(ctx: Context) -> None:
    """(b) raw psycopg INSERT of a 3 KB JSON + COMMIT, one connection."""
    from psycopg.types.json import Jsonb

    log("baseline (b): raw psycopg INSERT 3 KB jsonb + COMMIT, 1 connection")
    import psycopg

    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=BASE_DB) as conn:
        sql = "INSERT INTO bench_write (payload) VALUES (%s) RETURNING id"
        size = len(json.dumps(ctx.package("raw-000000")).encode())

        def one(i: int) -> float:
            t0 = time.perf_counter()
            conn.execute(sql, (Jsonb(ctx.package(f"raw-{ctx.nonce}-{i}")),)).fetchone()
            conn.commit()
            return time.perf_counter() - t0

        warm_end = time.monotonic() + 1.0
        i = 0
        while time.monotonic() < warm_end:
            one(i)
            i += 1
        lat: list[float] = []
        started = time.monotonic()
        while time.monotonic() - started < 5.0 and len(lat) < 50_000:
            lat.append(one(i))
            i += 1
        took = time.monotonic() - started
    ctx.r["b"] = {"ops": len(lat), "seconds": took, "ops_s": len(lat) / took, "json_bytes": size,
                   **summary_ms(lat)}
    log(f"  (b) {ctx.r['b']['ops_s']:.0f} ops/s, p50 {ctx.r['b']['p50']:.2f} ms, "
        f"p99 {ctx.r['b']['p99']:.2f} ms ({size} B JSON)")


def baseline_c(ctx: Context) -> None:
    """(c) Celery no-op delay -> start, prefork -c 2, acks_late, Redis broker."""
    log("baseline (c): Celery no-op delay->start, prefork -c 2, acks_late, 300 tasks 10 ms apart")
    import redis

    os.environ["BENCH_CELERY_BROKER"] = REDIS_BASE
    sys.path.insert(0, str(BENCH_DIR))
    from baseline.celery_app import STARTS_KEY, noop

    rds: Any = redis.Redis.from_url(REDIS_BASE)  # redis-py's sync client (its types say either)
    rds.delete(STARTS_KEY)
    proc = ctx.procs.start("baseline-celery", celery_cmd("baseline.celery_app"), env=base_env(),
                            cwd=BENCH_DIR)
    try:
        for i in range(20):
            noop.delay(f"warm-{i}")
        wait_for(lambda: rds.llen(STARTS_KEY) >= 20, 60, "baseline worker warm-up", proc)
        time.sleep(0.5)
        rds.delete(STARTS_KEY)
        sent = {}
        t0 = time.time() + 0.05
        for i in range(300):
            sleep_until(t0 + i * 0.010)
            sent[str(i)] = time.time()
            noop.delay(str(i))
        wait_for(lambda: rds.llen(STARTS_KEY) >= 300, 30, "baseline no-op tasks", proc)
        starts: dict[str, float] = {}
        for item in rds.lrange(STARTS_KEY, 0, -1):
            tag, stamp = item.decode().split()
            starts.setdefault(tag, float(stamp))
    finally:
        ctx.procs.stop(proc)
    lat = [starts[k] - sent[k] for k in sent if k in starts]
    ctx.r["c"] = {**summary_ms(lat), "sent": len(sent), "started": len(starts)}
    c = ctx.r["c"]
    log(f"  (c) delay->start p50 {c['p50']:.2f} ms, p99 {c['p99']:.2f} ms, max {c['max']:.2f} ms "
        f"({c['started']}/{c['sent']} ran)")
