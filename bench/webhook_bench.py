"""Figure 3: decision commit -> signed webhook received by a local agent (bench/receiver.py),
through a real Celery worker on Redis; decisions from the decider processes on a schedule."""

from __future__ import annotations

import json
import os
import time

from app import app_env, celery_cmd
from fixtures import HOOK_N, HOOK_WARM, Context
from lib import (
    BENCH_DIR,
    RESULTS,
    ROOT,
    log,
    percentile,
    python,
    summary_ms,
    wait_for,
    wait_for_port,
)


def measure(ctx: Context) -> None:
    log("figure 3: decision commit -> signed webhook received; Celery prefork -c 2 on Redis; "
        f"{HOOK_N} decisions 20 ms apart")
    from handoff_site.celery import app as celery_app

    celery_app.set_current()
    out = RESULTS / "webhooks.jsonl"
    out.unlink(missing_ok=True)
    secret = ctx.agents["hook"].agent.signing_secret
    receiver = ctx.procs.start("receiver", [python(), str(BENCH_DIR / "receiver.py"),
                                             str(ctx.receiver_port), secret, str(out)],
                                env=dict(os.environ), cwd=BENCH_DIR)
    worker = None
    deciders = ctx.deciders()
    try:
        wait_for_port(ctx.receiver_port, receiver)
        worker = ctx.procs.start("app-celery", celery_cmd("handoff_site"), env=app_env(), cwd=ROOT)

        def received() -> dict[str, dict]:
            found: dict[str, dict] = {}
            if out.exists():
                for line in out.read_text().splitlines():
                    item = json.loads(line)
                    found.setdefault(item["escalation"], item)
            return found

        ids = ctx.ids["hook"]
        warm, measured = ids[:HOOK_WARM], ids[HOOK_WARM:]
        warm_stamps, _ = deciders.run(warm, 0.020)
        wait_for(lambda: len(received()) >= HOOK_WARM, 60, "webhook warm-up", worker)
        time.sleep(1.0)
        pace = min(50.0, deciders.sustainable_rate(warm_stamps))
        ctx.profile("3-celery", worker.pid, HOOK_N / pace + 2)
        stamps, late = deciders.run(measured, 1.0 / pace)
        wait_for(lambda: len(received()) >= len(ids), 30, "webhooks", worker)
        time.sleep(0.5)
        lines = out.read_text().splitlines()
    finally:
        if worker is not None:
            ctx.procs.stop(worker)
        ctx.procs.stop(receiver)
    got = received()
    arrivals = sorted(got[i]["t"] for i in measured if i in got)
    delivered_per_s = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) if len(arrivals) > 1 else float("nan")
    first = [got[i]["t"] - stamps[i][1] for i in measured[:10] if i in got]
    from_commit = [got[i]["t"] - stamps[i][1] for i in measured if i in got]
    from_return = [got[i]["t"] - stamps[i][2] for i in measured if i in got]
    decide_s = [(stamps[i][2] - stamps[i][0]) for i in measured]
    hooks_s = [(stamps[i][2] - stamps[i][1]) for i in measured]
    span = max(s[0] for s in stamps.values()) - min(s[0] for s in stamps.values())
    ctx.r["3"] = {
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
    f = ctx.r["3"]
    log(f"  (3) commit->received p50 {f['p50']:.2f} ms, p99 {f['p99']:.2f} ms, max {f['max']:.2f} ms; "
        f"{f['received']}/{f['decisions']} received, {f['bad_signatures']} bad signatures, "
        f"{f['duplicates']} duplicates; on-commit hooks p50 {f['after_commit_hooks']['p50']:.2f} ms; "
        f"decisions at {f['pace_per_s']:.0f}/s (late p99 {f['late_p99_ms']:.1f} ms), webhooks arrived at "
        f"{delivered_per_s:.0f}/s; the first 10: p50 {f['first10_p50']:.1f} ms")
