"""Figure 3: decision commit -> signed webhook received by a local agent (bench/receiver.py),
through a real Celery worker on Redis; decisions from the decider processes on a schedule.

Three rounds on one worker setup: 50 decisions/s and 200 decisions/s (or what the deciders
sustain), each with the broker's queue sampled (does the worker keep up?), then the rate the
worker sustains on its own: decisions made while it is stopped leave a backlog in the queue,
and a fresh worker drains it with the cores to itself; its CPU per delivery (main process and
children, /proc) is measured over the drain, and over each round. The decisions are one
agent's, or spread in turn over `bench/run.py --hook-agents N` agents (each its own
resume_url, all on the one receiver). BENCH_WORKER_POOL / BENCH_WORKER_CONCURRENCY /
BENCH_WORKER_PREFETCH set the worker's pool (prefork by default, as `make run` runs it)."""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

from app import BENCH_DB, REDIS_APP, app_env, celery_cmd, pg
from fixtures import HOOK_DRAIN, HOOK_FAST, HOOK_N, HOOK_WARM, Context, hook_roles
from lib import (
    BENCH_DIR,
    RESULTS,
    ROOT,
    group_cpu_seconds,
    log,
    percentile,
    python,
    summary_ms,
    wait_for,
    wait_for_port,
)

RATES = {"3": (50.0, HOOK_N), "3_200": (200.0, HOOK_FAST)}


def worker_cmd() -> list[str]:
    """The app's worker: celery_cmd's flags, with the pool, concurrency and prefetch the
    environment asks for (BENCH_WORKER_*), prefork -c 2 otherwise."""
    cmd = celery_cmd("handoff_site")
    pool = os.environ.get("BENCH_WORKER_POOL", "prefork")
    cmd[cmd.index("-P") + 1] = pool
    concurrency = os.environ.get("BENCH_WORKER_CONCURRENCY", "2")
    cmd[cmd.index("-c") + 1] = concurrency
    if prefetch := os.environ.get("BENCH_WORKER_PREFETCH"):
        cmd += ["--prefetch-multiplier", prefetch]
    return cmd


def worker_label() -> str:
    label = f"{os.environ.get('BENCH_WORKER_POOL', 'prefork')} -c {os.environ.get('BENCH_WORKER_CONCURRENCY', '2')}"
    if prefetch := os.environ.get("BENCH_WORKER_PREFETCH"):
        label += f", prefetch {prefetch}"
    return label


class QueueSampler:
    """The broker queue's length every 20 ms while a round runs, and every 100 ms the
    deliveries waiting in the database (pending: committed, not yet taken by a worker): is
    the worker keeping up? A decision's delivery waits as a broker message when each has a
    task, and as its row when one task of its agent sends all the agent's due ones."""

    rds: Any

    def __init__(self) -> None:
        import redis

        self.rds = redis.Redis.from_url(REDIS_APP)
        self.db = pg(BENCH_DB)
        self.samples: list[int] = []
        self.waiting: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def pending(self) -> int:
        row = self.db.execute(PENDING_SQL).fetchone()
        return int(row[0]) if row else 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(int(self.rds.llen("celery")))
            if len(self.samples) % 5 == 1:
                self.waiting.append(self.pending())
            self._stop.wait(0.02)

    def stop(self, at_end: int, waiting_at_end: int) -> dict[str, float]:
        """The samples' max and median, and `at_end`: the length when the last decision was
        made; the same of the deliveries waiting in the database (`db_`)."""
        self._stop.set()
        self._thread.join()
        self.db.close()
        return {"max": max(self.samples or [0]), "p50": percentile([float(s) for s in self.samples], 50),
                "end": at_end, "n": len(self.samples),
                "db_max": max(self.waiting or [0]), "db_end": waiting_at_end}


PENDING_SQL = "SELECT count(*) FROM escalations_delivery WHERE status = 'pending'"


