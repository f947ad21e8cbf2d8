"""(a), figure 1 and figure 2: the bare Django view, `GET /api/v1/escalations/{id}` and
`POST /api/v1/escalations` under gunicorn, with wrk, in interleaved rounds; and the commits
each POST costs (pg_stat_database and the WAL's commit records)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from app import (
    BENCH_DB,
    app_env,
    base_env,
    box_cores,
    gunicorn_cmd,
    pg,
    production_gunicorn_cmd,
    production_gunicorn_env,
)
from fixtures import Context
from lib import (
    BENCH_DIR,
    RESULTS,
    ROOT,
    free_port,
    group_cpu_seconds,
    http_get,
    log,
    lua_string,
    run_wrk,
    wait_for_port,
)

# How figures 1 and 2 serve the app. The first is the figures' (production's: docker-compose's
# web-http command, deploy/gunicorn.conf.py, one gthread worker per core, 8 threads each); with
# --servers gthread,sync the bench also serves it under (a)'s own server, gunicorn -k sync -w 2,
# and reports that beside it (the shape figures 1 and 2 used before 2026-12-06).
SERVERS = ("gthread", "sync")
SERVER_LABELS = {
    "gthread": "gunicorn -c deploy/gunicorn.conf.py (gthread, {cores} workers x 8 threads; a connection per request, "
               "as nginx sends them)",
    "sync": "gunicorn -k sync -w 2 (as (a))",
}
# In production nginx reaches web-http without upstream keep-alive (deploy/nginx.conf: no
# `keepalive` in `upstream web_http`): one TCP connection per request, closed after the answer.
# wrk's requests to the gthread server say `Connection: close` to do the same (a sync worker
# closes every connection anyway). Kept connections would also misstate gthread: each worker
# keeps the connections it accepted, and on a busy box one worker often takes all 32 of them
# at wrk's start, leaving the other idle for the whole run.
CLOSE_PER_REQUEST = {"gthread": True, "sync": False}


def _app_server(ctx: Context, shape: str, port: int):
    if shape == "gthread":
        cmd = production_gunicorn_cmd("handoff_site.wsgi:application", port)
        return ctx.procs.start("app-gunicorn-gthread", cmd, env=production_gunicorn_env(app_env()), cwd=ROOT)
    return ctx.procs.start("app-gunicorn-sync", gunicorn_cmd("handoff_site.wsgi:application", port),
                           env=app_env(), cwd=ROOT)


def _suffix(shape: str, shapes: tuple[str, ...]) -> str:
    """Result keys: the first shape's are "1" and "2", another's "1_<shape>" and "2_<shape>"."""
    return "" if shape == shapes[0] else f"_{shape}"


def measure(ctx: Context) -> None:
    """(a), figure 1 and figure 2, interleaved in rounds: a, 1, 2, a, 1, 2, ...

    Every server runs side by side (an idle one costs nothing), so a change in what else
    the box is doing hits the baseline and the figures alike; each figure is the median
    of its rounds. With two serving shapes for the app, each round runs both, their order
    alternating from round to round.
    """
    skip, rounds = ctx.args.skip, ctx.args.rounds
    shapes = tuple(ctx.args.servers)
    ctx.r["12_servers"] = {shape: SERVER_LABELS[shape].format(cores=box_cores()) for shape in shapes}
    log(f"(a), figures 1 and 2: (a) under gunicorn sync w=2, the app under "
        f"{' and '.join(ctx.r['12_servers'].values())}; {rounds} interleaved rounds of "
        f"wrk -d{ctx.args.seconds}s after 3 s warm-ups")
    base_port = free_port()
    base = ctx.procs.start("baseline-gunicorn", gunicorn_cmd("baseline.wsgi:application", base_port),
                            env=base_env(), cwd=BENCH_DIR)
    ports = {shape: free_port() for shape in shapes}
    apps = {shape: _app_server(ctx, shape, ports[shape]) for shape in shapes}
    runs: dict[str, list] = {"a": []}
    accounts = []
    try:
        wait_for_port(base_port, base)
        status, body = http_get(base_port, "/escalation")
        if status != 200:
            raise RuntimeError(f"baseline view answered {status}: {body[:300]!r}")
        token = ctx.agents["get"].token
        for shape in shapes:
            wait_for_port(ports[shape], apps[shape])
            status, body = http_get(ports[shape], f"/api/v1/escalations/{ctx.ids['get'][0]}",
                                    {"Authorization": f"Bearer {token}"})
            if status != 200 or json.loads(body)["id"] != ctx.ids["get"][0]:
                raise RuntimeError(f"GET ({shape}) answered {status}: {body[:300]!r}")
        base_url = f"http://127.0.0.1:{base_port}/escalation"
        urls = {shape: f"http://127.0.0.1:{ports[shape]}" for shape in shapes}
        get_scripts = {shape: _get_script(ctx, close=CLOSE_PER_REQUEST[shape]) for shape in shapes}
        sample = json.dumps(ctx.package(f"bench-{ctx.nonce}-m1-t1-000001"), separators=(",", ":"))
        ctx.r["2_json_bytes"] = len(sample.encode())
        if "a" not in skip:
            run_wrk(base_url, threads=1, connections=32, seconds=3, name="a-warmup")
        for shape in shapes:
            if "1" not in skip:
                run_wrk(urls[shape], threads=1, connections=32, seconds=3, script=get_scripts[shape],
                        name=f"1{_suffix(shape, shapes)}-warmup")
            if "2" not in skip:
                run_wrk(urls[shape], threads=1, connections=8, seconds=3,
                        script=_post_script(ctx, f"bench-{ctx.nonce}-w{shape[0]}", close=CLOSE_PER_REQUEST[shape]),
                        name=f"2{_suffix(shape, shapes)}-warmup")
        for r in range(1, rounds + 1):
            last = r == rounds
            if "a" not in skip:
                if last:
                    ctx.profile("a-gunicorn", base.pid, ctx.args.seconds)
                res = run_wrk(base_url, threads=1, connections=32, seconds=ctx.args.seconds, name=f"a-{r}")
                runs["a"].append(res)
                log(f"  round {r} (a) {res.rps:.0f} req/s, p99 {res.p99_ms:.1f} ms, errors {res.errors}")
            order = shapes if r % 2 else tuple(reversed(shapes))
            for shape in order:
                sfx, app = _suffix(shape, shapes), apps[shape]
                if "1" not in skip:
                    if last:
                        ctx.profile(f"1{sfx}-gunicorn", app.pid, ctx.args.seconds)
                    cpu = group_cpu_seconds(app.pid)
                    res = run_wrk(urls[shape], threads=1, connections=32, seconds=ctx.args.seconds,
                                  script=get_scripts[shape], name=f"1{sfx}-{r}")
                    res.server_cpu_ms = 1000 * (group_cpu_seconds(app.pid) - cpu) / max(res.requests, 1)
                    runs.setdefault(f"1{sfx}", []).append(res)
                    log(f"  round {r} (1, {shape}) {res.rps:.0f} req/s, p99 {res.p99_ms:.1f} ms, "
                        f"errors {res.errors}, server CPU {res.server_cpu_ms:.2f} ms/request")
                if "2" not in skip:
                    # the first shape's escalations are the ones the commit accounting counts
                    prefix = f"bench-{ctx.nonce}-m{r}" if not sfx else f"bench-{ctx.nonce}-{shape[0]}{r}"
                    res, account = _post_round(ctx, urls[shape], app.pid, prefix, f"2{sfx}-{r}",
                                               close=CLOSE_PER_REQUEST[shape],
                                               profile=f"2{sfx}-gunicorn" if last else None)
                    runs.setdefault(f"2{sfx}", []).append(res)
                    if not sfx:
                        accounts.append(account)
                    log(f"  round {r} (2, {shape}) {res.rps:.0f} req/s, p99 {res.p99_ms:.1f} ms, "
                        f"errors {res.errors}, server CPU {res.server_cpu_ms:.2f} ms/request; "
                        f"WAL commits {account['wal_commits']}, xact_commit {account['xact_commit']}")
    finally:
        for app in apps.values():
            ctx.procs.stop(app)
        ctx.procs.stop(base)
    for key, results in runs.items():
        if results:
            ctx.r[key] = aggregate(results)
    if accounts:
        _commit_accounting(ctx, accounts)
    for key in runs:
        if key in ctx.r:
            f = ctx.r[key]
            log(f"  ({key}) median of {len(f['rounds'])}: {f['rps']:.0f} req/s, p50 {f['p50_ms']:.2f} ms, "
                f"p99 {f['p99_ms']:.2f} ms, {f['non2xx']} non-2xx, socket errors {f['socket_errors']}")


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
        "server_cpu_ms": median(r.server_cpu_ms for r in results) if all(r.server_cpu_ms for r in results) else None,
        "rounds": [{"rps": r.rps, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms, "errors": r.errors,
                    "server_cpu_ms": r.server_cpu_ms} for r in results],
    }


def _connection(close: bool) -> str:
    """A Lua table entry for wrk's headers: `Connection: close` (a connection per request), or none."""
    return ', ["Connection"] = "close"' if close else ""


