#!/usr/bin/env python
"""Figure 5: create and decide on ONE core, in the `make run` services shape (issue 15).

The shape: the production web server as docker-compose runs it (gunicorn with
deploy/gunicorn.conf.py: on one core, one gthread worker of 8 threads), a Celery worker
(docker-compose's `--concurrency=4`) and Celery beat, on DATABASE_URL + REDIS_URL: all three
under `taskset -c 0`. PostgreSQL, Redis and the load generator get core 1: the bench process pins
itself (so wrk and the decide client inherit core 1), starts a Redis of its own under
`taskset -c 1` (the shared one serves other work), and pins the PostgreSQL backends that
serve the bench database to core 1 once the servers have connected (the shared postmaster
is left alone; the pool keeps those backends for the run).

- create: `wrk -t1 -c8` POSTs the ~3.1 KB package of figure 2 (http_bench's script), a 3 s
  warm-up, then --rounds runs of --seconds; req/s and p50 are the medians of the rounds.
- decide: one reviewer (a person in the reviewer group, with a reviewer API token) decides
  escalations the create runs stored, one HTTP call at a time on one kept connection
  (`POST /api/v1/review/escalations/{id}/decision`); p50/p99 of each call's wall time (300
  after 20, or as many as the create rounds stored, at least 50).

The peer's figures are a fixed reference: issue 15's measurement of awaithumans 0.1.12 on
PostgreSQL, pinned the same way (5 interleaved rounds). bench/README.md has the commands.

    .venv/bin/python bench/run.py --skip a,b,c,1,2,3,4      # figure 5 alone, in make bench's table
    .venv/bin/python bench/pinned_bench.py --stacks         # serving stacks for create on one core
"""

from __future__ import annotations

from lib import use_the_project_venv

use_the_project_venv()

import http.client  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from statistics import median  # noqa: E402

from app import BENCH_DB, app_env, pg  # noqa: E402
from fixtures import Context  # noqa: E402
from http_bench import _post_script, aggregate  # noqa: E402
from lib import (  # noqa: E402
    RESULTS,
    ROOT,
    free_port,
    group_cpu_seconds,
    http_get,
    loadavg,
    log,
    python,
    run_wrk,
    summary_ms,
    wait_for,
    wait_for_port,
    wait_until_idle,
)

SERVER_CORE, OTHER_CORE = 0, 1
# issue 15: awaithumans 0.1.12 on PostgreSQL, its server pinned to one core, 5 interleaved rounds
PEER = {"create_rps": 197.0, "create_p50_ms": 36.0, "decide_p50_ms": 13.9}
CREATE_TARGET_X, DECIDE_TARGET_MS = 1.5, 10.0
DECIDE_WARM, DECIDE_N, DECIDE_MIN = 20, 300, 50

# The serving stacks compared for create (--stacks); the first is production's: docker-compose's
# web-http command with deploy/gunicorn.conf.py's defaults (on one core: 1 worker, 8 threads).
GUNICORN = [python(), "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py"]
WSGI, ASGI = "handoff_site.wsgi:application", "handoff_site.asgi:application"
SYNC = [*GUNICORN, "-k", "sync", "--threads", "1"]  # threads > 1 would make gunicorn use gthread
STACKS: dict[str, list[str]] = {
    "gunicorn gthread, deploy/gunicorn.conf.py defaults (1 worker x 8 threads on one core)": [*GUNICORN, WSGI],
    "gunicorn gthread w=1 threads=4": [*GUNICORN, "--threads", "4", WSGI],
    "gunicorn gthread w=2 threads=4": [*GUNICORN, "-w", "2", "--threads", "4", WSGI],
    "gunicorn sync w=3 (docker-compose before)": [*SYNC, "-w", "3", WSGI],
    "gunicorn sync w=1": [*SYNC, "-w", "1", WSGI],
    "gunicorn sync w=2": [*SYNC, "-w", "2", WSGI],
    "gunicorn + uvicorn worker w=1": [*GUNICORN, "-w", "1", "-k", "uvicorn.workers.UvicornWorker", ASGI],
    "uvicorn ASGI, 1 process (make run's web)": [python(), "-m", "uvicorn", ASGI, "--no-server-header",
                                                 "--lifespan", "off", "--log-level", "warning"],
}
PRODUCTION = next(iter(STACKS))


def on_core(core: int, cmd: list[str]) -> list[str]:
    return ["taskset", "-c", str(core), *cmd]


