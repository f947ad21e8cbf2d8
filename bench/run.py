#!/usr/bin/env python
"""`make bench`: issue 2's figures, each beside a baseline measured in the same run.

One command, PostgreSQL and Redis on 127.0.0.1, about 3-4 minutes:

    .venv/bin/python bench/run.py            (or: make bench)

It creates (drops and re-creates) its own database `handoff_bench` and migrates it, keeps a
seeded `handoff_bench_base` for the baselines, uses Redis databases 13 (app) and 14
(baseline Celery), starts every server it needs in its own process group on a free port,
and kills them all at the end. The table is printed and written to bench/results/latest.md;
logs, wrk outputs and raw samples go to bench/results/. README.md says what each row means.

The parts, each in a module of its own on top of lib.py (helpers) and app.py (the app's
environment and processes): fixtures.py (the databases, agents and escalations),
baselines.py ((b), (c)), http_bench.py ((a), figures 1 and 2), webhook_bench.py (figure 3),
longpoll_bench.py (figure 4), pinned_bench.py (figure 5: create and decide on one core),
report.py (the table).

Options: --seconds N (wrk duration, default 10), --skip 1,2,3,4,5,a,b,c (leave phases out),
--servers gthread (figures 1 and 2 under production's server only; by default also under
gunicorn -k sync -w 2, reported beside them), --hook-agents N (figure 3's decisions spread
over N agents, each with its own resume_url; 1 by default).
"""

from __future__ import annotations

from lib import use_the_project_venv

use_the_project_venv()

import argparse  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime  # noqa: E402

import baselines  # noqa: E402
import http_bench  # noqa: E402
import longpoll_bench  # noqa: E402
import pinned_bench  # noqa: E402
import webhook_bench  # noqa: E402
from app import app_env, source_stamp, subprocess_run  # noqa: E402
from fixtures import Context, prepare  # noqa: E402
from lib import LOGS, RESULTS, dump_json, loadavg, log, python, summarize_profile  # noqa: E402
from report import report  # noqa: E402

# In this order; a phase runs unless every key of its name is in --skip.
PHASES = (
    ("b", baselines.baseline_b),
    ("a12", http_bench.measure),
    ("c", baselines.baseline_c),
    ("3", webhook_bench.measure),
    ("4", longpoll_bench.measure),
    ("5", pinned_bench.measure),
)


def run(ctx: Context) -> int:
    ctx.r["load_start"] = loadavg()
    ctx.r["seconds_per_round"] = ctx.args.seconds
    prepare(ctx)
    stamp = source_stamp()
    for key, phase in PHASES:
        if all(k in ctx.args.skip for k in key):
            continue
        if source_stamp() != stamp:  # the app changed under us: new servers run the new code
            stamp = source_stamp()
            log(f"the app's code changed before phase {key}: migrating again")
            ctx.r.setdefault("code_changed_before", []).append(key)
            subprocess_run([python(), "manage.py", "migrate", "--noinput"], env=app_env(), timeout=300)
        try:
            phase(ctx)
        except Exception as exc:  # report the others; the table shows the hole
            log(f"phase {key} FAILED: {type(exc).__name__}: {exc}")
            ctx.r.setdefault("failures", {})[key] = f"{type(exc).__name__}: {exc}"
    ctx.close()
    ctx.r["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    ctx.r["load_end"] = loadavg()
    ctx.r["profiled"] = bool(ctx.profiles)
    dump_json(RESULTS / "latest.json", ctx.r)
    table = report(ctx.r)
    print()
    print(table)
    (RESULTS / "latest.md").write_text(table + "\n")
    if ctx.profiles:
        time.sleep(1.0)
        summaries = "\n\n".join(summarize_profile(name) for name in ctx.profiles)
        print()
        print(summaries)
        with open(RESULTS / "latest.md", "a") as fh:
            fh.write("\n```\n" + summaries + "\n```\n")
    log(f"written to {RESULTS / 'latest.md'} (raw numbers: latest.json, logs: {LOGS})")
    return 0 if not ctx.r.get("failures") else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration per measured run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of (a), 1 and 2")
    parser.add_argument("--pace", type=float, default=200.0, help="figure 4 decisions per second")
    parser.add_argument("--deciders", type=int, default=4, help="decider processes (figures 3 and 4)")
    parser.add_argument("--servers", default="gthread,sync",
                        help="how figures 1 and 2 serve the app, comma list, the first is the figures': gthread "
                        "(production: -c deploy/gunicorn.conf.py), sync (gunicorn -k sync -w 2, as (a)); "
                        "`--servers gthread` leaves the comparison out")
    parser.add_argument("--hook-agents", type=int, default=1,
                        help="figure 3: spread the decisions over this many agents, in turn (each its own resume_url)")
    parser.add_argument("--profile", action="store_true", help="py-spy the servers during the measured phases")
    parser.add_argument("--skip", default="", help="comma list of phases to leave out: a,b,c,1,2,3,4,5")
    args = parser.parse_args()
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if args.hook_agents < 1:
        parser.error("--hook-agents: at least 1")
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    if not args.servers or any(s not in http_bench.SERVERS for s in args.servers) or len(set(args.servers)) < len(args.servers):
        parser.error(f"--servers: a comma list of {', '.join(http_bench.SERVERS)}")
    ctx = Context(args)

    def on_signal(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    started = time.monotonic()
    try:
        return run(ctx)
    finally:
        ctx.procs.stop_all()
        log(f"all bench processes stopped; {time.monotonic() - started:.0f} s in all")


if __name__ == "__main__":
    sys.exit(main())