def _get_script(ctx: Context, *, close: bool = False) -> Path:
    token = ctx.agents["get"].token
    ids = ",\n".join(f'"{i}"' for i in ctx.ids["get"])
    script = RESULTS / ("get-close.lua" if close else "get.lua")
    script.write_text(f"""-- generated by bench/http_bench.py: rotate among the agent's escalations
local ids = {{{ids}}}
local headers = {{["Authorization"] = "Bearer {token}", ["Accept"] = "application/json"{_connection(close)}}}
local n = 0
function init(args) n = math.random(#ids) end
function request()
  n = n % #ids + 1
  return wrk.format("GET", "/api/v1/escalations/" .. ids[n], headers)
end
""")
    return script


def _post_script(ctx: Context, prefix: str, *, close: bool = False) -> Path:
    token = ctx.agents["post"].token
    marker = "@@RUN@@"
    body = json.dumps(ctx.package(marker), separators=(",", ":"))
    head, tail = body.split(marker)
    script = RESULTS / f"post-{prefix}.lua"
    script.write_text(f"""-- generated by bench/http_bench.py: a unique run_id and Idempotency-Key per request
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
    ["Authorization"] = token, ["Idempotency-Key"] = run{_connection(close)}}}, head .. run .. tail)
end
""")
    return script


