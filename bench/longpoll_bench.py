"""Figure 4: 1,000 agents long-polling at once on one uvicorn process: its memory, the
database connections it holds while they wait, and the wake-up latency once each is decided."""

from __future__ import annotations

import json
import os
import subprocess
import time

from app import BENCH_DB, PG_PORT, app_env, pg
from fixtures import POLL_N, POLL_WARM, Context
from lib import (
    BENCH_DIR,
    RESULTS,
    ROOT,
    cpu_seconds,
    dump_json,
    free_port,
    http_get,
    log,
    percentile,
    python,
    read_line,
    rss_mb,
    summary_ms,
    tcp_local_ports_to,
    wait_for_port,
)


def measure(ctx: Context) -> None:
    log(f"figure 4: {POLL_N} agents long-polling at once (?wait=60), uvicorn 1 process")
    port = free_port()
    deciders = ctx.deciders()
    server = ctx.procs.start(
        "app-uvicorn",
        [python(), "-m", "uvicorn", "handoff_site.asgi:application", "--host", "127.0.0.1", "--port",
         str(port), "--lifespan", "off", "--log-level", "warning", "--no-access-log",
         "--backlog", "4096"],
        env=app_env(), cwd=ROOT,
    )
    clients = []
    try:
        wait_for_port(port, server)
        token = ctx.agents["poll"].token
        for esc_id in ctx.ids["poll"][:5]:  # warm Django up under ASGI (answers at once)
            status, body = http_get(port, f"/api/v1/escalations/{esc_id}", {"Authorization": f"Bearer {token}"})
            if status != 200:
                raise RuntimeError(f"uvicorn GET answered {status}: {body[:300]!r}")
        rss_idle = rss_mb(server.pid)[0]
        warm_ids, ids = ctx.ids["poll"][:POLL_WARM], ctx.ids["poll"][POLL_WARM:]

        # warm-up round: 20 long-polls woken by 20 decisions (starts the Redis listener)
        client, _ = _longpoll_client(ctx, port, warm_ids, "longpoll-warmup", 40)
        clients.append(client)
        read_line(client, 40, "long-poll warm-up client")
        time.sleep(1.0)
        warm_stamps, _ = deciders.run(warm_ids, 0.020)
        if read_line(client, 40, "long-poll warm-up client") != "DONE":
            raise RuntimeError("long-poll warm-up failed")
        ctx.procs.stop(client)

        # the measured round
        client, out = _longpoll_client(ctx, port, ids, "longpoll", 100)
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
        ctx.profile("4-uvicorn-waiting", server.pid, 4)
        cpu0, t_cpu0 = cpu_seconds(server.pid), time.monotonic()
        with pg() as mon:
            for _ in range(8):
                rss, hwm = rss_mb(server.pid)
                samples.append({"t": time.time(), "rss_mb": rss, "hwm_mb": hwm,
                                **_server_db(mon, server.pid)})
                time.sleep(0.5)
        waiting_cpu = (cpu_seconds(server.pid) - cpu0) / (time.monotonic() - t_cpu0)
        cpu_before = cpu_seconds(server.pid)
        pace = min(ctx.args.pace, deciders.sustainable_rate(warm_stamps))
        ctx.profile("4-uvicorn", server.pid, len(ids) / pace + 2)
        stamps, late = deciders.run(ids, 1.0 / pace)
        line = read_line(client, 90, "long-poll client")
        if line != "DONE":
            raise RuntimeError(f"long-poll client: {line!r}")
        server_cpu = cpu_seconds(server.pid) - cpu_before
        rss_after, hwm_after = rss_mb(server.pid)
        records = json.loads(out.read_text())
    finally:
        for client in clients:
            ctx.procs.stop(client)
        ctx.procs.stop(server)
    first_commit = min(s[1] for s in stamps.values())
    answered = [r for r in records if "t_recv" in r]
    early = [r for r in answered if r["t_recv"] < stamps[r["id"]][1]]
    wake = [r["t_recv"] - stamps[r["id"]][1] for r in answered if r["t_recv"] >= stamps[r["id"]][1]]
    wake_return = [r["t_recv"] - stamps[r["id"]][2] for r in answered if r["t_recv"] >= stamps[r["id"]][1]]
    span = max(s[0] for s in stamps.values()) - min(s[0] for s in stamps.values())
    by_commit = sorted((stamps[r["id"]][1], r["t_recv"] - stamps[r["id"]][1]) for r in answered)
    first20 = [lat * 1000 for _, lat in by_commit[:20]]
    worst = max(samples, key=lambda s: (s["active"] + s["idle_in_transaction"], s["total"]))
    ctx.r["4"] = {
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
        "late_p99_ms": percentile(late, 99), "pace_requested": ctx.args.pace,
        "first20_p50": percentile(first20, 50),
        "polls_max": max((r.get("polls", 1) for r in records), default=0),
        "server_cpu_s": server_cpu, "decide_s": span, "first_commit": first_commit,
    }
    dump_json(RESULTS / "longpoll-stamps.json", stamps)
    f = ctx.r["4"]
    log(f"  (4) {f['sent']} waiting (sent in {sent_s:.1f} s, all first checks done {settle_s:.1f} s later; "
        f"server at {waiting_cpu * 100:.0f}% of a core while they wait); RSS {f['rss_waiting_mb']:.1f} MB "
        f"(idle {rss_idle:.1f} MB); server DB connections <= {f['db_total_max']}, "
        f"active/idle-in-txn <= {f['db_busy_max']}")
    log(f"      wake-up p50 {f['p50']:.2f} ms, p99 {f['p99']:.2f} ms, max {f['max']:.2f} ms; "
        f"{f['decided']}/{f['clients']} answered 'decided', {f['early']} early, {f['errors']} errors; "
        f"decisions at {f['pace_per_s']:.0f}/s (late p99 {f['late_p99_ms']:.1f} ms)")


def _server_db(mon, pid: int) -> dict:
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


def _longpoll_client(ctx: Context, port: int, ids: list[str], name: str, deadline: float):
    ids_file = RESULTS / f"{name}-ids.txt"
    ids_file.write_text("\n".join(ids))
    out = RESULTS / f"{name}.json"
    out.unlink(missing_ok=True)
    proc = ctx.procs.start(
        name, [python(), str(BENCH_DIR / "longpoll_client.py"), str(port), ctx.agents["poll"].token,
               str(ids_file), str(out), "60", str(deadline)],
        env=dict(os.environ), cwd=BENCH_DIR, stdout=subprocess.PIPE,
    )
    return proc, out
