"""The table `make bench` prints and writes to bench/results/latest.md, from a run's results."""

from __future__ import annotations

import os

from app import BENCH_DB


def _fmt(value, unit: str = "", digits: int = 1) -> str:
    if value is None or value != value:  # None or NaN
        return "n/a"
    text = f"{value:,.{digits}f}"
    return f"{text} {unit}".strip()


def spread(num: dict | None, den: dict | None, key: str) -> str:
    """min-max over the rounds of a per-round ratio, e.g. figure 1 req/s over (a) req/s."""
    if not num or not den or len(num.get("rounds", [])) < 2:
        return ""
    ratios = [n[key] / d[key] for n, d in zip(num["rounds"], den["rounds"], strict=False) if d[key]]
    if not ratios:
        return ""
    if key == "rps":
        return f" (rounds {min(ratios) * 100:.0f}-{max(ratios) * 100:.0f}%)"
    return f" (rounds {min(ratios):.2f}-{max(ratios):.2f}x)"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def report(r: dict) -> str:
    a, b, c = r.get("a"), r.get("b"), r.get("c")
    f1, f2, f3, f4 = r.get("1"), r.get("2"), r.get("3"), r.get("4")
    c2 = r.get("2_commits")
    rows = []

    def row(fig, what, value, base, ratio, target, ok):
        rows.append(f"| {fig} | {what} | {value} | {base} | {ratio} | {target} | {verdict(ok)} |")

    a_rps = a["rps"] if a else None
    a_p99 = a["p99_ms"] if a else None
    servers = r.get("12_servers") or {"sync": "gunicorn -k sync -w 2 (as (a))"}
    served = next(iter(servers.values()))
    if f1:
        ratio = f1["rps"] / a_rps if a_rps else None
        row("1", f"`GET /api/v1/escalations/{{id}}`, 32 conns, served by {served}: throughput",
            _fmt(f1["rps"], "req/s", 0),
            f"(a) {_fmt(a_rps, 'req/s', 0)}", _fmt(ratio and ratio * 100, "%", 0) + spread(f1, a, "rps"),
            ">= 70% of (a)",
            ratio is not None and ratio >= 0.70 and f1["non2xx"] == 0)
        ratio = f1["p99_ms"] / a_p99 if a_p99 else None
        row("1", "same: p99 latency", _fmt(f1["p99_ms"], "ms", 2), f"(a) {_fmt(a_p99, 'ms', 2)}",
            _fmt(ratio, "x", 2) + spread(f1, a, "p99_ms"), "<= 2x (a)", ratio is not None and ratio <= 2.0)
        row("1", "same: non-2xx / socket errors", f"{f1['non2xx']} / {sum(f1['socket_errors'].values())}",
            "-", "-", "0", f1["errors"] == 0)
        _server_cpu_row(row, "1", f1)
    if f2:
        ratio = f2["rps"] / a_rps if a_rps else None
        row("2", f"`POST /api/v1/escalations`, 8 conns, {r.get('2_json_bytes', 0):,} B packages: throughput",
            _fmt(f2["rps"], "req/s", 0), f"(a) {_fmt(a_rps, 'req/s', 0)}",
            _fmt(ratio and ratio * 100, "%", 0) + spread(f2, a, "rps"), ">= 35% of (a)", ratio is not None and ratio >= 0.35)
        ratio = f2["p99_ms"] / a_p99 if a_p99 else None
        row("2", "same: p99 latency", _fmt(f2["p99_ms"], "ms", 2), f"(a) {_fmt(a_p99, 'ms', 2)}",
            _fmt(ratio, "x", 2) + spread(f2, a, "p99_ms"), "<= 4x (a)", ratio is not None and ratio <= 4.0)
        if b:
            ratio = f2["rps"] / b["ops_s"]
            row("2", "same: throughput vs raw INSERT+COMMIT", _fmt(f2["rps"], "req/s", 0),
                f"(b) {_fmt(b['ops_s'], 'ops/s', 0)}", _fmt(ratio * 100, "%", 0), "(info)", None)
        if c2:
            wal = c2.get("wal")
            if wal:
                per_row = wal["commits"] / c2["rows"] if c2["rows"] else float("nan")
                row("2", "same: write commits per stored escalation (WAL COMMIT records of txns writing "
                    "handoff_bench / escalations the run stored)",
                    f"{_fmt(per_row, '', 3)} ({wal['commits']:,} / {c2['rows']:,})", "-", "-", "1 per request",
                    wal["commits"] == c2["rows"] == c2["distinct_write_txns"] and c2["event_row_in_other_txn"] == 0)
            row("2", "same: pg_stat_database xact_commit delta / 2xx (read-only autocommit statements count too)",
                _fmt(c2["xact_commit_per_request"], "", 2), "-", "-", "(reported)", None)
        row("2", "same: non-2xx / socket errors", f"{f2['non2xx']} / {sum(f2['socket_errors'].values())}",
            "-", "-", "0", f2["errors"] == 0)
        _server_cpu_row(row, "2", f2)
    for shape, label in list(servers.items())[1:]:  # --servers: the same figures under another server
        for fig, f in (("1", r.get(f"1_{shape}")), ("2", r.get(f"2_{shape}"))):
            if not f:
                continue
            main = f1 if fig == "1" else f2
            ratio = f["rps"] / a_rps if a_rps else None
            row(fig, f"same, served by {label} instead (for comparison): throughput, p99",
                f"{_fmt(f['rps'], 'req/s', 0)}, {_fmt(f['p99_ms'], 'ms', 1)}", f"(a) {_fmt(a_rps, 'req/s', 0)}",
                _fmt(ratio and ratio * 100, "%", 0) + spread(f, a, "rps")
                + (f"; the figure's server {_fmt(main['rps'] / f['rps'], 'x', 2)} this" if main and f["rps"] else ""),
                "(info)", None)
            _server_cpu_row(row, fig, f)
    for key in ("3", "3_200"):
        f = r.get(key)
        if not f:
            continue
        base_p50, base_p99 = (c["p50"], c["p99"]) if c else (None, None)
        asked = f"{f.get('pace_requested', 50):.0f}/s asked"
        if (agents := (f3 or {}).get("agents", 1)) > 1:
            asked += f", spread over {agents} agents"
        row("3", f"decision commit -> webhook received, decisions at {f['pace_per_s']:.0f}/s ({asked}): p50",
            _fmt(f["p50"], "ms", 2), f"(c) {_fmt(base_p50, 'ms', 2)}", _fmt(base_p50 and f["p50"] / base_p50, "x", 1),
            "<= 10 ms", f["p50"] <= 10.0 and f["received"] == f["decisions"])
        row("3", "same: p99", _fmt(f["p99"], "ms", 2), f"(c) {_fmt(base_p99, 'ms', 2)}",
            _fmt(base_p99 and f["p99"] / base_p99, "x", 1), "<= 40 ms",
            f["p99"] <= 40.0 and f["received"] == f["decisions"])
        if "queue" in f:
            q = f["queue"]
            row("3", "same: the worker keeps up (webhooks/s vs decisions/s; broker queue max, at the end; "
                "deliveries pending in the database max, at the end; the worker's CPU over the round)",
                f"{f['delivered_per_s']:.0f}/s vs {f['pace_per_s']:.0f}/s; queue {q['max']}, {q['end']}; "
                f"pending {q.get('db_max', '-')}, {q.get('db_end', '-')}"
                + (f"; its CPU {f['worker_cpu_ms_per_delivery']:.2f} ms a delivery" if "worker_cpu_ms_per_delivery" in f else ""),
                "-", "-",
                "no queue growth",
                f["delivered_per_s"] >= 0.95 * f["pace_per_s"] and q["end"] <= 2 and q.get("db_end", 0) <= 2)
    if f3:
        row("3", "same: received / decisions, bad signatures", f"{f3['received']}/{f3['decisions']}, "
            f"{f3['bad_signatures']}", "-", "-", "all, 0", f3["received"] == f3["decisions"]
            and f3["bad_signatures"] == 0)
    if d := r.get("3_drain"):
        row("3", f"the rate the worker sustains ({d['worker']}: a backlog of {d['backlog']} drained, deciders idle)",
            f"{d['per_s']:.0f} deliveries/s", "-", "-", ">= 200/s", d["per_s"] >= 200 and d["received"] == d["backlog"])
        row("3", "same: the worker's CPU per delivery (main process and children, Celery included)",
            _fmt(d["cpu_ms_per_delivery"], "ms", 2), "-", "-", "(reported)", None)
    if f4:
        row("4", f"{f4['clients']:,} agents long-polling: server RSS while waiting",
            _fmt(f4["rss_waiting_mb"], "MB", 1), f"idle server {_fmt(f4['rss_idle_mb'], 'MB', 1)}", "-",
            "<= 200 MB", f4["rss_waiting_mb"] <= 200)
        w = f4["db_worst"]
        row("4", "same: server's DB connections while they wait (worst of 8 samples, pg_stat_activity)",
            f"{w['total']} held: {w['active']} active, {w['idle_in_transaction']} idle in txn, "
            f"{w['idle']} idle (pool)", "-", "-", "none held per waiting request: <= pool max (10), "
            "0 idle in txn", f4["db_total_max"] <= 10 and all(s["idle_in_transaction"] == 0 for s in f4["db_samples"]))
        base_p99 = c["p99"] if c else None
        row("4", f"same: wake-up (decision commit -> answer), decisions at {f4['pace_per_s']:.0f}/s: p99",
            _fmt(f4["p99"], "ms", 2), f"p50 {_fmt(f4['p50'], 'ms', 2)}", "-", "<= 50 ms",
            f4["p99"] <= 50.0 and f4["decided"] == f4["clients"])
        row("4", "same: answered 'decided' / early / errors",
            f"{f4['decided']}/{f4['clients']} / {f4['early']} / {f4['errors']}", "-", "-", "all / 0 / 0",
            f4["decided"] == f4["clients"] and f4["early"] == 0 and f4["errors"] == 0)
    if r.get("5"):
        _rows_5(r["5"], row)

    lines = [
        f"## Handoff bench, {r.get('started', '')} (PostgreSQL {r.get('postgres', '?')}, 127.0.0.1)",
        "",
        f"Machine: {os.cpu_count()} CPUs, load average {r.get('load_start', '?')} at the start and "
        f"{r.get('load_end', '?')} at the end (1, 5, 15 min; other work on the box shares these CPUs)."
        + (" Profiled run: py-spy was sampling the servers, which perturbs the figures." if r.get("profiled") else "")
        + (f" The app's code changed during the run (before phases {', '.join(r['code_changed_before'])}): "
           "later phases ran the newer code." if r.get("code_changed_before") else ""),
        "",
        "| # | figure | measured | baseline (this run) | ratio | target | result |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        "Baselines measured in this run:",
        "",
        "| baseline | throughput | p50 | p99 | notes |",
        "| --- | --- | --- | --- | --- |",
    ]
    if a:
        lines.append(f"| (a) bare Django PK-SELECT view, gunicorn sync w=2, wrk -t1 -c32, median of {len(a['rounds'])} x "
                     f"{r.get('seconds_per_round', 10)} s | "
                     f"{_fmt(a['rps'], 'req/s', 0)} | {_fmt(a['p50_ms'], 'ms', 2)} | {_fmt(a['p99_ms'], 'ms', 2)} | "
                     f"{a['requests']:,} requests, {a['non2xx']} non-2xx, {sum(a['socket_errors'].values())} socket errors |")
    if b:
        lines.append(f"| (b) raw psycopg INSERT {b['json_bytes']:,} B jsonb + COMMIT, 1 conn | "
                     f"{_fmt(b['ops_s'], 'ops/s', 0)} | {_fmt(b['p50'], 'ms', 2)} | {_fmt(b['p99'], 'ms', 2)} | "
                     f"{b['ops']:,} commits in {b['seconds']:.1f} s |")
    if c:
        lines.append(f"| (c) Celery no-op delay->start, prefork -c 2, acks_late, Redis | - | "
                     f"{_fmt(c['p50'], 'ms', 2)} | {_fmt(c['p99'], 'ms', 2)} | {c['started']}/{c['sent']} tasks, "
                     f"10 ms apart, max {_fmt(c['max'], 'ms', 2)} |")
    details = []
    if f1:
        details.append(f"- (1) {f1['requests']:,} requests in {f1['seconds']:.1f} s ({len(f1['rounds'])} rounds "
                       f"interleaved with (a) and (2); medians shown), p50 {_fmt(f1['p50_ms'], 'ms', 2)}, "
                       f"p90 {_fmt(f1['p90_ms'], 'ms', 2)}; per round: "
                       + ", ".join(f"{x['rps']:.0f} req/s p99 {x['p99_ms']:.0f} ms" for x in f1["rounds"])
                       + (("; (a) per round: " + ", ".join(f"{x['rps']:.0f} req/s p99 {x['p99_ms']:.0f} ms"
                                                          for x in a["rounds"])) if a else "") + ".")
    if f2 and c2:
        details.append(
            f"- (2) {f2['requests']:,} requests ({c2['ok_requests']:,} 2xx) in {f2['seconds']:.1f} s, p50 "
            f"{_fmt(f2['p50_ms'], 'ms', 2)}; {c2['rows']:,} escalations stored by the measured run, in "
            f"{c2['distinct_write_txns']:,} distinct transactions (xmin), their 'created' events in another "
            f"transaction: {c2['event_row_in_other_txn']}; WAL commit records of transactions writing "
            f"{BENCH_DB}: {(c2.get('wal') or {}).get('commits', 'n/a')}, with "
            f"{(c2.get('wal') or {}).get('subxacts', 'n/a')} savepoint subtransactions inside them (a savepoint "
            f"is no extra commit and no extra WAL flush); pg_stat_database xact_commit delta "
            f"{c2['xact_commit']:,} ({_fmt(c2['xact_commit_per_request'], '', 2)}/request: each autocommit "
            f"SELECT outside the write transaction counts as a read-only commit, without a WAL flush); XIDs "
            f"assigned cluster-wide {c2['xids_cluster']:,}; rollbacks {c2['xact_rollback']}.")
    if f3:
        details.append(
            f"- (3) commit stamped by wrapping the decider processes' connection.commit() (time.time() right after "
            f"COMMIT returns, before the on-commit hooks); measured from the service's return instead: p50 "
            f"{_fmt(f3['from_return']['p50'], 'ms', 2)}, p99 {_fmt(f3['from_return']['p99'], 'ms', 2)}. "
            f"On-commit hooks in the deciding process (Celery publish, channel-layer group_send x2, wake-up "
            f"publish): p50 {_fmt(f3['after_commit_hooks']['p50'], 'ms', 2)}, p99 "
            f"{_fmt(f3['after_commit_hooks']['p99'], 'ms', 2)}; whole escalation_decide call p50 "
            f"{_fmt(f3['decide_call']['p50'], 'ms', 2)}. Max {_fmt(f3['max'], 'ms', 2)}, paced at "
            f"{f3['pace_per_s']:.0f}/s (50/s asked), {f3['duplicates']} duplicate deliveries. Webhooks arrived at "
            f"{f3['delivered_per_s']:.1f}/s: below the decision rate the worker queues, and latency grows with "
            f"the queue; the first 10 decisions (empty queue): p50 {_fmt(f3['first10_p50'], 'ms', 1)}"
            + (f", the last 10: p50 {_fmt(f3['last10_p50'], 'ms', 1)}" if "last10_p50" in f3 else "")
            + (f"; {f3['connections']} HTTP connections for {f3['deliveries_total']} webhooks (keep-alive)"
               if "connections" in f3 else "") + ".")
    if f := r.get("3_200"):
        details.append(
            f"- (3) at {f['pace_requested']:.0f}/s asked: decisions at {f['pace_per_s']:.0f}/s (the deciders' "
            f"whole escalation_decide call p50 {_fmt(f['decide_call']['p50'], 'ms', 2)}), webhooks arrived at "
            f"{f['delivered_per_s']:.0f}/s; from the service's return p50 {_fmt(f['from_return']['p50'], 'ms', 2)}; "
            f"on-commit hooks p50 {_fmt(f['after_commit_hooks']['p50'], 'ms', 2)}; first 10 p50 "
            f"{_fmt(f['first10_p50'], 'ms', 1)}, last 10 p50 {_fmt(f['last10_p50'], 'ms', 1)}; "
            f"{f['received']}/{f['decisions']} received.")
    if d := r.get("3_drain"):
        details.append(
            f"- (3) the worker's own rate: {d['backlog']} decisions made in {d['queued_in_s']:.1f} s while it was "
            f"stopped; a fresh worker ({d['worker']}) drained them at {d['per_s']:.0f}/s (from its 11th webhook to "
            f"the last), {d['cpu_ms_per_delivery']:.2f} ms of its CPU per delivery.")
    if f4:
        details.append(
            f"- (4) {f4['sent']:,} requests open in {f4['send_s']:.1f} s ({f4['connect_errors']} connect errors), "
            f"all first checks done {f4['settle_s']:.1f} s later; the server then used "
            f"{f4['waiting_cpu'] * 100:.0f}% of a core while they waited (re-checks); RSS idle {_fmt(f4['rss_idle_mb'], 'MB')}, waiting "
            f"{_fmt(f4['rss_waiting_mb'], 'MB')}, after {_fmt(f4['rss_after_mb'], 'MB')} (peak {_fmt(f4['hwm_mb'], 'MB')}); "
            f"all clients of {BENCH_DB} while waiting: {f4['db_worst']['bench_db_all_clients']}. Wake-up p50 "
            f"{_fmt(f4['p50'], 'ms', 2)}, p90 {_fmt(f4['p90'], 'ms', 2)}, max {_fmt(f4['max'], 'ms', 2)}; from the "
            f"service's return: p99 {_fmt(f4['from_return']['p99'], 'ms', 2)}; the first 20 decisions: p50 "
            f"{_fmt(f4['first20_p50'], 'ms', 1)}. {f4['clients']:,} decisions in {f4['decide_s']:.1f} s "
            f"({f4['pace_requested']:.0f}/s asked; the deciders sustain less), server CPU meanwhile "
            f"{f4['server_cpu_s']:.1f} s; polls per agent at most: {f4['polls_max']} (a 2nd one means its first "
            f"wait ran out before its decision).")
    if details:
        lines += ["", "Details:", "", *details]
    if r.get("failures"):
        lines += ["", "Phases that failed:", ""]
        lines += [f"- {k}: {v}" for k, v in r["failures"].items()]
    return "\n".join(lines)