def _post_round(ctx: Context, url: str, pid: int, prefix: str, name: str, *, close: bool, profile: str | None):
    script = _post_script(ctx, prefix, close=close)
    with pg() as mon:
        _hold_wal(mon)
        time.sleep(2.5)  # idle backends flush their statistics within ~1 s (PostgreSQL 15)
        before = _db_counters(mon)
        if profile:
            ctx.profile(profile, pid, ctx.args.seconds)
        cpu = group_cpu_seconds(pid)
        result = run_wrk(url, threads=1, connections=8, seconds=ctx.args.seconds, script=script, name=name)
        result.server_cpu_ms = 1000 * (group_cpu_seconds(pid) - cpu) / max(result.requests, 1)
        time.sleep(2.5)
        after = _db_counters(mon)
        wal = _wal_commits(mon, before["lsn"], after["lsn"])
    return result, {
        "ok": result.ok,
        "xact_commit": after["xact_commit"] - before["xact_commit"],
        "xact_rollback": after["xact_rollback"] - before["xact_rollback"],
        "xids": after["next_xid"] - before["next_xid"],
        "wal_commits": wal["commits"] if wal else None,
        "wal_subxacts": wal["subxacts"] if wal else None,
    }


def _commit_accounting(ctx: Context, accounts: list[dict]) -> None:
    from escalations.models import Escalation, Event

    esc, ev = Escalation._meta.db_table, Event._meta.db_table
    with pg(BENCH_DB) as conn:
        rows, txns, event_apart = conn.execute(
            f"""SELECT count(DISTINCT e.id), count(DISTINCT e.xmin::text),
                       count(DISTINCT e.id) FILTER (WHERE v.xmin::text <> e.xmin::text)
                FROM {esc} e JOIN {ev} v ON v.escalation_id = e.id
                WHERE e.idempotency_key LIKE %s""",
            (f"bench-{ctx.nonce}-m%",),
        ).fetchone()
    ok = sum(a["ok"] for a in accounts)
    commits = sum(a["xact_commit"] for a in accounts)
    have_wal = all(a["wal_commits"] is not None for a in accounts)
    wal = {"commits": sum(a["wal_commits"] for a in accounts),
           "subxacts": sum(a["wal_subxacts"] for a in accounts)} if have_wal else None
    ctx.r["2_commits"] = {
        "ok_requests": ok, "rows": rows, "xact_commit": commits,
        "xact_rollback": sum(a["xact_rollback"] for a in accounts),
        "xact_commit_per_request": commits / ok if ok else float("nan"),
        "xids_cluster": sum(a["xids"] for a in accounts),
        "distinct_write_txns": txns, "event_row_in_other_txn": event_apart, "wal": wal,
        "rounds": accounts,
    }
    c = ctx.r["2_commits"]
    log(f"  (2) commits: {rows} escalations stored in {txns} transactions; WAL commit records "
        f"{wal['commits'] if wal else 'n/a'}; xact_commit/2xx {c['xact_commit_per_request']:.2f}; "
        f"event rows in another txn: {event_apart}")


def _hold_wal(mon) -> None:
    """Keep the WAL from here on until pg_waldump has read it: a temporary physical replication
    slot, dropped with the monitoring session. Without it a checkpoint (another session's DROP
    DATABASE forces one; test suites drop their databases all the time) could recycle the
    run's first segments before they were read, and the commit count came back n/a."""
    try:
        mon.execute("SELECT pg_create_physical_replication_slot(%s, true, true)",
                    (f"bench_wal_{os.getpid()}_{time.monotonic_ns()}",))
    except Exception as exc:  # no free slot (max_replication_slots) or wal_level minimal: count without it
        log(f"  (2) WAL not held for the commit count: {type(exc).__name__}: {exc}")


def _db_counters(mon) -> dict:
    commits, rollbacks = mon.execute(
        "SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = %s", (BENCH_DB,)
    ).fetchone()
    next_xid = int(mon.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text").fetchone()[0])
    lsn = mon.execute("SELECT pg_current_wal_flush_lsn()::text").fetchone()[0]
    return {"xact_commit": commits, "xact_rollback": rollbacks, "next_xid": next_xid, "lsn": lsn}


def _wal_commits(mon, start_lsn: str, end_lsn: str) -> dict | None:
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
    except (OSError, subprocess.TimeoutExpired) as exc:
        log(f"  (2) pg_waldump failed: {exc}")
        return None
    if result.returncode != 0 and "COMMIT" not in result.stdout:
        log(f"  (2) pg_waldump failed: {result.stderr.strip()[-300:]}")
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
