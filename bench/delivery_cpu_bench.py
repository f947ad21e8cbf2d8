"""CPU and statements of one webhook delivery in the worker, in-process (issue 15).

    DATABASE_URL=postgres://.../handoff_x REDIS_URL=redis://127.0.0.1:6379/N \
        .venv/bin/python bench/delivery_cpu_bench.py [--n 200] [--warm 20]

Against the database and Redis the environment names (production settings; the database is
migrated, an agent, a reviewer and the escalations are added to it). bench/receiver.py runs
as a separate process on 127.0.0.1 (its CPU is not ours). Each escalation is decided through
services.escalation_decide; then, for each delivery, deliver_webhook_task's body is called
here (claim, sign, POST, record: no Celery hop) and timed with time.process_time (its SQL
statements are counted in the warm-up: capturing them costs CPU). What the decider's on-commit
hook does (tasks.enqueue_deliveries: the mark set and the send task published when none waits,
the mark's SET NX alone when one does) is timed the same way. Prints p50/p90 per
delivery and the receiver's tally; `--profile FILE` writes a cProfile of the measured
deliveries on this thread's CPU clock.

With `--drain N`: N more decisions are made with no worker running (their deliveries wait
in the database, the send task in the broker), then a real worker (`celery worker -P prefork -c 2`, figure 3's flags)
drains them: deliveries/s and the worker's CPU per delivery (main process and children,
`/proc`), from the receiver's 11th webhook of the drain to its last. `--py-spy FILE` records
the worker meanwhile (py-spy must be on PATH or in the venv).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--warm", type=int, default=20)
    parser.add_argument("--profile", help="write a cProfile of the measured deliveries to this file")
    parser.add_argument("--drain", type=int, default=0, help="then drain this many through a real worker")
    parser.add_argument("--py-spy", dest="py_spy", help="py-spy record the draining worker to this file")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "handoff_site.settings")
    os.environ.update(
        DEBUG="0", OUTBOUND_ALLOW_PRIVATE="1", SECURE_SSL_REDIRECT="0", ALLOWED_HOSTS="127.0.0.1",
        HANDOFF_VAR_DIR=str(ROOT / "bench" / "results" / "var"), CHANNELS_PREFIX="handoffcpu",
    )
    os.environ.setdefault("SECRET_KEY", "bench-" + "k" * 50)
    if not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL")):
        sys.exit("needs DATABASE_URL and REDIS_URL (the production shape)")
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, check=True)

    from lib import free_port, wait_for_port

    port, secret = free_port(), "whsec_" + "b" * 40
    out = Path(tempfile.mkdtemp()) / "hooks.jsonl"
    receiver = subprocess.Popen([sys.executable, str(ROOT / "bench" / "receiver.py"), str(port), secret, str(out)])
    try:
        wait_for_port(port, receiver)
        return run(args, port, secret, out)
    finally:
        receiver.terminate()
        receiver.wait(5)


def run(args: argparse.Namespace, port: int, secret: str, out: Path) -> int:
    import django

    django.setup()
    import uuid

    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from escalations import services, tasks
    from escalations.models import Delivery
    from escalations.schemas import EscalationIn
    from escalations.tasks import deliver_webhook_task
    from tests.conftest import make_package

    nonce = uuid.uuid4().hex[:8]
    new = services.agent_create(
        name=f"cpu-{nonce}", domain="default", resume_url=f"http://127.0.0.1:{port}/hook",
        daily_budget=1_000_000,
    )
    agent = new.agent
    agent.signing_secret = secret
    agent.save(update_fields=["signing_secret"])
    user = get_user_model().objects.create_user(f"cpu-reviewer-{nonce}", password=None)
    total = args.warm + args.n
    ids = []
    for i in range(total):
        body = {**make_package(), "run_id": f"cpu-{nonce}-{i}"}
        created = services.escalation_create(agent=agent, package=EscalationIn.model_validate(body).to_input(body))
        ids.append(created.escalation.pk)
    request = services.DecisionRequest(kind="option", option="shim")
    for esc_id in ids:
        services.escalation_decide(escalation_id=esc_id, request=request, user=user)
    delivery_ids = [
        str(d) for d in Delivery.objects.filter(escalation_id__in=ids).order_by("created_at").values_list("pk", flat=True)
    ]
    cpu, wall, queries = [], [], []
    import cProfile

    profiler = cProfile.Profile(time.thread_time)  # this thread's CPU, not the waits
    for i, delivery_id in enumerate(delivery_ids):
        if args.profile and i == args.warm:
            profiler.enable()
        if i < args.warm:  # the statements, counted in the warm-up: capturing costs CPU
            with CaptureQueriesContext(connection) as captured:
                deliver_webhook_task(delivery_id)
            queries.append(len(captured))
            continue
        c0, w0 = time.process_time(), time.perf_counter()
        deliver_webhook_task(delivery_id)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    if args.profile:
        profiler.disable()
        profiler.dump_stats(args.profile)
    # What a decision's on-commit hook does (tasks.enqueue_deliveries): the mark set and the
    # send task published when none waits; only the mark's SET NX when one does.
    publish, marked = [], []
    for i in range(args.warm + 100):
        tasks._unmark()
        c0 = time.process_time()
        tasks.enqueue_deliveries()
        c1 = time.process_time()
        tasks.enqueue_deliveries()
        if i >= args.warm:
            publish.append(c1 - c0)
            marked.append(time.process_time() - c1)
    tasks._unmark()  # the published copies are never consumed (the queue is emptied below)
    time.sleep(0.5)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    delivered = Delivery.objects.filter(pk__in=delivery_ids, status=Delivery.Status.DELIVERED).count()

    def ms(values: list[float], q: float) -> float:
        return statistics.quantiles(values, n=100)[int(q) - 1] * 1000 if len(values) > 1 else values[0] * 1000

    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")
    print(f"delivery (claim, sign, POST, record), n={len(cpu)}: CPU p50 {statistics.median(cpu) * 1000:.2f} ms, "
          f"mean {statistics.mean(cpu) * 1000:.2f} ms, "
          f"p90 {ms(cpu, 90):.2f} ms; wall p50 {statistics.median(wall) * 1000:.2f} ms; "
          f"statements {statistics.median(queries):.0f} (min {min(queries)}, max {max(queries)}, in the warm-up)")
    print(f"a delivery's on-commit enqueue, none waiting (mark set + publish, warm producer), n={len(publish)}: "
          f"CPU p50 {statistics.median(publish) * 1000:.3f} ms, p90 {ms(publish, 90):.3f} ms; one waiting (the "
          f"mark's SET NX only): p50 {statistics.median(marked) * 1000:.3f} ms, p90 {ms(marked, 90):.3f} ms")
    print(f"received {len(lines)} webhooks for {len(delivery_ids)} deliveries, "
          f"bad signatures {sum(1 for x in lines if not x['signature_ok'])}, delivered {delivered}")
    for query in captured.captured_queries:
        print("  ", " ".join(query["sql"].split())[:160])
    # The published copies (decisions' hooks and the publish timing) were never consumed.
    import redis

    redis.Redis.from_url(os.environ["REDIS_URL"]).delete("celery")
    ok = delivered == len(delivery_ids) and len(lines) == len(delivery_ids)
    if args.drain:
        ok = drain(args, agent, user, out, nonce) and ok
    return 0 if ok else 1


def drain(args: argparse.Namespace, agent, user, out: Path, nonce: str) -> bool:
    """--drain: a backlog of deliveries (and the send task in the broker), drained by a fresh worker."""
    import signal

    from lib import cpu_seconds, group_cpu_seconds, py_spy

    from escalations import services
    from escalations.models import Delivery
    from escalations.schemas import EscalationIn
    from tests.conftest import make_package

    ids = []
    for i in range(args.drain):
        body = {**make_package(), "run_id": f"drain-{nonce}-{i}"}
        ids.append(services.escalation_create(agent=agent, package=EscalationIn.model_validate(body).to_input(body)).escalation.pk)
    before = len(out.read_text().splitlines())
    request = services.DecisionRequest(kind="option", option="shim")
    for esc_id in ids:
        services.escalation_decide(escalation_id=esc_id, request=request, user=user)
    cmd = [sys.executable, "-m", "celery", "-A", "handoff_site", "worker", "-P", "prefork", "-c", "2",
           "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "warning"]
    worker = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True)
    spy = None
    try:
        def arrivals() -> list[float]:
            return [json.loads(line)["t"] for line in out.read_text().splitlines()[before:]]

        deadline = time.monotonic() + 60
        while len(arrivals()) < 10 and time.monotonic() < deadline:
            time.sleep(0.005)
        cpu0, main0 = group_cpu_seconds(worker.pid), cpu_seconds(worker.pid)
        n0 = len(arrivals())
        if args.py_spy and (spy_bin := py_spy()):
            spy = subprocess.Popen([spy_bin, "record", "-r", "200", "-o", args.py_spy, "-f", "raw",
                                    "-p", str(worker.pid), "--subprocesses", "-d", "30"], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 180
        while len(arrivals()) < args.drain and time.monotonic() < deadline:
            time.sleep(0.01)
        cpu, main = group_cpu_seconds(worker.pid) - cpu0, cpu_seconds(worker.pid) - main0
        times = sorted(arrivals())
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(30)
    delivered = Delivery.objects.filter(escalation_id__in=ids, status=Delivery.Status.DELIVERED).count()
    measured = len(times) - n0
    rate = (len(times) - 10) / (times[-1] - times[9]) if len(times) > 10 else float("nan")
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")
    print(f"drain of {args.drain} by prefork -c 2: {rate:.0f} deliveries/s, worker CPU per delivery "
          f"{cpu * 1000 / max(measured, 1):.2f} ms (over {measured}; its main process {main * 1000 / max(measured, 1):.2f} ms, "
          f"the children the rest); delivered {delivered}")
    return delivered == args.drain


if __name__ == "__main__":
    raise SystemExit(main())