class Shape:
    """Redis on core 1; Celery worker and beat on core 0 (the web servers come and go)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.redis_port = free_port()
        self.redis = ctx.procs.start("pinned-redis", on_core(OTHER_CORE, [
            "redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no"]), env=dict(os.environ))
        wait_for_port(self.redis_port, self.redis)
        var = RESULTS / "var"
        self.env = app_env(REDIS_URL=f"redis://127.0.0.1:{self.redis_port}/0", RATE_LIMIT_REVIEWER="1000000/minute")
        celery = [python(), "-m", "celery", "-A", "handoff_site"]
        self.others = [
            ctx.procs.start("pinned-worker", on_core(SERVER_CORE, [*celery, "worker", "-l", "INFO", "--concurrency=4"]),
                            env=self.env, cwd=ROOT),
            ctx.procs.start("pinned-beat", on_core(SERVER_CORE, [*celery, "--quiet", "beat", "-l", "INFO",
                                                                 f"--schedule={var / 'celerybeat-schedule'}"]),
                            env=self.env, cwd=ROOT),
        ]
        for proc in self.others:  # started and settled before any web server is measured
            wait_until_idle(proc.pid, timeout=60)

    def web(self, name: str, cmd: list[str]):
        port = free_port()
        bind = ["--bind", f"127.0.0.1:{port}"] if "gunicorn" in cmd else ["--host", "127.0.0.1", "--port", str(port)]
        proc = self.ctx.procs.start(f"pinned-web-{len(self.ctx.procs.children)}", on_core(SERVER_CORE, [*cmd, *bind]),
                                    env=self.env, cwd=ROOT)
        wait_for_port(port, proc)
        wait_for(lambda: ready(port), 120, f"{name} ready", proc)
        return proc, f"http://127.0.0.1:{port}"

    def cpu(self, web) -> tuple[float, float]:
        """CPU seconds so far of the web server, and of web + worker + beat (every process on core 0)."""
        own = group_cpu_seconds(web.pid)
        return own, own + sum(group_cpu_seconds(p.pid) for p in self.others)

    def close(self) -> None:
        for proc in [*self.others, self.redis]:
            self.ctx.procs.stop(proc)


def ready(port: int) -> bool:
    """/readyz answers 200 (a busy core may keep a booting server from answering in time: not yet)."""
    try:
        return http_get(port, "/readyz", timeout=30)[0] == 200
    except OSError:
        return False


def pin_backends() -> int:
    """The PostgreSQL backends serving the bench database, onto core 1 (how many)."""
    with pg() as conn:
        pids = [row[0] for row in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (BENCH_DB,))]
    for pid in pids:
        try:
            os.sched_setaffinity(pid, {OTHER_CORE})
        except OSError:  # gone, or not ours to move
            continue
    return len(pids)


def create_runs(ctx: Context, shape: Shape, web, url: str, tag: str, rounds: int) -> tuple[list, list]:
    """wrk's results of each round, and the CPU ms per 2xx on core 0 (web alone, web + worker + beat)."""
    run_wrk(url, threads=1, connections=8, seconds=3, script=_post_script(ctx, f"pinned-{ctx.nonce}-{tag}-w"),
            name=f"5-{tag}-warmup")
    pinned = pin_backends()
    results, cpu = [], []
    for r in range(1, rounds + 1):
        script = _post_script(ctx, f"pinned-{ctx.nonce}-{tag}-m{r}")
        before = shape.cpu(web)
        res = run_wrk(url, threads=1, connections=8, seconds=ctx.args.seconds, script=script, name=f"5-{tag}-{r}")
        after = shape.cpu(web)
        results.append(res)
        cpu.append([1000.0 * (a - b) / max(res.ok, 1) for a, b in zip(after, before, strict=True)])
        log(f"  (5) {tag} round {r}: {res.rps:.0f} req/s, p50 {res.p50_ms:.1f} ms, errors {res.errors}, CPU per "
            f"create {cpu[-1][0]:.1f} ms web, {cpu[-1][1]:.1f} ms core 0 ({pinned} backends on core {OTHER_CORE})")
    return results, cpu


def cpu_medians(cpu: list) -> dict:
    return {"web_cpu_ms": median(c[0] for c in cpu), "core0_cpu_ms": median(c[1] for c in cpu)}


