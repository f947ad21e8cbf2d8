"""(a), figure 1 and figure 2: the bare Django view, `GET /api/v1/escalations/{id}` and
`POST /api/v1/escalations` under gunicorn, with wrk, in interleaved rounds; and the commits
each POST costs (pg_stat_database and the WAL's commit records)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from app import BENCH_DB, app_env, base_env, gunicorn_cmd, pg
from fixtures import Context
from lib import (
    BENCH_DIR,
    RESULTS,
    ROOT,
    free_port,
    http_get,
    log,
    lua_string,
    run_wrk,
    wait_for_port,
)


def measure(ctx: Context) -> None:
    """(a), figure 1 and figure 2, interleaved in rounds: a, 1, 2, a, 1, 2, ...

    Both gunicorns run side by side (the idle one costs nothing), so a change in what else
    the box is doing hits the baseline and the figures alike; each figure is the median
    of its rounds.
    """
    skip, rounds = ctx.args.skip, ctx.args.rounds
    log(f"(a), figures 1 and 2: gunicorn sync w=2 each, {rounds} interleaved rounds of "
        f"wrk -d{ctx.args.seconds}s after 3 s warm-ups")
    base_port, app_port = free_port(), free_port()
    base = ctx.procs.start("baseline-gunicorn", gunicorn_cmd("baseline.wsgi:application", base_port),
                            env=base_env(), cwd=BENCH_DIR)
    app = ctx.procs.start("app-gunicorn", gunicorn_cmd("handoff_site.wsgi:application", app_port),
                           env=app_env(), cwd=ROOT)
    runs: dict[str, list] = {"a": [], "1": [], "2": []}
    accounts = []
    try:
        wait_for_port(base_port, base)
        wait_for_port(app_port, app)
        status, body = http_get(base_port, "/escalation")
        if status != 200:
            raise RuntimeError(f"baseline view answered {status}: {body[:300]!r}")
        token = ctx.agents["get"].token
        status, body = http_get(app_port, f"/api/v1/escalations/{ctx.ids['get'][0]}",
                                {"Authorization": f"Bearer {token}"})
        if status != 200 or json.loads(body)["id"] != ctx.ids["get"][0]:
            raise RuntimeError(f"GET answered {status}: {body[:300]!r}")
        base_url, app_url = f"http://127.0.0.1:{base_port}/escalation", f"http://127.0.0.1:{app_port}"
        get_script = _get_script(ctx)
        sample = json.dumps(ctx.package(f"bench-{ctx.nonce}-m1-t1-000001"), separators=(",", ":"))
        ctx.r["2_json_bytes"] = len(sample.encode())
        if "a" not in skip:
            run_wrk(base_url, threads=1, connections=32, seconds=3, name="a-warmup")
        if "1" not in skip:
            run_wrk(app_url, threads=1, connections=32, seconds=3, script=get_script, name="1-warmup")
        if "2" not in skip:
            run_wrk(app_url, threads=1, connections=8, seconds=3,
                    script=_post_script(ctx, f"bench-{ctx.nonce}-w"), name="2-warmup")
        for r in range(1, rounds + 1):
            last = r == rounds
            if "a" not in skip:
                if last:
                    ctx.profile("a-gunicorn", base.pid, ctx.args.seconds)
                res = run_wrk(base_url, threads=1, connections=32, seconds=ctx.args.seconds, name=f"a-{r}")
                runs["a"].append(res)
                log(f"  round {r} (a) {res.rps:.0f} req/s, p99 {res.p99_ms:.1f} ms, errors {res.errors}")
            if "1" not in skip:
                if last:
                    ctx.profile("1-gunicorn", app.pid, ctx.args.seconds)
                res = run_wrk(app_url, threads=1, connections=32, seconds=ctx.args.seconds,
                              script=get_script, name=f"1-{r}")
                runs["1"].append(res)
                log(f"  round {r} (1) {res.rps:.0f} req/s, p99 {res.p99_ms:.1f} ms, errors {res.errors}")
            if "2" not in skip:
                res, account = _post_round(ctx, app_url, app.pid, r, profile=last)
                runs["2"].append(res)
                accounts.append(account)
                log(f"  round {r} (2) {res.rps:.0f} req/s, p99 {res.p99_ms:.1f} ms, errors {res.errors}; "
                    f"WAL commits {account['wal_commits']}, xact_commit {account['xact_commit']}")
    finally:
        ctx.procs.stop(app)
        ctx.procs.stop(base)
    for key, results in runs.items():
        if results:
            ctx.r[key] = aggregate(results)
    if accounts:
        _commit_accounting(ctx, accounts)
    for key in ("a", "1", "2"):
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
        "rounds": [{"rps": r.rps, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms, "errors": r.errors} for r in results],
    }


def _get_script(ctx: Context) -> Path:
    token = ctx.agents["get"].token
    ids = ",\n".join(f'"{i}"' for i in ctx.ids["get"])
    script = RESULTS / "get.lua"
    script.write_text(f"""-- generated by bench/http_bench.py: rotate among the agent's escalations
local ids = {{{ids}}}
local headers = {{["Authorization"] = "Bearer {token}", ["Accept"] = "application/json"}}
local n = 0
function init(args) n = math.random(#ids) end
function request()
  n = n % #ids + 1
  return wrk.format("GET", "/api/v1/escalations/" .. ids[n], headers)
end
""")
    return script


def _post_script(ctx: Context, prefix: str) -> Path:
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
    ["Authorization"] = token, ["Idempotency-Key"] = run}}, head .. run .. tail)
end
""")
    return script


def _post_round(ctx: Context, url: str, pid: int, r: int, *, profile: bool):
    script = _post_script(ctx, f"bench-{ctx.nonce}-m{r}")
    with pg() as mon:
        time.sleep(2.5)  # idle backends flush their statistics within ~1 s (PostgreSQL 15)
        before = _db_counters(mon)
        if profile:
            ctx.profile("2-gunicorn", pid, ctx.args.seconds)
        result = run_wrk(url, threads=1, connections=8, seconds=ctx.args.seconds, script=script, name=f"2-{r}")
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
    except (OSError, subprocess.TimeoutExpired):
        return None
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