def measure(ctx: Context) -> None:
    agents = hook_roles(ctx.args.hook_agents)
    log(f"figure 3: decision commit -> signed webhook received; Celery {worker_label()} on Redis; "
        f"{HOOK_N} decisions at 50/s, {HOOK_FAST} at 200/s, then a backlog of {HOOK_DRAIN} drained; "
        f"{len(agents)} agent(s)")
    from handoff_site.celery import app as celery_app

    celery_app.set_current()
    out = RESULTS / "webhooks.jsonl"
    out.unlink(missing_ok=True)
    secrets = ",".join(ctx.agents[role].agent.signing_secret for role in agents)  # in their paths' order
    receiver = ctx.procs.start("receiver", [python(), str(BENCH_DIR / "receiver.py"),
                                             str(ctx.receiver_port), secrets, str(out)],
                                env=dict(os.environ), cwd=BENCH_DIR)
    worker = None
    deciders = ctx.deciders()

    def received() -> dict[str, dict]:
        found: dict[str, dict] = {}
        if out.exists():
            for line in out.read_text().splitlines():
                item = json.loads(line)
                found.setdefault(item["escalation"], item)
        return found

    ids = ctx.ids["hook"]
    warm, rest = ids[:HOOK_WARM], ids[HOOK_WARM:]
    batches = {"3": rest[:HOOK_N], "3_200": rest[HOOK_N:HOOK_N + HOOK_FAST],
               "3_drain": rest[HOOK_N + HOOK_FAST:HOOK_N + HOOK_FAST + HOOK_DRAIN]}
    rounds: dict[str, tuple] = {}
    try:
        wait_for_port(ctx.receiver_port, receiver)
        worker = ctx.procs.start("app-celery", worker_cmd(), env=app_env(), cwd=ROOT)
        warm_stamps, _ = deciders.run(warm, 0.020)
        wait_for(lambda: len(received()) >= HOOK_WARM, 60, "webhook warm-up", worker)
        time.sleep(1.0)
        half_busy = deciders.sustainable_rate(warm_stamps)  # the deciders at 50% busy
        done = HOOK_WARM
        for key, (asked, _n) in RATES.items():
            # 50/s at most half busy (as before); 200/s as fast as they can (all busy).
            pace = min(asked, half_busy if asked <= 50 else 2 * half_busy)
            ctx.profile(key, worker.pid, len(batches[key]) / pace + 2)
            sampler = QueueSampler()
            cpu_start = group_cpu_seconds(worker.pid)
            stamps, late = deciders.run(batches[key], 1.0 / pace)
            at_end, waiting_at_end = int(sampler.rds.llen("celery")), sampler.pending()
            done += len(batches[key])
            wait_for(lambda d=done: len(received()) >= d, 60, f"webhooks at {asked:.0f}/s", worker)
            queue = sampler.stop(at_end, waiting_at_end)
            # The worker's CPU over the round, sent as the decisions came (the drain's batches
            # are the best case: one message for all of an agent's backlog).
            rounds[key] = (stamps, late, asked, queue, group_cpu_seconds(worker.pid) - cpu_start)
            half_busy = deciders.sustainable_rate(stamps)  # warmer than the warm-up's figure
            time.sleep(0.5)
        # The worker's own rate: a backlog made while it is stopped, drained by a fresh one.
        ctx.procs.stop(worker)
        worker = None
        drain_ids = batches["3_drain"]
        drain_stamps, _ = deciders.run(drain_ids, 0.0)
        worker = ctx.procs.start("app-celery-drain", worker_cmd(), env=app_env(), cwd=ROOT)
        wait_for(lambda: len(received()) >= done + 1, 60, "the drain's first webhook", worker)
        ctx.profile("3_drain", worker.pid, 10)
        cpu_start, drained_at = group_cpu_seconds(worker.pid), len(received())
        wait_for(lambda: len(received()) >= done + len(drain_ids), 120, "the drain", worker)
        drain_cpu = group_cpu_seconds(worker.pid) - cpu_start
        drained = len(received()) - drained_at
        time.sleep(0.5)
        lines = out.read_text().splitlines()
    finally:
        if worker is not None:
            ctx.procs.stop(worker)
        ctx.procs.stop(receiver)
    got = received()
    for key, (stamps, late, asked, queue, cpu) in rounds.items():
        ctx.r[key] = _round(batches[key], stamps, late, asked, queue, cpu, got)
    arrivals = sorted(got[i]["t"] for i in drain_ids if i in got)[10:]  # past the worker's start
    ctx.r["3_drain"] = {
        "worker": worker_label(),
        "backlog": len(drain_ids),
        "received": sum(1 for i in drain_ids if i in got),
        "per_s": (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) if len(arrivals) > 1 else float("nan"),
        "cpu_ms_per_delivery": drain_cpu * 1000 / max(drained, 1),
        "queued_in_s": max(s[2] for s in drain_stamps.values()) - min(s[0] for s in drain_stamps.values()),
    }
    everything = [json.loads(line) for line in lines]
    ctx.r["3"].update(
        agents=len(agents), deliveries_total=len(lines), duplicates=len(lines) - len(got),
        bad_signatures=sum(1 for item in everything if not item["signature_ok"]),
        connections=len({item.get("peer") for item in everything}),
    )
    for key in RATES:
        f = ctx.r[key]
        log(f"  ({key}) commit->received p50 {f['p50']:.2f} ms, p99 {f['p99']:.2f} ms, max {f['max']:.2f} ms; "
            f"{f['received']}/{f['decisions']} received; on-commit hooks p50 {f['after_commit_hooks']['p50']:.2f} ms; "
            f"decisions at {f['pace_per_s']:.0f}/s ({f['pace_requested']:.0f} asked), webhooks arrived at "
            f"{f['delivered_per_s']:.0f}/s; queue max {f['queue']['max']}, at the end {f['queue']['end']}; "
            f"deliveries pending max {f['queue']['db_max']}, at the end {f['queue']['db_end']}; "
            f"the worker's CPU {f['worker_cpu_ms_per_delivery']:.2f} ms a delivery")
    d = ctx.r["3_drain"]
    log(f"  (3) the worker ({d['worker']}) drains a backlog of {d['backlog']} at {d['per_s']:.0f} deliveries/s, "
        f"{d['cpu_ms_per_delivery']:.2f} ms of its CPU per delivery; {ctx.r['3']['duplicates']} duplicates, "
        f"{ctx.r['3']['bad_signatures']} bad signatures, {ctx.r['3']['connections']} connections")