def decide_calls(ctx: Context, shape: Shape, web, url: str) -> dict:
    """A reviewer's decide calls, one at a time over one kept connection: wall time of each."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from escalations.models import Escalation
    from reviews.services import reviewer_token_issue

    user = get_user_model().objects.create_user(f"pinned-reviewer-{ctx.nonce}", password=None)
    user.groups.add(Group.objects.get(name="reviewer"))
    token = reviewer_token_issue(user=user, label="bench figure 5")
    ids = [str(i) for i in Escalation.objects.filter(
        idempotency_key__startswith=f"pinned-{ctx.nonce}-", status="pending",
    ).order_by("created_at").values_list("pk", flat=True)[: DECIDE_WARM + DECIDE_N]]
    if len(ids) < DECIDE_WARM + DECIDE_MIN:  # a busy box made few in the create rounds: decide those
        raise RuntimeError(f"only {len(ids)} open escalations to decide")
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Accept": "application/json"}
    body = json.dumps({"kind": "option", "option": "update-callers"})
    walls: list[float] = []
    statuses: dict[str, int] = {}
    for i, esc_id in enumerate(ids):
        if i == DECIDE_WARM:
            before = shape.cpu(web)
        t0 = time.perf_counter()
        conn.request("POST", f"/api/v1/review/escalations/{esc_id}/decision", body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        wall = time.perf_counter() - t0
        if i >= DECIDE_WARM:
            statuses[str(response.status)] = statuses.get(str(response.status), 0) + 1
            if response.status == 201:  # the figures are the decisions' (the table shows any other)
                walls.append(wall)
    after = shape.cpu(web)
    conn.close()
    if not walls:
        raise RuntimeError(f"no decide call answered 201: {statuses}")
    return {**summary_ms(walls), "statuses": statuses, **cpu_medians([[
        1000.0 * (a - b) / len(walls) for a, b in zip(after, before, strict=True)]])}


def measure(ctx: Context) -> None:
    """Figure 5 in make bench: the production stack, create rounds then decide calls."""
    log(f"figure 5: one core (web, worker, beat on core {SERVER_CORE}; PostgreSQL backends, Redis, wrk on "
        f"core {OTHER_CORE}), {PRODUCTION}")
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {OTHER_CORE})
    shape = Shape(ctx)
    try:
        web, url = shape.web("production", STACKS[PRODUCTION])
        ctx.profile("5-gunicorn", web.pid, ctx.args.seconds)
        results, cpu = create_runs(ctx, shape, web, url, "prod", ctx.args.rounds)
        create = {**aggregate(results), **cpu_medians(cpu)}
        decide = decide_calls(ctx, shape, web, url)
        ctx.procs.stop(web)
    finally:
        shape.close()
        os.sched_setaffinity(0, before)
    ctx.r["5"] = {"stack": PRODUCTION, "create": create, "decide": decide, "peer": PEER,
                  "targets": {"create_x": CREATE_TARGET_X, "decide_p50_ms": DECIDE_TARGET_MS}}
    log(f"  (5) create {create['rps']:.0f} req/s p50 {create['p50_ms']:.1f} ms; decide p50 {decide['p50']:.2f} ms "
        f"p99 {decide['p99']:.2f} ms {decide['statuses']}")


def compare_stacks(ctx: Context, names: list[str]) -> dict:
    """Create on one core under each serving stack, interleaved: each round starts every stack afresh."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {OTHER_CORE})
    shape = Shape(ctx)
    runs: dict[str, list] = {name: [] for name in names}
    cpu: dict[str, list] = {name: [] for name in names}
    try:
        for r in range(1, ctx.args.rounds + 1):
            for k, name in enumerate(names):
                web, url = shape.web(name, STACKS[name])
                results, used = create_runs(ctx, shape, web, url, f"s{k}r{r}", 1)
                runs[name] += results
                cpu[name] += used
                ctx.procs.stop(web)
                log(f"  round {r}: {name}: {runs[name][-1].rps:.0f} req/s")
    finally:
        shape.close()
        os.sched_setaffinity(0, before)
    return {name: {**aggregate(results), **cpu_medians(cpu[name])} for name, results in runs.items()}


def stacks_table(stacks: dict, load: tuple[str, str]) -> str:
    """req/s moves with the box's load; core 0's CPU per create does much less, so it picks the best."""
    best = min(stacks, key=lambda n: stacks[n]["core0_cpu_ms"])
    lines = [f"### Serving stacks for create, one core (load average {load[0]} at the start, {load[1]} at the end)",
             "", "| stack | req/s (median) | rounds | p50 | p99 | errors | CPU per create: web / core 0 "
             "| = req/s on a core of its own |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, s in stacks.items():
        rounds = ", ".join(f"{x['rps']:.0f}" for x in s["rounds"])
        lines.append(f"| {name}{' (best)' if name == best else ''} | {s['rps']:.0f} | {rounds} | "
                     f"{s['p50_ms']:.1f} ms | {s['p99_ms']:.1f} ms | {s['errors']} | {s['web_cpu_ms']:.1f} / "
                     f"{s['core0_cpu_ms']:.1f} ms | {1000.0 / s['core0_cpu_ms']:.0f} |")
    return "\n".join(lines)


def main() -> int:
    import argparse

    from fixtures import prepare

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--stacks", action="store_true", help="compare serving stacks for create")
    parser.add_argument("--stack", action="append", default=[], help="only the stacks whose name has this (repeat)")
    args = parser.parse_args()
    args.profile, args.skip, args.deciders = False, set(), 0
    ctx = Context(args)
    load_start = loadavg()
    try:
        prepare(ctx)
        if not args.stacks:
            parser.error("nothing to do: figure 5 runs from bench/run.py; here only --stacks")
        names = [n for n in STACKS if not args.stack or any(part in n for part in args.stack)]
        table = stacks_table(compare_stacks(ctx, names), (load_start, loadavg()))
    finally:
        ctx.close()
    print(table)
    (RESULTS / "stacks.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