def _server_cpu_row(row, fig: str, f: dict) -> None:
    """The server's CPU per request (its process group, recycled workers included), median of the rounds."""
    if f.get("server_cpu_ms") is None:
        return
    rounds = ", ".join(f"{x['server_cpu_ms']:.2f}" for x in f["rounds"])
    row(fig, "same: the server's CPU per request (user + system, all its processes)",
        _fmt(f["server_cpu_ms"], "ms", 2), "-", f"rounds {rounds} ms", "(reported)", None)


def _rows_5(f5: dict, row) -> None:
    """Figure 5 beside the peer's fixed figures (issue 15: awaithumans 0.1.12 on PostgreSQL, pinned the same way)."""
    create, decide, peer, target = f5["create"], f5["decide"], f5["peer"], f5["targets"]
    shape = f"one core, `make run` services shape ({f5['stack']}, Celery worker and beat on the same core)"
    ratio = create["rps"] / peer["create_rps"]
    rounds = ", ".join(f"{x['rps']:.0f}" for x in create["rounds"])
    row("5", f"{shape}: `POST /api/v1/escalations`, 8 conns: throughput", _fmt(create["rps"], "req/s", 0),
        f"peer {_fmt(peer['create_rps'], 'req/s', 0)} (issue 15)", f"{ratio:.2f} x (rounds {rounds} req/s)",
        f">= {target['create_x']}x the peer", ratio >= target["create_x"] and create["errors"] == 0)
    row("5", "same: p50 / p99 latency, non-2xx + socket errors",
        f"{_fmt(create['p50_ms'], 'ms', 1)} / {_fmt(create['p99_ms'], 'ms', 1)}, {create['errors']}",
        f"peer p50 {_fmt(peer['create_p50_ms'], 'ms', 0)}", "-", "(p50 reported), 0 errors", create["errors"] == 0)
    answered = decide["statuses"].get("201", 0)
    row("5", "same: a reviewer's decide call (`POST /api/v1/review/escalations/{id}/decision`, one at a time): p50",
        _fmt(decide["p50"], "ms", 2), f"peer {_fmt(peer['decide_p50_ms'], 'ms', 1)} (issue 15)",
        _fmt(decide["p50"] / peer["decide_p50_ms"], "x", 2), f"<= {target['decide_p50_ms']:.0f} ms",
        decide["p50"] <= target["decide_p50_ms"] and answered == decide["n"])
    row("5", "same: decide p99, answered 201", f"{_fmt(decide['p99'], 'ms', 2)}, {answered}/{decide['n']}",
        "-", "-", "all 201", answered == decide["n"])
    row("5", "same: CPU on core 0 per create / per decide (web alone, and web + worker + beat)",
        f"{_fmt(create['web_cpu_ms'], 'ms', 1)}, {_fmt(create['core0_cpu_ms'], 'ms', 1)} / "
        f"{_fmt(decide['web_cpu_ms'], 'ms', 1)}, {_fmt(decide['core0_cpu_ms'], 'ms', 1)}", "-",
        f"{1000.0 / create['core0_cpu_ms']:.0f} creates/s on a core of its own", "(reported)", None)