def _round(ids: list[str], stamps: dict, late: list[float], asked: float, queue: dict, cpu: float, got: dict) -> dict:
    arrivals = sorted(got[i]["t"] for i in ids if i in got)
    first = [got[i]["t"] - stamps[i][1] for i in ids[:10] if i in got]
    from_commit = [got[i]["t"] - stamps[i][1] for i in ids if i in got]
    span = max(s[0] for s in stamps.values()) - min(s[0] for s in stamps.values())
    return {
        **summary_ms(from_commit),
        "from_return": summary_ms([got[i]["t"] - stamps[i][2] for i in ids if i in got]),
        "decide_call": summary_ms([stamps[i][2] - stamps[i][0] for i in ids]),
        "after_commit_hooks": summary_ms([stamps[i][2] - stamps[i][1] for i in ids]),
        "late_p99_ms": percentile(late, 99),
        "decisions": len(ids), "received": sum(1 for i in ids if i in got),
        "status_not_decided": sum(1 for i in ids if i in got and got[i]["status"] != "decided"),
        "pace_per_s": (len(ids) - 1) / span if span else float("nan"),
        "pace_requested": asked,
        "delivered_per_s": (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) if len(arrivals) > 1 else float("nan"),
        "first10_p50": percentile([x * 1000 for x in first], 50),
        "last10_p50": percentile([(got[i]["t"] - stamps[i][1]) * 1000 for i in ids[-10:] if i in got], 50),
        "queue": queue,
        "worker_cpu_ms_per_delivery": cpu * 1000 / len(ids),
    }
